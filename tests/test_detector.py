"""``SSDResNet34`` end to end on real photographs with the synthetic model (real onnxruntime).

The synthetic model has the exact topology with random weights, so its detections are noise, but
its 12 head outputs are real model outputs of real images: both postprocessors must agree on them.
It costs seconds per image on a small CPU: one module-wide session, three inferences in all.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ssd_resnet34 import detector as model_module
from ssd_resnet34 import session
from ssd_resnet34.coco import COCO_CLASSES
from ssd_resnet34.detector import SSDResNet34
from ssd_resnet34.image import preprocess as preprocess_function
from ssd_resnet34.postprocess import NativePostProcessor
from ssd_resnet34.postprocess.reference import PythonPostProcessor
from ssd_resnet34.layout import HEAD_SHAPES
from ssd_resnet34.model.weights import ChecksumError

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
GRAYSCALE_COCO = DATA / "coco-val2017-subset" / "images" / "000000431848.jpg"

pytestmark = pytest.mark.skipif(
    not (CAT.is_file() and GRAYSCALE_COCO.is_file()),
    reason=f"shared test photos not found under {DATA} (../shared/data next to the repository)",
)


def _native_postprocessor_class():
    try:
        from ssd_resnet34.postprocess import NativePostProcessor
        from ssd_resnet34._extension import load_native

        load_native()
    except ImportError as error:
        pytest.skip(f"native extension not built: {error}")
    return NativePostProcessor


@pytest.fixture(scope="module")
def model():
    native = _native_postprocessor_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        synthetic = SSDResNet34.synthetic(seed=0)
    assert isinstance(synthetic.postprocessor, native)
    return synthetic


@pytest.fixture(scope="module")
def sess(model):
    with session.create(model) as opened:
        yield opened


@pytest.fixture(scope="module")
def batch_run(model, sess):
    """One inference of a batch of two real photos: a colour one and the grayscale COCO one."""
    images, contexts = model.preprocess([str(CAT), GRAYSCALE_COCO])
    return images, contexts, sess.run(images)


def test_attributes(model):
    assert model.name == "SSDResNet34"
    assert model.input_shape == (1, 3, 1200, 1200)
    assert model.classes == COCO_CLASSES and len(model.classes) == 81
    assert model.is_synthetic and model.device == "auto"
    assert model.model_path == model.source_path and model.model_path.is_file()
    assert not model.truncated  # the synthetic heads model needs no truncation
    assert isinstance(model.postprocessor, NativePostProcessor)  # the model card's default: Rust
    images, contexts = model.preprocess([str(CAT)])
    expected_images, expected_contexts = preprocess_function([str(CAT)])
    assert np.array_equal(images, expected_images) and contexts == expected_contexts
    assert "synthetic (random weights)" in repr(model)
    python_only = SSDResNet34(model.model_path, use_native=False, score_threshold=0.3)
    assert isinstance(python_only.postprocessor, PythonPostProcessor)
    assert python_only.postprocessor.score_threshold == pytest.approx(0.3)
    with pytest.raises(ValueError):
        SSDResNet34(model.model_path, score_threshold=1.5)


def test_head_outputs_of_real_photos(batch_run):
    images, contexts, outputs = batch_run
    assert images.shape == (2, 3, 1200, 1200)
    assert contexts[0]["width"] == 1024 and contexts[0]["height"] == 768
    assert contexts[1]["width"] == 378 and contexts[1]["height"] == 640
    assert len(outputs) == 12
    for output, shape in zip(outputs, HEAD_SHAPES):
        assert output.shape == (2, *shape) and output.dtype == np.float32
        assert np.isfinite(output).all()
    assert not np.array_equal(outputs[0][0], outputs[0][1])  # two different images


def test_native_and_python_postprocess_agree_on_real_outputs(model, batch_run):
    _, contexts, outputs = batch_run
    native = model.postprocessor.decode(outputs)
    python = PythonPostProcessor().decode(outputs)
    for (n_boxes, n_labels, n_scores), (p_boxes, p_labels, p_scores) in zip(native, python):
        assert len(n_labels) > 0  # random weights still give candidates above 0.05
        np.testing.assert_array_equal(n_labels, p_labels)
        np.testing.assert_allclose(n_scores, p_scores, rtol=1e-6)
        np.testing.assert_allclose(n_boxes, p_boxes, rtol=1e-6, atol=1e-7)
        assert n_labels.dtype == np.int64 and n_boxes.dtype == np.float32
        assert (n_labels >= 1).all() and (n_labels <= 80).all()
        assert (np.diff(n_scores) <= 0).all()  # score-descending

    native_results = model.postprocessor(outputs, contexts)
    python_results = PythonPostProcessor()(outputs, contexts)
    # The model card's postprocess calls the selected postprocessor (here the native one).
    assert model.postprocess(outputs, contexts) == native_results
    assert [len(r) for r in native_results] == [len(d) for d in native]
    for image_results, other, (boxes, labels, scores), context in zip(
        native_results, python_results, native, contexts
    ):
        assert [r.index for r in image_results] == [r.index for r in other] == labels.tolist()
        assert [r.label for r in image_results] == [COCO_CLASSES[i] for i in labels]
        pixels = np.array([list(r.boundingbox) for r in image_results])
        scale = np.array([context["width"], context["height"]] * 2, dtype=np.float64)
        np.testing.assert_allclose(pixels, boxes.astype(np.float64) * scale, rtol=1e-6)
        np.testing.assert_allclose([r.score for r in image_results], scores, rtol=1e-7)

    # The model card's batch-of-one call: a single context dict.
    first = model.postprocessor([o[:1] for o in outputs], contexts=contexts[0])
    assert first == [native_results[0]]


def test_detect_matches_the_manual_pipeline(model, sess, batch_run):
    _, _, outputs = batch_run
    expected = model.postprocessor([o[:1] for o in outputs], contexts={"width": 1024, "height": 768})[0]
    detected = model.detect(CAT, session=sess)  # a batch of one: its own inference
    assert len(detected) == 1
    assert [r.index for r in detected[0]] == [r.index for r in expected]
    np.testing.assert_allclose(
        [list(r.boundingbox) for r in detected[0]], [list(r.boundingbox) for r in expected], atol=1e-2
    )
    np.testing.assert_allclose([r.score for r in detected[0]], [r.score for r in expected], atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        model.detect(CAT, session=sess, batch_size=0)


def test_synthetic_warns_once(monkeypatch):
    monkeypatch.setattr(model_module, "_warned_synthetic", False)
    with pytest.warns(UserWarning, match="meaningless"):
        SSDResNet34.synthetic(seed=0, use_native=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = SSDResNet34.synthetic(seed=0, use_native=False)
    assert again.is_synthetic and not caught


def test_full_graph_is_truncated_to_the_heads_and_load_checks_the_file(monkeypatch, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = SSDResNet34.synthetic(seed=0, full_graph=True, use_native=False)
    assert full.truncated and full.model_path != full.source_path
    with session.create(full) as heads, session.create(full.source_path) as tail:
        assert heads.is_heads and not tail.is_heads

    loaded = SSDResNet34.load(full.source_path, use_native=False, verify=False)
    assert loaded.truncated and not loaded.is_synthetic
    assert loaded.source_path == full.source_path and loaded.model_path == full.model_path
    as_is = SSDResNet34.load(full.source_path, use_native=False, verify=False, truncate=False)
    assert not as_is.truncated and as_is.model_path == full.source_path

    with pytest.raises(ChecksumError, match="not the official"):
        SSDResNet34.load(full.source_path, use_native=False)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        SSDResNet34.load(tmp_path / "missing.onnx")
    monkeypatch.setenv("SSD_RESNET34_MODEL", str(tmp_path / "from-env.onnx"))
    with pytest.raises(FileNotFoundError, match=r"from-env\.onnx .*SSD_RESNET34_MODEL"):
        SSDResNet34.load()
