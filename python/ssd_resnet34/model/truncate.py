"""Cut the official SSD-ResNet34 ONNX graph at its 12 head convolutions.

The official MLPerf ``resnet34-ssd1200.onnx`` ends in an in-graph decode + NMS
(outputs ``bboxes``, ``labels``, ``scores``; MLCommons' ``ssd-resnet34-onnxruntime``
profile in ``vision/classification_and_detection/python/main.py``). This package runs
its own postprocess (``docs/postprocess.md``) on the 12 head tensors instead, so the
graph is cut where ``ssd_r34.py`` ``SSD_R34.bbox_view`` starts: each head is a Conv whose
output is reshaped (``view(N, 4, -1)`` / ``view(N, 81, -1)``) and the 6 box-offset and the 6
class-logit reshapes are each concatenated on axis 2. The heads are found by that
structure (Conv -> Reshape -> Concat of 6), not by names, so exports with numeric node
names and Shape/Gather/Unsqueeze/Concat-computed reshape shapes work.

The heads graph is then prepared for inference (:mod:`ssd_resnet34.model.optimize`): the
initializers the 2019 opset-10 export also lists as graph inputs come off ``graph.input`` (the
heads file's only input is the image, so runtimes treat the weights as constants), the
BatchNormalizations are folded into their Convs, and the batch dim becomes symbolic (``N``).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from .._files import (
    DerivedFileError,
    cache_dir,
    check_derived,
    read_checked,
    record_derived,
    replacing,
    write_stamp,
)
from ..layout import HEAD_SHAPES, INPUT_SHAPE, NUM_CLASSES
from .graph import check_model_size, infer_shapes, load_onnx, model_input, producers
from .optimize import constant_weights, dynamic_batch, fold_batch_norms

__all__ = [
    "find_head_outputs",
    "is_heads_model",
    "truncate_model",
    "truncated_model_path",
]

_METADATA_KEY = "ssd_resnet34.truncated_from"
# Bump when truncate_model's output changes, so cached .heads.onnx files are rebuilt.
_FORMAT_VERSION = "2"  # 2: constant weights, folded BatchNorms, symbolic batch dim


def _not_ssd(why: str) -> ValueError:
    return ValueError(f"not an SSD-ResNet34 graph: {why}")


def _head_groups(graph: onnx.GraphProto) -> list[list[str]]:
    """Conv output names of each Concat(axis 2) whose 6 inputs are Reshape(Conv(...))."""
    made_by = producers(graph)
    groups = []
    for node in graph.node:
        if node.op_type != "Concat" or len(node.input) != 6:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if axis not in (2, -1):
            continue
        convs = []
        for name in node.input:
            reshape = made_by.get(name)
            conv = made_by.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
            if conv is None or conv.op_type != "Conv":
                break
            convs.append(conv.output[0])
        else:
            groups.append(convs)
    return groups


def find_head_outputs(model: onnx.ModelProto) -> list[str]:
    """Names of the 12 head-conv output tensors, in the model card's order.

    Finds the two ``Concat(axis=2)`` nodes whose 6 inputs are each ``Reshape(Conv(...))``,
    orders the levels as the Concat inputs, tells class logits from box offsets by
    channel count (multiples of 81 vs 4), and checks the 12 shapes, inferred with onnx
    shape inference for one 1200x1200 image, against :data:`HEAD_SHAPES`.

    Args:
        model: an SSD-ResNet34 graph with its decode tail, such as the official
            ``resnet34-ssd1200.onnx`` or ``build_synthetic_model(full_graph=True)``.

    Returns:
        12 tensor names: class logits of levels 0..5, then box offsets of levels 0..5.

    Raises:
        ValueError: ``not an SSD-ResNet34 graph: ...`` when the structure or a shape
            does not match, saying what was found and what was expected.
    """
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    groups = _head_groups(model.graph)
    if len(groups) != 2:
        raise _not_ssd(
            f"found {len(groups)} Concat(axis=2) node(s) joining 6 Conv -> Reshape heads, expected 2 "
            f"(the box offsets and the class logits of MLCommons' ssd_r34.py bbox_view)")
    try:
        shapes = infer_shapes(model, INPUT_SHAPE, names=[n for g in groups for n in g])
    except ValueError as exc:
        raise _not_ssd(str(exc)) from exc
    unknown = [n for g in groups for n in g if n not in shapes or None in shapes[n]]
    if unknown:
        raise _not_ssd(f"could not infer the shapes of head tensors {unknown} for a "
                       f"{list(INPUT_SHAPE)} input")
    channels = [[shapes[n][1] for n in g] for g in groups]
    is_class = [all(c % NUM_CLASSES == 0 for c in chans) for chans in channels]
    if sorted(is_class) != [False, True]:
        raise _not_ssd(f"head channel counts {channels}: expected one group of multiples of "
                       f"{NUM_CLASSES} (class logits) and one of multiples of 4 (box offsets)")
    logits, offsets = (groups[0], groups[1]) if is_class[0] else (groups[1], groups[0])
    heads = [*logits, *offsets]
    got = [tuple(shapes[n]) for n in heads]
    want = [(1, *s) for s in HEAD_SHAPES]
    if got != want:
        raise _not_ssd(f"head shapes for one 1200x1200 image are {got}, expected {want}")
    return heads


def is_heads_model(model: onnx.ModelProto) -> bool:
    """True when the graph's outputs already are the 12 heads: 12 float tensors whose
    declared per-image shapes are :data:`HEAD_SHAPES` (the batch dim may be symbolic)."""
    outs = model.graph.output
    if len(outs) != len(HEAD_SHAPES):
        return False
    for out, want in zip(outs, HEAD_SHAPES):
        t = out.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.elem_type != TensorProto.FLOAT or len(dims) != 4 or tuple(dims[1:]) != want:
            return False
    return True


def _subgraph_inputs(node: onnx.NodeProto) -> Iterable[str]:
    """Names read inside the node's subgraphs (If/Loop/Scan bodies); over-inclusive."""
    for attr in node.attribute:
        for g in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in g.node:
                yield from inner.input
                yield from _subgraph_inputs(inner)


def _extract(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """The smallest subgraph computing ``outputs`` (as onnx.utils.Extractor, without its
    full-model shape inference and copies)."""
    graph = model.graph
    made_by = producers(graph)
    needed, stack, keep = set(outputs), list(outputs), set()
    while stack:
        node = made_by.get(stack.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        for name in [*node.input, *_subgraph_inputs(node)]:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    nodes = [n for n in graph.node if id(n) in keep]
    initializers = [t for t in graph.initializer if t.name in needed]
    inputs = [i for i in graph.input if i.name in needed]
    value_info = [v for v in graph.value_info if v.name in needed and v.name not in outputs]
    data_input = model_input(graph)
    batch = data_input.type.tensor_type.shape.dim[0] if data_input.type.tensor_type.shape.dim else None
    batch_dim: int | str = "N"
    if batch is not None and batch.HasField("dim_value") and batch.dim_value > 0:
        batch_dim = batch.dim_value
    elif batch is not None and batch.dim_param:
        batch_dim = batch.dim_param
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch_dim, *shape])
            for name, shape in zip(outputs, HEAD_SHAPES)]
    new_graph = helper.make_graph(nodes, f"{graph.name or 'ssd_resnet34'}_heads", inputs, outs,
                                  initializer=initializers, value_info=value_info)
    result = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                               ir_version=model.ir_version)
    for field in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(result, field, getattr(model, field))
    result.metadata_props.extend(model.metadata_props)
    return result


def truncate_model(model: onnx.ModelProto, *, optimize: bool = True) -> onnx.ModelProto:
    """Cut the graph at the 12 head tensors.

    Args:
        model: an SSD-ResNet34 graph with its decode tail (see :func:`find_head_outputs`);
            not modified.
        optimize: prepare the heads graph for inference (default): the image is the only graph
            input (initializers come off ``graph.input``), BatchNormalizations are folded into
            their Convs, and the batch dim becomes ``N`` (see :mod:`ssd_resnet34.model.optimize`).
            False keeps the subgraph exactly as exported (for before/after measurements).

    Returns:
        A new model with the same input and the 12 head outputs in the model card's
        order: class logits ``(N,324,50,50)``, ``(N,486,25,25)``, ``(N,486,13,13)``,
        ``(N,486,7,7)``, ``(N,324,3,3)``, ``(N,324,3,3)``, then box offsets
        ``(N,16,50,50)``, ``(N,24,25,25)``, ``(N,24,13,13)``, ``(N,24,7,7)``,
        ``(N,16,3,3)``, ``(N,16,3,3)``, float32, NCHW (N symbolic when ``optimize``, else the
        original input's batch dim). Only the nodes and initializers the heads need are kept;
        the opset, doc string and metadata are carried over.

    Raises:
        TypeError: ``model`` is not an ``onnx.ModelProto``.
        ValueError: not an SSD-ResNet34 graph (see :func:`find_head_outputs`).
    """
    heads = find_head_outputs(model)
    result = _extract(model, heads)
    if optimize:
        constant_weights(result)
        fold_batch_norms(result)
        dynamic_batch(result)
    return result


def _load_checked(src: Path, source_sha256: str) -> onnx.ModelProto:
    """The source model parsed from bytes read once, whose sha256 must be ``source_sha256`` (the
    digest it was verified or keyed with): a file swapped after its check is refused."""
    from .weights import ChecksumError

    check_model_size(src)  # before it is read whole
    return load_onnx(src, data=read_checked(src, source_sha256, ChecksumError))


def truncated_model_path(full_model_path: str | os.PathLike, *, source_sha256: str | None = None) -> Path:
    """Path of the heads-only version of an SSD-ResNet34 .onnx file, built on first use.

    The truncated model is ``<stem>.heads.onnx`` next to the original, or, when that
    folder is not writable, ``cache_dir()/<stem>-<hash of the path>.heads.onnx``. It is bound
    to the original's content: keyed by the original's sha256 (``source_sha256``, the digest
    it was verified against, else :func:`~ssd_resnet34.model.weights.file_digest`), and its own
    sha256 is recorded in ``cache_dir()/derived/<hash of its path>.json`` with the original's
    sha256, apart from it. Each call hashes the heads file and compares it with that record: a heads file replaced
    or damaged (whatever its ``.stamp`` says) is rebuilt, with a warning. A rebuild parses the
    original from the bytes it hashed (never from a second read). The path returned is trusted
    (:func:`ssd_resnet34._files.trust_file`): the engines load it through
    :func:`~ssd_resnet34._files.read_trusted`, so a file swapped after this check is refused,
    not run. The heads graph is optimized (:func:`truncate_model` with ``optimize=True``:
    constant weights, folded BatchNorms, symbolic batch dim). A file whose outputs already are
    the 12 heads (:func:`is_heads_model`, e.g. the synthetic heads model) is returned unchanged.

    Raises:
        FileNotFoundError: ``full_model_path`` does not exist.
        IsADirectoryError: ``full_model_path`` is a folder.
        ChecksumError: the original's bytes are not the ones ``source_sha256`` names (changed
            after its check).
        ValueError: the file is empty or not an ONNX model (:func:`~ssd_resnet34.model.graph.load_onnx`),
            or not an SSD-ResNet34 graph (see :func:`find_head_outputs`).
    """
    from .weights import file_digest

    src = Path(full_model_path).expanduser()
    if src.is_dir():
        raise IsADirectoryError(f"{src} is a folder, not an .onnx model file")
    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    source_sha256 = (source_sha256 or file_digest(src)).lower()
    key = f"sha256 {source_sha256}|v{_FORMAT_VERSION}"
    primary = src.with_name(f"{src.stem}.heads.onnx")
    digest = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
    fallback = cache_dir() / f"{src.stem}-{digest}.heads.onnx"
    for target in (primary, fallback):
        try:
            if check_derived(target, source_sha256, _FORMAT_VERSION, "the heads model"):
                return target
        except DerivedFileError as error:
            warnings.warn(f"{error}; rebuilding it", stacklevel=2)
    model = _load_checked(src, source_sha256)
    if is_heads_model(model):
        return src
    heads = truncate_model(model)
    heads.metadata_props.append(onnx.StringStringEntryProto(key=_METADATA_KEY, value=f"sha256:{source_sha256}"))
    del model
    data = heads.SerializeToString()
    del heads
    heads_sha256 = hashlib.sha256(data).hexdigest()

    def save(target: Path) -> Path:
        # Always written (never build_cached's stamp shortcut: the stamp may be the forged part).
        with replacing(target) as tmp:
            tmp.write_bytes(data)
        write_stamp(target.with_name(target.name + ".stamp"), target, heads_sha256, key)
        return target

    try:
        target = save(primary)
    except OSError:
        target = save(fallback)
    record_derived(target, source_sha256, _FORMAT_VERSION, heads_sha256)
    return target
