"""``eval``'s plots and tables on the shared COCO photos with ``--oracle`` (real pycocotools, real
matplotlib): the files exist and open, the confusion matrix agrees with an independent matcher
written here, the oracle's matched boxes are (nearly) all of the right class, and
``per_class_ap.csv`` holds pycocotools' own per-class AP (``COCOeval`` run class by class)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="matplotlib (the plots extra) is not installed")
pytest.importorskip("pycocotools", reason="pycocotools (the eval extra) is not installed")

from PIL import Image  # noqa: E402
from ssd_resnet34.cli import main  # noqa: E402

LIMIT = 40  # images: enough for 20+ classes, a few seconds
CONF = 0.25
PLOT_FILES = ("pr_curves.png", "per_class_ap.csv", "confusion_matrix.csv", "confusion_matrix.png")


@pytest.fixture(scope="module")
def oracle_run(coco_annotations, native, tmp_path_factory):
    """One ``eval --oracle --limit 40`` run: its output folder."""
    out = tmp_path_factory.mktemp("eval-plots")
    images = Path(coco_annotations).parent / "images"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["eval", "--oracle", "--images", str(images), "--annotations", str(coco_annotations),
                     "--limit", str(LIMIT), "--out", str(out)])
    assert code == 0
    assert f"plots: {out / 'pr_curves.png'}" in printed.getvalue()
    return out


def _confusion_csv(out: Path) -> tuple[list[str], list[list[int]]]:
    with open(out / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    assert header[0] == "true \\ predicted" and [r[0] for r in body] == header[1:]
    return header[1:], [[int(v) for v in r[1:]] for r in body]


def _iou(a, b) -> float:
    """IoU of two [x, y, w, h] boxes, plainly."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _simple_matcher(annotations: dict, results: list, image_ids: list) -> dict:
    """The confusion definition of ``evaluation/accuracy/confusion.py``, written again without numpy:
    per image, pairs with IoU > 0.5 visited same category first then by IoU, one-to-one.
    Returns counts keyed (true category or None, predicted category or None)."""
    counts: dict = {}
    wanted = set(image_ids)
    truths = {i: [] for i in image_ids}
    for ann in annotations["annotations"]:
        if ann["image_id"] in wanted and not ann.get("iscrowd", 0) and ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            truths[ann["image_id"]].append((ann["bbox"], ann["category_id"]))
    found = {i: [] for i in image_ids}
    for rec in results:
        if rec["score"] >= CONF:
            found[rec["image_id"]].append((rec["bbox"], rec["category_id"]))
    for image_id in image_ids:
        gts, dets = truths[image_id], found[image_id]
        pairs = [(g_cat != d_cat, -iou, g, d)
                 for g, (g_box, g_cat) in enumerate(gts) for d, (d_box, d_cat) in enumerate(dets)
                 if (iou := _iou(g_box, d_box)) > 0.5]
        used_g, used_d = set(), set()
        for _, _, g, d in sorted(pairs):
            if g not in used_g and d not in used_d:
                used_g.add(g)
                used_d.add(d)
                key = (gts[g][1], dets[d][1])
                counts[key] = counts.get(key, 0) + 1
        for g, (_, cat) in enumerate(gts):
            if g not in used_g:
                counts[(cat, None)] = counts.get((cat, None), 0) + 1
        for d, (_, cat) in enumerate(dets):
            if d not in used_d:
                counts[(None, cat)] = counts.get((None, cat), 0) + 1
    return counts


def test_eval_writes_the_plots_and_tables(oracle_run):
    manifest = json.loads((oracle_run / "run.json").read_text())
    for name in PLOT_FILES:
        assert (oracle_run / name).is_file(), name
        assert name in manifest["files"]
    for name, size in (("pr_curves.png", (1200, 560)), ("confusion_matrix.png", (2400, 1150))):
        with Image.open(oracle_run / name) as image:
            image.load()  # decodes the whole file
            assert image.format == "PNG" and image.size == size, name
            colors = image.convert("L").getextrema()
            assert colors[0] < 50 and colors[1] > 200, name  # drawn: dark lines/text on white, not blank


def test_the_oracle_confusion_matrix_is_diagonal(oracle_run):
    names, matrix = _confusion_csv(oracle_run)
    assert len(names) == 81 and names[-1] == "background" and names[0] == "person"
    matched = sum(matrix[i][j] for i in range(80) for j in range(80))
    diagonal = sum(matrix[i][i] for i in range(80))
    assert matched > 200  # real data: hundreds of boxes in 40 images
    assert diagonal > 0.9 * matched
    assert matrix[80][80] == 0
    summary = json.loads((oracle_run / "run.json").read_text())["summary"]["confusion"]
    assert summary["matched"] == matched and summary["matched_right_class"] == diagonal


def test_the_confusion_counts_add_up_to_an_independent_matcher(oracle_run, coco_annotations):
    names, matrix = _confusion_csv(oracle_run)
    annotations = json.loads(Path(coco_annotations).read_text())
    results = json.loads((oracle_run / "coco_results.json").read_text())
    image_ids = sorted(im["id"] for im in annotations["images"] if (Path(coco_annotations).parent / "images" /
                                                                    im["file_name"]).is_file())[:LIMIT]
    counts = _simple_matcher(annotations, results, image_ids)
    matched = sum(v for (t, p), v in counts.items() if t is not None and p is not None)
    missed = sum(v for (t, p), v in counts.items() if p is None)
    false_positives = sum(v for (t, p), v in counts.items() if t is None)
    assert sum(matrix[i][j] for i in range(80) for j in range(80)) == matched
    assert sum(matrix[i][80] for i in range(80)) == missed
    assert sum(matrix[80][j] for j in range(80)) == false_positives
    assert missed + false_positives > 0  # the oracle is not perfect: both kinds of error are counted
    # cell by cell, by category id
    index = {cat["id"]: names.index(cat["name"]) for cat in annotations["categories"]}
    expected = [[0] * 81 for _ in range(81)]
    for (t, p), v in counts.items():
        expected[80 if t is None else index[t]][80 if p is None else index[p]] += v
    assert matrix == expected
    # every true box is in its row once: row sums are the ground truth per class
    for cat_id, row in index.items():
        truth = sum(1 for a in annotations["annotations"] if a["image_id"] in set(image_ids) and a["category_id"] == cat_id
                    and not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0)
        assert sum(matrix[row]) == truth


def test_per_class_ap_is_pycocotools_class_by_class(oracle_run, coco_annotations):
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with open(oracle_run / "per_class_ap.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 80 and list(rows[0]) == ["category_id", "name", "instances", "AP", "AP50"]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_annotations))
        dt = gt.loadRes(str(oracle_run / "coco_results.json"))
    image_ids = sorted({r["image_id"] for r in json.loads((oracle_run / "coco_results.json").read_text())})
    assert len(image_ids) == LIMIT
    checked = 0
    for row in rows:
        category = int(row["category_id"])
        instances = len(gt.getAnnIds(imgIds=image_ids, catIds=[category], iscrowd=False))
        assert int(row["instances"]) == instances, row
        if instances == 0:
            assert row["AP"] == "" and row["AP50"] == ""
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.imgIds = image_ids
            ev.params.catIds = [category]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert math.isclose(float(row["AP"]), ev.stats[0], abs_tol=5e-7), row
        assert math.isclose(float(row["AP50"]), ev.stats[1], abs_tol=5e-7), row
        checked += 1
    assert checked >= 20
    aps = [float(r["AP"]) for r in rows if r["AP"]]
    assert np.mean(aps) > 0.95  # the oracle


def test_no_plots_writes_none_and_never_imports_matplotlib(coco_annotations, native, tmp_path):
    images = Path(coco_annotations).parent / "images"
    script = (
        "import sys\n"
        "from ssd_resnet34.cli import main\n"
        f"code = main(['eval', '--oracle', '--images', {str(images)!r}, '--annotations', {str(coco_annotations)!r},"
        f" '--limit', '2', '--out', {str(tmp_path)!r}, '--no-plots'])\n"
        "assert code == 0, code\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'matplotlib'], 'matplotlib was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "plots:" not in done.stdout
    written = json.loads((tmp_path / "run.json").read_text())["files"]
    assert written == ["coco_results.json", "coco_eval.json"]
    assert not any((tmp_path / name).exists() for name in PLOT_FILES)


def test_conf_threshold_is_checked(coco_annotations, tmp_path, capsys):
    images = Path(coco_annotations).parent / "images"
    code = main(["eval", "--oracle", "--images", str(images), "--annotations", str(coco_annotations),
                 "--limit", "1", "--out", str(tmp_path), "--conf-threshold", "1.5"])
    assert code != 0
    assert "--conf-threshold" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra_before_any_work(coco_annotations, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "not installed"
    images = Path(coco_annotations).parent / "images"
    for argv in (["eval", "--oracle", "--images", str(images), "--annotations", str(coco_annotations), "--limit", "1"],
                 ["bench", "--stages", "--synthetic", "--images", str(images)]):
        assert main([*argv, "--out", str(tmp_path / argv[0])]) == 1
        err = capsys.readouterr().err
        assert "needs matplotlib, which is not installed: pip install 'ssd-resnet34[plots]'" in err, err
        assert "--no-plots" in err
        assert not (tmp_path / argv[0]).exists()  # refused before the run wrote anything
    # AccuracyOnly draws nothing, so it needs no matplotlib
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")
    assert main(["bench", "--oracle", "--mode", "AccuracyOnly", "--images", str(images), "--annotations",
                 str(coco_annotations), "--count", "2", "--out", str(tmp_path / "logs")]) == 0
    assert "mAP=" in capsys.readouterr().out and not (tmp_path / "logs" / "latency.png").exists()
