"""Small COCO ground truth written by hand, shared by the accuracy tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_ground_truth(tmp_path: Path) -> Path:
    """Three images (c.jpg absent on disk, a.jpg and b.jpg dummy files) and three boxes with
    known answers, as a COCO instances file in ``tmp_path``."""
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "b.jpg", "width": 300, "height": 200},
            {"id": 3, "file_name": "c.jpg", "width": 100, "height": 100},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 100, 200], "area": 20000, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 18, "bbox": [300, 100, 150, 120], "area": 18000, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 18, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    for name in ("a.jpg", "b.jpg"):  # c.jpg absent on disk
        (tmp_path / name).write_bytes(b"not read by list_images")
    return path
