"""The options of ``docs/postprocess.md`` ("Options"): ``classes``, ``score_threshold`` as a
mapping, ``class_agnostic``, ``max_detections``. The native postprocessor equals the numpy
reference bit for bit (boxes, labels, scores) for each option on random, realistic (oracle)
and adversarial heads (ties, extreme logits, all below threshold); each option does what it
says against the default decode; bad values are clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from ssd_resnet34 import PythonPostProcessor
from ssd_resnet34.evaluation.accuracy.oracle import (
    encode_ground_truth,
    pack_head_outputs,
    random_ground_truth,
    random_head_outputs,
)
from ssd_resnet34.postprocess.reference import iou_matrix

A = 15130

OPTIONS = [
    {},
    {"classes": [1, 3]},
    {"classes": ["person", "car", "dog"]},
    {"classes": [80]},
    {"score_threshold": {1: 0.3, "car": 0.01, 17: 0.9}},
    {"score_threshold": {5: 0.0}},
    {"class_agnostic": True},
    {"class_agnostic": True, "max_detections": 7},
    {"class_agnostic": True, "classes": [1, 2, 3], "score_threshold": {2: 0.2}},
    {"max_detections": 3},
    {"classes": [1, 2], "score_threshold": 0.0, "max_candidates_per_class": 50},
    {"class_agnostic": True, "score_threshold": 0.0, "max_candidates_per_class": 30},
]


@pytest.fixture(scope="module")
def Native(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor


def same(native_pp, python_pp, outputs):
    got, want = native_pp.decode(outputs), python_pp.decode(outputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    return want


def realistic(seed):
    boxes, labels = random_ground_truth(12, seed=seed)
    labels[:4] = [1, 1, 3, 17]
    return encode_ground_truth(boxes, labels, seed=seed)


def adversarial():
    """Ties (identical logit columns in several classes and anchors), huge logits, one anchor
    with an extreme background."""
    logits = np.full((81, A), -20.0, np.float32)
    logits[0] = 5.0
    logits[[1, 2, 3], 100:400] = 5.0  # ties between classes and anchors
    logits[7, 5000:5100] = 3.0e4
    logits[0, 5000:5100] = 3.0e4
    logits[0, 9000] = -3.0e38
    offsets = np.zeros((4, A), np.float32)
    offsets[2, 120] = 1000.0  # an overflowing box among the tied candidates
    return pack_head_outputs(logits, offsets)


def all_below():
    """Background-dominant everywhere: every foreground score is about 2e-9/80."""
    logits = np.zeros((81, A), np.float32)
    logits[0] = 20.0
    return pack_head_outputs(logits, np.zeros((4, A), np.float32))


INPUTS = {
    "random": lambda: random_head_outputs(1, seed=3, logit_scale=3.0),
    "realistic": lambda: realistic(5),
    "adversarial": adversarial,
    "all_below": all_below,
}


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_native_equals_reference(Native, options, kind):
    outputs = INPUTS[kind]()
    want = same(Native(**options), PythonPostProcessor(**options), outputs)
    if kind == "all_below":
        threshold = options.get("score_threshold", 0.05)
        lowest = min(threshold.values()) if isinstance(threshold, dict) else threshold
        assert (len(want[0].labels) == 0) == (lowest > 0), options


def test_nan_and_inf_are_refused_with_options(Native):
    outputs = realistic(1)
    outputs[2] = outputs[2].copy()
    outputs[2][0, 7, 3, 3] = np.nan
    for pp in (Native(classes=[1], class_agnostic=True), PythonPostProcessor(classes=[1], class_agnostic=True)):
        with pytest.raises(ValueError, match=r"outputs\[2\].*NaN or infinite"):
            pp.decode(outputs)


def test_classes_keep_exactly_the_wanted_labels(Native):
    outputs = realistic(2)
    (boxes, labels, scores), = Native().decode(outputs)
    (b, l, s), = Native(classes=["person", 3]).decode(outputs)
    wanted = np.isin(labels, [1, 3])
    assert wanted.any() and not wanted.all()
    # Per-class NMS: the wanted classes' detections are unchanged (while max_detections does
    # not bind).
    assert len(labels) < 200
    np.testing.assert_array_equal(l, labels[wanted])
    np.testing.assert_array_equal(s, scores[wanted])
    np.testing.assert_array_equal(b, boxes[wanted])


def test_per_label_thresholds(Native):
    outputs = random_head_outputs(1, seed=8, logit_scale=2.0)
    (_, labels, scores), = Native(score_threshold=0.02, max_detections=10**6).decode(outputs)
    (_, l, s), = Native(score_threshold={1: 0.2, 2: 0.02}, max_detections=10**6).decode(outputs)
    # Label 1 above 0.2, label 2 above 0.02, the others above the default 0.05.
    for label, t in ((1, 0.2), (2, 0.02), (9, 0.05)):
        assert (s[l == label] > np.float32(t)).all() and (l == label).any()
    assert ((l == 2).sum(), (s[l == 2]).tolist()) == ((labels == 2).sum(), scores[labels == 2].tolist())
    assert Native(score_threshold={"person": 0.5}).class_score_thresholds == {1: 0.5}


def test_class_agnostic_suppresses_across_classes(Native):
    outputs = realistic(4)
    (b, l, s), = Native(class_agnostic=True).decode(outputs)
    (_, labels, _), = Native().decode(outputs)
    assert len(l) < len(labels)
    assert len(set(l.tolist())) > 1
    assert np.all(s[:-1] >= s[1:])
    iou = iou_matrix(b, b)
    np.fill_diagonal(iou, 0)
    assert (iou < np.float32(0.5)).all()  # no kept pair overlaps, whatever the classes


def test_class_agnostic_cost_is_bounded(Native):
    # Threshold 0: every (anchor, class) is a candidate (1.2 million); the per-class top-k and
    # the stop at max_detections keep this to 80 x 200 boxes against <= 200 kept ones.
    outputs = random_head_outputs(1, seed=1, logit_scale=0.1)
    (_, l, _), = Native(class_agnostic=True, score_threshold=0.0).decode(outputs)
    assert len(l) == 200


@pytest.mark.parametrize("options, error, match", [
    ({"classes": []}, ValueError, "classes is empty"),
    ({"classes": [0]}, ValueError, "label 0 is out of range"),
    ({"classes": [81]}, ValueError, "label 81"),
    ({"classes": ["kitten"]}, ValueError, "unknown COCO class name 'kitten'"),
    ({"classes": "person"}, TypeError, "classes must be a sequence"),
    ({"classes": [1.5]}, TypeError, "a label must be an int"),
    ({"score_threshold": {1: 1.5}}, ValueError, r"score_threshold must be in \[0, 1\]"),
    ({"score_threshold": {0: 0.5}}, ValueError, "label 0"),
    ({"class_agnostic": 1}, TypeError, "class_agnostic must be a bool"),
])
def test_bad_options(Native, options, error, match):
    for cls in (Native, PythonPostProcessor):
        with pytest.raises(error, match=match):
            cls(**options)


def test_options_are_keyword_only(Native):
    for cls in (Native, PythonPostProcessor):
        with pytest.raises(TypeError):
            cls(0.05, 0.5, 200, 200, [1])
    from ssd_resnet34._native import Postprocessor

    with pytest.raises(TypeError):
        Postprocessor(0.05, 0.5, 200, 200, [1])
    p = Postprocessor(classes=[3, 1], class_score_thresholds={2: 0.5}, class_agnostic=True)
    assert (p.classes, p.class_score_thresholds, p.class_agnostic) == ([1, 3], {2: 0.5}, True)
    assert Postprocessor().classes is None
    with pytest.raises(ValueError, match="label 0"):
        Postprocessor(classes=[0])
    assert "classes=(1,)" in repr(Native(classes=[1]))
