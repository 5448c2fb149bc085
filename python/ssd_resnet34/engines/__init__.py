"""Inference engines: preprocessed images -> the model's 12 head tensors.

:func:`create` opens an :class:`Engine` over an SSD-ResNet34 model (an ``SSDResNet34`` or the
path of an ``.onnx`` file). Each engine module wraps one runtime:

- ``onnxruntime.py``: onnxruntime with its CPU, CUDA and TensorRT execution providers.

The public name is also ``ssd_resnet34.session`` (``from ssd_resnet34 import session;
session.create(model)``), as FuriosaAI's model card calls it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._base import Engine, check_images

__all__ = ["DEVICES", "ENGINES", "MODES", "Engine", "check_images", "create", "model_file"]

#: Engines :func:`create` can open.
ENGINES = ("onnxruntime",)
#: Devices, as :func:`create` accepts them.
DEVICES = ("cpu", "cuda", "tensorrt", "auto")
#: ``"latency"``: one request at a time, all cores on it; ``"throughput"``: several requests
#: in flight (pipelines, LoadGen Offline/Server).
MODES = ("latency", "throughput")


def model_file(model: Any) -> Path:
    """The ``.onnx`` file of ``model``: an object with ``model_path`` (``SSDResNet34``) or a path.

    Raises ``TypeError`` for another type, ``FileNotFoundError`` when the file does not exist,
    ``IsADirectoryError`` for a folder.
    """
    if hasattr(model, "model_path"):
        model = model.model_path
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError("model must be a str or os.PathLike path of an .onnx file, or an object "
                        f"with a .model_path attribute (SSDResNet34), got {type(model).__name__}")
    path = Path(model).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an .onnx model file")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path


def _positive_int_or_none(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (or None for the default), got {value}")
    return int(value)


def _choice(name: str, value: Any, choices) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__}")
    if value.lower() not in choices:
        raise ValueError(f"unknown {name} {value!r}: expected one of {choices}")
    return value.lower()


def create(model: Any, device: str = "cpu", engine: str = "onnxruntime", threads: Optional[int] = None,
           mode: str = "latency", *, max_batch: Optional[int] = None) -> Engine:
    """Open an inference engine for an SSD-ResNet34 model.

    Args:
        model: an object with a ``.model_path`` attribute (``SSDResNet34``) or the str/Path of
            an .onnx file: a heads model (``truncated_model_path``, the synthetic model) for
            the 12 heads, or a full graph for its raw outputs.
        device: ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"auto"`` (see
            :func:`ssd_resnet34.engines.onnxruntime.providers_for`).
        engine: ``"onnxruntime"``.
        threads: the runtime's intra-op threads (None: its default, one per physical core).
        mode: ``"latency"`` (one request at a time) or ``"throughput"`` (as many requests in
            flight as there are cores, each on one thread).
        max_batch: largest number of images per runtime call for a dynamic-batch heads
            model (None: the whole batch at once).

    Raises:
        TypeError: an argument has the wrong type.
        FileNotFoundError / IsADirectoryError: the .onnx file does not exist, or is a folder.
        ValueError: unknown engine, device or mode, or a device this machine lacks (the
            message lists what it has); a model without exactly one 4-D input.
        RuntimeError: the runtime could not start the requested GPU provider.
    """
    path = model_file(model)
    _choice("engine", engine, ENGINES)
    _choice("device", device, DEVICES)
    mode = _choice("mode", mode, MODES)
    threads = _positive_int_or_none("threads", threads)
    max_batch = _positive_int_or_none("max_batch", max_batch)
    requests = 1
    if mode == "throughput":
        requests = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        threads = threads or 1
    from .onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, device, threads, max_batch=max_batch, requests=requests)
