"""Per-class AP of a COCO evaluation, read from the evaluator's own ``precision`` array.

No second computation: the AP of class k is pycocotools' ``summarize`` formula restricted to k,
the mean of ``eval['precision'][t, r, k, area=all, maxDets=100]`` over the entries > -1 (all
10 IoU thresholds for AP, IoU 0.5 alone for AP50). That equals ``COCOeval`` run with
``params.catIds = [k]`` (checked in ``tests/evaluation/accuracy/test_eval_plots.py``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...coco import COCO_CLASSES, category_id_to_label

__all__ = ["ClassAP", "class_instances", "per_class_ap", "write_per_class_csv"]

_AREA_ALL, _MAX_DETS_100 = 0, 2  # indices of area "all" and maxDets 100 in eval['precision']


@dataclass(frozen=True)
class ClassAP:
    """One class: ``instances`` = its non-crowd ground-truth boxes in the evaluated images (what
    COCOeval matches against); ``ap`` (AP@[.5:.95]) and ``ap50``: NaN when it has none."""

    category_id: int
    name: str
    instances: int
    ap: float
    ap50: float


def class_instances(coco_gt: Any, image_ids: Sequence[int]) -> dict[int, int]:
    """Non-crowd ground-truth boxes per COCO category id over ``image_ids`` (every category of
    ``coco_gt``, a pycocotools ``COCO``, listed; 0 where absent)."""
    wanted = {int(i) for i in image_ids}
    counts = {int(c): 0 for c in coco_gt.cats}
    for ann in coco_gt.dataset["annotations"]:
        if ann["image_id"] in wanted and not ann.get("iscrowd", 0) and not ann.get("ignore", 0):
            counts[int(ann["category_id"])] += 1
    return counts


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else math.nan


def per_class_ap(result: Any, coco_gt: Any) -> list[ClassAP]:
    """One :class:`ClassAP` per category of ``result`` (a ``coco_eval.CocoEvaluation``), in its
    ``category_ids`` order. Raises ``ValueError`` when ``result`` carries no precision array."""
    precision = getattr(result, "precision", None)
    if precision is None:
        raise ValueError("the evaluation carries no precision array (run coco_eval.evaluate)")
    precision = np.asarray(precision)
    counts = class_instances(coco_gt, result.image_ids)
    rows = []
    for k, category_id in enumerate(result.category_ids):
        block = precision[:, :, k, _AREA_ALL, _MAX_DETS_100]
        name = COCO_CLASSES[int(category_id_to_label(category_id))]
        rows.append(ClassAP(int(category_id), name, counts.get(int(category_id), 0),
                            _mean_valid(block), _mean_valid(block[0])))
    return rows


def write_per_class_csv(rows: Sequence[ClassAP], path: str | Path) -> Path:
    """``category_id,name,instances,AP,AP50``, one line per class; AP cells are empty for a class
    without ground truth in the evaluated images (COCO's -1). Returns the path."""

    def cell(value: float) -> str:
        return "" if math.isnan(value) else f"{value:.6f}"

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category_id", "name", "instances", "AP", "AP50"])
        for r in rows:
            writer.writerow([r.category_id, r.name, r.instances, cell(r.ap), cell(r.ap50)])
    return Path(path)
