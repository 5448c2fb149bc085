"""The confusion matrix's definition (``evaluation/accuracy/confusion.py``): hand-made cases, and
equality with supervision's ``sv.ConfusionMatrix`` (the definition it adopts) on real ground truth
with detections perturbed so that every kind of cell is filled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ssd_resnet34.evaluation.accuracy.confusion import ConfusionMatrix, confusion_matrix, image_confusion


def test_same_class_is_matched_before_a_higher_iou_of_another_class():
    truth = np.array([[0, 0, 10, 10]], float)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9]], float)  # exact but class 1; IoU 0.9 and class 0
    counts = image_confusion(truth, [0], boxes, [1, 0], num_classes=2)
    assert counts.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]  # matched right, the other is a false positive


def test_wrong_class_missed_and_false_positive_cells():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    boxes = np.array([[0, 0, 10, 10], [80, 80, 90, 90], [50, 50, 60, 56]], float)  # last: IoU 0.6
    counts = image_confusion(truth, [0, 1, 1], boxes, [1, 0, 1], num_classes=2)
    # truth 0 (class 0) found as class 1; truth 1 missed; truth 2 found; detection 1 a false positive
    assert counts.tolist() == [[0, 1, 0], [0, 1, 1], [1, 0, 0]]
    # IoU must be above the threshold, not equal to it
    assert image_confusion(truth[2:], [1], boxes[2:], [1], 0.6, num_classes=2).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_bad_classes_are_refused():
    with pytest.raises(ValueError, match=r"classes must be in \[0, 2\)"):
        image_confusion(np.zeros((1, 4)), [2], np.zeros((0, 4)), [], num_classes=2)
    with pytest.raises(ValueError, match="1 true boxes with 2 classes"):
        image_confusion(np.zeros((1, 4)), [0, 1], np.zeros((0, 4)), [], num_classes=2)


def test_thresholds_are_checked(coco_annotations):
    with pytest.raises(ValueError, match="conf_threshold must be in"):
        confusion_matrix(str(coco_annotations), [], [], conf_threshold=1.5)


def _perturbed_records(annotations: dict, image_ids: list, seed: int = 0) -> list:
    """Detections from the ground truth: most exact, some shifted (IoU below 0.5), some of another
    category, some extra, with scores around the 0.25 threshold."""
    rng = np.random.default_rng(seed)
    categories = [c["id"] for c in annotations["categories"]]
    wanted = set(image_ids)
    records = []
    for ann in annotations["annotations"]:
        if ann["image_id"] not in wanted:
            continue
        x, y, w, h = ann["bbox"]
        category, roll = ann["category_id"], rng.random()
        if roll < 0.15:
            category = int(rng.choice(categories))
        elif roll < 0.25:
            x += 0.8 * w
        elif roll < 0.3:
            continue
        records.append({"image_id": ann["image_id"], "category_id": category, "bbox": [x, y, w * rng.uniform(0.8, 1.2), h],
                        "score": float(rng.uniform(0.1, 1.0))})
        if rng.random() < 0.1:
            records.append({"image_id": ann["image_id"], "category_id": int(rng.choice(categories)),
                            "bbox": [x + 0.2 * w, y, w, h], "score": float(rng.uniform(0.1, 1.0))})
    return records


def test_equals_supervision_confusion_matrix_on_real_ground_truth(coco_annotations):
    sv = pytest.importorskip("supervision", reason="supervision is not installed")
    from ssd_resnet34.coco import category_id_to_label

    annotations = json.loads(Path(coco_annotations).read_text())
    image_ids = sorted(im["id"] for im in annotations["images"])[:60]
    records = _perturbed_records(annotations, image_ids)
    ours = confusion_matrix(annotations, records, image_ids, conf_threshold=0.25)
    assert isinstance(ours, ConfusionMatrix)

    def rows(entries, with_score):
        out = [[x, y, x + w, y + h, int(category_id_to_label(e["category_id"])) - 1, *([e["score"]] if with_score else [])]
               for e in entries for (x, y, w, h) in [e["bbox"]]]
        return np.array(out, float).reshape(-1, 6 if with_score else 5)

    predictions = [rows([r for r in records if r["image_id"] == i], True) for i in image_ids]
    targets = [rows([a for a in annotations["annotations"] if a["image_id"] == i and not a.get("iscrowd", 0)
                     and a["bbox"][2] > 0 and a["bbox"][3] > 0], False) for i in image_ids]
    theirs = sv.ConfusionMatrix.from_tensors(predictions, targets, classes=list(ours.names[:80]),
                                             conf_threshold=0.25, iou_threshold=0.5)
    if not np.array_equal(theirs.matrix, ours.matrix):
        pytest.fail(f"supervision {sv.__version__} disagrees: {int(np.abs(theirs.matrix - ours.matrix).sum())} "
                    "counts differ (its matching changed across releases; the definition here is 0.31's)")
    # every kind of cell occurs, so the comparison means something
    assert ours.correct > 0 and ours.matched > ours.correct and ours.missed > 0 and ours.false_positives > 0
