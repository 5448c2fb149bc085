"""The detection confusion matrix of ``eval``: 80 COCO classes plus background, at one IoU and score threshold.

Definition (supervision's ``sv.ConfusionMatrix``, release 0.31; checked equal to it in
``tests/evaluation/accuracy/test_confusion.py``), per image:

1. Detections with ``score >= conf_threshold`` are kept; the ground truth is the image's
   non-crowd boxes (``ground_truth.load_coco_ground_truth``: COCOeval ignores crowd regions).
2. Candidate pairs (ground truth, detection) are those with IoU ``> iou_threshold``, whatever
   their classes. They are visited same-class pairs first, then by descending IoU, and a pair is
   taken when neither its ground truth nor its detection is taken yet (greedy, one-to-one).
3. A taken pair counts at ``[true class, predicted class]``: on the diagonal when the classes
   agree, off it when the detector found the object but named the wrong class.
4. A ground-truth box left unmatched (missed) counts at ``[true class, background]`` (last column);
   a detection left unmatched (a false positive) counts at ``[background, predicted class]``
   (last row). ``[background, background]`` is always 0.

Rows are the true classes, columns the predicted ones, both in COCO category order (index
``label - 1`` for model labels 1..80), index 80 is the background. Row sums (without the last row)
are the ground-truth boxes per class; column sums (without the last column) the kept detections.

Not supervision itself at run time: its matching changed across releases (class-aware since
0.30/0.31; earlier releases matched by IoU alone), and this small numpy version keeps the
definition fixed. Same-class-first matters when two objects overlap: a correct detection is not
counted as a confusion because a neighbour of another class overlaps it more.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ...coco import COCO_CATEGORY_IDS, COCO_CLASSES, category_id_to_label
from .ground_truth import load_coco_ground_truth
from .iou import pairwise_iou

__all__ = [
    "CONF_THRESHOLD",
    "IOU_THRESHOLD",
    "ConfusionMatrix",
    "confusion_matrix",
    "image_confusion",
]

#: Default score threshold of the confusion matrix (``eval --conf-threshold``), as ultralytics' ``val``.
CONF_THRESHOLD = 0.25
#: IoU above which a detection and a ground-truth box can be matched.
IOU_THRESHOLD = 0.5
_NUM = len(COCO_CLASSES) - 1  # 80 object classes; index 80 is the background


@dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix``: (81, 81) int64 counts, rows true class, columns predicted class, index 80 the
    background (see the module docstring). ``names``: the 81 row/column names (80 COCO names,
    then ``"background"``); ``category_ids``: the 80 COCO category ids of rows/columns 0..79."""

    matrix: np.ndarray
    conf_threshold: float
    iou_threshold: float
    names: tuple[str, ...] = tuple(COCO_CLASSES[1:]) + ("background",)
    category_ids: tuple[int, ...] = tuple(int(c) for c in COCO_CATEGORY_IDS[1:])

    @property
    def matched(self) -> int:
        """Pairs matched at IoU > threshold, right class or not (the 80 x 80 block)."""
        return int(self.matrix[:_NUM, :_NUM].sum())

    @property
    def correct(self) -> int:
        """Matched pairs of the right class (the diagonal)."""
        return int(np.trace(self.matrix[:_NUM, :_NUM]))

    @property
    def missed(self) -> int:
        """Ground-truth boxes left unmatched (the background column)."""
        return int(self.matrix[:_NUM, _NUM].sum())

    @property
    def false_positives(self) -> int:
        """Detections left unmatched (the background row)."""
        return int(self.matrix[_NUM, :_NUM].sum())

    def normalized(self) -> np.ndarray:
        """(81, 81) float64: each row divided by its sum (the fraction of a true class's boxes
        found as each class, or missed); the background row by its own sum (the share of the
        false positives per predicted class). Rows with no counts are 0."""
        sums = self.matrix.sum(axis=1, keepdims=True).astype(np.float64)
        return np.divide(self.matrix, sums, out=np.zeros(self.matrix.shape), where=sums > 0)

    def write_csv(self, path: str | Path) -> Path:
        """The raw counts as CSV: a header ``true \\ predicted`` + the 81 names, then one row per
        true class (its name, then 81 counts). Returns the path."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true \\ predicted", *self.names])
            for name, row in zip(self.names, self.matrix):
                writer.writerow([name, *(int(v) for v in row)])
        return Path(path)


def image_confusion(true_boxes: np.ndarray, true_classes: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    iou_threshold: float = IOU_THRESHOLD, num_classes: int = _NUM) -> np.ndarray:
    """One image's (num_classes + 1)^2 int64 counts (the module's definition, steps 2-4).

    ``true_boxes`` (G, 4) and ``boxes`` (D, 4): ltrb, in the same units; ``true_classes`` (G,) and
    ``classes`` (D,): ints in ``[0, num_classes)``. The detections are those already kept by the
    score threshold. Raises ``ValueError`` for mismatched lengths or a class out of range.
    """
    true_boxes = np.asarray(true_boxes, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    t = np.asarray(true_classes, np.int64).reshape(-1)
    d = np.asarray(classes, np.int64).reshape(-1)
    if len(t) != len(true_boxes) or len(d) != len(boxes):
        raise ValueError(f"{len(true_boxes)} true boxes with {len(t)} classes, {len(boxes)} boxes with {len(d)} classes")
    for name, values in (("true_classes", t), ("classes", d)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must be in [0, {num_classes}), got {values.min()}..{values.max()}")
    counts = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    iou = pairwise_iou(true_boxes, boxes)
    gi, di = np.nonzero(iou > iou_threshold)
    order = np.lexsort((-iou[gi, di], t[gi] != d[di]))  # same class first, then IoU descending
    taken_t = np.zeros(len(t), bool)
    taken_d = np.zeros(len(d), bool)
    for g, k in zip(gi[order], di[order]):
        if not (taken_t[g] or taken_d[k]):
            taken_t[g] = taken_d[k] = True
            counts[t[g], d[k]] += 1
    np.add.at(counts, (t[~taken_t], num_classes), 1)
    np.add.at(counts, (num_classes, d[~taken_d]), 1)
    return counts


def confusion_matrix(
    coco_gt: Any,
    records: Iterable[Mapping[str, Any]],
    image_ids: Sequence[int],
    *,
    conf_threshold: float = CONF_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
) -> ConfusionMatrix:
    """The confusion matrix of COCO results ``records`` over the images ``image_ids``.

    ``coco_gt``: the annotations (a pycocotools ``COCO``, a COCO dict or a path, as
    ``load_coco_ground_truth`` takes them). ``records``: COCO results dicts (``image_id``,
    ``category_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``score``), as ``eval`` writes them; those of
    other images are ignored. Raises ``ValueError`` for a threshold outside [0, 1], an image id
    not in the annotations or a category id that is no COCO class.
    """
    for name, value in (("conf_threshold", conf_threshold), ("iou_threshold", iou_threshold)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    images = {im.image_id: im for im in load_coco_ground_truth(coco_gt, list(image_ids))}
    per_image: dict[int, list] = {i: [] for i in images}
    for rec in records:
        if rec["image_id"] in per_image and float(rec["score"]) >= conf_threshold:
            per_image[rec["image_id"]].append((*rec["bbox"], rec["category_id"]))
    total = np.zeros((_NUM + 1, _NUM + 1), np.int64)
    for image_id, image in images.items():
        rows = np.array(per_image[image_id], np.float64).reshape(-1, 5)
        scale = np.array([image.width, image.height] * 2, np.float64)
        ltrb = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1) / scale
        labels = np.asarray(category_id_to_label(rows[:, 4].astype(np.int64))).reshape(-1)
        total += image_confusion(image.boxes, image.labels - 1, ltrb, labels - 1, iou_threshold)
    return ConfusionMatrix(total, float(conf_threshold), float(iou_threshold))
