"""Accuracy proxies for an engine against the faithful one (onnxruntime fp32), for when the
official weights (and so real mAP) are out of reach.

- :func:`sqnr_db`: signal-to-quantization-noise ratio of the 12 heads, in dB:
  ``10 log10(sum(ref^2) / sum((ref - got)^2))`` per head, over all images given. 20 dB is an
  error of 10% of the signal's RMS, 40 dB 1%, 80 dB 0.01%.
- :func:`detection_agreement`: the share of the reference detections that the other engine
  reproduces: a detection of the same label with IoU >= 0.5 (each matched at most once, greedily
  by score).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, List

import numpy as np

from ...detections import Detections
from .iou import pairwise_iou

__all__ = ["detection_agreement", "sqnr_db"]


def sqnr_db(reference: Sequence[np.ndarray], heads: Sequence[np.ndarray]) -> List[float]:
    """Per-head SQNR in dB of ``heads`` against ``reference`` (same shapes; the 12 heads of the
    same images). ``inf`` where they are identical.

    Raises:
        ValueError: different numbers of tensors, or a shape mismatch.
    """
    if len(reference) != len(heads):
        raise ValueError(f"expected as many tensors as the reference ({len(reference)}), got {len(heads)}")
    result = []
    for k, (ref, got) in enumerate(zip(reference, heads)):
        ref = np.asarray(ref, np.float64)
        got = np.asarray(got, np.float64)
        if ref.shape != got.shape:
            raise ValueError(f"head {k}: shape {got.shape} differs from the reference's {ref.shape}")
        noise = float(np.square(ref - got).sum())
        signal = float(np.square(ref).sum())
        result.append(float("inf") if noise == 0 else 10.0 * np.log10(signal / noise))
    return result


def _arrays(found: Any):
    """(boxes (M,4) ltrb, labels (M,), scores (M,)) of one image: a :class:`~ssd_resnet34.Detections`
    gives its columns (normalized: the IoU does not change when both axes are scaled), a list of
    ``ObjectDetectionResult`` its pixel boxes."""
    if isinstance(found, Detections):
        return found.boxes.astype(np.float64), found.labels, found.scores.astype(np.float64)
    results = found
    boxes = np.array([[r.boundingbox.left, r.boundingbox.top, r.boundingbox.right, r.boundingbox.bottom]
                      for r in results], np.float64).reshape(-1, 4)
    labels = np.array([r.index for r in results], np.int64)
    scores = np.array([r.score for r in results], np.float64)
    return boxes, labels, scores


def detection_agreement(reference: Sequence[Sequence[Any]], detections: Sequence[Sequence[Any]],
                        iou: float = 0.5) -> float:
    """Share (0..1) of the reference's detections matched in ``detections``.

    Args:
        reference, detections: per image a :class:`~ssd_resnet34.Detections` (``decode``'s
            output) or a list of ``ObjectDetectionResult`` (the model card's), the same images in
            the same order; both sides of one image in the same kind.
        iou: the least IoU of a match.

    Returns:
        matched / total over all images, reference detections taken by descending score, each
        matched to the best unmatched detection of the same label with IoU >= ``iou``; 1.0 when
        the reference has no detections.

    Raises:
        ValueError: different numbers of images.
    """
    if len(reference) != len(detections):
        raise ValueError(f"expected detections for {len(reference)} images, got {len(detections)}")
    matched = total = 0
    for ref, got in zip(reference, detections):
        ref_boxes, ref_labels, ref_scores = _arrays(ref)
        boxes, labels, _ = _arrays(got)
        free = np.ones(len(labels), bool)
        total += len(ref_labels)
        for i in np.argsort(-ref_scores, kind="stable"):
            candidates = np.flatnonzero(free & (labels == ref_labels[i]))
            if candidates.size == 0:
                continue
            overlaps = pairwise_iou(ref_boxes[i : i + 1], boxes[candidates])[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                free[candidates[best]] = False
                matched += 1
    return 1.0 if total == 0 else matched / total
