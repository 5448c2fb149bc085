"""Bad input: both postprocessors raise the same exception type and message (docs/postprocess.md,
"Bad input"); accepted variants (float64/float16, non-contiguous) decode like float32."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_resnet34 import PythonPostProcessor
from ssd_resnet34.layout import LEVELS
from ssd_resnet34.evaluation.accuracy.oracle import random_head_outputs

SHAPES = [level.class_shape for level in LEVELS] + [level.box_shape for level in LEVELS]


def quiet_outputs(batch=1):
    """Valid outputs with no candidate at all (every score 1/81), cheap to decode."""
    return [np.zeros((batch,) + shape, np.float32) for shape in SHAPES]


def with_item(k, value, batch=1):
    outputs = quiet_outputs(batch)
    outputs[k] = value
    return outputs


def poisoned(k, item, value, batch=2):
    outputs = quiet_outputs(batch)
    outputs[k][item, 3, 1, 2] = value
    return outputs


BAD_OUTPUTS = {
    "ndarray-not-list": (np.zeros((12, 1)), TypeError,
                         "outputs must be a list or tuple of 12 numpy arrays (6 class logits, then 6 box "
                         "offsets), got ndarray"),
    "dict": ({}, TypeError, "outputs must be a list or tuple of 12 numpy arrays"),
    "11-outputs": (quiet_outputs()[:11], ValueError,
                   "expected 12 outputs (6 class logits, then 6 box offsets), got 11"),
    "13-outputs": (quiet_outputs() + [np.zeros(1, np.float32)], ValueError, "got 13"),
    "nested-list": (with_item(3, np.zeros((1,) + SHAPES[3]).tolist()), TypeError,
                    "outputs[3] (class logits, level 3) must be a numpy.ndarray, got list"),
    "none": (with_item(9, None), TypeError,
             "outputs[9] (box offsets, level 3) must be a numpy.ndarray, got NoneType"),
    "int-dtype": (with_item(7, np.zeros((1,) + SHAPES[7], np.int32)), TypeError,
                  "outputs[7] (box offsets, level 1) must have a floating dtype (float32 expected), "
                  "got int32"),
    "bool-dtype": (with_item(0, np.zeros((1,) + SHAPES[0], bool)), TypeError,
                   "outputs[0] (class logits, level 0) must have a floating dtype (float32 expected), "
                   "got bool"),
    "object-dtype": (with_item(1, np.zeros((1,) + SHAPES[1], object)), TypeError,
                     "got object"),
    "complex-dtype": (with_item(2, np.zeros((1,) + SHAPES[2], np.complex64)), TypeError,
                      "got complex64"),
    "wrong-shape": (with_item(0, np.zeros((1, 324, 50, 49), np.float32)), ValueError,
                    "outputs[0] (class logits, level 0) has shape (1, 324, 50, 49), "
                    "expected (N, 324, 50, 50)"),
    "rank-3": (with_item(4, np.zeros((324, 3, 3), np.float32)), ValueError,
               "outputs[4] (class logits, level 4) has shape (324, 3, 3), expected (N, 324, 3, 3)"),
    "boxes-first": (quiet_outputs()[6:] + quiet_outputs()[:6], ValueError,
                    "outputs[0] (class logits, level 0) has shape (1, 16, 50, 50), "
                    "expected (N, 324, 50, 50)"),
    "batch-mismatch": (with_item(5, np.zeros((2,) + SHAPES[5], np.float32)), ValueError,
                       "outputs[5] (class logits, level 5) has batch size 2, but outputs[0] has 1"),
    "batch-0": ([np.zeros((0,) + shape, np.float32) for shape in SHAPES], ValueError,
                "outputs[0] (class logits, level 0) has batch size 0, expected N >= 1"),
    "nan": (poisoned(2, 1, np.nan), ValueError,
            "outputs[2] (class logits, level 2) contains NaN or infinite values (batch item 1)"),
    "inf": (poisoned(11, 0, np.inf), ValueError,
            "outputs[11] (box offsets, level 5) contains NaN or infinite values (batch item 0)"),
    "-inf": (poisoned(6, 1, -np.inf), ValueError,
             "outputs[6] (box offsets, level 0) contains NaN or infinite values (batch item 1)"),
    "float64-overflow": (with_item(8, np.full((1,) + SHAPES[8], 1e300)), ValueError,
                         "outputs[8] (box offsets, level 2) contains NaN or infinite values "
                         "(batch item 0)"),
}


@pytest.fixture(params=["python", "native"])
def pp_class(request):
    if request.param == "native":
        request.getfixturevalue("native")
        from ssd_resnet34 import NativePostProcessor

        return NativePostProcessor
    return PythonPostProcessor


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    raise AssertionError("no TypeError/ValueError raised")


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_bad_outputs(pp_class, case):
    outputs, error_type, message = BAD_OUTPUTS[case]
    pp = pp_class()
    first = outputs[0] if isinstance(outputs, list) and outputs else None
    batch = first.shape[0] if isinstance(first, np.ndarray) and first.ndim == 4 else 1
    contexts = [{"width": 1, "height": 1}] * batch
    for call in (lambda: pp.decode(outputs), lambda: pp(outputs, contexts)):
        got_type, got_message = _error(call)
        assert got_type is error_type
        assert message in got_message


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_native_and_python_raise_identically(native, case):
    from ssd_resnet34 import NativePostProcessor

    outputs = BAD_OUTPUTS[case][0]
    assert _error(lambda: NativePostProcessor().decode(outputs)) == _error(
        lambda: PythonPostProcessor().decode(outputs))


def test_call_checks_structure_then_contexts_then_finiteness(pp_class):
    pp = pp_class()
    with pytest.raises(ValueError, match=r"outputs\[0\] .* has shape"):
        pp(with_item(0, np.zeros((1, 3, 50, 50), np.float32)), None)
    with pytest.raises(TypeError, match="contexts must be a sequence"):
        pp(poisoned(2, 1, np.nan), None)
    with pytest.raises(ValueError, match=r"outputs\[2\] .* NaN"):
        pp(poisoned(2, 1, np.nan), [{"width": 1, "height": 1}] * 2)


def test_first_non_finite_output_is_named(pp_class):
    outputs = poisoned(9, 0, np.nan)
    outputs[4][1, 0, 0, 0] = np.inf  # a lower k, a later batch item: named first (k ascending)
    with pytest.raises(ValueError) as error:
        pp_class().decode(outputs)
    assert str(error.value) == "outputs[4] (class logits, level 4) contains NaN or infinite values (batch item 1)"


def test_large_finite_values_are_accepted(pp_class):
    # Their float32 sum overflows; only a real NaN/inf may be reported.
    outputs = quiet_outputs()
    outputs[6][:] = 3e38
    boxes, labels, scores = pp_class().decode(outputs)[0]
    assert labels.size == 0


BAD_PARAMETERS = [
    ({"score_threshold": -0.01}, ValueError, "score_threshold must be in [0, 1], got -0.01"),
    ({"score_threshold": 1.5}, ValueError, "score_threshold must be in [0, 1]"),
    ({"score_threshold": float("nan")}, ValueError, "score_threshold must be in [0, 1], got nan"),
    ({"score_threshold": "0.5"}, TypeError, "score_threshold must be a real number, got str"),
    ({"score_threshold": True}, TypeError, "score_threshold must be a real number, got bool"),
    ({"iou_threshold": 0.0}, ValueError, "iou_threshold must be in (0, 1], got 0.0"),
    ({"iou_threshold": 1.0001}, ValueError, "iou_threshold must be in (0, 1]"),
    ({"iou_threshold": 1e-50}, ValueError, "iou_threshold must be in (0, 1] and positive as float32"),
    ({"iou_threshold": None}, TypeError, "iou_threshold must be a real number, got NoneType"),
    ({"max_candidates_per_class": 0}, ValueError, "max_candidates_per_class must be >= 1, got 0"),
    ({"max_candidates_per_class": 2.0}, TypeError, "max_candidates_per_class must be an integer"),
    ({"max_detections": -3}, ValueError, "max_detections must be >= 1, got -3"),
    ({"max_detections": False}, TypeError, "max_detections must be an integer, got bool"),
]


@pytest.mark.parametrize("kwargs, error_type, message", BAD_PARAMETERS)
def test_bad_parameters(pp_class, kwargs, error_type, message):
    with pytest.raises(error_type) as error:
        pp_class(**kwargs)
    assert message in str(error.value)


def test_parameters_accept_numpy_scalars_and_limits(pp_class):
    pp = pp_class(score_threshold=np.float32(0.25), iou_threshold=1, max_candidates_per_class=np.int64(1),
                  max_detections=np.int32(7))
    assert (pp.score_threshold, pp.iou_threshold, pp.max_candidates_per_class, pp.max_detections) == (
        0.25, 1.0, 1, 7)
    assert pp_class(score_threshold=0, iou_threshold=1e-6).score_threshold == 0.0
    assert "max_detections=7" in repr(pp)
    with pytest.raises(AttributeError):
        pp.score_threshold = 0.5


BAD_CONTEXTS = [
    (None, 1, TypeError, "contexts must be a sequence of 1 dicts with 'width' and 'height', got NoneType"),
    ("640x480", 1, TypeError, "got str"),
    ({"width": 640, "height": 480}, 2, ValueError,
     "a single context dict is accepted only for batch size 1; the batch has 2 images"),
    ([{"width": 640, "height": 480}], 2, ValueError, "expected 2 contexts (one per image of the batch), got 1"),
    ([{"width": 640, "height": 480}, (640, 480)], 2, TypeError,
     "contexts[1] must be a dict with 'width' and 'height' (pixels), got tuple"),
    ([{"width": 640}], 1, ValueError, "contexts[0] has no 'height' (the original image height in pixels)"),
    ({"height": 480}, 1, ValueError, "context has no 'width'"),
    ([{"width": "640", "height": 480}], 1, TypeError, "contexts[0]['width'] must be a number (pixels), got str"),
    ([{"width": 640, "height": True}], 1, TypeError, "contexts[0]['height'] must be a number (pixels), got bool"),
    ([{"width": 0, "height": 480}], 1, ValueError, "contexts[0]['width'] must be positive and finite, got 0.0"),
    ([{"width": 640, "height": -1}], 1, ValueError, "contexts[0]['height'] must be positive and finite"),
    ([{"width": float("inf"), "height": 1}], 1, ValueError, "contexts[0]['width'] must be positive and finite, got inf"),
    ([{"width": float("nan"), "height": 1}], 1, ValueError, "got nan"),
]


@pytest.mark.parametrize("contexts, batch, error_type, message", BAD_CONTEXTS)
def test_bad_contexts(pp_class, contexts, batch, error_type, message):
    with pytest.raises(error_type) as error:
        pp_class()(quiet_outputs(batch), contexts)
    assert message in str(error.value)


def test_good_contexts_variants(pp_class):
    pp = pp_class()
    assert pp(quiet_outputs(2), ({"width": np.int64(3), "height": 4.5, "id": 7},) * 2) == [[], []]
    assert pp(quiet_outputs(1), {"width": 3, "height": np.float32(4)}) == [[]]


def test_float64_float16_and_non_contiguous_inputs_decode_like_float32(pp_class):
    pp = pp_class()
    outputs = random_head_outputs(1, seed=5, logit_scale=3.0)
    float16 = [o.astype(np.float16) for o in outputs]
    expected = pp.decode([o.astype(np.float32) for o in float16])[0]
    variants = {
        "float64": [o.astype(np.float64) for o in float16],
        "float16": float16,
        "fortran": [np.asfortranarray(o) for o in float16],
        "strided": [np.repeat(o, 2, axis=-1)[..., ::2] for o in float16],
        "tuple": tuple(float16),
    }
    assert all(not v.flags.c_contiguous for v in variants["strided"])
    for name, variant in variants.items():
        got = pp.decode(variant)[0]
        for part, ref in zip(got, expected):
            np.testing.assert_array_equal(part, ref, err_msg=name)
