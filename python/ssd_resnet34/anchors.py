"""Default boxes (anchors) of SSD-ResNet34 and the layout of its 12 head outputs.

Follows MLCommons' reference, ``vision/classification_and_detection/python/models/ssd_r34.py``
(``dboxes_R34_coco((1200, 1200), ...)`` and ``DefaultBoxes``) in mlcommons/inference, as
defined exactly in ``docs/postprocess.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Tuple

import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "NUM_ANCHORS",
    "NUM_OUTPUTS",
    "Level",
    "LEVELS",
    "default_boxes",
    "default_boxes_ltrb",
]

#: Model input side in pixels (the model sees 1200x1200 images).
IMAGE_SIZE = 1200
#: Classes per anchor: 0 = background, 1..80 = COCO classes.
NUM_CLASSES = 81
#: Number of head outputs: 6 class-logit tensors, then 6 box-offset tensors.
NUM_OUTPUTS = 12

_FEATURE_SIZES = (50, 25, 13, 7, 3, 3)
_SCALES = (84, 180, 396, 612, 828, 1044, 1260)  # int(s * 1200 / 300) for s in 21, 45, ..., 315
_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))


class Level(NamedTuple):
    """One feature-map level of the SSD head.

    ``class_shape`` / ``box_shape`` are the per-image (C, F, F) shapes of
    ``outputs[index]`` (class logits) and ``outputs[6 + index]`` (box offsets);
    the full tensors are NCHW with a leading batch axis N.
    """

    index: int
    feature_size: int  # F
    boxes_per_cell: int  # nd
    num_anchors: int  # A_l = nd * F * F
    first_anchor: int  # global index of the level's first anchor
    class_shape: Tuple[int, int, int]  # (81 * nd, F, F)
    box_shape: Tuple[int, int, int]  # (4 * nd, F, F)


def _make_levels() -> Tuple[Level, ...]:
    levels = []
    first = 0
    for index, (size, ratios) in enumerate(zip(_FEATURE_SIZES, _ASPECT_RATIOS)):
        nd = 2 + 2 * len(ratios)
        count = nd * size * size
        levels.append(
            Level(
                index=index,
                feature_size=size,
                boxes_per_cell=nd,
                num_anchors=count,
                first_anchor=first,
                class_shape=(NUM_CLASSES * nd, size, size),
                box_shape=(4 * nd, size, size),
            )
        )
        first += count
    return tuple(levels)


#: The 6 levels, in output order (see the table in docs/postprocess.md).
LEVELS: Tuple[Level, ...] = _make_levels()
#: 15,130 anchors in all.
NUM_ANCHORS = sum(level.num_anchors for level in LEVELS)


def _level_sizes(index: int):
    """(w, h) of the level's default boxes, in float64, in the reference's order."""
    sk1 = _SCALES[index] / IMAGE_SIZE
    sk2 = _SCALES[index + 1] / IMAGE_SIZE
    sk3 = math.sqrt(sk1 * sk2)
    sizes = [(sk1, sk1), (sk3, sk3)]
    for alpha in _ASPECT_RATIOS[index]:
        root = math.sqrt(alpha)
        sizes.append((sk1 * root, sk1 / root))
        sizes.append((sk1 / root, sk1 * root))
    return sizes


def _compute_default_boxes() -> np.ndarray:
    parts = []
    for level in LEVELS:
        size = level.feature_size
        centers = (np.arange(size, dtype=np.float64) + 0.5) / size
        cy, cx = np.meshgrid(centers, centers, indexing="ij")  # row i, column j
        for w, h in _level_sizes(level.index):
            box = np.empty((size * size, 4), dtype=np.float64)
            box[:, 0] = cx.ravel()
            box[:, 1] = cy.ravel()
            box[:, 2] = w
            box[:, 3] = h
            parts.append(box)
    boxes = np.concatenate(parts).astype(np.float32)  # rounded to float32, then clamped
    np.clip(boxes, np.float32(0), np.float32(1), out=boxes)
    boxes.setflags(write=False)
    return boxes


_DEFAULT_BOXES = _compute_default_boxes()


def default_boxes() -> np.ndarray:
    """The 15,130 default boxes as (cx, cy, w, h), normalized to the image.

    Returns a new (15130, 4) float32 array. Anchor ``a`` of level ``l`` (``a = d*F*F + i*F + j``)
    is row ``LEVELS[l].first_anchor + a``. Each value is computed in float64, rounded to float32
    and clamped to [0, 1], exactly as MLCommons' ``DefaultBoxes`` of ``dboxes_R34_coco``
    (``vision/classification_and_detection/python/models/ssd_r34.py``).
    """
    return _DEFAULT_BOXES.copy()


def default_boxes_ltrb() -> np.ndarray:
    """The 15,130 default boxes as (left, top, right, bottom), normalized to the image.

    Returns a new (15130, 4) float32 array, computed in float32 from :func:`default_boxes`
    as the reference's ``dboxes_ltrb`` (``cx - 0.5*w``, ...); not clamped. Used to match
    ground truth to anchors; the decode itself uses the xywh boxes.
    """
    xywh = _DEFAULT_BOXES
    half = np.float32(0.5)
    ltrb = np.empty_like(xywh)
    ltrb[:, :2] = xywh[:, :2] - half * xywh[:, 2:]
    ltrb[:, 2:] = xywh[:, :2] + half * xywh[:, 2:]
    return ltrb
