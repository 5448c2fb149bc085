"""Helpers shared by the benchmark scripts (and tests/postprocess/test_postprocess_dense.py): ground truth for
the oracle, the dense realistic input generator, candidate counts, the CPU name, and the size of
a network (parameters, multiply-adds)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import List, Sequence

import numpy as np
import onnx
from onnx import TensorProto

from ssd_resnet34.evaluation.accuracy import ground_truth, oracle
from ssd_resnet34.layout import INPUT_SHAPE
from ssd_resnet34.model.graph import infer_shapes
from ssd_resnet34.postprocess import reference

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COCO_ANNOTATIONS = "coco-val2017-subset/instances_val2017_subset.json"

#: Shift of the background logit in :func:`dense_head_outputs`: with N(0, 1) noise on every
#: class logit it gives 2,800-3,500 candidates per image on the COCO images of the benchmarks.
DENSE_BACKGROUND_SHIFT = 0.5


def cpu_name() -> str:
    """The CPU model (``model name`` of /proc/cpuinfo, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ground_truths(data: Path, count: int):
    """``(description, [(name, boxes, labels), ...])`` for ``count`` images: the first images of
    the shared COCO val2017 subset (``coco_<image id>``), or synthetic ground truth
    (``synthetic_<k>``) when the annotations are absent under ``data``."""
    annotations = Path(data) / COCO_ANNOTATIONS
    if annotations.is_file():
        images = ground_truth.load_coco_ground_truth(annotations)[:count]
        boxes = sum(len(im.labels) for im in images)
        return (f"{len(images)} COCO val2017 images ({boxes} boxes)",
                [(f"coco_{im.image_id}", im.boxes, im.labels) for im in images])
    truths = [(f"synthetic_{n}", *oracle.random_ground_truth(6 + 3 * n, seed=n))
              for n in range(count)]
    return f"{count} synthetic images ({annotations} absent)", truths


def dense_head_outputs(boxes, labels, *, seed: int = 0, noise: float = 1.0,
                       background_shift: float = DENSE_BACKGROUND_SHIFT) -> List[np.ndarray]:
    """Head outputs at the candidate density of a real trained model (2,000-4,000 candidates
    per image instead of the oracle's few hundred), batch axis 1.

    The oracle's outputs for the ground truth (``encode_ground_truth(boxes, labels, seed=seed)``:
    objects with high scores, partially overlapping anchors with weak ones, realistic boxes),
    then N(0, ``noise``^2) float32 noise added to every one of the 81 class logits of every
    anchor (``default_rng(seed + 1)``), then ``background_shift`` added to the background logit
    (class 0). Many background anchors then get one or two foreground scores just above 0.05
    (low-score clutter spread over all classes, as a real model's), and most anchors pass the
    score pass's quick reject less clearly. Deterministic for a seed.
    """
    outputs = oracle.encode_ground_truth(boxes, labels, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for logits in outputs[:6]:
        logits += rng.standard_normal(logits.shape, dtype=np.float32) * np.float32(noise)
        # Channel c*nd + d of (N, 81*nd, F, F): class 0 (background) is channels 0..nd-1.
        logits[:, :logits.shape[1] // 81] += np.float32(background_shift)
    return outputs


def candidate_count(outputs, item: int = 0, threshold: float = 0.05) -> int:
    """(anchor, class >= 1) pairs of one image with reference softmax score > threshold."""
    scores = reference.softmax_scores(reference.gather_levels(outputs[:6], item, 81))
    return int((scores[1:] > np.float32(threshold)).sum())


def parameter_count(model: onnx.ModelProto) -> int:
    """Number of floating-point weights (elements of float initializers).

    Integer initializers (shapes, axes, indices) and constants such as the
    default boxes of a decode tail are counted only if they are floats; pass a
    heads-only model to count the network's learned parameters.
    """
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in model.graph.initializer
               if t.data_type in floats)


def conv_macs(model: onnx.ModelProto, input_shape: Sequence[int] = INPUT_SHAPE) -> int:
    """Multiply-accumulate operations of all Conv nodes for one input of ``input_shape``.

    For each Conv: ``N * C_out * H_out * W_out * (C_in / group) * kH * kW``. Biases,
    activations, pooling, additions and any decode tail are not counted (they are
    below 0.1 % for SSD-ResNet34). FLOPs are conventionally ``2 * conv_macs``.

    Raises:
        ValueError: a Conv output or weight shape could not be inferred.
    """
    shapes = infer_shapes(model, input_shape)
    total = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
        if out is None or weight is None or None in out or None in weight:
            raise ValueError(f"cannot infer the shapes of Conv node {node.name!r}")
        total += int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
    return total
