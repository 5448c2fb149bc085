"""Binding-level behaviour of ``ssd_resnet34._native``: parameters, shapes and dtypes of the
results, error types and messages, non-contiguous inputs, threads and GIL release, ``nms``,
``default_boxes`` and ``normalize_image``. Numerical agreement with the numpy reference is in
test_postprocess_native.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth, random_ground_truth, random_head_outputs


@pytest.fixture(scope="module")
def realistic():
    """Head outputs of a near-perfect model for 8 random objects, batch 1."""
    boxes, labels = random_ground_truth(8, seed=3)
    return encode_ground_truth(boxes, labels, seed=3)


@pytest.fixture(scope="module")
def realistic_batch():
    parts = [encode_ground_truth(*random_ground_truth(6, seed=s), seed=s) for s in range(3)]
    return [np.concatenate(p, axis=0) for p in zip(*parts)]


def decode(native, outputs, **params):
    return native.Postprocessor(**params).decode(outputs[:6], outputs[6:])


def assert_same_detections(a, b):
    assert len(a) == len(b)
    for (ba, la, sa), (bb, lb, sb) in zip(a, b):
        np.testing.assert_array_equal(ba, bb)
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(sa, sb)


# --- Postprocessor parameters -------------------------------------------------------------


def test_defaults_and_getters(native):
    pp = native.Postprocessor()
    assert (pp.score_threshold, pp.iou_threshold) == (0.05, 0.5)
    assert (pp.max_candidates_per_class, pp.max_detections) == (200, 200)
    pp = native.Postprocessor(score_threshold=0.3, iou_threshold=0.45, max_candidates_per_class=7,
                              max_detections=9)
    assert (pp.score_threshold, pp.iou_threshold, pp.max_candidates_per_class, pp.max_detections) == (
        0.3, 0.45, 7, 9)
    assert "score_threshold=0.3" in repr(pp)
    with pytest.raises(AttributeError):
        pp.score_threshold = 0.1


@pytest.mark.parametrize(
    "params, name",
    [
        ({"score_threshold": -0.01}, "score_threshold"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": float("nan")}, "score_threshold"),
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.01}, "iou_threshold"),
        ({"iou_threshold": 1e-50}, "positive as float32"),
        ({"max_candidates_per_class": 0}, "max_candidates_per_class"),
        ({"max_candidates_per_class": -5}, "max_candidates_per_class"),
        ({"max_detections": 0}, "max_detections"),
    ],
)
def test_bad_parameters_raise_value_error(native, params, name):
    with pytest.raises(ValueError, match=name):
        native.Postprocessor(**params)


def test_non_numeric_parameters_raise_type_error(native):
    with pytest.raises(TypeError):
        native.Postprocessor(score_threshold="0.05")
    with pytest.raises(TypeError):
        native.Postprocessor(max_detections=2.5)


def test_parameters_take_effect(native, realistic):
    full = decode(native, realistic)[0]
    assert len(full[2]) > 10
    capped = decode(native, realistic, max_detections=5)[0]
    np.testing.assert_array_equal(capped[2], full[2][:5])
    high = decode(native, realistic, score_threshold=0.5)[0]
    assert np.all(high[2] > np.float32(0.5)) and len(high[2]) < len(full[2])
    one = decode(native, realistic, max_candidates_per_class=1)[0]
    assert len(one[1]) == len(np.unique(one[1]))


# --- decode: results ------------------------------------------------------------------------


def test_result_types_and_order(native, realistic):
    dets = decode(native, realistic)
    assert isinstance(dets, list) and len(dets) == 1
    boxes, labels, scores = dets[0]
    k = len(scores)
    assert k > 0
    assert boxes.dtype == np.float32 and boxes.shape == (k, 4) and boxes.flags.c_contiguous
    assert labels.dtype == np.int64 and labels.shape == (k,)
    assert scores.dtype == np.float32 and scores.shape == (k,)
    assert labels.min() >= 1 and labels.max() <= 80
    assert np.all(scores > np.float32(0.05)) and np.all(np.diff(scores) <= 0)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])


def test_tuple_inputs_and_batch(native, realistic_batch):
    pp = native.Postprocessor()
    batch = pp.decode(tuple(realistic_batch[:6]), tuple(realistic_batch[6:]))
    assert len(batch) == 3
    for n in range(3):
        single = pp.decode([t[n:n + 1] for t in realistic_batch[:6]], [t[n:n + 1] for t in realistic_batch[6:]])
        assert_same_detections([batch[n]], single)


def test_empty_batch_and_no_detections(native, realistic):
    empty = [np.zeros((0,) + t.shape[1:], np.float32) for t in realistic]
    assert decode(native, empty) == []
    background = [np.zeros_like(t) for t in realistic]  # uniform logits: every score 1/81 < 0.05
    boxes, labels, scores = decode(native, background)[0]
    assert boxes.shape == (0, 4) and labels.shape == (0,) and scores.shape == (0,)


def test_non_contiguous_inputs_give_the_same_result(native, realistic):
    expected = decode(native, realistic)
    fortran = [np.asfortranarray(t) for t in realistic]
    assert not fortran[0].flags.c_contiguous
    assert_same_detections(decode(native, fortran), expected)
    # Every other column of a wider array (a strided view), and a transposed-back copy.
    strided = []
    for t in realistic:
        wide = np.zeros(t.shape[:3] + (2 * t.shape[3],), np.float32)
        wide[..., ::2] = t
        strided.append(wide[..., ::2])
    assert not strided[0].flags.c_contiguous
    assert_same_detections(decode(native, strided), expected)
    transposed = [t.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2) for t in realistic]
    assert_same_detections(decode(native, transposed), expected)


def test_read_only_inputs_are_accepted(native, realistic):
    frozen = [t.copy() for t in realistic]
    for t in frozen:
        t.flags.writeable = False
    assert_same_detections(decode(native, frozen), decode(native, realistic))


# --- decode: errors ---------------------------------------------------------------------------


def test_wrong_count(native, realistic):
    pp = native.Postprocessor()
    with pytest.raises(ValueError, match=r"got 5 class logits tensors; expected 6"):
        pp.decode(realistic[:5], realistic[6:])
    with pytest.raises(ValueError, match=r"got 7 box offsets tensors; expected 6"):
        pp.decode(realistic[:6], realistic[6:] + [realistic[11]])


def test_not_a_list(native, realistic):
    pp = native.Postprocessor()
    with pytest.raises(TypeError, match="class_logits"):
        pp.decode(realistic[0], realistic[6:])
    with pytest.raises(TypeError, match=r"outputs\[7\] \(box offsets, level 1\) is a list"):
        pp.decode(realistic[:6], [realistic[6], realistic[7].tolist()] + realistic[8:])


def test_wrong_shape_message(native, realistic):
    bad = list(realistic)
    bad[3] = np.zeros((1, 486, 8, 7), np.float32)
    with pytest.raises(ValueError) as info:
        decode(native, bad)
    assert str(info.value) == "outputs[3] (class logits, level 3) has shape (1, 486, 8, 7); expected (N, 486, 7, 7)"
    bad = list(realistic)
    bad[10] = realistic[10][0]
    with pytest.raises(ValueError, match=r"outputs\[10\] \(box offsets, level 4\) has shape \(16, 3, 3\)"):
        decode(native, bad)


def test_batch_mismatch(native, realistic):
    bad = list(realistic)
    bad[7] = np.concatenate([realistic[7]] * 2)
    with pytest.raises(ValueError, match=r"outputs\[7\] \(box offsets, level 1\) has batch size 2; expected 1"):
        decode(native, bad)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint16])
def test_wrong_dtype_is_type_error(native, realistic, dtype):
    # float16 is read natively (test_postprocess_float16.py); other dtypes are refused.
    bad = list(realistic)
    bad[2] = realistic[2].astype(dtype)
    with pytest.raises(TypeError, match=rf"outputs\[2\] \(class logits, level 2\) has dtype {np.dtype(dtype).name}; expected float32 or float16$"):
        decode(native, bad)


def test_byte_swapped_float32_is_type_error(native, realistic):
    bad = list(realistic)
    bad[0] = realistic[0].astype(">f4")
    with pytest.raises(TypeError, match=r"outputs\[0\]"):
        decode(native, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(native, realistic_batch, value):
    bad = [t.copy() for t in realistic_batch]
    bad[8][1, 5, 2, 3] = value
    with pytest.raises(ValueError) as info:
        decode(native, bad)
    assert str(info.value) == "outputs[8] (box offsets, level 2) contains NaN or infinite values (batch item 1)"
    # A lower outputs[k] is reported first, with its lowest bad item.
    bad[4][2, 0, 0, 0] = value
    bad[4][1, 300, 1, 1] = value
    with pytest.raises(ValueError, match=r"^outputs\[4\] \(class logits, level 4\) contains NaN or infinite values \(batch item 1\)$"):
        decode(native, bad)


# --- threads and the GIL ------------------------------------------------------------------------


def test_concurrent_decodes_equal_serial(native, realistic_batch):
    pp = native.Postprocessor()
    inputs = [realistic_batch, random_head_outputs(2, seed=5, logit_scale=3.0)]
    expected = [pp.decode(x[:6], x[6:]) for x in inputs]
    results = {}
    errors = []

    def work(i):
        try:
            for _ in range(3):
                results.setdefault(i, []).append(pp.decode(inputs[i % 2][:6], inputs[i % 2][6:]))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, runs in results.items():
        for dets in runs:
            assert_same_detections(dets, expected[i % 2])


def test_decode_releases_the_gil(native):
    # Random logits: every anchor needs a full softmax, milliseconds per image; the batch is
    # repeated until one decode lasts about 0.1 s, whatever the machine's speed.
    heavy = random_head_outputs(6, seed=1)
    pp = native.Postprocessor()
    start = time.perf_counter()
    pp.decode(heavy[:6], heavy[6:])
    repeat = int(np.ceil(0.1 / max(time.perf_counter() - start, 1e-3)))
    heavy = [np.concatenate([t] * repeat) for t in heavy]
    window = {}

    def work():
        window["start"] = time.perf_counter()
        pp.decode(heavy[:6], heavy[6:])
        window["end"] = time.perf_counter()

    ticks = []
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    start, end = window["start"], window["end"]
    assert end - start > 0.03, "decode too quick to observe"
    # The main thread keeps running Python code while the native decode works; with the GIL
    # held, it would stall for the whole native part (one gap nearly as long as the decode).
    inside = [start] + [t for t in ticks if start < t < end] + [end]
    longest = max(b - a for a, b in zip(inside, inside[1:]))
    assert longest < 0.5 * (end - start), f"main thread stalled {longest:.3f} s of a {end - start:.3f} s decode"


# --- default_boxes ---------------------------------------------------------------------------------


def test_default_boxes(native):
    boxes = native.default_boxes()
    assert boxes.shape == (15130, 4) and boxes.dtype == np.float32 and boxes.flags.c_contiguous
    np.testing.assert_array_equal(boxes[0], np.float32([0.01, 0.01, 0.07, 0.07]))
    assert boxes.min() >= 0 and boxes.max() <= 1
    # Level 5, alpha-2 wide box: w = 0.87 * sqrt(2) clamped to 1.
    assert boxes[15094 + 18, 2] == 1.0
    boxes[:] = 0  # a fresh copy each call
    assert native.default_boxes()[0, 2] == np.float32(0.07)


# --- nms -----------------------------------------------------------------------------------------------


def test_nms_order_and_suppression(native):
    boxes = np.float32([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 1, 0.5], [0.5, 0.5, 0.5, 0.5]])
    scores = np.float32([0.5, 0.9, 0.5, 0.7, 0.8])
    kept = native.nms(boxes, scores, 0.5)
    assert kept.dtype == np.int64
    # Order: 1 (0.9), 4 (0.8, zero area, never suppressed), 3 (0.7: IoU 0.5 with box 1 -> out),
    # 0 (0.5, identical to 1 -> out), 2 (0.5, disjoint).
    np.testing.assert_array_equal(kept, [1, 4, 2])
    np.testing.assert_array_equal(native.nms(boxes, scores, 0.51), [1, 4, 3, 2])
    assert native.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)


def test_nms_accepts_views(native):
    rng = np.random.default_rng(0)
    xy = rng.random((50, 2), dtype=np.float32)
    boxes = np.concatenate([xy, xy + 0.2], axis=1)
    scores = rng.random(50, dtype=np.float32)
    expected = native.nms(boxes, scores, 0.3)
    wide = np.zeros((50, 8), np.float32)
    wide[:, ::2] = boxes
    np.testing.assert_array_equal(native.nms(wide[:, ::2], np.repeat(scores, 2)[::2], 0.3), expected)


def test_nms_errors(native):
    b = np.float32([[0, 0, 1, 1]])
    s = np.float32([0.5])
    with pytest.raises(TypeError, match="boxes"):
        native.nms(b.astype(np.float64), s, 0.5)
    with pytest.raises(TypeError, match="scores"):
        native.nms(b, [0.5], 0.5)
    with pytest.raises(ValueError, match=r"boxes has shape \(1, 3\); expected \(K, 4\)"):
        native.nms(b[:, :3], s, 0.5)
    with pytest.raises(ValueError, match="same number"):
        native.nms(b, np.float32([0.5, 0.4]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        native.nms(b, np.float32([np.nan]), 0.5)
    for t in (0.0, 1.5, float("nan"), 1e-50):
        with pytest.raises(ValueError, match="iou_threshold"):
            native.nms(b, s, t)


# --- normalize_image ---------------------------------------------------------------------------------


def mlperf_normalize(image_bgr, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """MLCommons' pre_process_coco_resnet34 on a float32 RGB image, then HWC -> CHW."""
    img = image_bgr[..., ::-1].astype(np.float32)
    img = img / 255.0 - np.array(mean, dtype=np.float32)
    img = img / np.array(std, dtype=np.float32)
    return img.transpose(2, 0, 1)


def test_normalize_image_is_bit_exact(native):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)
    image[0, :3] = [[0, 0, 0], [255, 255, 255], [1, 128, 254]]
    batch = np.full((2, 3, 37, 61), np.nan, np.float32)
    assert native.normalize_image(image, batch[1]) is None
    expected = mlperf_normalize(image)
    assert batch[1].tobytes() == np.ascontiguousarray(expected).tobytes()
    assert np.isnan(batch[0]).all()
    out = np.empty((3, 37, 61), np.float32)
    native.normalize_image(image, out, mean=[0.5, 0.25, 0.0], std=(1.0, 2.0, 0.5))
    assert out.tobytes() == np.ascontiguousarray(mlperf_normalize(image, (0.5, 0.25, 0.0), (1.0, 2.0, 0.5))).tobytes()


def test_normalize_image_errors(native):
    image = np.zeros((4, 5, 3), np.uint8)
    out = np.zeros((3, 4, 5), np.float32)
    with pytest.raises(TypeError, match="image"):
        native.normalize_image(image.astype(np.float32), out)
    with pytest.raises(TypeError, match="out"):
        native.normalize_image(image, out.astype(np.float64))
    with pytest.raises(ValueError, match=r"image has shape \(4, 5\); expected \(H, W, 3\)"):
        native.normalize_image(image[..., 0], out)
    with pytest.raises(ValueError, match=r"out has shape \(3, 5, 4\); expected \(3, 4, 5\)"):
        native.normalize_image(image, np.zeros((3, 5, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        native.normalize_image(np.zeros((4, 10, 3), np.uint8)[:, ::2], out)
    with pytest.raises(ValueError, match="C-contiguous"):
        native.normalize_image(image, np.zeros((3, 4, 10), np.float32)[:, :, ::2])
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out cannot be written"):
        native.normalize_image(image, frozen)
    with pytest.raises(ValueError, match="std"):
        native.normalize_image(image, out, std=(0.2, 0.0, 0.2))
    # Issue 15: a subnormal, zero or non-finite std, or values that overflow, gave ±inf silently.
    for std in ((1e-40, 0.2, 0.2), (0.2, 1e-50, 0.2), (0.2, 0.2, float("inf")), (0.2, float("nan"), 0.2)):
        with pytest.raises(ValueError, match=r"std = .* must be 3 finite non-zero values, each a normal float32"):
            native.normalize_image(image, out, std=std)
    with pytest.raises(ValueError, match=r"overflow float32 for channel 0"):
        native.normalize_image(image, out, mean=(3e38, 0.0, 0.0), std=(1e-3, 1.0, 1.0))
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="mean has 2 values"):
        native.normalize_image(image, out, mean=(0.2, 0.2))
