"""COCO class names and the mapping between the model's labels and COCO category ids.

The model predicts 81 classes: label 0 is the background, labels 1..80 are the 80 COCO
object classes in the order of their official category ids (1..90, with gaps). This is
the ``label_map`` of MLCommons' reference (``vision/classification_and_detection/python/coco.py``,
``use_label_map=True``: the n-th entry of ``categories`` gets label n + 1).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["COCO_CLASSES", "COCO_CATEGORY_IDS", "label_to_category_id", "category_id_to_label"]

#: The 81 class names by model label: index 0 is ``"background"``, then the 80 COCO names.
COCO_CLASSES: Tuple[str, ...] = (
    "background",
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)

_MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)  # ids 1..90 not used by COCO 2017

#: COCO category id by model label: ``COCO_CATEGORY_IDS[label]`` for label 1..80 is an int in
#: 1..90; index 0 (background) is ``None``.
COCO_CATEGORY_IDS: Tuple[Optional[int], ...] = (None,) + tuple(
    i for i in range(1, 91) if i not in _MISSING_IDS
)

_LABEL_TO_ID = np.array([0] + list(COCO_CATEGORY_IDS[1:]), dtype=np.int64)
_ID_TO_LABEL = np.zeros(91, dtype=np.int64)  # 0 marks an id that is no COCO category
_ID_TO_LABEL[_LABEL_TO_ID[1:]] = np.arange(1, 81)


def _as_integer_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def label_to_category_id(labels):
    """Map model labels (1..80) to COCO category ids (1..90, with gaps).

    ``labels``: an int or an array-like of ints, any shape. Returns an int64 ndarray of the
    same shape (a numpy int64 scalar for a scalar input).
    Raises ``TypeError`` for a non-integer dtype, ``ValueError`` if a label is not in 1..80
    (0, the background, has no category id).
    """
    array = _as_integer_array(labels, "labels")
    bad = (array < 1) | (array > 80)
    if bad.any():
        raise ValueError(
            f"labels must be in 1..80 (the model's COCO labels), got {array[bad].ravel()[0]}"
        )
    return _LABEL_TO_ID[array][()]


def category_id_to_label(category_ids):
    """Map COCO category ids (1..90, with gaps) to model labels (1..80).

    ``category_ids``: an int or an array-like of ints, any shape. Returns an int64 ndarray
    of the same shape (a numpy int64 scalar for a scalar input).
    Raises ``TypeError`` for a non-integer dtype, ``ValueError`` for an id that is not one
    of the 80 COCO 2017 category ids.
    """
    array = _as_integer_array(category_ids, "category_ids")
    inside = (array >= 1) & (array <= 90)
    labels = np.zeros(array.shape, dtype=np.int64)
    labels[inside] = _ID_TO_LABEL[array[inside]]
    bad = labels == 0
    if bad.any():
        raise ValueError(
            f"{array[bad].ravel()[0]} is not a COCO category id (the 80 ids in 1..90)"
        )
    return labels[()]
