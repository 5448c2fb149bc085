"""Graph surgery on a heads graph: constant weights, BatchNorm folded into the Convs, any batch.

The official ``resnet34-ssd1200.onnx`` was exported by PyTorch's 2019 exporter at opset 10: its
~190 initializers are also listed as graph inputs, and every backbone Conv (no bias) is followed by
an unfused ``BatchNormalization``. A runtime must treat a graph input as a value the caller may
override, so onnxruntime neither constant-folds those weights nor fuses Conv + BatchNormalization
(measured on the official-like synthetic export: 1.4x slower per image). These functions remove
both traits from the truncated heads graph (:func:`ssd_resnet34.model.truncate.truncate_model`):

- :func:`constant_weights`: the initializers come off ``graph.input``; only the image stays;
- :func:`fold_batch_norms`: ``BN(Conv(x, W, b))`` becomes ``Conv(x, W', b')`` with
  ``s = scale / sqrt(var + epsilon)``, ``W' = W * s`` (per output channel) and
  ``b' = (b - mean) * s + B``, computed in float64 and stored as float32;
- :func:`dynamic_batch`: a graph made only of batch-independent ops gets a symbolic batch dim
  ``N``, so one heads file serves any batch size (the official export fixes it to 1).

Each function edits the ``onnx.ModelProto`` in place and returns what it changed.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .graph import consumers, model_input, producers

__all__ = ["BATCH_INDEPENDENT_OPS", "constant_weights", "dynamic_batch", "fold_batch_norms"]

#: Ops whose output batch dim is the input's and which mix no images together.
BATCH_INDEPENDENT_OPS = frozenset({"Conv", "BatchNormalization", "Relu", "MaxPool", "Add"})


def constant_weights(model: onnx.ModelProto) -> int:
    """Take the initializers off ``graph.input`` (the weights become constants); returns how
    many inputs were removed. The data input (the image) stays."""
    graph = model.graph
    init = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in init]
    removed = len(graph.input) - len(keep)
    if removed:
        del graph.input[:]
        graph.input.extend(keep)
    return removed


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def fold_batch_norms(model: onnx.ModelProto) -> int:
    """Fold every ``BatchNormalization`` that directly follows a ``Conv`` into it; returns the
    number folded.

    A BatchNormalization is folded when its input comes from a Conv that feeds nothing else,
    its 4 parameters and the Conv's weight (and bias, if any) are initializers that are not graph
    inputs and that no other node reads, and it has one output (inference mode). The Conv takes
    the BatchNormalization's output name, so the rest of the graph is untouched. Initializers nobody reads any more are dropped.
    Others are left as they are.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    made_by = producers(graph)
    used_by = consumers(graph)
    outputs = {o.name for o in graph.output}
    constant = {name for name in inits if name not in graph_inputs}
    folded, drop = 0, []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        conv = made_by.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(used_by.get(conv.output[0], [])) != 1:
            continue
        params = [*bn.input[1:5], *[n for n in conv.input[1:] if n]]
        if conv.output[0] in outputs or not all(name in constant for name in params):
            continue
        if any(len(used_by.get(name, [])) != 1 for name in params):  # shared weights: leave them
            continue
        scale, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
                if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0]))
        s = scale / np.sqrt(var + float(_attribute(bn, "epsilon", 1e-5)))
        new_weight = (weight * s.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        new_bias = ((bias - mean) * s + beta).astype(np.float32)
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(new_weight, conv.input[1]))
        if len(conv.input) > 2 and conv.input[2]:
            inits[conv.input[2]].CopyFrom(numpy_helper.from_array(new_bias, conv.input[2]))
        else:
            bias_name = f"{conv.input[1]}_folded_bias"
            graph.initializer.append(numpy_helper.from_array(new_bias, bias_name))
            del conv.input[2:]
            conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        drop.append(bn)
        folded += 1
    for bn in drop:
        graph.node.remove(bn)
    if folded:
        read = {name for node in graph.node for name in node.input}
        keep = [t for t in graph.initializer if t.name in read or t.name in graph_inputs]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        kept = {t.name for t in keep}
        value_info = [v for v in graph.value_info if v.name in read or v.name in kept]
        del graph.value_info[:]
        graph.value_info.extend(value_info)
    return folded


def dynamic_batch(model: onnx.ModelProto, name: str = "N") -> bool:
    """Give the data input and the outputs a symbolic batch dim ``name`` when every node is in
    :data:`BATCH_INDEPENDENT_OPS`; returns whether it did. Intermediate ``value_info`` shapes are
    dropped (they would pin the old batch size)."""
    graph = model.graph
    if any(node.op_type not in BATCH_INDEPENDENT_OPS for node in graph.node):
        return False
    for value in [model_input(graph), *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = name
    del graph.value_info[:]
    return True
