"""Both postprocessors agree on unusual arguments: masked arrays, ndarray subclasses, numbers too
large for a float; bad arguments raise only TypeError/ValueError naming the parameter."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_resnet34 import PythonPostProcessor
from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth, random_ground_truth
from ssd_resnet34.layout import HEAD_SHAPES


@pytest.fixture(scope="module")
def both(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor(), PythonPostProcessor()


def _outcome(call):
    try:
        return "ok", call()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error), str(error)


def _realistic():
    boxes, labels = random_ground_truth(8, seed=3)
    return encode_ground_truth(boxes, labels, seed=3)


def test_masked_arrays_are_refused_by_both(both):
    outputs = _realistic()
    masked = np.ma.masked_array(outputs[2], mask=np.zeros_like(outputs[2], dtype=bool))
    masked.mask[0, 5, 1, 1] = True
    masked.data[0, 5, 1, 1] = np.nan  # the case: a NaN under the mask
    bad = outputs[:2] + [masked] + outputs[3:]
    results = [_outcome(lambda pp=pp: pp.decode(bad)) for pp in both]
    assert results[0] == results[1]
    assert results[0][0] is TypeError
    assert "outputs[2] (class logits, level 2) is a numpy.ma.MaskedArray" in results[0][1]
    assert "array.filled(value)" in results[0][1]
    # Without any mask it is refused all the same: a mask cannot be honoured.
    plain_masked = outputs[:5] + [np.ma.masked_array(outputs[5])] + outputs[6:]
    assert _outcome(lambda: both[0].decode(plain_masked))[0] is TypeError


def test_other_ndarray_subclasses_decode_like_plain_arrays(both, tmp_path):
    outputs = _realistic()
    stored = np.lib.format.open_memmap(tmp_path / "o0.npy", mode="w+", dtype=np.float32, shape=outputs[0].shape)
    stored[...] = outputs[0]
    mapped = [stored] + outputs[1:]
    for pp in both:
        got, expected = pp.decode(mapped)[0], pp.decode(outputs)[0]
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_context_sizes_too_large_for_a_float(both, value):
    outputs = [np.zeros((1, *shape), np.float32) for shape in HEAD_SHAPES]
    results = [_outcome(lambda pp=pp: pp(outputs, {"width": value, "height": 10})) for pp in both]
    assert results[0] == results[1]
    assert results[0][0] is ValueError
    assert "context['width'] must be positive and finite, got" in results[0][1]


@pytest.mark.parametrize("name", ["score_threshold", "iou_threshold"])
def test_thresholds_too_large_for_a_float(both, name):
    for pp in both:
        with pytest.raises(ValueError, match=rf"^{name} must be in .*, got inf$"):
            type(pp)(**{name: 10**400})


@pytest.mark.parametrize("value", [2**63, 10**30, np.int64(2**62)])
def test_huge_counts_mean_no_limit_in_both(both, value):
    outputs = _realistic()
    decoded = []
    for pp_class in map(type, both):
        pp = pp_class(max_detections=value, max_candidates_per_class=value)
        assert pp.max_detections == int(value)
        decoded.append(pp.decode(outputs)[0])
    unlimited = both[1].decode(outputs)[0]  # the defaults (200) do not bind on this input either
    for got in decoded:
        for a, b in zip(got, unlimited):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_detections": 0}, ValueError, "max_detections must be >= 1"),
    ({"max_candidates_per_class": -(2**70)}, ValueError, "max_candidates_per_class must be >= 1"),
    ({"max_detections": 2.0}, TypeError, "max_detections must be an integer"),
])
def test_bad_counts_name_the_parameter_in_both(both, kwargs, error, message):
    for pp_class in map(type, both):
        with pytest.raises(error, match=message):
            pp_class(**kwargs)
