"""COCO ground truth in the model's terms: the one reader of a COCO instances file and the one
:class:`CocoImage`.

:func:`read_annotations` reads and checks the JSON (``eval``, ``bench``, the oracle and
:func:`ssd_resnet34.evaluation.accuracy.coco_eval.load_ground_truth` all go through it);
:func:`load_coco_ground_truth` turns its images into :class:`CocoImage` (normalized ltrb boxes,
model labels 1..80, ``coco.category_id_to_label``); :func:`list_images` keeps those found in a
folder of images, with their paths. Needs neither pycocotools nor LoadGen.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, List, Mapping, Optional, Sequence, Union

import numpy as np

from ...coco import category_id_to_label
from ...image.listing import display_path, file_problem

__all__ = ["CocoImage", "list_images", "load_coco_ground_truth", "read_annotations"]

AnnotationSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]


@dataclass(frozen=True)
class CocoImage:
    """One COCO image and its ground truth.

    ``image_id``: the COCO image id; ``file_name``: as in the annotation file (a relative path);
    ``width``/``height``: pixels; ``boxes``: (G, 4) float32 normalized ltrb; ``labels``: (G,)
    int64 model labels 1..80; ``path``: the file on disk (:func:`list_images`), else None.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    path: Optional[Path] = None


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_file_name(where: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} needs 'file_name', a non-empty relative path, got {name!r}")
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or pure.root or ".." in pure.parts:
            raise ValueError(
                f"{where} has file_name {name!r}, which leads outside the images folder: a file_name "
                "must be a relative path without '..'"
            )


def _check_image(n: int, image: Any) -> None:
    where = f"images[{n}]"
    if not isinstance(image, Mapping):
        raise ValueError(f"{where} must be an object with 'id', 'file_name', 'width' and 'height', got {image!r}")
    image_id = image.get("id")
    if isinstance(image_id, bool) or not isinstance(image_id, int):
        raise ValueError(f"{where} needs 'id', an integer COCO image id, got {image_id!r}")
    where = f"images[{n}] (id {image_id})"
    for key in ("width", "height"):
        if key not in image:
            raise ValueError(f"{where} has no '{key}': expected the image's {key} in pixels (a positive int)")
        if not _is_positive_int(image[key]):
            raise ValueError(f"{where} has '{key}' {image[key]!r}: expected a positive int (pixels)")
    _check_file_name(where, image.get("file_name"))


def _check_annotation(n: int, annotation: Any) -> None:
    where = f"annotations[{n}]"
    if not isinstance(annotation, Mapping) or not all(k in annotation for k in ("image_id", "category_id", "bbox")):
        raise ValueError(f"{where} must be an object with 'image_id', 'category_id' and 'bbox', got {annotation!r}")
    bbox = annotation["bbox"]
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise ValueError(f"{where} has bbox {bbox!r}: expected 4 finite numbers [x, y, width, height] in pixels")


def read_annotations(annotation_json: AnnotationSource) -> dict:
    """A COCO instances file (``instances_val2017.json``), read and checked; a dict passes the checks as is.

    Returns the JSON object (``images``, ``annotations``, ``categories``). Every image needs an
    integer ``id``, a positive int ``width`` and ``height`` (pixels) and a ``file_name`` that is a
    relative path without ``..`` (images are read inside the images folder only); every annotation
    needs ``image_id``, ``category_id`` and a ``bbox`` of 4 finite numbers.
    Raises ``FileNotFoundError`` when the file does not exist, ``ValueError`` naming the first
    entry that breaks these rules (or when it is not JSON, or not a COCO instances object).
    """
    if isinstance(annotation_json, Mapping):
        data: Any = annotation_json
        label = "the annotations"
    else:
        path = Path(annotation_json)
        label = f"annotation file {path}"
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{label} is not valid JSON: {e}") from None
    if not isinstance(data, Mapping) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(
            f"{label} is not a COCO instances file: expected a JSON object with "
            "lists 'images', 'annotations' and 'categories'"
        )
    try:
        for n, image in enumerate(data["images"]):
            _check_image(n, image)
        for n, annotation in enumerate(data["annotations"]):
            _check_annotation(n, annotation)
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None
    return dict(data)


def _dataset(source: Any) -> dict:
    """The instances dict of a path, a dict or a pycocotools ``COCO`` (its ``dataset``)."""
    dataset = getattr(source, "dataset", None)
    return read_annotations(dataset if isinstance(dataset, Mapping) else source)


def load_coco_ground_truth(
    annotation_json: Any,
    image_ids: Optional[Sequence[int]] = None,
    *,
    include_crowd: bool = False,
) -> List[CocoImage]:
    """Ground truth of COCO images, in the model's terms.

    ``annotation_json``: the path of a COCO ``instances_*.json``, its loaded dict, or a pycocotools
    ``COCO``; ``image_ids``: the images to return, in that order (default: all, in file order).
    Returns one :class:`CocoImage` per image (``path`` None): ``boxes`` (G, 4) float32 normalized
    ltrb (``[x, y, w, h]`` pixels -> ``(x/W, y/H, (x+w)/W, (y+h)/H)``), ``labels`` (G,) int64
    model labels 1..80. Crowd annotations (``iscrowd=1``, regions that COCOeval ignores rather
    than boxes to detect) are skipped unless ``include_crowd``; boxes of zero width or height are
    always skipped (they cannot be encoded). Raises ``ValueError`` for a file that
    :func:`read_annotations` refuses, an unknown image id or category id.
    """
    data = _dataset(annotation_json)
    images = {image["id"]: image for image in data["images"]}
    if image_ids is None:
        image_ids = [image["id"] for image in data["images"]]
    for image_id in image_ids:
        if image_id not in images:
            raise ValueError(f"image id {image_id} is not in the annotation file")
    per_image: dict = {image_id: [] for image_id in image_ids}
    for annotation in data["annotations"]:
        entries = per_image.get(annotation["image_id"])
        if entries is None or (annotation.get("iscrowd", 0) and not include_crowd):
            continue
        x, y, w, h = annotation["bbox"]
        if w > 0 and h > 0:
            entries.append((x, y, x + w, y + h, annotation["category_id"]))
    result = []
    for image_id in image_ids:
        image = images[image_id]
        rows = np.array(per_image[image_id], dtype=np.float64).reshape(-1, 5)
        scale = np.array([image["width"], image["height"]] * 2, dtype=np.float64)
        result.append(
            CocoImage(
                image_id=int(image_id),
                file_name=image["file_name"],
                width=image["width"],
                height=image["height"],
                boxes=(rows[:, :4] / scale).astype(np.float32),
                labels=np.asarray(category_id_to_label(rows[:, 4].astype(np.int64))).reshape(-1),
            )
        )
    return result


def list_images(annotations: Any, images_dir: Union[str, "os.PathLike[str]"],
                limit: Optional[int] = None, skipped: Optional[List[str]] = None) -> List[CocoImage]:
    """The images of ``annotations`` whose ``file_name`` exists in ``images_dir``, sorted by image id.

    ``annotations``: as :func:`load_coco_ground_truth` takes it. ``limit``: keep only the first
    ``limit`` of them (>= 1). Returns :class:`CocoImage` with ``path`` set (always inside
    ``images_dir``: :func:`read_annotations` refuses absolute names and ``..``). An annotated name
    that is there but not a readable regular file (a symbolic link loop, a dangling link, a FIFO:
    :func:`ssd_resnet34.image.listing.file_problem`) is left out and, when ``skipped`` is a list,
    reported there as ``"path: reason; skipped"``. Raises
    ``NotADirectoryError`` when ``images_dir`` is not a directory and ``ValueError`` for a bad
    ``limit`` or annotation file.
    """
    folder = Path(images_dir)
    if not folder.is_dir():
        raise NotADirectoryError(f"images directory not found: {folder}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    data = _dataset(annotations)
    found = {}
    for image in sorted(data["images"], key=lambda im: im["id"]):
        path = folder / image["file_name"]
        if not os.path.lexists(path):
            continue  # not in this folder (a subset of the annotations)
        problem = file_problem(path)
        if problem is not None:
            if skipped is not None:
                skipped.append(f"{display_path(path)}: {problem}; skipped")
        else:
            found[image["id"]] = path
            if limit is not None and len(found) == limit:
                break
    return [
        CocoImage(im.image_id, im.file_name, im.width, im.height, im.boxes, im.labels, found[im.image_id])
        for im in load_coco_ground_truth(data, list(found))
    ]
