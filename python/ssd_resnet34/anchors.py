"""Default boxes (anchors) of SSD-ResNet34: 15,130 boxes over the six levels of :mod:`ssd_resnet34.layout`.

Follows MLCommons' reference, ``vision/classification_and_detection/python/models/ssd_r34.py``
(``dboxes_R34_coco((1200, 1200), ...)`` and ``DefaultBoxes``) in mlcommons/inference, as
defined exactly in ``docs/postprocess.md``.
"""

from __future__ import annotations

import math

import numpy as np

from .layout import INPUT_SIZE, LEVELS

__all__ = ["default_boxes", "default_boxes_ltrb"]

_SCALES = (84, 180, 396, 612, 828, 1044, 1260)  # int(s * 1200 / 300) for s in 21, 45, ..., 315
_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))


def _level_sizes(index: int):
    """(w, h) of the level's default boxes, in float64, in the reference's order."""
    sk1 = _SCALES[index] / INPUT_SIZE
    sk2 = _SCALES[index + 1] / INPUT_SIZE
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
        sizes = _level_sizes(level.index)
        assert len(sizes) == level.boxes_per_cell, "aspect ratios disagree with ssd_resnet34.layout"
        for w, h in sizes:
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
