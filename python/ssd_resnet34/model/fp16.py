"""A float16 copy of a heads model, for onnxruntime's CUDA provider (``precision="fp16"``).

Weights and computation become float16; the input and the 12 outputs stay float32
(``keep_io_types``), so the engine and the postprocess see the same types. Converted with
onnxruntime's own ``onnxruntime.transformers.float16.convert_float_to_float16`` and cached.
TensorRT needs no copy: it builds fp16 engines from the float32 model (``trt_fp16_enable``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx

from .._files import build_cached, cache_dir
from .graph import load_onnx

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
    ``cache_dir()/fp16/<stem>-<hash>.fp16.onnx`` (rebuilt when the source's path, size or mtime,
    or onnxruntime's version, change; see :func:`ssd_resnet34._files.build_cached`).

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: it is not an ONNX model.
    """
    import onnxruntime

    src = Path(model_path).expanduser()
    st = src.stat()
    key = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|onnxruntime {onnxruntime.__version__}|v{_FORMAT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = cache_dir() / "fp16" / f"{src.stem}-{digest}.fp16.onnx"

    def build(tmp: Path) -> None:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(load_onnx(src), keep_io_types=True)
        _sort_nodes(half.graph)  # the converter appends the input Casts at the end
        onnx.save(half, str(tmp))

    return build_cached(target, key, build)
