"""Realistic SSD-ResNet34 head outputs without the model: the "oracle" generator.

:func:`encode_ground_truth` turns the ground-truth boxes of one image into the 12 head outputs
that a near-perfect model would produce for it, the inverse of the decode of
``docs/postprocess.md`` (MLCommons' ``vision/classification_and_detection/python/models/ssd_r34.py``).
They exercise the postprocessor as real model outputs do (a few hundred candidates per image,
clusters of overlapping boxes for NMS, low-score noise), and decoding them recovers the
ground truth, which the COCO-evaluation tests use as a known-good detector (the ground truth of
COCO images: :func:`ssd_resnet34.evaluation.accuracy.ground_truth.load_coco_ground_truth`).
Also here: :func:`random_head_outputs` (Gaussian logits and offsets, the worst case for NMS).

How the outputs are built, per anchor (default box, ``anchors.default_boxes``), as SSD's
matching: the IoU of each default box (ltrb) with each ground-truth box; an anchor is *matched*
to its best ground truth when that IoU is > 0.5, and every ground truth also gets its best
anchor (the last ground truth wins when two share one, as SSD's loop).

- Matched anchors: the ground truth's class gets score 0.6..0.9, rising linearly with the IoU
  from 0.5 to 1 (+-0.02 jitter); each ground truth's best anchor gets 0.93..0.97, so it is kept
  by the per-class top-k. Offsets: the ground truth box exactly encoded,
  ``dx = (gcx - acx) / (0.1 aw)``, ``dy = (gcy - acy) / (0.1 ah)``, ``dw = ln(gw / aw) / 0.2``,
  ``dh = ln(gh / ah) / 0.2``; background logit U(1, 3).
- Partially overlapping anchors (best IoU in [0.3, 0.5], not matched): that ground truth's class
  gets a weak score 0.05..0.3 (linear in the IoU, +-0.02 jitter); offsets regress part of the way
  to the ground truth (a random fraction 0.5..1 of the exact encoding, plus N(0, 0.1) noise), so
  some are suppressed by NMS and some survive as low-score false positives.
- All other anchors: background logit U(6, 8), offsets N(0, 0.3).
- The 80 other class logits are N(0, 1) noise everywhere; a target score p for class c is set
  exactly by ``x_c = logsumexp(other 80 logits) + ln(p / (1 - p))``.

Deterministic for a seed (numpy ``default_rng(seed)``); vectorised (about 30 ms per image).
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Sequence, Tuple

import numpy as np

from ...anchors import default_boxes, default_boxes_ltrb
from ...layout import LEVELS, NUM_ANCHORS, NUM_CLASSES
from .iou import pairwise_iou

__all__ = [
    "Matching",
    "encode_coco_image",
    "encode_ground_truth",
    "encode_ground_truth_batch",
    "match_anchors",
    "pack_head_outputs",
    "random_ground_truth",
    "random_head_outputs",
]

MATCH_IOU = 0.5
PARTIAL_IOU = 0.3


class Matching(NamedTuple):
    """The result of :func:`match_anchors` for one image (A = 15,130 anchors)."""

    gt_index: np.ndarray  # (A,) int64: the matched ground truth, -1 where unmatched
    best_gt: np.ndarray  # (A,) int64: the ground truth of highest IoU (-1 if there is none)
    best_iou: np.ndarray  # (A,) float64: that IoU (0 if there is no ground truth)
    forced: np.ndarray  # (A,) bool: the anchor is the best anchor of its ground truth


def _check_ground_truth(boxes_ltrb, labels) -> Tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes_ltrb, dtype=np.float64)
    labels = np.asarray(labels)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_ltrb must have shape (G, 4) (normalized ltrb), got {boxes.shape}")
    if labels.shape != (boxes.shape[0],):
        raise ValueError(f"labels must have shape ({boxes.shape[0]},), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers (model labels 1..80), got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if ((labels < 1) | (labels > NUM_CLASSES - 1)).any():
        raise ValueError("labels must be model labels in 1..80")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes_ltrb must be finite")
    if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        raise ValueError("every ground-truth box needs right > left and bottom > top")
    return boxes, labels


def match_anchors(boxes_ltrb) -> Matching:
    """Match the 15,130 default boxes to ground-truth boxes as SSD does.

    ``boxes_ltrb``: (G, 4) normalized ltrb with positive width and height. An anchor is matched
    to its best ground truth when their IoU is > 0.5; each ground truth is also matched to its
    best anchor (when two ground truths share one, the later one wins). Raises ``ValueError``
    for a bad shape or an empty/inverted box.
    """
    boxes, _ = _check_ground_truth(boxes_ltrb, np.ones(len(np.asarray(boxes_ltrb)), np.int64))
    count = boxes.shape[0]
    gt_index = np.full(NUM_ANCHORS, -1, dtype=np.int64)
    forced = np.zeros(NUM_ANCHORS, dtype=bool)
    if count == 0:
        return Matching(gt_index, gt_index.copy(), np.zeros(NUM_ANCHORS), forced)
    iou = pairwise_iou(default_boxes_ltrb().astype(np.float64), boxes)  # (A, G)
    best_gt = iou.argmax(axis=1)
    best_iou = iou[np.arange(NUM_ANCHORS), best_gt]
    gt_index[best_iou > MATCH_IOU] = best_gt[best_iou > MATCH_IOU]
    best_anchor = iou.argmax(axis=0)
    for g, anchor in enumerate(best_anchor):  # in order, so the later ground truth wins
        gt_index[anchor] = g
    forced[best_anchor] = True
    return Matching(gt_index, best_gt, best_iou, forced)


def _encode_offsets(gt_ltrb: np.ndarray, anchors_xywh: np.ndarray) -> np.ndarray:
    """(A, 4) float64 offsets (dx, dy, dw, dh) whose decode gives ``gt_ltrb`` (A, 4)."""
    gw = gt_ltrb[:, 2] - gt_ltrb[:, 0]
    gh = gt_ltrb[:, 3] - gt_ltrb[:, 1]
    gcx = gt_ltrb[:, 0] + 0.5 * gw
    gcy = gt_ltrb[:, 1] + 0.5 * gh
    acx, acy, aw, ah = anchors_xywh.T
    return np.stack(
        [
            (gcx - acx) / (0.1 * aw),
            (gcy - acy) / (0.1 * ah),
            np.log(gw / aw) / 0.2,
            np.log(gh / ah) / 0.2,
        ],
        axis=1,
    )


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis)
    return m + np.log(np.exp(x - np.expand_dims(m, axis)).sum(axis=axis))


def _set_class_score(logits: np.ndarray, anchors: np.ndarray, classes: np.ndarray,
                     probability: np.ndarray) -> None:
    """Set logits[classes, anchors] so that the softmax gives ``probability`` for that class."""
    if anchors.size == 0:
        return
    columns = logits[:, anchors].copy()
    columns[classes, np.arange(anchors.size)] = -np.inf
    rest = _logsumexp(columns, axis=0)
    logits[classes, anchors] = rest + np.log(probability / (1.0 - probability))


def pack_head_outputs(logits: np.ndarray, offsets: np.ndarray) -> List[np.ndarray]:
    """Per-anchor values of one image -> the model card's 12 NCHW float32 tensors.

    ``logits``: (81, 15130) class logits (row c = class c, column = global anchor index),
    ``offsets``: (4, 15130) box offsets (rows dx, dy, dw, dh). Returns the 12 tensors with
    batch axis 1, laid out as ``docs/postprocess.md`` (channel ``c*nd + d``, anchor
    ``d*F*F + i*F + j``), i.e. the inverse of the reference's ``view(N, 81, -1)`` + ``cat``.
    """
    logits = np.asarray(logits)
    offsets = np.asarray(offsets)
    if logits.shape != (NUM_CLASSES, NUM_ANCHORS) or offsets.shape != (4, NUM_ANCHORS):
        raise ValueError(
            f"expected logits (81, 15130) and offsets (4, 15130), got {logits.shape} and "
            f"{offsets.shape}"
        )
    class_tensors, box_tensors = [], []
    for level in LEVELS:
        columns = slice(level.first_anchor, level.first_anchor + level.num_anchors)
        class_tensors.append(logits[:, columns].reshape((1,) + level.class_shape))
        box_tensors.append(offsets[:, columns].reshape((1,) + level.box_shape))
    return [np.ascontiguousarray(t, dtype=np.float32) for t in class_tensors + box_tensors]


def encode_ground_truth(boxes_ltrb, labels, *, seed: int = 0) -> List[np.ndarray]:
    """Head outputs of a near-perfect model for one image with the given ground truth.

    ``boxes_ltrb``: (G, 4) ground-truth boxes, normalized ltrb (right > left, bottom > top);
    ``labels``: (G,) model labels 1..80 (``coco.category_id_to_label`` of the COCO ids);
    G may be 0 (then every anchor is background). ``seed``: the numpy ``default_rng`` seed;
    the same inputs and seed give the same outputs.
    Returns the model card's 12 float32 NCHW tensors with batch axis 1 (class logits
    (1, 324, 50, 50) ... then box offsets (1, 16, 50, 50) ...), built as the module docstring
    describes. Raises ``ValueError``/``TypeError`` for bad boxes or labels.
    """
    boxes, labels = _check_ground_truth(boxes_ltrb, labels)
    rng = np.random.default_rng(seed)
    anchors = default_boxes().astype(np.float64)
    matching = match_anchors(boxes)

    logits = rng.standard_normal((NUM_CLASSES, NUM_ANCHORS))
    logits[0] = rng.uniform(6.0, 8.0, NUM_ANCHORS)
    offsets = rng.normal(0.0, 0.3, (4, NUM_ANCHORS))
    if boxes.shape[0] == 0:
        return pack_head_outputs(logits, offsets)

    # Matched anchors: the ground truth's class, its exact box.
    matched = np.flatnonzero(matching.gt_index >= 0)
    gt = matching.gt_index[matched]
    iou = pairwise_iou(default_boxes_ltrb().astype(np.float64)[matched], boxes)
    iou = iou[np.arange(matched.size), gt]
    score = 0.6 + 0.3 * np.clip((iou - MATCH_IOU) / (1 - MATCH_IOU), 0, 1)
    score += rng.uniform(-0.02, 0.02, matched.size)
    forced = matching.forced[matched]
    score[forced] = rng.uniform(0.93, 0.97, int(forced.sum()))
    logits[0, matched] = rng.uniform(1.0, 3.0, matched.size)
    _set_class_score(logits, matched, labels[gt], score)
    offsets[:, matched] = _encode_offsets(boxes[gt], anchors[matched]).T

    # Partially overlapping anchors: a weak score, a box part of the way to the ground truth.
    partial = np.flatnonzero((matching.gt_index < 0) & (matching.best_iou >= PARTIAL_IOU))
    gt = matching.best_gt[partial]
    iou = matching.best_iou[partial]
    score = 0.05 + 0.25 * (iou - PARTIAL_IOU) / (MATCH_IOU - PARTIAL_IOU)
    score = np.clip(score + rng.uniform(-0.02, 0.02, partial.size), 0.01, 0.32)
    _set_class_score(logits, partial, labels[gt], score)
    fraction = rng.uniform(0.5, 1.0, partial.size)
    exact = _encode_offsets(boxes[gt], anchors[partial])
    offsets[:, partial] = (fraction[:, None] * exact + rng.normal(0, 0.1, exact.shape)).T
    return pack_head_outputs(logits, offsets)


def encode_coco_image(image: Any, *, seed: int = 0) -> List[np.ndarray]:
    """:func:`encode_ground_truth` of one COCO image's ground truth, with seed ``seed + image_id``:
    what ``eval --oracle`` and ``bench --oracle`` decode for it (so both give the same mAP).

    ``image``: a ``ground_truth.CocoImage`` (``boxes`` normalized ltrb, ``labels`` 1..80,
    ``image_id``). Returns the 12 float32 NCHW tensors with batch axis 1.
    """
    return encode_ground_truth(image.boxes, image.labels, seed=seed + image.image_id)


def encode_ground_truth_batch(
    ground_truths: Sequence[Tuple[Any, Any]], *, seed: int = 0
) -> List[np.ndarray]:
    """:func:`encode_ground_truth` for a batch: one (boxes_ltrb, labels) pair per image.

    Image n uses seed ``seed + n``, so item n equals ``encode_ground_truth(*ground_truths[n],
    seed=seed + n)``. Returns the 12 float32 NCHW tensors with batch axis N = len(ground_truths)
    (N >= 1, else ``ValueError``).
    """
    if len(ground_truths) == 0:
        raise ValueError("ground_truths must hold at least one image")
    per_image = [
        encode_ground_truth(boxes, labels, seed=seed + n)
        for n, (boxes, labels) in enumerate(ground_truths)
    ]
    return [np.concatenate(parts, axis=0) for parts in zip(*per_image)]


def random_head_outputs(
    batch_size: int = 1, *, seed: int = 0, logit_scale: float = 1.0, offset_scale: float = 1.0
) -> List[np.ndarray]:
    """Random head outputs: logits N(0, logit_scale^2), offsets N(0, offset_scale^2), float32.

    Returns the 12 NCHW tensors with batch axis ``batch_size``; deterministic for a seed.
    With ``logit_scale`` around 1 every class has hundreds of candidates (score > 0.05), the
    worst case for NMS; large scales give near one-hot scores.
    """
    rng = np.random.default_rng(seed)
    class_tensors = [
        (rng.standard_normal((batch_size,) + level.class_shape, dtype=np.float32)
         * np.float32(logit_scale))
        for level in LEVELS
    ]
    box_tensors = [
        (rng.standard_normal((batch_size,) + level.box_shape, dtype=np.float32)
         * np.float32(offset_scale))
        for level in LEVELS
    ]
    return class_tensors + box_tensors


def random_ground_truth(
    count: int = 8, *, seed: int = 0, min_size: float = 0.03, max_size: float = 0.7
) -> Tuple[np.ndarray, np.ndarray]:
    """Random ground truth for one image, when no COCO annotations are at hand.

    Returns ``(boxes, labels)``: (count, 4) float32 normalized ltrb boxes inside the image,
    sides drawn log-uniformly in [min_size, max_size] (COCO-like: many small, few large
    objects), and (count,) int64 labels uniform in 1..80. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(min_size), np.log(max_size), (count, 2)))
    corners = rng.uniform(0, 1, (count, 2)) * (1 - sizes)
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    return boxes, rng.integers(1, NUM_CLASSES, count).astype(np.int64)
