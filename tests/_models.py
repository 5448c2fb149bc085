"""Small real ONNX models with the 12 heads' shapes, for tests of the plumbing around the model
(pipeline, LoadGen, evaluation) that would take minutes with the 433-GFLOP synthetic network.

They run in real onnxruntime sessions through the package's engines:

- :func:`tiny_heads_model`: average pooling to each level's grid, then a random 1x1 convolution;
  its detections are noise, as the synthetic model's;
- :func:`lookup_heads_model`: an "oracle" network for a fixed set of images: it recognizes each
  image by its mean value and outputs the head tensors encoded from that image's ground truth
  (``evaluation.accuracy.oracle.encode_ground_truth``), so its COCO mAP on those images is close to 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ssd_resnet34.layout import HEAD_SHAPES, INPUT_SIZE, LEVELS

_POOL = {50: 24, 25: 48, 13: 92, 7: 171, 3: 400}  # kernel = stride giving each level's grid


def _image_input():
    return helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])


def _head_outputs():
    return [helper.make_tensor_value_info(f"head{k}", TensorProto.FLOAT, ["N", *shape])
            for k, shape in enumerate(HEAD_SHAPES)]


def _save(nodes, inits, path: Path, name: str) -> Path:
    graph = helper.make_graph(nodes, name, [_image_input()], _head_outputs(), initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def tiny_heads_model(path: Path, seed: int = 0) -> Path:
    """A random cheap network with the 12 heads' shapes (dynamic batch), saved at ``path``."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    for k, (channels, size, _) in enumerate(HEAD_SHAPES):
        stride = _POOL[size]
        nodes.append(helper.make_node("AveragePool", ["image"], [f"pool{k}"], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        bias = np.zeros(channels, np.float32)
        if k < len(LEVELS):
            bias[: LEVELS[k].boxes_per_cell] = 3.0  # background logits: a modest number of candidates
        inits += [numpy_helper.from_array(rng.standard_normal((channels, 3, 1, 1)).astype(np.float32) * 2, f"w{k}"),
                  numpy_helper.from_array(bias, f"b{k}")]
        nodes.append(helper.make_node("Conv", [f"pool{k}", f"w{k}", f"b{k}"], [f"head{k}"]))
    return _save(nodes, inits, path, "tiny_heads")


def lookup_heads_model(path: Path, images: np.ndarray, heads: Sequence[Sequence[np.ndarray]]) -> Path:
    """A network that outputs ``heads[i]`` (12 arrays of batch 1) for the preprocessed image
    ``images[i]`` ((n, 3, 1200, 1200) float32), recognized by its mean value (the nearest of the
    n means); saved at ``path``."""
    means = images.reshape(len(images), -1).mean(axis=1, dtype=np.float64).astype(np.float32)
    assert len(np.unique(means)) == len(means), "the images' means must differ"
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),  # (N,)
        helper.make_node("Unsqueeze", ["mean", "one"], ["mean_col"]),  # (N, 1)
        helper.make_node("Sub", ["mean_col", "means"], ["diff"]),  # (N, n)
        helper.make_node("Abs", ["diff"], ["distance"]),
        helper.make_node("ArgMin", ["distance"], ["which"], axis=1, keepdims=0),  # (N,)
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(means, "means")]
    for k in range(len(HEAD_SHAPES)):
        table = np.concatenate([image_heads[k] for image_heads in heads], axis=0).astype(np.float32)
        inits.append(numpy_helper.from_array(table, f"table{k}"))
        nodes.append(helper.make_node("Gather", [f"table{k}", "which"], [f"head{k}"], axis=0))
    return _save(nodes, inits, path, "lookup_heads")
