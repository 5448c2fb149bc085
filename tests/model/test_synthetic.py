"""The synthetic SSD-ResNet34: exact MLPerf topology, seeded random weights.

Its detections are meaningless (random weights); these tests check the topology, the
size, determinism, the numeric health of the random network and the decode + NMS tail.
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from ssd_resnet34.anchors import default_boxes
from ssd_resnet34.model.graph import infer_shapes, producers
from ssd_resnet34.model.synthetic import MEANINGLESS, build_synthetic_model, synthetic_model_path
from ssd_resnet34.layout import HEAD_SHAPES

from _paths import BENCHES

sys.path.insert(0, str(BENCHES))
from _common import conv_macs, parameter_count  # noqa: E402

NUM_ANCHORS = 15130

pytest_plugins = ["_fixtures"]  # shared session-scoped synthetic models, sessions, images


@pytest.fixture(scope="module")
def heads_model() -> onnx.ModelProto:
    return build_synthetic_model(0)


def _conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # weights + conv bias (batch norms folded in by truncation)


def _expected_parameters() -> int:
    """Counted from MLCommons' base_model_r34.py / ssd_r34.py, independently of the builder."""
    n = _conv_params(3, 64, 7)
    n += 6 * _conv_params(64, 64, 3)  # layer1
    n += _conv_params(64, 128, 3) + 7 * _conv_params(128, 128, 3) + _conv_params(64, 128, 1)  # layer2
    n += _conv_params(128, 256, 3) + 11 * _conv_params(256, 256, 3) + _conv_params(128, 256, 1)  # layer3
    for cin, mid, cout in ((256, 256, 512), (512, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)):
        n += _conv_params(cin, mid, 1) + _conv_params(mid, cout, 3)
    for cin, nd in zip((256, 512, 512, 256, 256, 256), (4, 6, 6, 6, 4, 4)):
        n += _conv_params(cin, nd * 4, 3) + _conv_params(cin, nd * 81, 3)
    return n


def test_head_and_feature_map_shapes(heads_model):
    assert [i.name for i in heads_model.graph.input] == ["image"]
    dims = heads_model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 1200, 1200]  # dynamic batch
    outputs = [o.name for o in heads_model.graph.output]
    for batch in (1, 2):
        shapes = infer_shapes(heads_model, (batch, 3, 1200, 1200))
        assert [shapes[name] for name in outputs] == [(batch, *s) for s in HEAD_SHAPES]
    # the six feature maps the heads read (ssd_r34.py: backbone output + 5 additional blocks)
    made_by = producers(heads_model.graph)
    maps = [shapes[made_by[name].input[0]] for name in outputs[:6]]
    assert maps == [(2, 256, 150, 150), (2, 512, 75, 75), (2, 512, 38, 38),
                    (2, 256, 19, 19), (2, 256, 9, 9), (2, 256, 7, 7)]


def test_parameters_and_flops(heads_model):
    params = parameter_count(heads_model)
    assert params == _expected_parameters() == 19_967_606  # "about 20.0 M"
    gflops = 2 * conv_macs(heads_model) / 1e9  # FLOPs = 2 x multiply-adds, 1 image, 1200x1200
    print(f"synthetic SSD-ResNet34: {params:,} parameters, {gflops:.1f} GFLOPs (2 x MACs) per 1200x1200 image")
    assert 431 < gflops < 435  # MLPerf quotes 433 GFLOPs


def test_valid_opset10_and_says_meaningless(heads_model):
    assert [(o.domain, o.version) for o in heads_model.opset_import] == [("", 10)]
    onnx.checker.check_model(heads_model)
    assert MEANINGLESS in heads_model.doc_string
    assert "meaningless (random weights)" in MEANINGLESS
    props = {p.key: p.value for p in heads_model.metadata_props}
    assert props["warning"] == MEANINGLESS and props["synthetic"] == "true" and props["seed"] == "0"
    assert props["full_graph"] == "false"
    full = build_synthetic_model(0, full_graph=True)
    onnx.checker.check_model(full, full_check=True)  # with onnx shape inference
    assert MEANINGLESS in full.doc_string and [o.name for o in full.graph.output] == ["bboxes", "labels", "scores"]
    assert [d.dim_value for d in full.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 1200, 1200]


def test_full_graph_has_the_official_export_traits():
    """PyTorch's 2019 exporter at opset 10, as resnet34-ssd1200.onnx (see the module docstring)."""
    full = build_synthetic_model(0, full_graph=True)
    graph = full.graph
    assert [(o.domain, o.version) for o in full.opset_import] == [("", 10)]
    # every initializer is also a graph input, after the image
    assert graph.input[0].name == "image"
    assert [i.name for i in graph.input[1:]] == [t.name for t in graph.initializer]
    ops = [n.op_type for n in graph.node]
    assert ops.count("BatchNormalization") == 29  # every backbone Conv: conv1, 3+4+6 blocks, 2 downsamples
    assert not {"GatherND", "Min"} & set(ops)  # not in opset 10 (Min has no int64 before 12)
    assert all(n.name == f"{n.op_type}_{i}" for i, n in enumerate(graph.node))
    for node in graph.node:
        if node.op_type in ("Unsqueeze", "Squeeze"):
            assert len(node.input) == 1 and [a.name for a in node.attribute] == ["axes"]
    made_by = producers(graph)
    joins = [n for n in graph.node if n.op_type == "Concat" and n.attribute[0].i == 2 and len(n.input) == 6]
    # run the two joins alone (onnx shape inference does not propagate opset-10 Unsqueeze data)
    heads = [made_by[made_by[flat].input[0]].output[0] for join in joins for flat in join.input]
    part = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(full)).extract_model(
        heads, [join.output[0] for join in joins])
    shapes = infer_shapes(full, names=heads)
    session = ort.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
    joined = session.run(None, {name: np.zeros(shapes[name], np.float32) for name in heads})
    assert sorted(j.shape for j in joined) == [(1, 4, NUM_ANCHORS), (1, 81, NUM_ANCHORS)]
    for join in joins:  # Reshape shapes computed with Shape/Gather/Unsqueeze/Concat
        for flat in join.input:
            target = made_by[made_by[flat].input[1]]
            assert target.op_type == "Concat"
            assert [made_by[target.input[0]].op_type, made_by[made_by[target.input[0]].input[0]].op_type] == [
                "Unsqueeze", "Gather"]
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    assert made_by[softmax.input[0]].op_type == "Transpose" and softmax.attribute[0].i == 2  # the last axis
    (nms,) = [n for n in graph.node if n.op_type == "NonMaxSuppression"]
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert [consts[name].ravel().tolist() for name in nms.input[2:]] == [[200], [0.5], [0.05000000074505806]]
    (topk,) = [n for n in graph.node if n.op_type == "TopK"]
    assert topk.input[1] not in consts  # k is computed: min(number of boxes, 200)
    out = {o.name: o.type.tensor_type for o in graph.output}
    assert [out[name].elem_type for name in ("bboxes", "labels", "scores")] == [
        onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.FLOAT]
    assert [len(out[name].shape.dim) for name in ("bboxes", "labels", "scores")] == [3, 2, 2]


def test_seed_determines_weights(heads_model):
    again = build_synthetic_model(0)
    other = build_synthetic_model(1)
    same = [a.raw_data == b.raw_data for a, b in zip(heads_model.graph.initializer, again.graph.initializer)]
    assert all(same) and len(same) == len(heads_model.graph.initializer)
    first_conv = heads_model.graph.initializer[0].raw_data
    assert first_conv != other.graph.initializer[0].raw_data
    with pytest.raises(TypeError, match="seed must be an int"):
        build_synthetic_model("0")


def test_synthetic_model_path_is_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(tmp_path))
    path = synthetic_model_path(3)
    assert path.parent == tmp_path and path.suffix == ".onnx" and "seed3" in path.name
    mtime = path.stat().st_mtime_ns
    assert synthetic_model_path(3) == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".stamp"]  # no temporary files left
    loaded = onnx.load(str(path))
    assert MEANINGLESS in loaded.doc_string and len(loaded.graph.output) == 12


def _softmax_fg(heads: list[np.ndarray], image: int) -> np.ndarray:
    """(80, 15130) float64 foreground scores in global anchor order (docs/postprocess.md)."""
    logits = np.concatenate([h[image].reshape(81, -1) for h in heads[:6]], axis=1).astype(np.float64)
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0))[1:]


def test_activations_finite_and_detections_modest(heads_reference):
    """Random weights, but O(1) numbers and some (not all, not no) scores above 0.05."""
    for head, shape in zip(heads_reference, HEAD_SHAPES):
        assert head.shape == (1, *shape) and head.dtype == np.float32
        assert np.isfinite(head).all()
        assert 0.05 < float(head.std()) < 5.0
    fg = _softmax_fg(heads_reference, 0)
    candidates = int((fg > 0.05).sum())
    print(f"synthetic model, noise image: {candidates} (anchor, class) scores > 0.05 of {fg.size}")
    assert 10 <= candidates <= 0.05 * fg.size
    assert (fg.max(axis=0) < 0.5).mean() > 0.9  # background wins for most anchors


def test_full_graph_tail(full_session, heads_reference, test_images):
    """The decode + NMS tail's detections agree with the heads: the best (anchor, class)
    survives NMS and comes first, with its box decoded against the default boxes."""
    assert full_session.output_names == ["bboxes", "labels", "scores"]
    assert not full_session.is_heads and full_session.batch_size == 1
    bboxes, labels, scores = full_session.run(test_images[:1])
    k = scores.shape[1]
    assert bboxes.shape == (1, k, 4) and labels.shape == (1, k) and scores.shape == (1, k)
    assert (bboxes.dtype, labels.dtype, scores.dtype) == (np.float32, np.int64, np.float32)
    assert 0 < k <= 200
    assert ((labels >= 1) & (labels <= 80)).all()
    assert (scores > 0.05).all() and (scores <= 1).all() and (np.diff(scores[0]) <= 0).all()
    assert np.isfinite(bboxes).all() and (bboxes[0, :, 2:] >= bboxes[0, :, :2]).all()

    fg = _softmax_fg(heads_reference, 0)
    cls, anchor = np.unravel_index(np.argmax(fg), fg.shape)
    assert labels[0, 0] == cls + 1
    np.testing.assert_allclose(scores[0, 0], fg[cls, anchor], rtol=1e-4)
    offsets = np.concatenate([h[0].reshape(4, -1) for h in heads_reference[6:]], axis=1)[:, anchor]
    acx, acy, aw, ah = default_boxes()[anchor].astype(np.float64)
    cx, cy = 0.1 * offsets[0] * aw + acx, 0.1 * offsets[1] * ah + acy
    w, h = np.exp(0.2 * offsets[2]) * aw, np.exp(0.2 * offsets[3]) * ah
    np.testing.assert_allclose(bboxes[0, 0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-5)
    assert NUM_ANCHORS == default_boxes().shape[0]
