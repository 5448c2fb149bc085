"""The numpy reference postprocessor: the executable specification of ``docs/postprocess.md``.

Readable rather than fast; :class:`ssd_resnet34.NativePostProcessor` (Rust) implements the
same text and the tests require both to give the same detections. It follows MLCommons'
reference, ``vision/classification_and_detection/python/models/ssd_r34.py`` in
mlcommons/inference (``scale_back_batch``, ``Encoder.decode_single``, ``calc_iou_tensor``),
with the differences documented in ``docs/postprocess.md`` ("Differences from the MLCommons
reference").

Float32 arithmetic is kept in float32 on purpose: every constant in the IoU is an
``np.float32`` so that nothing is silently promoted to float64.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..anchors import default_boxes
from ..detections import Detections
from ..layout import LEVELS, NUM_CLASSES
from ._base import PostProcessorBase, validate_parameters

__all__ = [
    "PythonPostProcessor", "nms", "iou_matrix", "softmax_scores", "decode_boxes", "gather_levels",
]

_ZERO = np.float32(0)
_NMS_BLOCK = 512  # rows of the IoU matrix computed at a time in nms()


def softmax_scores(logits: np.ndarray) -> np.ndarray:
    """Class scores of every anchor: softmax over the 81 classes.

    ``logits``: (81, A) float32, class-major (row c = class c). Returns (81, A) float32:
    computed in float64 as ``exp(x_c - max) / sum_c exp(x_c - max)``, the sum taken in class
    order 0..80 (a reduction over axis 0 of a C-contiguous array adds the rows one after the
    other), then rounded to float32. The reference: ``F.softmax(scores_in, dim=-1)``.
    """
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=0))
    return (e / np.add.reduce(e, axis=0)).astype(np.float32)


def decode_boxes(offsets: np.ndarray, anchors_xywh: np.ndarray) -> np.ndarray:
    """Decode box offsets against the default boxes.

    ``offsets``: (4, A) float32 rows dx, dy, dw, dh; ``anchors_xywh``: (A, 4) float32
    (cx, cy, w, h), normalized. Returns (A, 4) float32 ltrb, normalized, not clipped:
    in float64 ``cx = (0.1*dx)*aw + acx``, ``w = exp(0.2*dw)*aw`` (same for y/h), then
    ``cx -/+ 0.5*w`` rounded to float32. Coordinates that overflow float32 become +-inf
    (the caller drops those boxes). The reference: ``scale_back_batch``.
    """
    d = offsets.astype(np.float64)
    a = anchors_xywh.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        cx = (0.1 * d[0]) * a[:, 2] + a[:, 0]
        cy = (0.1 * d[1]) * a[:, 3] + a[:, 1]
        w = np.exp(0.2 * d[2]) * a[:, 2]
        h = np.exp(0.2 * d[3]) * a[:, 3]
        ltrb = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)
        return ltrb.astype(np.float32)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair of ltrb boxes, in float32, in the documented order of operations.

    ``boxes_a`` (M, 4), ``boxes_b`` (K, 4): float32 ltrb. Returns (M, K) float32::

        iw = max(min(r1, r2) - max(l1, l2), 0);  ih = max(min(b1, b2) - max(t1, t2), 0)
        inter = iw * ih;  area = max(r - l, 0) * max(b - t, 0)
        union = (area1 + area2) - inter;  iou = inter / union if union > 0 else 0

    Zero-area and inverted boxes have IoU 0 with everything. The overlap is clamped at 0, unlike
    the reference's ``calc_iou_tensor`` (``docs/postprocess.md``, "Differences from the MLCommons
    reference").
    """
    l1, t1, r1, b1 = (boxes_a[:, k, None] for k in range(4))
    l2, t2, r2, b2 = (boxes_b[None, :, k] for k in range(4))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        iw = np.maximum(np.minimum(r1, r2) - np.maximum(l1, l2), _ZERO)
        ih = np.maximum(np.minimum(b1, b2) - np.maximum(t1, t2), _ZERO)
        inter = iw * ih
        area1 = np.maximum(r1 - l1, _ZERO) * np.maximum(b1 - t1, _ZERO)
        area2 = np.maximum(r2 - l2, _ZERO) * np.maximum(b2 - t2, _ZERO)
        union = (area1 + area2) - inter
        return np.where(union > _ZERO, inter / union, _ZERO).astype(np.float32, copy=False)


def _greedy_nms(boxes: np.ndarray, iou_threshold: np.float32, limit: Optional[int] = None) -> np.ndarray:
    """Greedy NMS over boxes already in processing order; returns the kept positions, the
    first ``limit`` of them (the later ones cannot change those)."""
    count = boxes.shape[0]
    suppressed = np.zeros(count, dtype=bool)
    keep: List[int] = []
    for start in range(0, count, _NMS_BLOCK):
        if limit is not None and len(keep) >= limit:
            break
        stop = min(start + _NMS_BLOCK, count)
        # A later box survives a kept one only when their IoU is < the threshold.
        overlaps = ~(iou_matrix(boxes[start:stop], boxes) < iou_threshold)
        for i in range(start, stop):
            if not suppressed[i] and (limit is None or len(keep) < limit):
                keep.append(i)
                suppressed |= overlaps[i - start]
    return np.array(keep, dtype=np.int64)


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of one class, as ``docs/postprocess.md``.

    ``boxes``: (K, 4) ltrb (converted to float32), ``scores``: (K,) (converted to float32),
    ``iou_threshold`` in (0, 1]. The boxes are processed by score descending, then index
    ascending; a box is kept when its IoU (:func:`iou_matrix`, float32, compared with
    ``float32(iou_threshold)``) with every box kept before it is < ``iou_threshold``.
    Returns the kept indices into ``boxes`` as int64, in processing order. No top-k is applied.
    Same semantics as ``ssd_resnet34._native.nms``.

    Raises ``TypeError`` for non-numeric input, ``ValueError`` for wrong shapes, non-finite
    values or an ``iou_threshold`` outside (0, 1].
    """
    threshold = np.float32(validate_parameters(0.0, iou_threshold, 1, 1)[1])
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    for name, array in (("boxes", boxes), ("scores", scores)):
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) (ltrb), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    boxes = boxes.astype(np.float32)
    scores = scores.astype(np.float32)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError("boxes and scores must be finite (NaN or infinite values found)")
    order = np.argsort(-scores, kind="stable")  # score descending, index ascending
    return order[_greedy_nms(boxes[order], threshold)]


def gather_levels(tensors: List[np.ndarray], n: int, rows: int) -> np.ndarray:
    """Image ``n`` of 6 level tensors as one (rows, 15130) array: rows = 81 for the class
    logits ``outputs[0:6]`` (row c = class c), 4 for the box offsets ``outputs[6:12]``. As the
    reference's ``view(N, rows, -1)`` then ``cat(dim=2)``: anchor a of level l is column
    ``first_anchor + a``. The inverse of ``oracle.pack_head_outputs``."""
    return np.concatenate(
        [t[n].reshape(rows, level.num_anchors) for t, level in zip(tensors, LEVELS)], axis=1
    )


class PythonPostProcessor(PostProcessorBase):
    """Postprocessor in numpy alone: the readable reference implementation.

    ``PythonPostProcessor(score_threshold, iou_threshold, max_candidates_per_class,
    max_detections)``, defaults from :mod:`ssd_resnet34.postprocess.defaults`;
    ``decode(outputs)`` returns per image a :class:`~ssd_resnet34.Detections` (boxes (K, 4)
    float32 normalized ltrb, labels (K,) int64 in 1..80, scores (K,) float32), score-descending;
    ``postprocessor(outputs, contexts)`` returns ``ObjectDetectionResult`` lists in pixels. Same API,
    validation and results as :class:`ssd_resnet34.NativePostProcessor`, much slower (tens of
    milliseconds to a second per image). Raises ``TypeError``/``ValueError`` for bad parameters
    or input (``docs/postprocess.md``, "Bad input").

    Steps per image (``docs/postprocess.md``; MLCommons ``ssd_r34.py``):
    softmax (:func:`softmax_scores`), box decode (:func:`decode_boxes`), per class 1..80 the
    candidates ``score > score_threshold`` with finite boxes, sorted by (score desc, anchor asc),
    the first ``max_candidates_per_class``, greedy NMS (:func:`nms`); then all kept boxes sorted
    by (score desc, label asc, anchor asc), the first ``max_detections``. Where this differs
    from MLCommons: ``docs/postprocess.md``, "Differences from the MLCommons reference".
    """

    def _setup(self) -> None:
        self._anchors = default_boxes()

    def _decode_batch(self, outputs: List[np.ndarray]) -> List[Detections]:
        class_logits, box_offsets = outputs[:6], outputs[6:]
        return [
            self._decode_image(
                gather_levels(class_logits, n, NUM_CLASSES), gather_levels(box_offsets, n, 4)
            )
            for n in range(outputs[0].shape[0])
        ]

    def _decode_image(self, logits: np.ndarray, offsets: np.ndarray) -> Detections:
        scores = softmax_scores(logits)  # (81, 15130)
        boxes = decode_boxes(offsets, self._anchors)  # (15130, 4)
        finite_box = np.isfinite(boxes).all(axis=1)
        iou_threshold = np.float32(self._iou_threshold)

        kept_anchors, kept_labels, kept_scores = [], [], []
        for label, threshold in self._label_thresholds().items():
            anchors = np.flatnonzero((scores[label] > np.float32(threshold)) & finite_box)
            if anchors.size == 0:
                continue
            order = np.argsort(-scores[label, anchors], kind="stable")  # ties: anchor ascending
            anchors = anchors[order[: self._max_candidates_per_class]]
            if not self._class_agnostic:
                anchors = anchors[_greedy_nms(boxes[anchors], iou_threshold)]
            kept_anchors.append(anchors)
            kept_labels.append(np.full(anchors.size, label, dtype=np.int64))
            kept_scores.append(scores[label, anchors])

        if not kept_anchors:
            return Detections.empty()
        anchors = np.concatenate(kept_anchors)
        labels = np.concatenate(kept_labels)
        class_scores = np.concatenate(kept_scores)
        order = np.lexsort((anchors, labels, -class_scores))
        if self._class_agnostic:
            # One NMS over all classes in merge order, stopped at max_detections kept.
            order = order[_greedy_nms(boxes[anchors[order]], iou_threshold, self._max_detections)]
        order = order[: self._max_detections]
        return Detections._trusted(boxes[anchors[order]], labels[order], class_scores[order])
