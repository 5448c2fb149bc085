"""The realistic-output generator (oracle): determinism, exact encoding, and that decoding its
outputs with the reference postprocessor recovers the ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from ssd_resnet34 import default_boxes
from ssd_resnet34.evaluation.accuracy.ground_truth import load_coco_ground_truth
from ssd_resnet34.evaluation.accuracy.oracle import (
    encode_ground_truth,
    encode_ground_truth_batch,
    match_anchors,
    random_ground_truth,
)
from ssd_resnet34.layout import LEVELS, NUM_ANCHORS
from ssd_resnet34.postprocess.reference import (
    decode_boxes,
    gather_levels,
    iou_matrix,
    softmax_scores,
)

SHAPES = [(1,) + level.class_shape for level in LEVELS] + [(1,) + level.box_shape for level in LEVELS]


def per_anchor(outputs):
    """(81, A) scores and (A, 4) decoded boxes of image 0."""
    scores = softmax_scores(gather_levels(outputs[:6], 0, 81))
    boxes = decode_boxes(gather_levels(outputs[6:], 0, 4), default_boxes())
    return scores, boxes


def expected_recoveries(boxes, labels):
    """Ground truths the decode must return: those still owning their best anchor, with no
    other ground truth of the same class overlapping them enough (IoU >= 0.4) to be suppressed."""
    matching = match_anchors(boxes)
    owners = set(matching.gt_index[matching.forced].tolist())
    iou = iou_matrix(boxes, boxes)
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    crowded = (same & (iou >= 0.4)).any(axis=1)
    return [g for g in range(len(labels)) if g in owners and not crowded[g]]


def check_recovery(boxes, labels, detections):
    """Every expected ground truth is detected with its label, its exact box and a top score;
    every detection scoring >= 0.5 is a ground-truth box. Returns how many were expected."""
    det_boxes, det_labels, det_scores = detections
    expected = expected_recoveries(boxes, labels)
    for g in expected:
        hit = (det_labels == labels[g]) & (np.abs(det_boxes - boxes[g]).max(axis=1) < 1e-5)
        assert hit.any(), f"ground truth {g} ({labels[g]}, {boxes[g]}) not recovered"
        assert det_scores[hit].max() >= 0.93
    for box, label, score in zip(det_boxes, det_labels, det_scores):
        if score >= 0.5:
            assert ((labels == label) & (np.abs(boxes - box).max(axis=1) < 1e-5)).any()
    return len(expected)


def test_outputs_have_the_model_card_layout_and_are_deterministic():
    boxes, labels = random_ground_truth(5, seed=1)
    outputs = encode_ground_truth(boxes, labels, seed=3)
    assert [o.shape for o in outputs] == SHAPES
    assert all(o.dtype == np.float32 and o.flags.c_contiguous for o in outputs)
    again = encode_ground_truth(boxes, labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(outputs, again))
    other = encode_ground_truth(boxes, labels, seed=4)
    assert not np.array_equal(outputs[0], other[0])


def test_matched_anchors_encode_the_ground_truth_exactly():
    boxes, labels = random_ground_truth(6, seed=2)
    outputs = encode_ground_truth(boxes, labels, seed=0)
    scores, decoded = per_anchor(outputs)
    matching = match_anchors(boxes)
    matched = np.flatnonzero(matching.gt_index >= 0)
    assert matched.size >= len(labels)
    gt = matching.gt_index[matched]
    np.testing.assert_allclose(decoded[matched], boxes[gt], rtol=0, atol=2e-6)
    class_scores = scores[labels[gt], matched]
    assert class_scores.min() >= 0.58 and class_scores.max() <= 0.97 + 1e-6
    forced = matching.forced[matched]
    assert class_scores[forced].min() >= 0.93 - 1e-6
    partial = (matching.gt_index < 0) & (matching.best_iou >= 0.3)
    weak = scores[labels[matching.best_gt[partial]], np.flatnonzero(partial)]
    assert partial.any() and weak.max() <= 0.32 + 1e-6 and (weak > 0.05).mean() > 0.5
    background = matching.best_iou < 0.3
    assert (scores[0, background] > 0.5).all()


def test_decoding_recovers_synthetic_ground_truth(python_pp):
    total = 0
    for seed in range(4):
        boxes, labels = random_ground_truth(12, seed=seed)
        detections = python_pp.decode(encode_ground_truth(boxes, labels, seed=seed))[0]
        total += check_recovery(boxes, labels, detections)
    assert total >= 0.9 * 48


def test_decoding_recovers_coco_ground_truth(python_pp, coco_annotations):
    images = load_coco_ground_truth(coco_annotations)[:25]
    outputs = encode_ground_truth_batch([(im.boxes, im.labels) for im in images], seed=10)
    total = 0
    for image, detections in zip(images, python_pp.decode(outputs)):
        total += check_recovery(image.boxes, image.labels, detections)
    assert total >= 0.9 * sum(len(im.labels) for im in images)


def test_no_ground_truth_gives_only_low_score_noise(python_pp):
    outputs = encode_ground_truth(np.zeros((0, 4)), np.zeros(0, np.int64), seed=0)
    scores, _ = per_anchor(outputs)
    candidates = int((scores[1:] > np.float32(0.05)).sum())
    assert 0 < candidates < 5000  # background U(6, 8) against N(0, 1) noise
    assert python_pp.decode(outputs)[0].scores.max() < 0.5


def test_candidate_counts_are_realistic():
    counts = []
    for seed in range(3):
        boxes, labels = random_ground_truth(8, seed=seed)
        scores, _ = per_anchor(encode_ground_truth(boxes, labels, seed=seed))
        counts.append(int((scores[1:] > np.float32(0.05)).sum()))
    assert all(50 < c < 5000 for c in counts), counts


def test_batch_helper_uses_consecutive_seeds():
    truths = [random_ground_truth(3, seed=s) for s in range(3)]
    batch = encode_ground_truth_batch(truths, seed=7)
    assert batch[0].shape == (3, 324, 50, 50)
    for n, (boxes, labels) in enumerate(truths):
        single = encode_ground_truth(boxes, labels, seed=7 + n)
        assert all(np.array_equal(b[n:n + 1], s) for b, s in zip(batch, single))
    with pytest.raises(ValueError):
        encode_ground_truth_batch([])


def test_matching_gives_every_ground_truth_its_best_anchor():
    boxes = np.float32([[0.1, 0.1, 0.3, 0.4], [0.5, 0.5, 0.52, 0.51]])  # the second is tiny
    matching = match_anchors(boxes)
    assert matching.gt_index.shape == (NUM_ANCHORS,)
    assert set(matching.gt_index[matching.forced].tolist()) == {0, 1}
    assert (matching.best_iou[matching.gt_index == 1] < 0.5).any()  # forced despite a low IoU


@pytest.mark.parametrize("boxes, labels, error", [
    (np.zeros((2, 3)), [1, 2], ValueError),
    (np.float32([[0, 0, 1, 1]]), [0], ValueError),
    (np.float32([[0, 0, 1, 1]]), [81], ValueError),
    (np.float32([[0, 0, 1, 1]]), [1.0], TypeError),
    (np.float32([[0.5, 0, 0.5, 1]]), [1], ValueError),
    (np.float32([[0, np.nan, 1, 1]]), [1], ValueError),
    (np.float32([[0, 0, 1, 1]]), [1, 2], ValueError),
])
def test_bad_ground_truth(boxes, labels, error):
    with pytest.raises(error):
        encode_ground_truth(boxes, np.asarray(labels))
