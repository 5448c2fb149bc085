"""``_native.Postprocessor``'s count parameters: any Python integer >= 1 is accepted, huge ones
(beyond 64 bits too) meaning "no limit"; values < 1 raise ``ValueError`` and non-integers
``TypeError``, each naming the parameter."""

from __future__ import annotations

import numpy as np
import pytest

from ssd_resnet34.evaluation.accuracy import oracle

COUNTS = ("max_candidates_per_class", "max_detections")
U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def dense():
    """Random logits: hundreds of candidates in every class, so both limits bind at 200."""
    return oracle.random_head_outputs(1, seed=21)


def decode(native, outputs, **params):
    return native.Postprocessor(**params).decode(outputs[:6], outputs[6:])[0]


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value, read_back", [
    (1, 1), (2**31, 2**31), (2**63 - 1, 2**63 - 1), (2**63, 2**63), (U64_MAX, U64_MAX),
    (2**64, U64_MAX), (10**30, U64_MAX), (np.int64(7), 7), (np.uint64(2**63), 2**63),
])
def test_any_integer_at_least_one_is_accepted(native, name, value, read_back):
    pp = native.Postprocessor(**{name: value})
    assert getattr(pp, name) == read_back
    assert f"{name}={read_back}" in repr(pp)


@pytest.mark.parametrize("huge", [2**63, 10**30])
def test_huge_counts_mean_no_limit(native, dense, huge):
    limited = decode(native, dense)
    assert len(limited[2]) == 200
    unlimited = decode(native, dense, max_candidates_per_class=huge, max_detections=huge)
    # As many as NMS keeps from every candidate: the same as a limit above the candidate count.
    enough = decode(native, dense, max_candidates_per_class=15130, max_detections=15130 * 80)
    assert len(unlimited[2]) > 1000
    for got, expected in zip(unlimited, enough):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value", [0, -1, -(2**63), -(2**64), -(10**30)])
def test_counts_below_one_raise_value_error(native, name, value):
    with pytest.raises(ValueError, match=rf"^{name} = {value} is out of range; expected an integer >= 1$"):
        native.Postprocessor(**{name: value})


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("value, type_name", [
    (2.5, "float"), (200.0, "float"), ("200", "str"), (None, "NoneType"), ([200], "list"),
])
def test_non_integer_counts_raise_type_error(native, name, value, type_name):
    with pytest.raises(TypeError, match=rf"^{name} is a {type_name}; expected an integer >= 1$"):
        native.Postprocessor(**{name: value})
