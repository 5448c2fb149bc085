"""float16 head outputs (docs/postprocess.md, "Head outputs"): the native postprocessor reads
them as they are, converting each value exactly to float32 as it reads; the result is defined
as (and here checked bit for bit to be) the decode of ``astype(np.float32)``, which is what the
numpy reference does. Random, realistic (oracle) and adversarial heads (+-65504, subnormals,
-0.0, ties), batches, non-contiguous and mixed float16/float32 tensors, NaN/inf refused with the
same message as float32."""

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

A = 15130


@pytest.fixture(scope="module")
def Native(native):
    from ssd_resnet34 import NativePostProcessor

    return NativePostProcessor


def half(outputs):
    return [np.asarray(o).astype(np.float16) for o in outputs]


def widened(outputs):
    return [o.astype(np.float32) for o in outputs]


def realistic(seed, batch=1):
    parts = [encode_ground_truth(*random_ground_truth(10, seed=seed + n), seed=seed + n)
             for n in range(batch)]
    return [np.concatenate(p) for p in zip(*parts)]


def adversarial():
    """Logits and offsets at the edges of float16: its largest values, subnormals, -0.0, ties
    between classes and anchors, an overflowing box among tied candidates."""
    logits = np.full((81, A), -20.0, np.float32)
    logits[0] = 5.0
    logits[[1, 2, 3], 100:400] = 5.0
    logits[7, 5000:5100] = 65504.0
    logits[0, 5000:5100] = 65504.0
    logits[0, 9000] = -65504.0
    logits[4, 9000:9010] = 6e-8  # float16 subnormals
    logits[0, 9001:9010] = -0.0
    logits[5, 12000:12100] = 2.0 ** -14 - 2.0 ** -24  # the largest subnormal
    offsets = np.zeros((4, A), np.float32)
    offsets[:, 200:300] = -0.0
    offsets[2, 120] = 1000.0
    offsets[3, 9000] = 65504.0  # exp(0.2 * 65504): the box overflows, the candidate is dropped
    offsets[0, 101:110] = 6e-8
    return pack_head_outputs(logits, offsets)


INPUTS = {
    "random": lambda: random_head_outputs(1, seed=3, logit_scale=3.0),
    "random_dense": lambda: random_head_outputs(1, seed=4),
    "realistic": lambda: realistic(5),
    "realistic_batch": lambda: realistic(7, batch=3),
    "adversarial": adversarial,
}


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("options", [{}, {"classes": [1, 7], "class_agnostic": True}], ids=str)
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_float16_equals_converting_first(Native, native, kind, options):
    heads = half(INPUTS[kind]())
    want = PythonPostProcessor(**options).decode(widened(heads))
    assert sum(len(d) for d in want) > 0
    pp = Native(**options)
    assert_same(pp.decode(heads), want)
    assert_same(pp.decode(widened(heads)), want)
    # The binding itself, without the Python front end.
    raw = native.Postprocessor(**{("class_score_thresholds" if k == "score_threshold" else k): v
                                  for k, v in options.items()})
    got = raw.decode(heads[:6], heads[6:])
    assert_same([tuple(d) for d in got], [tuple(d) for d in want])
    # The reference takes float16 too (it converts first).
    assert_same(PythonPostProcessor(**options).decode(heads), want)


def test_mixed_and_non_contiguous_float16(Native, native):
    """Each tensor may be float16 or float32 on its own (and float64 through the front end):
    every one is converted exactly, so all mixes decode alike."""
    heads = half(realistic(11, batch=2))
    want = PythonPostProcessor().decode(widened(heads))
    mixes = {
        "logits16": heads[:6] + widened(heads[6:]),
        "offsets16": widened(heads[:6]) + heads[6:],
        "alternate": [h if k % 2 else h.astype(np.float32) for k, h in enumerate(heads)],
        "with_float64": [h.astype(np.float64) if k == 3 else h for k, h in enumerate(heads)],
        "strided": [np.repeat(h, 2, axis=-1)[..., ::2] for h in heads],
        "fortran": [np.asfortranarray(h) for h in heads],
    }
    for name, outputs in mixes.items():
        assert_same(Native().decode(outputs), want)
        if name != "with_float64":
            got = native.Postprocessor().decode(outputs[:6], outputs[6:])
            assert_same([tuple(d) for d in got], [tuple(d) for d in want])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("k", [1, 9])
def test_float16_nan_and_inf_are_refused_like_float32(Native, native, value, k):
    heads = half(realistic(3, batch=2))
    heads[k] = heads[k].copy()
    heads[k][1, 2, 1, 1] = value
    with pytest.raises(ValueError) as float32_error:
        PythonPostProcessor().decode(widened(heads))
    message = str(float32_error.value)
    assert message.startswith(f"outputs[{k}] ") and message.endswith("(batch item 1)")
    for decode in (Native().decode, PythonPostProcessor().decode,
                   lambda o: native.Postprocessor().decode(o[:6], o[6:])):
        with pytest.raises(ValueError) as info:
            decode(heads)
        assert str(info.value) == message


def test_float16_beyond_float16_range_is_impossible_but_float32_heads_are_unchanged(Native):
    """float16 cannot hold values beyond 65504: astype(float16) makes them inf, which is
    refused, whereas the same float32 heads decode (the conversion is the caller's choice)."""
    outputs = realistic(2)
    outputs[0] = outputs[0].copy()
    outputs[0][0, 0, 0, 0] = 1e5
    assert len(Native().decode(outputs)[0]) > 0
    with np.errstate(over="ignore"):
        heads = half(outputs)
    with pytest.raises(ValueError, match=r"outputs\[0\].*NaN or infinite"):
        Native().decode(heads)


def test_within_image_split_gives_the_same_detections(Native, native):
    """``within_image`` (README, "Postprocess threads") changes who computes, not what."""
    for outputs in (realistic(13), half(realistic(14)), random_head_outputs(1, seed=9)):
        want = Native().decode(outputs)
        assert_same(Native(within_image=True).decode(outputs), want)
    assert Native().within_image is False and Native(within_image=True).within_image is True
    assert native.Postprocessor(within_image=True).within_image is True
    with pytest.raises(TypeError, match="within_image must be a bool, got int"):
        Native(within_image=1)
