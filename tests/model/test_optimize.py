"""Graph surgery on heads graphs: constant weights, BatchNorm folding, symbolic batch (tiny graphs,
real onnxruntime)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssd_resnet34.model.optimize import constant_weights, dynamic_batch, fold_batch_norms


def _conv_bn_model(*, conv_bias: bool, weights_as_inputs: bool = False, shared: bool = False) -> onnx.ModelProto:
    """image (1,3,8,8) -> Conv(3->4, 3x3) [-> bias] -> BN -> Relu -> out; opset 10 like the export."""
    rng = np.random.default_rng(0)
    arrays = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "scale": (1 + 0.3 * rng.standard_normal(4)).astype(np.float32),
        "shift": rng.standard_normal(4).astype(np.float32),
        "mean": rng.standard_normal(4).astype(np.float32),
        "var": rng.uniform(0.2, 3, 4).astype(np.float32),
    }
    if conv_bias:
        arrays["b"] = rng.standard_normal(4).astype(np.float32)
    conv_inputs = ["image", "w", *(["b"] if conv_bias else [])]
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="Conv_0"),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["bn"], epsilon=1e-3,
                         name="BatchNormalization_1"),
        helper.make_node("Relu", ["bn"], ["out"], name="Relu_2"),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])]
    if shared:  # a second Conv reads the same weight: folding would change it
        nodes.append(helper.make_node("Conv", ["image", "w"], ["other"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, 4, 8, 8]))
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)], ir_version=5)


def _run(model: onnx.ModelProto, image: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fusion of its own
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image})


@pytest.mark.parametrize("conv_bias", [False, True], ids=["bias-free conv (export)", "conv with bias"])
def test_fold_batch_norms_computes_the_same(conv_bias):
    model = _conv_bn_model(conv_bias=conv_bias)
    image = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (want,) = _run(model, image)
    assert fold_batch_norms(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    assert len(model.graph.node[0].input) == 3  # the folded bias
    assert {t.name for t in model.graph.initializer} == {"w", model.graph.node[0].input[2]}  # BN params dropped
    (got,) = _run(model, image)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fold_leaves_weights_that_are_graph_inputs_or_shared():
    as_inputs = _conv_bn_model(conv_bias=False, weights_as_inputs=True)
    assert fold_batch_norms(as_inputs) == 0  # a caller could override them
    assert constant_weights(as_inputs) == 5 and [i.name for i in as_inputs.graph.input] == ["image"]
    assert fold_batch_norms(as_inputs) == 1  # constants now
    shared = _conv_bn_model(conv_bias=False, shared=True)
    assert fold_batch_norms(shared) == 0
    assert constant_weights(shared) == 0


def test_dynamic_batch_only_for_batch_independent_graphs():
    model = _conv_bn_model(conv_bias=True)
    assert dynamic_batch(model)
    dims = [model.graph.input[0].type.tensor_type.shape.dim[0], model.graph.output[0].type.tensor_type.shape.dim[0]]
    assert [d.dim_param for d in dims] == ["N", "N"]
    (out,) = _run(model, np.zeros((3, 3, 8, 8), np.float32))
    assert out.shape == (3, 4, 8, 8)
    reshaping = _conv_bn_model(conv_bias=True)
    reshaping.graph.node.append(helper.make_node("Flatten", ["out"], ["flat"]))
    assert not dynamic_batch(reshaping)
    assert reshaping.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
