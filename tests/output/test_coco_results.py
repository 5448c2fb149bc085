"""COCO results JSON: image ids from file names, records from detections, pycocotools reads them."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ssd_resnet34.coco import COCO_CLASSES
from ssd_resnet34.output.coco_results import image_id_from_file_name, to_coco_results, write_coco_results
from ssd_resnet34.types import LtrbBoundingBox, ObjectDetectionResult

from _paths import SHARED_DATA

ANNOTATIONS = (
    SHARED_DATA / "coco-val2017-subset" / "instances_val2017_subset.json"
)


def detection(label: int, score: float, ltrb) -> ObjectDetectionResult:
    return ObjectDetectionResult(
        boundingbox=LtrbBoundingBox(*ltrb), score=score, label=COCO_CLASSES[label], index=label
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("000000397133.jpg", 397133),
        ("000000000001.png", 1),
        ("photos/val2017/000000397133.jpg", 397133),
        (Path("a") / "000000397133.JPG", 397133),
        ("COCO_val2014_000000397133.jpg", 397133),
        ("cat.jpg", None),
        ("397133.jpg", None),  # not a 12-digit COCO name
        ("000000397133_copy.jpg", None),
        ("000000397133", None),
        ("x000000397133.jpg", None),
    ],
)
def test_image_id_from_file_name(name, expected):
    assert image_id_from_file_name(name) == expected


def test_records_are_xywh_pixels_with_official_category_ids():
    detections = [
        detection(1, np.float32(0.875), (10.5, 20.25, 110.5, 220.25)),  # person -> id 1
        detection(12, 0.5, (-5.0, 0.0, 5.0, 10.0)),  # stop sign -> id 13 (id 12 is unused)
        detection(80, 0.0625, (1.0, 2.0, 3.0, 4.0)),  # toothbrush -> id 90
    ]
    records = to_coco_results(detections, 397133)
    assert records == [
        {"image_id": 397133, "category_id": 1, "bbox": [10.5, 20.25, 100.0, 200.0], "score": 0.875},
        {"image_id": 397133, "category_id": 13, "bbox": [-5.0, 0.0, 10.0, 10.0], "score": 0.5},
        {"image_id": 397133, "category_id": 90, "bbox": [1.0, 2.0, 2.0, 2.0], "score": 0.0625},
    ]
    for record in records:  # plain Python numbers: json writes them, no numpy scalars
        assert type(record["score"]) is float and all(type(v) is float for v in record["bbox"])
        assert type(record["category_id"]) is int
    assert to_coco_results([], 5) == []


def test_bad_arguments():
    good = [detection(1, 0.5, (0, 0, 1, 1))]
    with pytest.raises(TypeError, match="image_id must be an int, got str"):
        to_coco_results(good, "397133")
    with pytest.raises(TypeError, match="image_id must be an int, got bool"):
        to_coco_results(good, True)
    with pytest.raises(ValueError, match="image_id must be >= 0"):
        to_coco_results(good, -1)
    with pytest.raises(TypeError, match=r"detections\[1\]: expected an ObjectDetectionResult, got tuple"):
        to_coco_results([good[0], (0, 0, 1, 1)], 1)
    with pytest.raises(ValueError, match="1..80"):
        to_coco_results([ObjectDetectionResult(LtrbBoundingBox(0, 0, 1, 1), 0.5, "background", 0)], 1)


def test_written_file_is_read_by_pycocotools(tmp_path):
    if not ANNOTATIONS.is_file():
        pytest.skip(f"COCO subset annotations not found: {ANNOTATIONS}")
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(ANNOTATIONS))
    image_id = sorted(ground_truth.getImgIds())[0]
    annotation = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[image_id]))[0]
    x, y, w, h = annotation["bbox"]
    label = [i for i in range(1, 81) if COCO_CLASSES[i] == ground_truth.loadCats(annotation["category_id"])[0]["name"]][0]
    records = to_coco_results([detection(label, 0.9, (x, y, x + w, y + h))], image_id)
    path = write_coco_results(tmp_path / "detections.json", records)
    assert json.loads(path.read_text()) == records
    assert not list(tmp_path.glob("*.part"))
    with contextlib.redirect_stdout(io.StringIO()):
        results = ground_truth.loadRes(str(path))
    loaded = results.loadAnns(results.getAnnIds())[0]
    assert loaded["category_id"] == annotation["category_id"]  # the label mapped to the official id
    np.testing.assert_allclose(loaded["bbox"], annotation["bbox"], rtol=1e-6)
    with pytest.raises(OSError):
        write_coco_results(tmp_path / "missing-folder" / "detections.json", records)
