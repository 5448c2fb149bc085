"""Truncation of SSD-ResNet34 graphs at the 12 head convolutions.

Runs on the synthetic full graph (exact topology, PyTorch-export-like numeric names and
Shape/Gather/Unsqueeze/Concat reshape shapes; its detections are meaningless, random weights).
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssd_resnet34.model.graph import infer_shapes
from ssd_resnet34.engines import create
from ssd_resnet34.model.synthetic import MEANINGLESS, build_synthetic_model
from ssd_resnet34.model.truncate import (
    HEAD_SHAPES,
    find_head_outputs,
    is_heads_model,
    truncate_model,
    truncated_model_path,
)

pytest_plugins = ["_fixtures"]  # shared session-scoped synthetic models, sessions, images


@pytest.fixture(scope="module")
def full_model() -> onnx.ModelProto:
    return build_synthetic_model(0, full_graph=True)


@pytest.fixture(scope="module")
def heads_model() -> onnx.ModelProto:
    return build_synthetic_model(0)


def test_head_shapes_constant():
    assert HEAD_SHAPES[:6] == ((324, 50, 50), (486, 25, 25), (486, 13, 13), (486, 7, 7), (324, 3, 3), (324, 3, 3))
    assert HEAD_SHAPES[6:] == ((16, 50, 50), (24, 25, 25), (24, 13, 13), (24, 7, 7), (16, 3, 3), (16, 3, 3))


def test_finds_the_12_heads_in_order(full_model, heads_model):
    heads = find_head_outputs(full_model)
    # Same seed, same numbering: the heads model's outputs are the very same convs.
    assert heads == [o.name for o in heads_model.graph.output]
    assert all(name.isdigit() for name in heads)  # numeric names, as a PyTorch export
    shapes = infer_shapes(full_model, names=heads)
    assert [shapes[n] for n in heads] == [(1, *s) for s in HEAD_SHAPES]


def test_truncated_graph_is_the_heads_model(full_model, heads_model):
    cut = truncate_model(full_model)
    onnx.checker.check_model(cut)
    assert [o.name for o in cut.graph.output] == [o.name for o in heads_model.graph.output]
    for out, shape in zip(cut.graph.output, HEAD_SHAPES):
        dims = out.type.tensor_type.shape.dim
        assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == list(shape)  # any batch
    assert [i.name for i in cut.graph.input] == ["image"]  # the weights are constants, not inputs
    assert cut.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    ops = {n.op_type for n in cut.graph.node}
    assert ops == {"Conv", "Relu", "MaxPool", "Add"}  # decode, softmax and NMS are gone; BNs folded
    got = {t.name: t.raw_data for t in cut.graph.initializer}
    want = {t.name: t.raw_data for t in heads_model.graph.initializer}
    assert got == want  # byte-identical weights, nothing else kept
    assert MEANINGLESS in cut.doc_string and is_heads_model(cut)
    assert not is_heads_model(full_model)


def test_unoptimized_truncation_keeps_the_export_as_it_is(full_model):
    raw = truncate_model(full_model, optimize=False)
    assert len(raw.graph.input) > 100 and raw.graph.input[0].name == "image"  # weights still listed as inputs
    assert sum(n.op_type == "BatchNormalization" for n in raw.graph.node) == 29
    assert [d.dim_value for d in raw.graph.output[0].type.tensor_type.shape.dim] == [1, 324, 50, 50]


def test_truncated_model_runs_like_the_heads_model(synthetic_full_path, heads_reference, test_images):
    """Truncated full graph (a batch of 2 in one call) vs the heads model on image 0."""
    path = truncated_model_path(synthetic_full_path)
    assert path == synthetic_full_path.with_name(synthetic_full_path.stem + ".heads.onnx")
    with create(path, engine="onnxruntime", precision="fp32") as session:
        assert session.is_heads and session.batch_size is None
        heads = session.run(test_images)
    for got, want, shape in zip(heads, heads_reference, HEAD_SHAPES):
        assert got.shape == (2, *shape)
        np.testing.assert_allclose(got[:1], want, rtol=1e-4, atol=1e-4)
        assert not np.allclose(got[1], got[0], atol=1e-3)  # the second image is not the first


def test_truncated_model_path_is_cached_and_rebuilt_when_stale(tmp_path, synthetic_full_path):
    src = tmp_path / "model.onnx"
    shutil.copyfile(synthetic_full_path, src)
    first = truncated_model_path(src)
    assert first == tmp_path / "model.heads.onnx"
    mtime = first.stat().st_mtime_ns
    assert truncated_model_path(src) == first and first.stat().st_mtime_ns == mtime  # reused
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))  # touched, same content
    assert truncated_model_path(src) == first and first.stat().st_mtime_ns == mtime  # keyed by content: reused
    model = onnx.load(str(src))
    model.metadata_props.append(onnx.StringStringEntryProto(key="note", value="another export"))
    onnx.save(model, str(src))  # the original changed
    assert truncated_model_path(src) == first and first.stat().st_mtime_ns != mtime  # rebuilt
    first.unlink()
    assert truncated_model_path(src) == first and first.is_file()  # rebuilt when missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.heads.onnx", "model.heads.onnx.stamp", "model.onnx"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_truncated_model_path_falls_back_to_cache(tmp_path, monkeypatch, synthetic_full_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SSD_RESNET34_CACHE_DIR", str(cache))
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(synthetic_full_path, folder / "model.onnx")
    folder.chmod(0o555)
    try:
        path = truncated_model_path(folder / "model.onnx")
    finally:
        folder.chmod(0o755)
    assert path.parent == cache and path.name.endswith(".heads.onnx") and path.is_file()


def test_heads_model_is_returned_unchanged(synthetic_heads_path):
    assert truncated_model_path(synthetic_heads_path) == synthetic_heads_path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        truncated_model_path(tmp_path / "nope.onnx")


def _conv(nodes, inits, x, cin, cout, stride, name):
    w = numpy_helper.from_array(np.zeros((cout, cin, 1, 1), np.float32), f"{name}.w")
    inits.append(w)
    nodes.append(helper.make_node("Conv", [x, w.name], [name], kernel_shape=[1, 1], strides=[stride, stride]))
    return name


def _model(nodes, inits, outputs):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 1200, 1200])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_refuses_a_tiny_conv_net():
    nodes, inits = [], []
    y = _conv(nodes, inits, "image", 3, 8, 2, "c1")
    nodes.append(helper.make_node("Relu", [y], ["r1"]))
    _conv(nodes, inits, "r1", 8, 4, 2, "c2")
    model = _model(nodes, inits, ["c2"])
    with pytest.raises(ValueError, match=r"not an SSD-ResNet34 graph: found 0 Concat\(axis=2\).*expected 2"):
        find_head_outputs(model)
    with pytest.raises(ValueError, match="not an SSD-ResNet34 graph"):
        truncate_model(model)


def test_refuses_the_right_structure_with_wrong_shapes():
    """Conv -> Reshape -> Concat(axis 2) x 2 groups of 6, but 1 default box per cell."""
    nodes, inits = [], []
    shape = numpy_helper.from_array(np.array([1, 0, -1], np.int64), "shape")
    inits.append(shape)
    for group, channels in (("cls", 81), ("box", 4)):
        flat = []
        for level, stride in enumerate((24, 48, 92, 171, 400, 400)):
            conv = _conv(nodes, inits, "image", 3, channels, stride, f"{group}{level}")
            nodes.append(helper.make_node("Reshape", [conv, "shape"], [f"{conv}.flat"]))
            flat.append(f"{conv}.flat")
        nodes.append(helper.make_node("Concat", flat, [group], axis=2))
    with pytest.raises(ValueError, match=r"not an SSD-ResNet34 graph: head shapes .* expected"):
        find_head_outputs(_model(nodes, inits, ["cls", "box"]))


def test_rejects_non_models():
    with pytest.raises(TypeError, match="onnx.ModelProto"):
        find_head_outputs("model.onnx")
