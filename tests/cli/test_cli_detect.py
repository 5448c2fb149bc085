"""``ssd-resnet34 detect`` end to end on real photographs with the synthetic model.

Two runs do inference (three images in all): ``main([...])`` on a folder with a colour photo, the
grayscale COCO photo and a broken file, and the installed ``ssd-resnet34`` script in a subprocess
on ``cat.jpg`` with a higher ``--score-threshold``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssd_resnet34.cli import main
from ssd_resnet34.coco import COCO_CATEGORY_IDS
from ssd_resnet34.image.listing import list_images
from ssd_resnet34.output.coco_results import assign_image_ids as _assign_image_ids
from ssd_resnet34.output.run_writer import drawing_names

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
GRAYSCALE_COCO = DATA / "coco-val2017-subset" / "images" / "000000431848.jpg"
VALID_CATEGORY_IDS = set(COCO_CATEGORY_IDS[1:])

needs_data = pytest.mark.skipif(
    not (CAT.is_file() and GRAYSCALE_COCO.is_file()),
    reason=f"shared test photos not found under {DATA} (../shared/data next to the repository)",
)


def _summary_counts(stdout: str) -> dict:
    """``<path>: <n> detection(s)[, top: <class> <score>]`` lines -> {base name: n}."""
    lines = (re.match(r"^(.*): (\d+) detections?(?:, top: .+ \d\.\d\d)?$", line) for line in stdout.splitlines())
    return {os.path.basename(m.group(1)): int(m.group(2)) for m in lines if m}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """``detect FOLDER --synthetic --batch-size 2`` on cat.jpg, the grayscale COCO photo, a broken file."""
    if not (CAT.is_file() and GRAYSCALE_COCO.is_file()):
        pytest.skip(f"shared test photos not found under {DATA}")
    root = tmp_path_factory.mktemp("detect")
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(CAT, photos / "cat.jpg")
    shutil.copy(GRAYSCALE_COCO, photos / GRAYSCALE_COCO.name)
    (photos / "broken.jpg").write_text("not a JPEG\n")
    (photos / "notes.txt").write_text("not an image file name: ignored\n")
    out = root / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["detect", str(photos), "--synthetic", "--out", str(out), "--batch-size", "2"])
    return {"status": status, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "photos": photos, "out": out}


@needs_data
def test_folder_with_a_bad_file_exits_1_after_writing_the_good_ones(folder_run):
    photos, out = folder_run["photos"], folder_run["out"]
    assert folder_run["status"] == 1
    stderr = folder_run["stderr"]
    assert (f"error: {photos / 'broken.jpg'}: not an image (unrecognized format: the first bytes are no known "
            "image signature)\n") in stderr
    assert "warning: --synthetic: the weights are random" in stderr and "noise" in stderr
    assert "Traceback" not in stderr and "UserWarning" not in stderr

    records = json.loads((out / "detections.json").read_text())
    counts = _summary_counts(folder_run["stdout"])
    assert set(counts) == {"cat.jpg", GRAYSCALE_COCO.name}
    # COCO file name -> its image id; other names -> running numbers from 1, listed in image_ids.json
    by_image = {image_id: [r for r in records if r["image_id"] == image_id] for image_id in (1, 431848)}
    assert len(by_image[1]) == counts["cat.jpg"] > 0
    assert len(by_image[431848]) == counts[GRAYSCALE_COCO.name] > 0
    assert len(records) == sum(counts.values())
    assert json.loads((out / "image_ids.json").read_text()) == {
        "1": str(photos / "cat.jpg"),
        "431848": str(photos / GRAYSCALE_COCO.name),
    }
    for record in records:
        assert set(record) == {"image_id", "category_id", "bbox", "score"}
        assert record["category_id"] in VALID_CATEGORY_IDS
        assert 0.05 < record["score"] <= 1 and record["bbox"][2] > 0 and record["bbox"][3] > 0

    # One drawing per good image, same size and extension as the input, with boxes drawn on it.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["detections.json", "image_ids.json", "run.json", "cat.jpg", GRAYSCALE_COCO.name]
    )
    for name, source in (("cat.jpg", CAT), (GRAYSCALE_COCO.name, GRAYSCALE_COCO)):
        drawn, original = cv2.imread(str(out / name)), cv2.imread(str(source))
        assert drawn.shape == original.shape
        assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100


@needs_data
def test_console_script_on_one_image_with_a_score_threshold(folder_run, tmp_path):
    script = Path(sys.executable).with_name("ssd-resnet34")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ssd_resnet34.cli"]
    out = tmp_path / "out"
    completed = subprocess.run(
        [*command, "detect", str(CAT), "--synthetic", "--out", str(out), "--score-threshold", "0.07"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    assert "random" in completed.stderr and "Traceback" not in completed.stderr
    assert completed.stdout.startswith(f"{CAT}: ")
    assert "top: " in completed.stdout
    records = json.loads((out / "detections.json").read_text())
    assert records and all(r["image_id"] == 1 and r["score"] > 0.07 for r in records)
    assert (out / "image_ids.json").is_file() and (out / "cat.jpg").is_file()
    # A higher score threshold keeps exactly the detections above it (NMS only suppresses a box
    # by higher-scored ones); compare away from the threshold, as the batch of two may round
    # differently from this batch of one.
    everything = json.loads((folder_run["out"] / "detections.json").read_text())
    cat = [r for r in everything if r["image_id"] == 1]
    assert len(records) < len(cat)
    high = lambda rs: [r for r in rs if r["score"] > 0.0701]  # noqa: E731
    assert [r["category_id"] for r in high(records)] == [r["category_id"] for r in high(cat)]
    np.testing.assert_allclose([r["bbox"] for r in high(records)], [r["bbox"] for r in high(cat)], atol=0.05)


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err
    assert main(["detect"]) == 2
    assert main(["detect", "x.jpg", "--batch-size", "0"]) == 2
    assert "expected an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["detect", "x.jpg", "--score-threshold", "1.5"]) == 2
    assert "expected a number in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["detect", "x.jpg", "--synthetic", "--model", "m.onnx"]) == 2
    assert "not allowed with" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    assert main(["detect", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--model", "--synthetic", "--seed", "--out", "--score-threshold", "--batch-size",
                   "--device", "--python-postprocess", "--no-draw"):
        assert option in help_text
    from ssd_resnet34.engines import DEVICES

    assert f"{{{','.join(DEVICES)}}}" in help_text  # --device choices are the session's devices


def test_missing_official_weights_exit_1_with_the_message(tmp_path, monkeypatch, capsys):
    status = main(["detect", str(CAT), "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 1
    assert f"error: model file not found: {tmp_path / 'missing.onnx'}" in err and "Traceback" not in err
    monkeypatch.setenv("SSD_RESNET34_MODEL", str(tmp_path / "env.onnx"))
    assert main(["detect", str(CAT), "--out", str(tmp_path / "o")]) == 1
    assert "$SSD_RESNET34_MODEL" in capsys.readouterr().err


def test_only_bad_inputs_exit_1_without_loading_a_model(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    status = main(["detect", str(tmp_path / "missing.jpg"), str(empty), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 1
    assert f"error: {tmp_path / 'missing.jpg'}: no such file or folder" in err
    assert f"error: {empty}: folder has no image files" in err
    assert f"error: no image to process; {tmp_path / 'o'} is left as it was" in err
    assert not (tmp_path / "o").exists()  # nothing written: a run that produced nothing erases nothing


def test_image_ids_and_output_names(tmp_path):
    paths = ["a/cat.jpg", "b/000000000009.jpg", "c/cat.jpg", "d/000000000009.jpg", "e/x.gif"]
    ids, running = _assign_image_ids(paths)
    # COCO names keep their id; the others count from 1, skipping ids already taken (9), and a
    # second file with the same COCO name gets a running number too.
    assert ids == {"a/cat.jpg": 1, "b/000000000009.jpg": 9, "c/cat.jpg": 2, "d/000000000009.jpg": 3, "e/x.gif": 4}
    assert running
    assert _assign_image_ids(["000000397133.jpg"]) == ({"000000397133.jpg": 397133}, False)

    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"")  # an input inside the output folder is never overwritten
    names = drawing_names(paths + [str(out / "photo.png")], out)
    assert [p.name for p in names.values()] == [
        "cat.jpg", "000000000009.jpg", "cat-2.jpg", "000000000009-2.jpg", "x.png", "photo-2.png"
    ]

    (tmp_path / "in").mkdir()
    for name in ("b.JPG", "a.png", "c.txt", ".hidden.jpg"):
        (tmp_path / "in" / name).write_bytes(b"")
    listing = list_images([str(tmp_path / "in"), str(tmp_path / "in" / "a.png")])
    assert [os.path.basename(p) for p in listing.paths] == ["a.png", "b.JPG"] and not listing.problems  # hidden files skipped


@needs_data
def test_the_closing_line_lists_every_file_written(folder_run):
    out = folder_run["out"]
    assert (f"wrote {out / 'detections.json'} ({len(json.loads((out / 'detections.json').read_text()))} detections, "
            f"2 images), {out / 'image_ids.json'}, 2 drawings in {out}{os.sep}, {out / 'run.json'}\n"
            ) in folder_run["stderr"]
    assert "\r" not in folder_run["stderr"]  # stderr is no terminal: plain progress lines, no bar frames
    assert "detect: 3/3 images (100%), " in folder_run["stderr"]
    manifest = json.loads((out / "run.json").read_text())
    assert sorted(manifest["files"]) == sorted(["cat.jpg", GRAYSCALE_COCO.name, "detections.json", "image_ids.json"])


def _outside(records, width, height):
    return [r for r in records if r["bbox"][0] < 0 or r["bbox"][1] < 0 or r["bbox"][0] + r["bbox"][2] > width
            or r["bbox"][1] + r["bbox"][3] > height]


@needs_data
def test_clip_clips_the_written_boxes_to_the_image(tmp_path, capsys):
    """Not clipped by default, as the MLPerf reference (README: 5-7 of 173 boxes on cat.jpg with
    the synthetic model reach outside; how many follows the engine's CPU kernels: 7 on AVX-512
    machines, 5 on an AVX2 Zen 3); --clip clips each box to the image and keeps every detection."""
    height, width = cv2.imread(str(CAT)).shape[:2]
    assert main(["detect", str(CAT), "--synthetic", "--out", str(tmp_path / "plain"), "--no-draw"]) == 0
    assert main(["detect", str(CAT), "--synthetic", "--out", str(tmp_path / "clip"), "--clip"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {tmp_path / 'clip' / 'detections.json'} (" in err and f"1 drawing ({tmp_path / 'clip' / 'cat.jpg'})" in err
    plain = json.loads((tmp_path / "plain" / "detections.json").read_text())
    clipped = json.loads((tmp_path / "clip" / "detections.json").read_text())
    assert len(plain) == len(clipped) == 173 and len(_outside(plain, width, height)) in (5, 6, 7)
    assert _outside(clipped, width, height) == []
    for before, after in zip(plain, clipped):
        assert (before["category_id"], before["score"]) == (after["category_id"], after["score"])
        left, top = max(before["bbox"][0], 0), max(before["bbox"][1], 0)
        right = min(before["bbox"][0] + before["bbox"][2], width)
        bottom = min(before["bbox"][1] + before["bbox"][3], height)
        np.testing.assert_allclose(after["bbox"], [left, top, right - left, bottom - top], atol=1e-3)
    assert json.loads((tmp_path / "clip" / "run.json").read_text())["summary"]["clipped"] is True
