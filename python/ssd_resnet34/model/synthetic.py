"""A synthetic SSD-ResNet34: the exact MLPerf topology with seeded random weights.

**Its detections are meaningless (random weights).** It exists so that everything
around the model (preprocessing, inference engines, truncation, the postprocess,
evaluation and LoadGen plumbing, timings) can be run and tested on machines that cannot
download the official ``resnet34-ssd1200.onnx``.

The graph is built directly with ``onnx.helper`` (no torch) and follows MLCommons'
reference, ``vision/classification_and_detection/python/models/`` in
mlcommons/inference:

* backbone (``base_model_r34.py`` ``ResNet34``): torchvision ResNet-34 up to and
  including layer3: conv1 7x7/2 + BN + ReLU, maxpool 3x3/2 pad 1, layer1 (3 BasicBlocks,
  64 channels), layer2 (4 blocks, 128 channels, first stride 2), layer3 (6 blocks,
  256 channels) with ``_ModifyBlock`` setting the stride of the first block's conv1 and
  downsample to 1, so a 1200x1200 image gives a 256x150x150 feature map. Each of its 29
  Convs has no bias and is followed by an unfused ``BatchNormalization``, as in the export.
* ``ssd_r34.py`` ``SSD_R34._build_additional_features`` with out_chan
  [256, 512, 512, 256, 256, 256] and strides [3, 3, 2, 2, 2, 2]: five blocks of a 1x1
  conv + ReLU and a 3x3 conv + ReLU (Convs with a bias, no BatchNorm): 256->256->512
  (pad 1, stride 2, 75x75), 512->256->512 (pad 1, stride 2, 38x38), 512->128->256
  (pad 1, stride 2, 19x19), 256->128->256 (pad 0, stride 2, 9x9), 256->128->256 (pad 0,
  stride 1, 7x7).
* the heads: for each of the 6 feature maps a 3x3, pad 1, stride 3 Conv for the box
  offsets (nd*4 channels) and one for the class logits (nd*81), nd = [4, 6, 6, 6, 4, 4],
  giving the model card's 12 outputs (see :data:`ssd_resnet34.layout.HEAD_SHAPES`).

``full_graph=True`` gives the graph as the official file has it, with the traits of PyTorch's
2019 exporter at opset 10, so the tests exercise them: opset 10 (no GatherND; Unsqueeze/Squeeze
axes are attributes; Softmax coerces to 2-D; TopK's k is an input); the ~190 initializers also
listed as graph inputs; unfused BatchNormalization; node names ``<OpType>_<n>`` and numeric tensor
names. Its decode + NMS tail: Reshape to ``(N, 4, -1)`` / ``(N, 81, -1)`` with the shape computed
by Shape/Gather/Unsqueeze/Concat, two Concat(axis 2) giving ``[1, 4, 15130]`` and
``[1, 81, 15130]``, box decode against the default boxes, Transpose + Softmax over the last axis
(the classes), ``NonMaxSuppression(boxes, scores, 200, 0.5, 0.05)``, then TopK with a computed
k (at most 200). Its outputs are ``bboxes`` (1, K, 4) float32 normalized ltrb, ``labels`` (1, K)
int64 and ``scores`` (1, K) float32, K <= 200, sorted by score descending. The tail handles
one image, so the full graph's input batch is fixed to 1 (the MLPerf ``ssd-resnet34-onnxruntime``
profile uses ``max-batchsize`` 1). The tail follows ``docs/postprocess.md`` except where ONNX
NonMaxSuppression differs: it keeps the best 200 boxes per class after NMS (the reference: NMS
over the best 200 candidates), and its tie order and IoU arithmetic are onnxruntime's.

The heads-only model (``full_graph=False``) is made from the full graph the way
``SSDResNet34.load()`` makes it from the official file:
:func:`ssd_resnet34.model.truncate.truncate_model` (cut at the 12 heads, constant weights,
BatchNorms folded, symbolic batch dim ``N``), so its timings represent the real path.

Weights: He-normal convolutions from ``numpy.random.default_rng(seed)`` with a small gain on
each residual branch and BatchNorm statistics near identity, so activations stay finite and of
order 1 through the network; the class-logit biases favour the background class so that an
image gives a modest number of (anchor, class) scores above 0.05 rather than none or all of them.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._files import build_cached, cache_dir
from ..anchors import default_boxes
from ..layout import INPUT_SIZE, LEVELS, NUM_CLASSES

__all__ = [
    "MEANINGLESS",
    "OPSET",
    "build_synthetic_model",
    "synthetic_model_path",
]

#: The sentence every user of the synthetic model must see.
MEANINGLESS = "Synthetic SSD-ResNet34 model: its detections are meaningless (random weights)."
#: ONNX opset of the synthetic model (the official file's: PyTorch's 2019 exporter, opset 10).
OPSET = 10
#: ONNX IR version of the synthetic model.
IR_VERSION = 5
_OUT_CHANNELS = (256, 512, 512, 256, 256, 256)
# (mid channels, padding, stride) of the 3x3 conv of each additional block
_EXTRA_BLOCKS = ((256, 1, 2), (256, 1, 2), (128, 1, 2), (128, 0, 2), (128, 0, 1))
_HEAD_STRIDE = 3

# Init constants (see the module docstring).
_RESIDUAL_GAIN = 0.2  # scales the second conv of each residual branch
_BOX_OFFSET_STD = 0.5  # target standard deviation of the box offsets
_LOGIT_STD = 0.65  # target standard deviation of the class logits (gives as many candidates as before BN)
_BACKGROUND_BIAS = 5.0  # added to the background logit of every anchor
_BIAS_STD = 0.05  # conv biases, batch-norm shifts and means
_BN_SCALE_STD = 0.1  # batch-norm scales: 1 + N(0, 0.1)
_BN_LOG_VAR_STD = 0.2  # batch-norm variances: exp(N(0, 0.2))
_BN_EPSILON = 1e-5

_SCORE_THRESHOLD = 0.05
_IOU_THRESHOLD = 0.5
_MAX_PER_CLASS = 200
_MAX_DETECTIONS = 200


class _GraphBuilder:
    """Accumulates nodes and initializers with numeric names, like a PyTorch export."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._next = 0

    def fresh(self) -> str:
        self._next += 1
        return str(self._next)

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, **attrs) -> list[str]:
        outputs = [self.fresh() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=f"{op}_{len(self.nodes)}",
                                           **attrs))
        return outputs

    def const(self, array: np.ndarray) -> str:
        name = self.fresh()
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def conv(self, x: str, cin: int, cout: int, kernel: int, *, stride: int = 1, pad: int = 0,
             std: float | None = None, bias: np.ndarray | None = None, batch_norm: bool = False) -> str:
        """Conv with He-normal weights (std sqrt(2 / fan_in)) unless ``std`` is given; with
        ``batch_norm``, a bias-free Conv followed by a BatchNormalization (as torchvision's
        ``conv3x3`` + ``BatchNorm2d`` export)."""
        fan_in = cin * kernel * kernel
        if std is None:
            std = float(np.sqrt(2.0 / fan_in))
        w = self.rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32)
        w *= np.float32(std)
        inputs = [x, self.const(w)]
        if not batch_norm:
            if bias is None:
                bias = self.rng.standard_normal(cout, dtype=np.float32) * np.float32(_BIAS_STD)
            inputs.append(self.const(bias.astype(np.float32)))
        (y,) = self.node("Conv", inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad, pad, pad, pad], dilations=[1, 1], group=1)
        if batch_norm:
            y = self.batch_norm(y, cout)
        return y

    def batch_norm(self, x: str, channels: int) -> str:
        """Inference-mode BatchNormalization with statistics near identity."""
        normal = lambda: self.rng.standard_normal(channels, dtype=np.float32)  # noqa: E731
        scale = 1 + np.float32(_BN_SCALE_STD) * normal()
        shift = np.float32(_BIAS_STD) * normal()
        mean = np.float32(_BIAS_STD) * normal()
        var = np.exp(np.float32(_BN_LOG_VAR_STD) * normal()).astype(np.float32)
        (y,) = self.node("BatchNormalization", [x, *(self.const(p) for p in (scale, shift, mean, var))],
                         epsilon=_BN_EPSILON, momentum=0.9)
        return y

    def relu(self, x: str) -> str:
        return self.node("Relu", [x])[0]


def _basic_block(b: _GraphBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    """torchvision BasicBlock: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""
    y = b.relu(b.conv(x, cin, cout, 3, stride=stride, pad=1, batch_norm=True))
    y = b.conv(y, cout, cout, 3, pad=1, std=_RESIDUAL_GAIN * float(np.sqrt(2.0 / (cout * 9))), batch_norm=True)
    if stride != 1 or cin != cout:
        shortcut = b.conv(x, cin, cout, 1, stride=stride, std=float(np.sqrt(1.0 / cin)), batch_norm=True)
    else:
        shortcut = x
    return b.relu(b.node("Add", [y, shortcut])[0])


def _backbone(b: _GraphBuilder, image: str) -> str:
    """ResNet-34 through layer3 with layer3's first stride set to 1: (N,3,1200,1200) -> (N,256,150,150)."""
    x = b.relu(b.conv(image, 3, 64, 7, stride=2, pad=3, batch_norm=True))
    (x,) = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    # (channels, blocks, first stride); layer3's first stride is 1 (_ModifyBlock)
    for cout, blocks, first_stride in ((64, 3, 1), (128, 4, 2), (256, 6, 1)):
        for i in range(blocks):
            x = _basic_block(b, x, cin, cout, first_stride if i == 0 else 1)
            cin = cout
    return x


def _feature_maps(b: _GraphBuilder, image: str) -> list[str]:
    """The 6 feature maps: 256x150x150, 512x75x75, 512x38x38, 256x19x19, 256x9x9, 256x7x7."""
    x = _backbone(b, image)
    maps = [x]
    for (mid, pad, stride), cin, cout in zip(_EXTRA_BLOCKS, _OUT_CHANNELS[:-1], _OUT_CHANNELS[1:]):
        x = b.relu(b.conv(x, cin, mid, 1))
        x = b.relu(b.conv(x, mid, cout, 3, stride=stride, pad=pad))
        maps.append(x)
    return maps


def _heads(b: _GraphBuilder, maps: Sequence[str]) -> tuple[list[str], list[str]]:
    """Per level the box-offset conv then the class-logit conv; returns (class logits, box offsets)."""
    logits, offsets = [], []
    for x, cin, nd in zip(maps, _OUT_CHANNELS, [level.boxes_per_cell for level in LEVELS]):
        fan_in = cin * 9
        # Feature maps are post-ReLU with a second moment of about 1.
        offsets.append(b.conv(x, cin, nd * 4, 3, stride=_HEAD_STRIDE, pad=1,
                              std=_BOX_OFFSET_STD / np.sqrt(fan_in),
                              bias=np.zeros(nd * 4, np.float32)))
        bias = np.zeros(nd * NUM_CLASSES, np.float32)
        bias[:nd] = _BACKGROUND_BIAS  # channel c*nd + d: class 0 is the first nd channels
        logits.append(b.conv(x, cin, nd * NUM_CLASSES, 3, stride=_HEAD_STRIDE, pad=1,
                             std=_LOGIT_STD / np.sqrt(fan_in), bias=bias))
    return logits, offsets


def _flatten_concat(b: _GraphBuilder, heads: Sequence[str], channels: int) -> str:
    """``torch.cat([h.view(h.size(0), channels, -1) for h in heads], 2)`` as a PyTorch export writes it."""
    flat = []
    for h in heads:
        (shape,) = b.node("Shape", [h])
        (n,) = b.node("Gather", [shape, b.const(np.array(0, np.int64))], axis=0)
        (n,) = b.node("Unsqueeze", [n], axes=[0])
        (target,) = b.node("Concat", [n, b.const(np.array([channels], np.int64)),
                                      b.const(np.array([-1], np.int64))], axis=0)
        flat.append(b.node("Reshape", [h, target])[0])
    return b.node("Concat", flat, axis=2)[0]


def _decode_nms_tail(b: _GraphBuilder, logits: Sequence[str], offsets: Sequence[str]) -> list[str]:
    """Decode + NMS for one image, in opset-10 ops: returns the names of bboxes (1,K,4),
    labels (1,K), scores (1,K)."""
    locs = _flatten_concat(b, offsets, 4)  # (1, 4, 15130)
    confs = _flatten_concat(b, logits, NUM_CLASSES)  # (1, 81, 15130)
    i64 = lambda *v: b.const(np.array(v, np.int64))  # noqa: E731
    f32 = lambda v: b.const(np.array(v, np.float32))  # noqa: E731

    (loc,) = b.node("Transpose", [locs], perm=[0, 2, 1])  # (1, 15130, 4)
    dboxes = default_boxes()
    anchor_xy, anchor_wh = b.const(dboxes[None, :, :2]), b.const(dboxes[None, :, 2:])
    (dxy,) = b.node("Slice", [loc, i64(0), i64(2), i64(2)])
    (dwh,) = b.node("Slice", [loc, i64(2), i64(4), i64(2)])
    (xy,) = b.node("Mul", [dxy, f32(0.1)])
    (xy,) = b.node("Mul", [xy, anchor_wh])
    (xy,) = b.node("Add", [xy, anchor_xy])
    (wh,) = b.node("Mul", [dwh, f32(0.2)])
    (wh,) = b.node("Exp", [wh])
    (wh,) = b.node("Mul", [wh, anchor_wh])
    (half,) = b.node("Mul", [wh, f32(0.5)])
    (lt,) = b.node("Sub", [xy, half])
    (rb,) = b.node("Add", [xy, half])
    (boxes,) = b.node("Concat", [lt, rb], axis=2)  # (1, 15130, 4) ltrb

    # Opset-10 Softmax flattens to 2-D at `axis`: transpose so the classes are the last axis.
    (by_anchor,) = b.node("Transpose", [confs], perm=[0, 2, 1])  # (1, 15130, 81)
    (probs,) = b.node("Softmax", [by_anchor], axis=2)
    (probs,) = b.node("Transpose", [probs], perm=[0, 2, 1])  # (1, 81, 15130)
    (fg,) = b.node("Slice", [probs, i64(1), i64(NUM_CLASSES), i64(1)])  # classes 1..80
    # IoU is symmetric in x and y, so ltrb boxes work with center_point_box=0 ([y1,x1,y2,x2]).
    (selected,) = b.node("NonMaxSuppression", [boxes, fg, i64(_MAX_PER_CLASS), f32([_IOU_THRESHOLD]),
                                               f32([_SCORE_THRESHOLD])], center_point_box=0)
    # selected: (M, 3) [batch, class, box]; no GatherND before opset 11: gather from flat arrays.
    (class_idx,) = b.node("Slice", [selected, i64(1), i64(2), i64(1)])
    (box_idx,) = b.node("Slice", [selected, i64(2), i64(3), i64(1)])
    (class_idx,) = b.node("Squeeze", [class_idx], axes=[1])  # (M,)
    (box_idx,) = b.node("Squeeze", [box_idx], axes=[1])
    (flat_idx,) = b.node("Mul", [class_idx, i64(len(default_boxes()))])
    (flat_idx,) = b.node("Add", [flat_idx, box_idx])  # class * 15130 + box
    (flat_fg,) = b.node("Reshape", [fg, i64(-1)])  # (80 * 15130,)
    (sel_scores,) = b.node("Gather", [flat_fg, flat_idx], axis=0)  # (M,)
    (boxes_2d,) = b.node("Squeeze", [boxes], axes=[0])  # (15130, 4)
    (sel_boxes,) = b.node("Gather", [boxes_2d, box_idx], axis=0)  # (M, 4)
    (sel_labels,) = b.node("Add", [class_idx, i64(1)])  # label = foreground index + 1

    (m,) = b.node("Shape", [sel_scores])  # (1,)
    (candidates,) = b.node("Concat", [m, i64(_MAX_DETECTIONS)], axis=0)
    (k,) = b.node("ReduceMin", [candidates], axes=[0], keepdims=1)  # min(M, 200), shape (1,)
    (top_scores, top) = b.node("TopK", [sel_scores, k], n_out=2, axis=0)
    (top_boxes,) = b.node("Gather", [sel_boxes, top], axis=0)
    (top_labels,) = b.node("Gather", [sel_labels, top], axis=0)
    outputs = []
    for name, value in (("bboxes", top_boxes), ("labels", top_labels), ("scores", top_scores)):
        b.nodes.append(helper.make_node("Unsqueeze", [value], [name], name=f"Unsqueeze_{len(b.nodes)}", axes=[0]))
        outputs.append(name)
    return outputs


def _check_seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return int(seed)


def _build_export(seed: int) -> onnx.ModelProto:
    """The full graph with the official export's traits (see the module docstring)."""
    b = _GraphBuilder(seed)
    maps = _feature_maps(b, "image")
    logits, offsets = _heads(b, maps)
    names = _decode_nms_tail(b, logits, offsets)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])
    # PyTorch's 2019 exporter also lists every initializer as a graph input.
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.initializers]
    outputs = [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, "nbox", 4]),
               helper.make_tensor_value_info(names[1], TensorProto.INT64, [1, "nbox"]),
               helper.make_tensor_value_info(names[2], TensorProto.FLOAT, [1, "nbox"])]
    graph = helper.make_graph(b.nodes, "ssd_resnet34_synthetic", [image, *weights], outputs,
                              initializer=b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="ssd_resnet34.synthetic")


def build_synthetic_model(seed: int = 0, *, full_graph: bool = False) -> onnx.ModelProto:
    """Build the synthetic SSD-ResNet34 (exact MLPerf topology, random weights).

    Its detections are meaningless (random weights); ``model.doc_string`` and the metadata
    key ``warning`` say so.

    Args:
        seed: seed of ``numpy.random.default_rng``; the same seed gives byte-identical
            weights, with or without the tail.
        full_graph: True: the graph as the official file has it (opset 10, initializers also
            graph inputs, unfused BatchNorms, the decode + NMS tail; see the module docstring),
            input ``image`` (1, 3, 1200, 1200); outputs ``bboxes`` (1,K,4) float32 normalized
            ltrb, ``labels`` (1,K) int64 COCO class index 1..80, ``scores`` (1,K) float32.
            False: that graph truncated to its 12 heads as ``SSDResNet34.load()`` does
            (:func:`ssd_resnet34.model.truncate.truncate_model`): input ``image``
            (N, 3, 1200, 1200), the only graph input; outputs the 12 head tensors in the model
            card's order (class logits ``(N,324,50,50)`` ... ``(N,324,3,3)``, then box offsets
            ``(N,16,50,50)`` ... ``(N,16,3,3)``, float32); BatchNorms folded into the Convs.

    Returns:
        An opset-10 ``onnx.ModelProto`` (about 80 MB), input normalized RGB, NCHW, float32.
        About 20.0 M parameters once the BatchNorms are folded.

    Raises:
        TypeError: ``seed`` is not an int.
    """
    seed = _check_seed(seed)
    model = _build_export(seed)
    if not full_graph:
        from .truncate import truncate_model  # truncate imports graph only; no cycle at import time

        model = truncate_model(model)
    model.producer_name = "ssd_resnet34.synthetic"
    model.doc_string = (f"{MEANINGLESS} Seed {seed}; "
                        f"{'official-export traits with decode + NMS tail' if full_graph else '12 head outputs'}.")
    del model.metadata_props[:]
    helper.set_model_props(model, {"warning": MEANINGLESS, "synthetic": "true", "seed": str(seed),
                                   "full_graph": str(bool(full_graph)).lower()})
    return model


def _generator_id(full_graph: bool) -> str:
    """Changes whenever this generator, the default boxes or (for the heads model) the
    truncation and graph optimizations change."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(np.__version__.split(".")[0].encode())  # default_rng streams are stable within a major
    h.update(default_boxes().tobytes())
    if not full_graph:
        for module in ("truncate.py", "optimize.py", "graph.py"):
            h.update(Path(__file__).with_name(module).read_bytes())
    return h.hexdigest()[:12]


def synthetic_model_path(seed: int = 0, *, full_graph: bool = False) -> Path:
    """Path of the synthetic model's .onnx file in :func:`ssd_resnet34._files.cache_dir`.

    Its detections are meaningless (random weights). Built with
    :func:`build_synthetic_model` on first use and reused afterwards; the file name
    (``synthetic-ssd-resnet34-<variant>-seed<seed>-<id>.onnx``) carries a hash of this
    module's source, so an edit to the generator makes a new file. Written to a
    temporary file and renamed, so concurrent processes never see a partial model; a stamp
    beside it (:func:`ssd_resnet34._files.build_cached`) makes a damaged file (cut short,
    overwritten) be rebuilt.

    Raises:
        TypeError: ``seed`` is not an int.
        OSError: the cache folder is not writable.
    """
    seed = _check_seed(seed)
    variant = "full" if full_graph else "heads"
    path = cache_dir() / f"synthetic-ssd-resnet34-{variant}-seed{seed}-{_generator_id(full_graph)}.onnx"
    return build_cached(path, f"seed {seed}, {variant}",
                        lambda tmp: onnx.save(build_synthetic_model(seed, full_graph=full_graph), str(tmp)))
