"""The IoU of ltrb boxes for the accuracy tooling (the oracle's anchor matching, the detection
agreement of :mod:`ssd_resnet34.evaluation.accuracy.compare`).

The bit-exact numpy reference keeps its own copy (``postprocess.reference.iou_matrix``), written
as MLCommons' float32 NMS computes it; this one is float64 and for measuring, not for NMS.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pairwise_iou"]


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(M, N) float64 IoU of the ltrb boxes ``boxes_a`` (M, 4) with ``boxes_b`` (N, 4).

    Any units (normalized or pixels), as long as both use the same. The overlap is clamped at 0;
    a pair whose union is empty (two zero-area boxes) has IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
