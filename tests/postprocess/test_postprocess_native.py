"""NativePostProcessor (Rust) against PythonPostProcessor (numpy reference): the same detections
(same labels in the same order, boxes and scores within 1e-5) on random, realistic and edge-case
inputs; ``_native.nms`` against ``reference.nms``."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_resnet34 import PythonPostProcessor
from ssd_resnet34.layout import LEVELS
from ssd_resnet34.evaluation.accuracy.ground_truth import load_coco_ground_truth
from ssd_resnet34.evaluation.accuracy.oracle import (
    encode_ground_truth,
    encode_ground_truth_batch,
    pack_head_outputs,
    random_ground_truth,
    random_head_outputs,
)
from ssd_resnet34.postprocess.reference import nms

A = 15130


@pytest.fixture(scope="module")
def NativePostProcessor(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor


def assert_same(native_pp, python_pp, outputs, compare):
    """Decode with both; compare image by image; return the reference detections."""
    got = native_pp.decode(outputs)
    expected = python_pp.decode(outputs)
    assert len(got) == len(expected) == outputs[0].shape[0]
    for g, e in zip(got, expected):
        compare(g, e)
    return expected


def from_anchors(logits, offsets):
    return pack_head_outputs(np.asarray(logits, np.float32), np.asarray(offsets, np.float32))


# --- random logits -------------------------------------------------------------------------

@pytest.mark.parametrize("seed, logit_scale, offset_scale", [
    (0, 1.0, 1.0), (1, 0.5, 0.2), (2, 3.0, 1.0), (3, 10.0, 2.0), (4, 30.0, 0.5),
])
def test_random_logits(native_pp, python_pp, compare_detections, seed, logit_scale, offset_scale):
    outputs = random_head_outputs(1, seed=seed, logit_scale=logit_scale, offset_scale=offset_scale)
    expected = assert_same(native_pp, python_pp, outputs, compare_detections)
    assert len(expected[0].labels) > 0


# --- realistic outputs ---------------------------------------------------------------------

def test_oracle_synthetic_ground_truth(native_pp, python_pp, compare_detections):
    truths = [random_ground_truth(count, seed=seed) for seed, count in enumerate([1, 6, 20, 60])]
    outputs = encode_ground_truth_batch(truths, seed=100)
    for boxes, labels, scores in assert_same(native_pp, python_pp, outputs, compare_detections):
        assert scores.max() > 0.9


def test_oracle_coco_ground_truth(native_pp, python_pp, compare_detections, coco_annotations):
    images = load_coco_ground_truth(coco_annotations)
    chosen = images[::25]  # 10 images spread over the subset
    chosen.append(max(images, key=lambda im: len(im.labels)))  # the most crowded image
    outputs = encode_ground_truth_batch([(im.boxes, im.labels) for im in chosen], seed=0)
    assert_same(native_pp, python_pp, outputs, compare_detections)


# --- edge cases ----------------------------------------------------------------------------

def background_logits():
    logits = np.zeros((81, A), np.float32)
    logits[0] = 20
    return logits


def test_all_background(native_pp, python_pp, compare_detections):
    outputs = from_anchors(background_logits(), np.zeros((4, A)))
    boxes, labels, scores = native_pp.decode(outputs)[0]
    assert boxes.shape == (0, 4) and labels.shape == (0,) and scores.shape == (0,)
    assert_same(native_pp, python_pp, outputs, compare_detections)


def test_every_pair_a_candidate_with_equal_scores(NativePostProcessor, compare_detections):
    # All logits 0: every score is 1/81; with threshold 0 all 15130 x 80 pairs are candidates,
    # all tied: the top-k takes the lowest anchors, the merge orders by label.
    outputs = from_anchors(np.zeros((81, A)), np.zeros((4, A)))
    for kwargs in ({"score_threshold": 0.0}, {"score_threshold": 0.0, "iou_threshold": 1.0}):
        got = assert_same(NativePostProcessor(**kwargs), PythonPostProcessor(**kwargs), outputs,
                          compare_detections)
        boxes, labels, scores = got[0]
        assert len(labels) == 200 and (scores == np.float32(1 / 81)).all()
        assert (np.diff(labels) >= 0).all()


def test_random_logits_threshold_zero(NativePostProcessor, compare_detections):
    outputs = random_head_outputs(1, seed=11, logit_scale=2.0)
    kwargs = {"score_threshold": 0.0, "max_candidates_per_class": 300, "max_detections": 1000}
    got = assert_same(NativePostProcessor(**kwargs), PythonPostProcessor(**kwargs), outputs,
                      compare_detections)
    assert len(got[0].labels) > 200 and set(got[0].labels.tolist()) == set(range(1, 81))


def test_more_than_max_candidates_in_one_class(native_pp, python_pp, compare_detections):
    rng = np.random.default_rng(5)
    logits = background_logits()
    logits[7, rng.choice(A, 3000, replace=False)] = rng.uniform(18, 30, 3000)
    offsets = rng.normal(0, 0.5, (4, A))
    expected = assert_same(native_pp, python_pp, from_anchors(logits, offsets), compare_detections)
    assert (expected[0].labels == 7).all() and 20 < len(expected[0].labels) <= 200


def test_quantized_logits_tie_everywhere(NativePostProcessor, compare_detections):
    # Logits in {0, 4}: scores take few distinct values, so ties occur at the top-k cut,
    # inside NMS and in the merge, across anchors and labels.
    rng = np.random.default_rng(6)
    logits = 4 * (rng.random((81, A)) < 0.03)
    logits[0] = 3
    offsets = np.round(rng.normal(0, 1, (4, A)))
    outputs = from_anchors(logits, offsets)
    for kwargs in ({}, {"max_candidates_per_class": 17, "max_detections": 50}):
        got = assert_same(NativePostProcessor(**kwargs), PythonPostProcessor(**kwargs), outputs,
                          compare_detections)
        scores = got[0].scores
        assert len(np.unique(scores)) < len(scores) / 4


def test_zero_size_boxes_from_huge_negative_offsets(native_pp, python_pp, compare_detections):
    outputs = random_head_outputs(1, seed=7, logit_scale=2.0)
    rng = np.random.default_rng(7)
    for level in LEVELS:  # dw is channels 2*nd .. 3*nd - 1 of the box offsets
        dw = outputs[6 + level.index][0, 2 * level.boxes_per_cell:3 * level.boxes_per_cell]
        dw[rng.random(dw.shape) < 0.5] = -1e4  # exp(-2000): zero width
    boxes, labels, scores = assert_same(native_pp, python_pp, outputs, compare_detections)[0]
    assert (boxes[:, 0] == boxes[:, 2]).any()


def test_overflowing_and_huge_boxes(native_pp, python_pp, compare_detections):
    rng = np.random.default_rng(8)
    logits = background_logits()
    logits[1:, :3000] = rng.uniform(15, 25, (80, 3000))
    offsets = rng.normal(0, 1, (4, A))
    offsets[2, rng.random(A) < 0.3] = 1e4  # exp overflows: dropped
    offsets[3, rng.random(A) < 0.2] = -1e4  # zero height
    offsets[2:, rng.random(A) < 0.2] = 420  # finite boxes ~1e35 wide: areas overflow float32
    offsets[0, rng.random(A) < 0.1] = 3e38  # far-away centers
    boxes, labels, scores = assert_same(native_pp, python_pp, from_anchors(logits, offsets),
                                        compare_detections)[0]
    assert np.isfinite(boxes).all() and (np.abs(boxes) > 1e30).any()


def test_batch_of_8_equals_single_images(native_pp, python_pp, compare_detections):
    images = [random_head_outputs(1, seed=20 + n, logit_scale=4.0) for n in range(4)]
    truths = [random_ground_truth(5 * n + 1, seed=n) for n in range(4)]
    images += [encode_ground_truth(b, l, seed=n) for n, (b, l) in enumerate(truths)]
    batch = [np.concatenate(parts) for parts in zip(*images)]
    got = native_pp.decode(batch)
    expected = python_pp.decode(batch)
    assert len(got) == 8
    for n, image in enumerate(images):
        single = native_pp.decode(image)[0]
        for a, b in zip(got[n], single):
            np.testing.assert_array_equal(a, b)
        compare_detections(got[n], expected[n])


@pytest.mark.parametrize("kwargs", [
    {"score_threshold": 0.0, "max_candidates_per_class": 1, "max_detections": 1},
    {"score_threshold": 1.0},
    {"score_threshold": 0.3, "iou_threshold": 0.01},
    {"iou_threshold": 1.0, "max_candidates_per_class": 5},
    {"score_threshold": 0.01, "iou_threshold": 0.7, "max_candidates_per_class": 50,
     "max_detections": 30},
])
def test_non_default_parameters(NativePostProcessor, compare_detections, kwargs):
    outputs = random_head_outputs(1, seed=9, logit_scale=3.0)
    got = assert_same(NativePostProcessor(**kwargs), PythonPostProcessor(**kwargs), outputs,
                      compare_detections)
    if kwargs.get("score_threshold") == 1.0:
        assert len(got[0].labels) == 0


def test_call_gives_the_same_results(native_pp, python_pp):
    boxes, labels = random_ground_truth(8, seed=3)
    outputs = encode_ground_truth(boxes, labels, seed=3)
    context = {"width": 640, "height": 427}
    got = native_pp(outputs, context)[0]
    expected = python_pp(outputs, [context])[0]
    assert [(r.index, r.label) for r in got] == [(r.index, r.label) for r in expected]
    for r, e in zip(got, expected):
        assert type(r.score) is float and type(r.index) is int
        assert abs(r.score - e.score) < 1e-5
        np.testing.assert_allclose(list(r.boundingbox), list(e.boundingbox), atol=1e-5 * 640)


# --- nms -----------------------------------------------------------------------------------

def nms_cases():
    rng = np.random.default_rng(12)
    corners = rng.uniform(0, 1, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0, 0.3, (300, 2))], axis=1)
    boxes[::10, 2] = boxes[::10, 0]  # zero width
    boxes[5::10, 2:] = boxes[5::10, :2] - 0.1  # inverted
    boxes = boxes.astype(np.float32)
    tied = np.round(rng.uniform(0, 1, 300), 1).astype(np.float32)  # many equal scores
    distinct = rng.permutation(300).astype(np.float32)
    same = np.tile(np.float32([[0.1, 0.1, 0.4, 0.4]]), (20, 1))
    return [
        (boxes, tied, 0.5), (boxes, distinct, 0.3), (boxes, tied, 1.0), (boxes, distinct, 0.05),
        (same, np.ones(20, np.float32), 0.5), (same, np.ones(20, np.float32), 1.0),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5),
        (np.float32([[0, 0, 1, 1], [0, 0, 2, 1]]), np.float32([0.5, 0.9]), 0.5),  # IoU == 0.5
    ]


@pytest.mark.parametrize("case", range(len(nms_cases())))
def test_nms_matches_the_reference(native, case):
    boxes, scores, threshold = nms_cases()[case]
    got = native.nms(boxes, scores, threshold)
    expected = nms(boxes, scores, threshold)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_native_nms_rejects_bad_input(native):
    with pytest.raises(ValueError):
        native.nms(np.zeros((3, 3), np.float32), np.zeros(3, np.float32), 0.5)
    with pytest.raises(ValueError):
        native.nms(np.zeros((3, 4), np.float32), np.zeros(2, np.float32), 0.5)
    with pytest.raises(ValueError):
        native.nms(np.zeros((3, 4), np.float32), np.zeros(3, np.float32), 0.0)
