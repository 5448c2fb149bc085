"""Property tests (hypothesis) of the Python API of both postprocessors (issue 17, fuzzing):

- on generated head outputs (background-dominant logits with patches of generated values:
  ties across classes and anchors, extreme values up to +-3e38, subnormals, -0.0, logits
  straddling the threshold; float32 or float16) and generated parameters and options, the
  native postprocessor returns exactly (bit for bit) what the numpy reference returns;
- on generated malformed inputs (wrong count, type, dtype, rank, shape, batch size, NaN/inf,
  bad contexts), both raise the same clear ``TypeError``/``ValueError`` with the same message,
  and nothing else (no panic crosses the FFI: it would be a ``RuntimeError``).

Bounded for CI (about 10 s): ``SSD_RESNET34_PROPERTY_EXAMPLES=N`` (or ``--hypothesis-long``
semantics through that variable) raises the number of examples for a long run, e.g.
``SSD_RESNET34_PROPERTY_EXAMPLES=2000 pytest tests/postprocess/test_postprocess_properties.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ssd_resnet34 import PythonPostProcessor
from ssd_resnet34.evaluation.accuracy.oracle import pack_head_outputs

A = 15130
LONG = int(os.environ.get("SSD_RESNET34_PROPERTY_EXAMPLES", "0"))


def bounded(examples: int):
    """``settings`` with ``examples`` (or the long-run count), no deadline (the reference takes
    ~0.2 s a decode), derandomized in CI so that a failure reproduces."""
    return settings(max_examples=LONG or examples, deadline=None, derandomize=not LONG,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def Native(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor


SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.944, 2.945, 3.0e38, -3.0e38, 1.0e38, -1.0e38, 65504.0,
           -65504.0, 1e-45, -1e-45, 1.1754942e-38, 6e-8, 30000.0, -30000.0, 700.0, -700.0, 88.7]
values = st.one_of(st.sampled_from(SPECIAL),
                   st.floats(-50, 50, width=32, allow_nan=False, allow_infinity=False),
                   st.floats(width=32, allow_nan=False, allow_infinity=False))

# A patch: rows (classes) x a window of anchors set to one value (ties) or to values drawn
# per element, optionally in the background row too.
patch = st.tuples(
    st.integers(0, A - 1),                                   # first anchor
    st.integers(1, 64),                                      # anchors
    st.lists(st.integers(0, 80), min_size=1, max_size=6),    # classes (0: the background)
    st.one_of(values, st.lists(values, min_size=1, max_size=32)),
)
offset_patch = st.tuples(st.integers(0, A - 1), st.integers(1, 64), st.integers(0, 3), values)


@st.composite
def heads(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    background = draw(st.sampled_from([0.0, 4.0, 8.0, 30.0]))
    logits = (rng.standard_normal((81, A), dtype=np.float32) * np.float32(scale))
    logits[0] += np.float32(background)
    offsets = rng.normal(0.0, draw(st.sampled_from([0.0, 0.3, 2.0])), (4, A)).astype(np.float32)
    for first, count, classes, value in draw(st.lists(patch, max_size=6)):
        window = slice(first, min(A, first + count))
        n = window.stop - window.start
        for c in classes:
            logits[c, window] = (value if isinstance(value, float)
                                 else np.resize(np.array(value, np.float32), n))
    for first, count, k, value in draw(st.lists(offset_patch, max_size=4)):
        offsets[k, first:first + count] = value
    outputs = pack_head_outputs(logits, offsets)
    if draw(st.booleans()):
        # float16 heads (values beyond 65504 become inf: those are refused, checked below).
        with np.errstate(over="ignore"):
            outputs = [o.astype(np.float16) for o in outputs]
    return outputs


@st.composite
def parameters(draw):
    p = {
        "score_threshold": draw(st.one_of(st.sampled_from([0.0, 0.05, 0.5, 1.0, 0.999999]),
                                          st.floats(0, 1))),
        "iou_threshold": draw(st.one_of(st.sampled_from([0.5, 1.0, 1e-6]),
                                        st.floats(0, 1, exclude_min=True))),
        # Bounded: with threshold 0 every (anchor, class) pair is a candidate, and the
        # reference's NMS is quadratic in a class's candidates (huge limits: other tests).
        "max_candidates_per_class": draw(st.sampled_from([1, 2, 200, 400])),
        "max_detections": draw(st.sampled_from([1, 7, 200, 300])),
    }
    if draw(st.booleans()):
        p["classes"] = draw(st.sets(st.integers(1, 80), min_size=1, max_size=5))
    if draw(st.booleans()):
        p["score_threshold"] = draw(st.dictionaries(st.integers(1, 80), st.floats(0, 1),
                                                    min_size=1, max_size=4))
    p["class_agnostic"] = draw(st.booleans())
    return p


def decode_both(native_pp, python_pp, outputs):
    """(native result, reference result), each a list of arrays or the exception raised."""
    results = []
    for pp in (native_pp, python_pp):
        try:
            results.append(pp.decode(outputs))
        except (TypeError, ValueError) as error:
            results.append(error)
    return results


@bounded(30)
@given(outputs=heads(), params=parameters())
def test_native_equals_reference_on_generated_heads(Native, outputs, params):
    got, want = decode_both(Native(**params), PythonPostProcessor(**params), outputs)
    if isinstance(want, Exception):
        # Only non-finite values (float16 overflow of a patch) make valid-shaped heads fail.
        assert any(not np.isfinite(o).all() for o in outputs)
        assert type(got) is type(want) and str(got) == str(want)
        return
    assert not isinstance(got, Exception), got
    assert len(got) == len(want) == 1
    hypothesis.event("detections: " + ("none" if len(want[0]) == 0 else
                                       "1-9" if len(want[0]) < 10 else "10 or more"))
    for g, w in zip(got[0], want[0]):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# Malformed inputs: one mutation of valid heads.
MUTATIONS = ["count", "not_a_list", "not_an_array", "dtype", "rank", "shape", "batch",
             "nan", "inf", "masked", "empty_batch", "int_dtype", "bool_dtype"]


@st.composite
def malformed(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    logits = rng.standard_normal((81, A), dtype=np.float32)
    logits[0] += 4.0
    outputs = pack_head_outputs(logits, rng.normal(0, 0.3, (4, A)).astype(np.float32))
    if draw(st.booleans()):
        outputs = [o.astype(np.float16) for o in outputs]
    kind = draw(st.sampled_from(MUTATIONS))
    k = draw(st.integers(0, 11))
    o = list(outputs)
    if kind == "count":
        n = draw(st.sampled_from([0, 1, 11, 13]))
        o = (o * 2)[:n]
    elif kind == "not_a_list":
        return draw(st.sampled_from([None, 3, "outputs", {"a": 1}])), kind
    elif kind == "not_an_array":
        o[k] = draw(st.sampled_from([None, 1.5, o[k].tolist()[0][:1], "x"]))
    elif kind in ("dtype", "int_dtype", "bool_dtype"):
        o[k] = o[k].astype({"dtype": np.complex64, "int_dtype": np.int32, "bool_dtype": bool}[kind])
    elif kind == "rank":
        o[k] = o[k][0]
    elif kind == "shape":
        o[k] = o[k][..., :-1]
    elif kind == "batch":
        o[k] = np.concatenate([o[k], o[k]])
    elif kind in ("nan", "inf"):
        o[k] = o[k].copy()
        flat = o[k].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = np.nan if kind == "nan" else -np.inf
    elif kind == "masked":
        o[k] = np.ma.masked_array(o[k])
    elif kind == "empty_batch":
        o = [t[:0] for t in o]
    return o, kind


@bounded(50)
@given(case=malformed())
def test_every_error_is_a_clear_python_exception(Native, case):
    outputs, kind = case
    got, want = decode_both(Native(), PythonPostProcessor(), outputs)
    hypothesis.event(f"mutation: {kind}")
    assert isinstance(want, (TypeError, ValueError)), (kind, want)
    assert type(got) is type(want) and str(got) == str(want), (kind, got, want)
    message = str(want)
    assert "outputs" in message, message


@bounded(30)
@given(case=malformed(), contexts=st.one_of(
    st.none(), st.just({"width": 0, "height": 5}), st.just([{"width": 3}]),
    st.just({"width": float("nan"), "height": 1}), st.just([{"width": 2, "height": 2}] * 2)))
def test_errors_with_contexts_are_the_same(Native, case, contexts):
    outputs, _ = case
    results = []
    for pp in (Native(), PythonPostProcessor()):
        try:
            results.append(pp(outputs, contexts))
        except (TypeError, ValueError) as error:
            results.append(error)
    got, want = results
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
    else:
        assert got == want
