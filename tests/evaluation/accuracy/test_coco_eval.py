"""COCO evaluation: label mapping, results JSON, pycocotools numbers on hand-made cases, evaluator agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _coco import write_tiny_ground_truth
from ssd_resnet34 import COCO_CLASSES, category_id_to_label, label_to_category_id
from ssd_resnet34.cli import main
from ssd_resnet34.evaluation.accuracy.coco_eval import (
    EVALUATORS,
    available_evaluators,
    evaluate,
    load_ground_truth,
)
from ssd_resnet34.evaluation.accuracy.ground_truth import (
    load_coco_ground_truth,
)

# The 80 category ids of COCO 2017 (1..90 without the 10 unused ids).
OFFICIAL_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def test_label_mapping_round_trip_and_official_ids():
    labels = np.arange(1, 81)
    ids = label_to_category_id(labels)
    assert ids.tolist() == OFFICIAL_IDS
    assert category_id_to_label(ids).tolist() == labels.tolist()
    for bad in (0, 81):
        with pytest.raises(ValueError):
            label_to_category_id(bad)
    for unused in (12, 83, 91):
        with pytest.raises(ValueError):
            category_id_to_label(unused)


def test_label_mapping_matches_the_annotation_file(coco_annotations):
    categories = json.loads(Path(coco_annotations).read_text())["categories"]
    by_id = {c["id"]: c["name"] for c in categories}
    assert sorted(by_id) == OFFICIAL_IDS
    for label in range(1, 81):
        assert by_id[int(label_to_category_id(label))] == COCO_CLASSES[label]


# --- hand-made ground truth: two images, known answers -------------------------------------


@pytest.fixture()
def tiny_gt(tmp_path):
    return write_tiny_ground_truth(tmp_path)


def _det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def _perfect(gt):
    return [_det(a["image_id"], a["category_id"], a["bbox"], 0.9) for a in gt.dataset["annotations"]]


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_perfect_detections_give_ap_1(tiny_gt, evaluator):
    if evaluator not in available_evaluators():
        pytest.skip(f"{evaluator} is not installed")
    gt = load_ground_truth(tiny_gt)
    result = evaluate(gt, _perfect(gt), [1, 2], evaluator=evaluator)
    assert result.map == pytest.approx(1.0)
    assert result.as_dict()["AP50"] == pytest.approx(1.0)
    assert result.as_dict()["AR100"] == pytest.approx(1.0)
    lines = result.summary.splitlines()
    assert len(lines) == 12
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000")


@pytest.mark.parametrize("evaluator", EVALUATORS)
def test_no_detections_give_ap_0_without_crash(tiny_gt, evaluator):
    if evaluator not in available_evaluators():
        pytest.skip(f"{evaluator} is not installed")
    gt = load_ground_truth(tiny_gt)
    result = evaluate(gt, [], [1, 2], evaluator=evaluator)
    assert result.num_detections == 0
    assert result.stats[0] == 0.0 and result.stats[8] == 0.0  # AP and AR@100
    assert len(result.summary.splitlines()) == 12


def test_false_positive_ranked_first_halves_ap(tiny_gt):
    # Image 2 (one dog): a confident miss, then the exact box: precision 1/2 at recall 1.
    gt = load_ground_truth(tiny_gt)
    records = [_det(2, 18, [150, 120, 40, 40], 0.9), _det(2, 18, [0, 0, 100, 100], 0.8)]
    result = evaluate(gt, records, [2])
    assert result.map == pytest.approx(0.5)


def test_iou_072_counts_at_five_of_ten_thresholds(tiny_gt):
    # Box [0, 0, 100, 72] vs ground truth [0, 0, 100, 100]: IoU 0.72, a match at IoU 0.50..0.70 only.
    gt = load_ground_truth(tiny_gt)
    result = evaluate(gt, [_det(2, 18, [0, 0, 100, 72], 0.7)], [2])
    stats = result.as_dict()
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(0.0)
    assert stats["AP"] == pytest.approx(0.5)


def test_evaluation_is_restricted_to_the_given_images(tiny_gt):
    # Only image 1 evaluated: the missing dog of image 2 does not count.
    gt = load_ground_truth(tiny_gt)
    records = [r for r in _perfect(gt) if r["image_id"] == 1]
    assert evaluate(gt, records, [1]).map == pytest.approx(1.0)
    assert evaluate(gt, records, [1, 2]).map < 1.0


def test_bad_records_and_arguments_raise(tiny_gt):
    gt = load_ground_truth(tiny_gt)
    with pytest.raises(ValueError, match="not among the evaluated images"):
        evaluate(gt, [_det(2, 1, [0, 0, 1, 1], 0.5)], [1])
    with pytest.raises(ValueError, match="category_id 12"):
        evaluate(gt, [_det(1, 12, [0, 0, 1, 1], 0.5)], [1])
    with pytest.raises(ValueError, match="bbox"):
        evaluate(gt, [_det(1, 1, [0, 0, float("nan"), 1], 0.5)], [1])
    with pytest.raises(ValueError, match="keys"):
        evaluate(gt, [{"image_id": 1}], [1])
    with pytest.raises(ValueError, match="not in the annotation file"):
        evaluate(gt, [], [99])
    with pytest.raises(ValueError, match="empty"):
        evaluate(gt, [], [])
    with pytest.raises(ValueError, match="evaluator"):
        evaluate(gt, [], [1], evaluator="mmdet")


def test_load_ground_truth_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_ground_truth(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ground_truth(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match="not a COCO instances file"):
        load_ground_truth(bad)


# --- the command on the shared COCO subset ------------------------------------------------


def _subset(coco_annotations):
    return str(Path(coco_annotations).parent / "images"), str(coco_annotations)


def test_eval_oracle_writes_coco_results_in_pixels(coco_annotations, native, tmp_path, capsys):
    images, annotations = _subset(coco_annotations)
    out = tmp_path / "out"
    assert main(["eval", "--oracle", "--images", images, "--annotations", annotations, "--limit", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 images" in printed and "mAP=" in printed

    gt = load_ground_truth(annotations)
    first3 = sorted(gt.imgs)[:3]
    records = json.loads((out / "coco_results.json").read_text())
    assert records and {r["image_id"] for r in records} <= set(first3)
    for r in records:
        assert set(r) == {"image_id", "category_id", "bbox", "score"}
        assert isinstance(r["image_id"], int) and isinstance(r["category_id"], int)
        assert r["category_id"] in OFFICIAL_IDS
        assert len(r["bbox"]) == 4 and r["bbox"][2] > 0 and r["bbox"][3] > 0
        assert 0.05 < r["score"] <= 1.0
    # xywh in pixels: every ground-truth box is found (IoU > 0.9) among the detections of its class.
    for image_id in first3:
        for ann in gt.imgToAnns[image_id]:
            if ann["iscrowd"]:
                continue
            x, y, w, h = ann["bbox"]
            best = 0.0
            for r in records:
                if r["image_id"] == image_id and r["category_id"] == ann["category_id"]:
                    bx, by, bw, bh = r["bbox"]
                    iw = max(0.0, min(x + w, bx + bw) - max(x, bx))
                    ih = max(0.0, min(y + h, by + bh) - max(y, by))
                    best = max(best, iw * ih / (w * h + bw * bh - iw * ih))
            assert best > 0.9, (image_id, ann)
    summary = json.loads((out / "coco_eval.json").read_text())
    assert summary["images"] == 3 and summary["source"] == "oracle"


def test_faster_coco_eval_gives_identical_numbers(coco_annotations, native):
    pytest.importorskip("faster_coco_eval")
    from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth
    from ssd_resnet34.output.coco_results import to_coco_results

    gt = load_ground_truth(coco_annotations)
    ids = sorted(gt.imgs)[:40]
    pp = __import__("ssd_resnet34").NativePostProcessor()
    records = []
    rng = np.random.default_rng(1)
    for image in load_coco_ground_truth(coco_annotations, ids):
        # jitter the ground truth so AP is far from 1 at high IoU
        boxes = image.boxes + rng.normal(0, 0.01, image.boxes.shape).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1e-3)
        heads = encode_ground_truth(boxes, image.labels, seed=image.image_id)
        (dets,) = pp(heads, [{"width": image.width, "height": image.height}])
        records += to_coco_results(dets, image.image_id)
    ours = evaluate(gt, records, ids, evaluator="pycocotools")
    theirs = evaluate(gt, records, ids, evaluator="faster-coco-eval")
    assert 0.3 < ours.map < 0.95
    np.testing.assert_allclose(theirs.stats, ours.stats, rtol=0, atol=1e-12)
    assert theirs.summary == ours.summary


def test_eval_synthetic_end_to_end(coco_annotations, native, tmp_path, capsys):
    images, annotations = _subset(coco_annotations)
    out = tmp_path / "out"
    code = main(["eval", "--synthetic", "--images", images, "--annotations", annotations, "--limit", "2", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "random" in captured.err  # the synthetic-weights warning
    lines = captured.out.splitlines()
    assert sum(line.startswith(" Average Precision") for line in lines) == 6
    assert sum(line.startswith(" Average Recall") for line in lines) == 6
    assert lines[-1].startswith("mAP=")
    records = json.loads((out / "coco_results.json").read_text())
    gt = load_ground_truth(annotations)
    first2 = sorted(gt.imgs)[:2]
    for r in records:
        assert set(r) == {"image_id", "category_id", "bbox", "score"}
        assert r["image_id"] in first2 and r["category_id"] in OFFICIAL_IDS


def test_eval_reports_bad_input_as_one_line(tmp_path, tiny_gt, capsys):
    assert main(["eval", "--oracle", "--images", str(tmp_path / "none"), "--annotations", str(tiny_gt)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "none" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--oracle", "--images", str(empty), "--annotations", str(tiny_gt)]) == 1
    assert "none of the 3 images" in capsys.readouterr().err
    assert main(["eval", "--oracle", "--synthetic", "--images", str(empty), "--annotations", str(tiny_gt)]) == 1
    assert "--oracle" in capsys.readouterr().err
