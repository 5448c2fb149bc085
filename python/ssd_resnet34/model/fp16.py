"""A float16 copy of a heads model, for onnxruntime's CUDA provider (``precision="fp16"``).

Weights and computation become float16; the input and the 12 outputs stay float32
(``keep_io_types``), so the engine and the postprocess see the same types. Converted with
onnxruntime's own ``onnxruntime.transformers.float16.convert_float_to_float16`` and cached.
TensorRT needs no copy: it builds fp16 engines from the float32 model (``trt_fp16_enable``).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import onnx

from .._files import (
    DerivedFileError,
    cache_dir,
    check_derived,
    read_checked,
    record_derived,
    replacing,
)
from .graph import check_model_size, load_onnx

__all__ = ["fp16_model_path"]

_FORMAT_VERSION = "1"


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Put the nodes in topological order (stable: a node keeps its place when it can)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or reads undefined tensors: {pending[0].name}")
        for node in ready:
            known.update(node.output)
        ids = {id(n) for n in ready}
        ordered += ready
        pending = [n for n in pending if id(n) not in ids]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)


def fp16_model_path(model_path: str | os.PathLike) -> Path:
    """Path of the float16 copy of ``model_path``, built on first use:
    ``cache_dir()/fp16/<stem>-<hash>.fp16.onnx``, keyed by the source's sha256 (:func:`~ssd_resnet34.model.weights.source_digest`)
    and onnxruntime's version. Bound to the source as the heads model is
    (:func:`ssd_resnet34._files.check_derived`): its own sha256 is recorded in ``cache_dir()/derived/``
    and checked on every call, so a planted or damaged copy (whatever its ``.stamp`` says) is
    rebuilt with a warning; the copy is built from the source's bytes that were hashed, and the path
    returned is trusted, so the engine loads the bytes checked and a file swapped after this check
    is refused (:func:`ssd_resnet34._files.read_trusted`).

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: it is not an ONNX model, or it changed after its digest was taken.
    """
    import onnxruntime

    from .weights import source_digest

    src = Path(model_path).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    source_sha256 = source_digest(src)
    version = f"onnxruntime {onnxruntime.__version__}|fp16 v{_FORMAT_VERSION}"
    digest = hashlib.sha256(f"sha256 {source_sha256}|{version}".encode()).hexdigest()[:12]
    target = cache_dir() / "fp16" / f"{src.stem}-{digest}.fp16.onnx"
    try:
        if check_derived(target, source_sha256, version, "the float16 copy"):
            return target
    except DerivedFileError as error:
        warnings.warn(f"{error}; rebuilding it", stacklevel=2)

    from onnxruntime.transformers.float16 import convert_float_to_float16

    check_model_size(src)  # before it is read whole
    source = load_onnx(src, data=read_checked(src, source_sha256))
    half = convert_float_to_float16(source, keep_io_types=True)
    del source
    _sort_nodes(half.graph)  # the converter appends the input Casts at the end
    data = half.SerializeToString()
    del half
    with replacing(target) as tmp:
        tmp.write_bytes(data)
    record_derived(target, source_sha256, version, hashlib.sha256(data).hexdigest())
    return target
