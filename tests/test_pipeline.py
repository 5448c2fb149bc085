"""The pipelined detector: same results and order as the serial loop, errors per image, bounded
memory, and a clean shutdown (no thread left behind).

The engine is a real onnxruntime session over a tiny model with the 12 heads' shapes
(``_models.tiny_heads_model``), so these tests run in seconds; the synthetic SSD-ResNet34 itself
goes through the same code in tests/test_detector.py.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from _models import tiny_heads_model

from ssd_resnet34 import engines
from ssd_resnet34.detector import SSDResNet34
from ssd_resnet34.image import ImageError
from ssd_resnet34.pipeline import run_pipeline

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SSDResNet34:
    folder = tmp_path_factory.mktemp("tiny")
    return SSDResNet34(tiny_heads_model(folder / "tiny.onnx"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list:
    """Good files, a bad file, a missing file, arrays (one of a bad dtype), in one list."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    items: list = []
    for k in range(7):
        image = (rng.random((90 + 13 * k, 120 + 7 * k, 3)) * 255).astype(np.uint8)
        path = folder / f"img{k}.png"
        cv2.imwrite(str(path), image)
        items.append(str(path))
    (folder / "broken.jpg").write_bytes(b"not an image")
    items.insert(2, str(folder / "broken.jpg"))
    items.insert(5, str(folder / "missing.png"))
    items.append((rng.random((64, 48, 3)) * 255).astype(np.uint8))
    items.append(np.zeros((10, 10, 3), np.float32))  # wrong dtype
    items.append((rng.random((33, 200)) * 255).astype(np.uint8))  # grayscale array
    return items


def _summary(outcomes):
    return [(o.index, type(o.error).__name__ if o.error else None,
             [(r.index, r.score, tuple(r.boundingbox)) for r in (o.results or [])]) for o in outcomes]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_pipelined_equals_serial(tiny, inputs, batch_size):
    with engines.create(tiny) as engine:
        serial = list(tiny.iter_detect(inputs, engine, batch_size, depth=0))
        pipelined = list(tiny.iter_detect(inputs, engine, batch_size))
        deep = list(tiny.iter_detect(iter(inputs), engine, batch_size, depth=7))
    assert [o.index for o in serial] == list(range(len(inputs)))
    assert _summary(pipelined) == _summary(serial) == _summary(deep)
    errors = {o.index: o.error for o in serial if o.error is not None}
    assert sorted(errors) == [2, 5, len(inputs) - 2]
    assert isinstance(errors[2], ImageError) and "not an image" in str(errors[2])
    assert isinstance(errors[5], ImageError) and "no such file" in str(errors[5])
    assert isinstance(errors[len(inputs) - 2], TypeError) and "uint8" in str(errors[len(inputs) - 2])
    assert sum(len(o.results) for o in serial if o.ok) > 0
    # The same as the manual preprocess -> run -> postprocess of each good input alone.
    with engines.create(tiny) as engine:
        for outcome in serial:
            if outcome.ok:
                batch, contexts = tiny.preprocess(outcome.source)
                assert tiny.postprocessor(engine.run(batch), contexts)[0] == outcome.results


def test_detect_raises_the_first_bad_input(tiny, inputs):
    with pytest.raises(ImageError, match="broken.jpg: not an image"):
        tiny.detect(inputs)
    assert len(tiny.detect(inputs[:2])) == 2


def _threads() -> set:
    return {t.ident for t in threading.enumerate()}


def test_no_thread_is_left_behind(tiny, inputs):
    before = _threads()
    assert len(list(tiny.iter_detect(inputs, batch_size=2))) == len(inputs)  # own engine, closed at the end
    assert _threads() == before
    stream = tiny.iter_detect(inputs, batch_size=1)
    next(stream)
    next(stream)
    stream.close()  # the consumer stops early (break, an exception)
    assert _threads() == before


def test_stopping_early_waits_for_running_batches_and_cancels_the_rest(tiny, inputs):
    pulled = []

    def lazily():
        for item in inputs * 20:
            pulled.append(item)
            yield item

    with engines.create(tiny) as engine:
        stream = tiny.iter_detect(lazily(), engine, batch_size=2, depth=3)
        first = next(stream)
        assert first.index == 0
        # Memory is bounded: only `depth` batches (plus the one being formed) are taken ahead.
        assert len(pulled) <= (3 + 1) * 2
        stream.close()
        count = len(pulled)
        time.sleep(0.2)
        assert len(pulled) == count  # nothing runs on after close
        assert engine.run(tiny.preprocess(inputs[0])[0])[0].shape[0] == 1  # the engine is still usable


def test_engine_errors_are_raised_after_cleanup(tiny, inputs):
    before = _threads()
    engine = engines.create(tiny)
    engine.close()
    with pytest.raises(RuntimeError, match="is closed"):
        list(run_pipeline(inputs, engine, tiny.postprocessor, batch_size=2))
    assert _threads() == before


def test_bad_batch_size(tiny):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            list(tiny.iter_detect([], batch_size=bad))


# -- one image or many, one batch builder (issue 14 item 3, issue 15 item 12) ----------------
def test_a_single_encoded_image_bytes_or_path_is_one_image(tiny, inputs, tmp_path):
    """``iter_detect`` and ``preprocess`` take one ``EncodedImage``, ``bytes`` or path as one
    image; an ``EncodedImage`` is decoded from its bytes, never re-read from its path."""
    from ssd_resnet34.image import EncodedImage, preprocess

    path = inputs[0]
    data = open(path, "rb").read()
    elsewhere = str(tmp_path / "not-on-disk.png")  # the path an EncodedImage names need not exist
    expected_batch, _ = preprocess(path)
    with engines.create(tiny) as engine:
        expected = list(tiny.iter_detect(path, engine))
        assert len(expected) == 1 and expected[0].ok
        for single in (EncodedImage(elsewhere, data), data, bytearray(data), memoryview(data)):
            got = list(tiny.iter_detect(single, engine))
            assert len(got) == 1 and got[0].ok, got[0].error
            assert got[0].detections == expected[0].detections and got[0].results == expected[0].results
            batch, contexts = preprocess(single)
            np.testing.assert_array_equal(batch, expected_batch)
            assert (contexts[0]["width"], contexts[0]["height"]) == (expected[0].context["width"],
                                                                     expected[0].context["height"])
        assert list(tiny.iter_detect(EncodedImage(elsewhere, data), engine))[0].context["path"] == elsewhere
        bad = list(tiny.iter_detect(b"not an image", engine))
        assert len(bad) == 1 and isinstance(bad[0].error, ImageError) and "images[0]: not an image" in str(bad[0].error)
        with pytest.raises(TypeError, match="expected a path, encoded bytes, an EncodedImage"):
            list(tiny.iter_detect(3, engine))


def test_exact_preprocessing_is_reachable_from_iter_detect(tiny, inputs):
    """``iter_detect(..., exact=True)`` runs MLPerf's float path: its detections are those of
    ``preprocess(exact=True)`` -> engine -> decode, and the default path's are those of the fast
    path (both from the one batch builder)."""
    from ssd_resnet34.image import preprocess

    paths = [item for item in inputs if isinstance(item, str) and "img" in item][:3]
    with engines.create(tiny) as engine:
        for exact in (False, True):
            got = list(tiny.iter_detect(paths, engine, batch_size=2, exact=exact))
            batch, _ = preprocess(paths, exact=exact)
            expected = tiny.postprocessor.decode(engine.run(batch))
            assert [o.detections for o in got] == expected
        fast, exact = preprocess(paths[0])[0], preprocess(paths[0], exact=True)[0]
        assert not np.array_equal(fast, exact)  # the two paths differ on this image, so the test can fail


def test_pipeline_and_preprocess_share_the_batch_builder(inputs):
    """The pipeline's batch of a chunk with bad inputs is ``preprocess`` of its good inputs."""
    from ssd_resnet34.image import preprocess
    from ssd_resnet34.pipeline import prepare_images

    chunk = list(enumerate(inputs[:6]))  # two bad files among them
    prepared = prepare_images(chunk)
    good = [inputs[k] for k in range(6) if k not in (2, 5)]
    batch, contexts = preprocess(good)
    np.testing.assert_array_equal(prepared.batch, batch)
    assert prepared.contexts == contexts and prepared.good == [0, 1, 3, 4]
    assert [type(r.error).__name__ if r.error else None for r in prepared.results] == [
        None, None, "ImageError", None, None, "ImageError"]


def test_batch_size_is_bounded_with_what_a_batch_costs(tiny):
    from ssd_resnet34.pipeline import BYTES_PER_IMAGE, MAX_BATCH_SIZE

    assert 21e6 < BYTES_PER_IMAGE < 23e6  # 17.3 MB input + 4.9 MB heads
    with pytest.raises(ValueError, match=r"batch_size 5000 is too large: .* 22 MB per image \(112\.1 GB for this one\); the limit is 128"):
        list(tiny.iter_detect([], batch_size=5000))
    assert list(tiny.iter_detect([], batch_size=MAX_BATCH_SIZE)) == []
