"""The numpy reference (PythonPostProcessor, nms, iou_matrix): the semantics of docs/postprocess.md
checked on hand-built inputs whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_resnet34 import LtrbBoundingBox, ObjectDetectionResult, PythonPostProcessor, default_boxes
from ssd_resnet34.evaluation.accuracy.oracle import pack_head_outputs
from ssd_resnet34.postprocess.reference import decode_boxes, iou_matrix, nms, softmax_scores

A = 15130
ANCHOR_BOXES = decode_boxes(np.zeros((4, A), np.float32), default_boxes())  # offsets 0


def level0(d: int, i: int, j: int) -> int:
    """Global index of level-0 default box d at row i, column j (0.07-wide boxes, 0.02 apart)."""
    return d * 2500 + i * 50 + j


def scene(entries, offsets=None):
    """Outputs where background dominates everywhere except at the given (anchor, label): logit."""
    logits = np.zeros((81, A), np.float32)
    logits[0] = 20.0
    for (anchor, label), logit in entries.items():
        logits[label, anchor] = logit
    if offsets is None:
        offsets = np.zeros((4, A), np.float32)
    return pack_head_outputs(logits, offsets)


def found(detections):
    """(anchor, label) of each detection, in output order (boxes are undisplaced anchors)."""
    boxes, labels, _ = detections
    anchors = [int(np.flatnonzero((ANCHOR_BOXES == box).all(axis=1))[0]) for box in boxes]
    return list(zip(anchors, labels.tolist()))


def f32_iou(b1, b2):
    """The IoU of docs/postprocess.md as scalar float32 code, one operation per line."""
    l1, t1, r1, bt1 = (np.float32(v) for v in b1)
    l2, t2, r2, bt2 = (np.float32(v) for v in b2)
    zero = np.float32(0)
    iw = max(min(r1, r2) - max(l1, l2), zero)
    ih = max(min(bt1, bt2) - max(t1, t2), zero)
    inter = iw * ih
    area1 = max(r1 - l1, zero) * max(bt1 - t1, zero)
    area2 = max(r2 - l2, zero) * max(bt2 - t2, zero)
    union = (area1 + area2) - inter
    return inter / union if union > zero else zero


# --- IoU ---------------------------------------------------------------------------------

def test_iou_known_values():
    boxes = np.float32([
        [0, 0, 2, 2],
        [1, 1, 3, 3],  # overlaps box 0: 1 / 7
        [5, 5, 6, 6],  # disjoint from all
        [0, 0, 2, 2],  # identical to box 0
        [1, 1, 1, 3],  # zero width
        [2, 2, 1, 1],  # inverted
        [2, 0, 4, 2],  # touches box 0 along an edge
    ])
    iou = iou_matrix(boxes, boxes)
    assert iou.dtype == np.float32 and iou.shape == (7, 7)
    assert iou[0, 1] == np.float32(1) / np.float32(7)
    assert iou[0, 3] == 1 and iou[0, 0] == 1
    assert iou[0, 2] == 0 and iou[0, 6] == 0
    assert (iou[4] == 0).all() and (iou[5] == 0).all() and (iou[:, 5] == 0).all()
    np.testing.assert_array_equal(iou, iou.T)


def test_iou_clamps_negative_overlaps_unlike_the_reference():
    # Both overlaps negative: MLCommons' calc_iou_tensor multiplies them to a positive
    # "intersection" ((-1) * (-1) = 1, IoU 1 / (1 + 1 - 1) = 1); the clamped IoU is 0.
    a = np.float32([[0, 0, 1, 1]])
    b = np.float32([[2, 2, 3, 3]])
    assert iou_matrix(a, b)[0, 0] == 0


def test_iou_matrix_matches_scalar_float32_code_bit_for_bit():
    rng = np.random.default_rng(3)
    boxes = rng.uniform(0, 1, (60, 4)).astype(np.float32)  # includes inverted boxes
    boxes[:30, 2:] = boxes[:30, :2] + rng.uniform(0, 0.5, (30, 2)).astype(np.float32)
    iou = iou_matrix(boxes, boxes)
    expected = np.array([[f32_iou(p, q) for q in boxes] for p in boxes], dtype=np.float32)
    np.testing.assert_array_equal(iou, expected)
    # A float64 computation differs somewhere: the float32 order of operations matters.
    iou64 = iou_matrix(boxes.astype(np.float64), boxes.astype(np.float64))
    assert not np.array_equal(iou64.astype(np.float32), iou)


def test_iou_overflowing_areas_give_zero():
    huge = np.float32([[-1e30, -1e30, 1e30, 1e30], [-2e30, -2e30, 2e30, 2e30]])
    iou = iou_matrix(huge, huge)
    assert np.isfinite(iou).all() and (iou == 0).all()


# --- nms ---------------------------------------------------------------------------------

def test_nms_threshold_is_strict_and_order_is_processing_order():
    boxes = np.float32([[0, 0, 1, 1], [0, 0, 2, 1], [5, 5, 6, 6], [5, 5, 6, 7]])
    scores = np.float32([0.5, 0.9, 0.3, 0.7])
    assert iou_matrix(boxes[:2], boxes[:2])[0, 1] == np.float32(0.5)
    # IoU == threshold suppresses (kept only when IoU < threshold).
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    above = float(np.nextafter(np.float32(0.5), np.float32(1)))
    assert nms(boxes, scores, above).tolist() == [1, 3, 0, 2]
    assert nms(boxes, scores, 1.0).tolist() == [1, 3, 0, 2]
    assert nms(boxes, scores, 1.0).dtype == np.int64


def test_nms_ties_go_to_the_lower_index():
    boxes = np.float32([[0, 0, 1, 1]] * 4)
    assert nms(boxes, np.float32([0.5, 0.7, 0.7, 0.1]), 0.5).tolist() == [1]
    boxes[3] = [3, 3, 4, 4]
    assert nms(boxes, np.float32([0.5, 0.5, 0.5, 0.5]), 0.5).tolist() == [0, 3]


def test_nms_zero_area_and_inverted_boxes_never_suppress():
    boxes = np.float32([[0, 0, 1, 1], [0.5, 0, 0.5, 1], [1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]])
    scores = np.float32([0.9, 0.8, 0.7, 0.6, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2, 4]


def test_nms_empty_and_bad_input():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []
    with pytest.raises(ValueError, match=r"boxes must have shape \(K, 4\)"):
        nms(np.zeros((3, 3)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        nms(np.zeros((3, 4)), np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="finite"):
        nms(np.float32([[0, 0, np.nan, 1]]), np.float32([1]), 0.5)
    with pytest.raises(TypeError, match="numeric"):
        nms(np.array([["a"] * 4]), np.zeros(1), 0.5)


# --- scores and decode ---------------------------------------------------------------------

def test_softmax_scores_in_float64_rounded_to_float32():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((81, 500)) * 10).astype(np.float32)
    logits[:, 0] = 0  # all equal: 1/81
    logits[5, 1] = 3e38  # huge but finite: one-hot without overflow
    scores = softmax_scores(logits)
    assert scores.dtype == np.float32
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=0))
    expected = e / e.sum(axis=0)
    np.testing.assert_array_equal(scores, expected.astype(np.float32))
    assert (scores[:, 0] == np.float32(1 / 81)).all()
    assert scores[5, 1] == 1 and scores[:5, 1].max() == 0


def test_decode_boxes_formula_and_overflow():
    anchors = np.float32([[0.5, 0.4, 0.2, 0.1]] * 3)
    offsets = np.float32([[1, 0, 0], [-2, 0, 0], [0.5, 0, 1e4], [-1, -1e4, 0]])
    boxes = decode_boxes(offsets, anchors)
    cx = 0.1 * 1.0 * np.float64(np.float32(0.2)) + np.float64(np.float32(0.5))
    cy = 0.1 * -2.0 * np.float64(np.float32(0.1)) + np.float64(np.float32(0.4))
    w = np.exp(0.2 * 0.5) * np.float64(np.float32(0.2))
    h = np.exp(0.2 * -1) * np.float64(np.float32(0.1))
    np.testing.assert_array_equal(
        boxes[0], np.float32([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]))
    assert np.isinf(boxes[2, [0, 2]]).all()  # exp(2000) overflows
    assert boxes[1, 1] == boxes[1, 3]  # exp(-2000) * h: a zero-height box


# --- PythonPostProcessor semantics ---------------------------------------------------------

def test_all_background_gives_empty_detections(python_pp):
    boxes, labels, scores = python_pp.decode(scene({}))[0]
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32
    assert labels.shape == (0,) and labels.dtype == np.int64
    assert scores.shape == (0,) and scores.dtype == np.float32


def test_nms_is_per_class_and_output_is_score_descending(python_pp):
    a0, a1, a2 = level0(0, 10, 10), level0(0, 10, 11), level0(0, 10, 12)
    # a1 overlaps a0 (IoU 0.56); a2 is two cells away (IoU 0.27).
    detections = python_pp.decode(scene({(a0, 1): 30, (a1, 1): 29, (a1, 2): 29, (a2, 1): 26}))[0]
    assert found(detections) == [(a0, 1), (a2, 1), (a1, 2)]
    assert (np.diff(detections.scores) <= 0).all()


def test_equal_scores_merge_by_label_then_anchor(python_pp):
    far = [level0(0, 5, 5), level0(0, 20, 20), level0(0, 40, 40)]
    entries = {(far[2], 3): 25, (far[0], 7): 25, (far[1], 3): 25, (far[1], 1): 25}
    boxes, labels, scores = python_pp.decode(scene(entries))[0]
    # far[1] holds two equal logits, so its two scores are equal and lower than the others.
    assert found((boxes, labels, scores)) == [(far[2], 3), (far[0], 7), (far[1], 1), (far[1], 3)]
    assert scores[0] == scores[1] and scores[2] == scores[3]


def test_ties_at_the_top_k_cut_keep_the_lower_anchors():
    far = [level0(0, 4 * k, 4 * k) for k in range(6)]
    entries = {(anchor, 9): 25 for anchor in far[::-1]}
    pp = PythonPostProcessor(max_candidates_per_class=4)
    assert found(pp.decode(scene(entries))[0]) == [(anchor, 9) for anchor in far[:4]]


def test_more_than_max_candidates_in_one_class():
    # 300 candidates of class 4 with distinct scores and zero-height boxes (never suppressed):
    # exactly the best 200 survive, by score.
    rng = np.random.default_rng(1)
    anchors = rng.choice(A, 300, replace=False)
    logits = rng.permutation(300) * 0.01 + 22
    offsets = np.zeros((4, A), np.float32)
    offsets[3] = -1e4  # exp(-2000): zero height
    outputs = scene(dict(zip(zip(anchors, [4] * 300), logits)), offsets)
    boxes, labels, scores = PythonPostProcessor().decode(outputs)[0]
    assert len(labels) == 200 and (labels == 4).all()
    best = anchors[np.argsort(-logits, kind="stable")[:200]]
    np.testing.assert_array_equal(boxes[:, 0], decode_boxes(offsets, default_boxes())[best, 0])
    assert (boxes[:, 1] == boxes[:, 3]).all()
    two = PythonPostProcessor(max_candidates_per_class=2, max_detections=1).decode(outputs)[0]
    assert len(two) == 1 and two.boxes[0, 0] == boxes[0, 0]


def test_overflowing_boxes_are_dropped_before_the_top_k():
    far = [level0(0, 4 * k, 4 * k) for k in range(4)]
    offsets = np.zeros((4, A), np.float32)
    offsets[2, far[0]] = 1e4  # the best candidate's box overflows
    entries = {(anchor, 2): 30 - k for k, anchor in enumerate(far)}
    pp = PythonPostProcessor(max_candidates_per_class=3)
    assert found(pp.decode(scene(entries, offsets))[0]) == [(a, 2) for a in far[1:]]


def test_score_threshold_is_strict():
    a = level0(1, 3, 3)
    outputs = scene({(a, 5): 20.0})  # class 5 ties the background: score just below 0.5
    score = PythonPostProcessor().decode(outputs)[0].scores[0]
    assert PythonPostProcessor(score_threshold=float(score)).decode(outputs)[0].labels.size == 0
    below = float(np.nextafter(score, np.float32(0)))
    assert PythonPostProcessor(score_threshold=below).decode(outputs)[0].labels.tolist() == [5]
    assert PythonPostProcessor(score_threshold=1.0).decode(outputs)[0].labels.size == 0


def test_call_scales_to_pixels_and_builds_results(python_pp):
    a0, a1 = level0(0, 10, 10), level0(2, 30, 5)
    outputs = scene({(a0, 1): 30, (a1, 17): 25})
    boxes, labels, scores = python_pp.decode(outputs)[0]
    for contexts in ([{"width": 640, "height": 480}], {"width": 640, "height": 480}):
        results = python_pp(outputs, contexts)
        assert len(results) == 1 and len(results[0]) == 2
        first = results[0][0]
        assert isinstance(first, ObjectDetectionResult)
        assert isinstance(first.boundingbox, LtrbBoundingBox)
        assert (first.label, first.index) == ("person", 1)
        assert results[0][1].label == "dog" and results[0][1].index == 17  # COCO id 18
        assert type(first.score) is float and type(first.index) is int
        assert first.score == float(scores[0])
        assert all(type(v) is float for v in first.boundingbox)
        expected = boxes[0].astype(np.float64) * [640, 480, 640, 480]
        assert list(first.boundingbox) == expected.tolist()
        left, top, right, bottom = first.boundingbox
        assert (left, bottom) == (first.boundingbox.left, first.boundingbox.bottom)


def test_batch_results_equal_per_image_results(python_pp):
    images = [scene({(level0(0, 5 * k, 7), 1 + k): 24}) for k in range(3)]
    batch = [np.concatenate(parts) for parts in zip(*images)]
    decoded = python_pp.decode(batch)
    assert len(decoded) == 3
    for image, got in zip(images, decoded):
        for part, expected in zip(got, python_pp.decode(image)[0]):
            np.testing.assert_array_equal(part, expected)
    results = python_pp(batch, [{"width": 10, "height": 20}, {"width": 30, "height": 40},
                                {"width": 1.5, "height": 2.5}])
    assert [r[0].index for r in results] == [1, 2, 3]
