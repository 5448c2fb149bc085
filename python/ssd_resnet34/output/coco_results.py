"""Detections as COCO results JSON (the format ``pycocotools`` ``COCO.loadRes`` reads).

One record per detection: ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h],
"score": float}``, bbox in pixels of the original image, ``x, y`` its top-left corner. This is
what MLCommons' ``tools/accuracy-coco.py`` (mlcommons/inference,
``vision/classification_and_detection``) builds from the ltrb detections before ``COCOeval``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .._files import replacing
from ..coco import label_to_category_id
from ..types import ObjectDetectionResult

__all__ = ["assign_image_ids", "image_id_from_file_name", "image_records", "to_coco_results", "write_coco_results"]

# COCO 2017 names ("000000397133.jpg") and COCO 2014 names ("COCO_val2014_000000397133.jpg").
_COCO_NAME = re.compile(r"^(?:COCO_[A-Za-z]+\d{4}_)?(\d{12})\.[A-Za-z0-9]+$")


def image_id_from_file_name(name: Union[str, "os.PathLike[str]"]) -> Optional[int]:
    """The COCO image id in a COCO file name, else None.

    ``"000000397133.jpg"`` (COCO 2017) and ``"COCO_val2014_000000397133.jpg"`` -> ``397133``; a
    path is reduced to its base name first; any other name (``"cat.jpg"``) -> None.
    """
    match = _COCO_NAME.match(os.path.basename(os.fspath(name)))
    return int(match.group(1)) if match else None


def assign_image_ids(paths: Sequence[str]) -> Tuple[Dict[str, int], bool]:
    """The image id of each path, as ``ssd-resnet34 detect`` numbers its images.

    COCO file names give their COCO id (:func:`image_id_from_file_name`; the first path with a
    given id keeps it); the other paths get running numbers from 1, in the given order, skipping
    the ids COCO names took. Returns ``(ids, running)``: ``ids[path]`` for every path, and
    whether any running number was given (then ``image_ids.json`` lists them).
    """
    ids: Dict[str, int] = {}
    taken = set()
    for path in paths:
        image_id = image_id_from_file_name(path)
        if image_id is not None and image_id not in taken:
            ids[path] = image_id
            taken.add(image_id)
    running = 0
    for path in paths:
        if path not in ids:
            running += 1
            while running in taken:
                running += 1
            ids[path] = running
    return ids, running > 0


def to_coco_results(detections: Iterable[ObjectDetectionResult], image_id: int) -> List[Dict[str, Any]]:
    """COCO result records for one image's detections.

    ``detections``: ``ObjectDetectionResult`` objects (boxes ltrb in pixels, ``index`` the model
    label 1..80), as the postprocessors return per image. ``image_id``: the COCO image id (an
    int >= 0).

    Returns one dict per detection, in the given order: ``image_id``; ``category_id``, the
    official COCO category id (:func:`ssd_resnet34.coco.label_to_category_id`, 1..90);
    ``bbox`` ``[left, top, right - left, bottom - top]`` in pixels; ``score``. All values are
    plain Python ints/floats, not rounded and not clipped to the image (as MLPerf's
    ``accuracy-coco.py``), so the mAP computed from them is that of the postprocessor's output.

    Raises ``TypeError`` for a non-int ``image_id`` or a detection that is not an
    ``ObjectDetectionResult``, ``ValueError`` for a negative ``image_id`` or a label outside 1..80.
    """
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise TypeError(f"image_id must be an int, got {type(image_id).__name__}")
    if image_id < 0:
        raise ValueError(f"image_id must be >= 0, got {image_id}")
    records = []
    for k, detection in enumerate(detections):
        if not isinstance(detection, ObjectDetectionResult):
            raise TypeError(
                f"detections[{k}]: expected an ObjectDetectionResult, got {type(detection).__name__}"
            )
        left, top, right, bottom = (float(v) for v in detection.boundingbox)
        records.append(
            {
                "image_id": image_id,
                "category_id": int(label_to_category_id(detection.index)),
                "bbox": [left, top, right - left, bottom - top],
                "score": float(detection.score),
            }
        )
    return records


def image_records(detections: Iterable[ObjectDetectionResult]) -> List[Dict[str, Any]]:
    """One image's COCO results records without ``image_id`` (``category_id``, ``bbox``,
    ``score``; values as :func:`to_coco_results`): what a run keeps per image until the image
    ids are known (``detect`` numbers the non-COCO names once the good images are known)."""
    return [{key: value for key, value in record.items() if key != "image_id"}
            for record in to_coco_results(detections, 0)]


def write_coco_results(path: Union[str, "os.PathLike[str]"], records: Iterable[Dict[str, Any]]) -> Path:
    """Write records (see :func:`to_coco_results`) as a COCO results JSON array to ``path``.

    Written to a temporary file next to ``path`` and renamed, so a reader never sees a partial
    file. The parent folder must exist. Returns ``path`` as a ``Path``. Raises ``OSError`` when
    it cannot be written, ``TypeError`` for values JSON cannot hold.
    """
    path = Path(path)
    with replacing(path, make_parents=False) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(list(records), handle)
            handle.write("\n")
    return path
