"""Helpers shared by the benchmark scripts: ground truth for the oracle (and ``cpu_name``,
re-exported from ``ssd_resnet34.stages``)."""

from __future__ import annotations

from pathlib import Path

from ssd_resnet34.oracle import load_coco_ground_truth, random_ground_truth
from ssd_resnet34.stages import cpu_name  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COCO_ANNOTATIONS = "coco-val2017-subset/instances_val2017_subset.json"


def ground_truths(data: Path, count: int):
    """``(description, [(name, boxes, labels), ...])`` for ``count`` images: the first images of
    the shared COCO val2017 subset (``coco_<image id>``), or synthetic ground truth
    (``synthetic_<k>``) when the annotations are absent under ``data``."""
    annotations = Path(data) / COCO_ANNOTATIONS
    if annotations.is_file():
        images = load_coco_ground_truth(annotations)[:count]
        boxes = sum(len(im.labels) for im in images)
        return (f"{len(images)} COCO val2017 images ({boxes} boxes)",
                [(f"coco_{im.image_id}", im.boxes, im.labels) for im in images])
    truths = [(f"synthetic_{n}", *random_ground_truth(6 + 3 * n, seed=n)) for n in range(count)]
    return f"{count} synthetic images ({annotations} absent)", truths
