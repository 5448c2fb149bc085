"""Helpers shared by the benchmark scripts: the CPU's name and ground truth for the oracle."""

from __future__ import annotations

import platform
from pathlib import Path

from ssd_resnet34.evaluation.oracle import load_coco_ground_truth, random_ground_truth

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COCO_ANNOTATIONS = "coco-val2017-subset/instances_val2017_subset.json"


def cpu_name() -> str:
    """The CPU model (``model name`` of /proc/cpuinfo, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
