"""Inference engines: preprocessed images -> the model's 12 head tensors.

:func:`create` opens an :class:`Engine` over an SSD-ResNet34 model (an ``SSDResNet34`` or the
path of an ``.onnx`` file). Each engine module wraps one runtime:

- ``openvino.py``: OpenVINO on Intel CPUs, GPUs and NPUs (fp32, bf16, fp16, int8);
- ``onnxruntime.py``: onnxruntime with its CPU, CUDA and TensorRT execution providers (fp32,
  fp16 on GPUs, int8).

``_choose.py`` resolves ``"auto"`` engine, device and precision; ``_base.py`` is the protocol
every engine follows (``run``, ``submit``, ``close``; ``device``, ``precision``, ``requests``).

The public name is also ``ssd_resnet34.session`` (``from ssd_resnet34 import session;
session.create(model)``), as FuriosaAI's model card calls it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..model.graph import model_file
from ._base import Engine, check_images
from ._choose import DEVICES, ENGINES, MODES, PRECISIONS, Choice, choice, machine_devices, resolve

# What create() accepts and resolves (see _choose.py), the protocol, and the entry point.
__all__ = ["DEVICES", "ENGINES", "MODES", "PRECISIONS", "Choice", "Engine", "check_images", "create",
           "machine_devices", "model_file", "resolve"]


def _positive_int_or_none(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (or None for the default), got {value}")
    return int(value)


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def create(model: Any, device: str = "auto", engine: str = "auto", precision: str = "auto",
           threads: Optional[int] = None, mode: str = "latency", *, max_batch: Optional[int] = None) -> Engine:
    """Open an inference engine for an SSD-ResNet34 model.

    Args:
        model: an object with a ``.model_path`` attribute (``SSDResNet34``) or the str/Path of
            an .onnx file: a heads model (``truncated_model_path``, the synthetic model) for
            the 12 heads, or (onnxruntime only) a full graph for its raw outputs.
        device: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"npu"`` (OpenVINO), ``"cuda"``,
            ``"tensorrt"`` (onnxruntime); case-insensitive.
        engine: ``"auto"``, ``"openvino"`` or ``"onnxruntime"``. ``"auto"``: onnxruntime for
            ``cuda``/``tensorrt`` (and for ``auto`` when onnxruntime has CUDA), OpenVINO
            otherwise; onnxruntime for a model that is not a heads model.
        precision: ``"auto"``, ``"fp32"`` (the faithful path), ``"bf16"`` (OpenVINO on CPUs with
            AMX/AVX512_BF16), ``"fp16"`` (GPUs), ``"int8"`` (a model calibrated beforehand with
            ``ssd-resnet34 quantize`` / ``ssd_resnet34.quantize``). ``"auto"``: bf16 on such CPUs,
            fp16 on GPUs, fp32 elsewhere. See :mod:`ssd_resnet34.engines._choose`.
        threads: the runtime's inference threads in all (None: its default, one per physical
            core). In throughput mode on the CPU, onnxruntime runs one request per core (at
            most ``threads``), each with its share of the threads.
        mode: ``"latency"`` (one request at a time, all cores on it) or ``"throughput"`` (several
            requests in flight: OpenVINO's THROUGHPUT hint and streams; for onnxruntime one
            request per core, each on one thread). Pipelines keep ``engine.requests`` batches
            in flight.
        max_batch: onnxruntime: largest number of images per runtime call for a dynamic-batch
            heads model (None: the whole batch at once). OpenVINO runs one image per request.

    Returns:
        An open :class:`Engine`; its ``name``, ``device`` and ``precision`` say what it really
        runs (e.g. ``openvino``, ``cpu``, ``bf16``).

    Raises:
        TypeError: an argument has the wrong type.
        FileNotFoundError / IsADirectoryError: the .onnx file does not exist, or is a folder.
        ValueError: unknown engine, device, precision or mode; a device this machine lacks or a
            precision it cannot run (the message lists OpenVINO's devices and onnxruntime's
            providers); a model without exactly one 4-D input; a full graph for OpenVINO.
        ssd_resnet34.model.quantize.MissingInt8ModelError: ``precision="int8"`` before the model
            was calibrated (the message names the command to run).
        RuntimeError: the runtime could not start the requested device.
    """
    path = model_file(model)
    engine = choice("engine", engine, ENGINES)
    mode = choice("mode", mode, MODES)
    threads = _positive_int_or_none("threads", threads)
    max_batch = _positive_int_or_none("max_batch", max_batch)
    chosen = resolve(device, engine, precision)
    if chosen.engine == "openvino":
        from .openvino import NotHeadsModelError

        try:
            return _open_openvino(path, chosen, threads, mode)
        except NotHeadsModelError:
            if engine != "auto":
                raise
        # a full graph (decode + NMS tail): onnxruntime runs any ONNX graph, in fp32
        chosen = resolve("cpu" if device.lower() in ("auto", "cpu") else device, "onnxruntime", "fp32")
    return _open_onnxruntime(path, chosen, threads, mode, max_batch)


def _open_openvino(path: Path, chosen: Choice, threads: Optional[int], mode: str) -> Engine:
    from .openvino import OpenVinoEngine

    run_path = path
    if chosen.precision == "int8":
        from ..model.quantize import int8_model_path

        run_path = int8_model_path(path, "openvino")
    return OpenVinoEngine(run_path, chosen.device, chosen.precision, threads, mode)


def _open_onnxruntime(path: Path, chosen: Choice, threads: Optional[int], mode: str,
                      max_batch: Optional[int]) -> Engine:
    from .onnxruntime import OnnxRuntimeEngine

    requests = 1
    if mode == "throughput" and chosen.device == "cpu":
        # ``threads`` is the total, as for OpenVINO: one request per core (at most one per
        # thread), the threads shared among them, so requests x threads never oversubscribes.
        total = threads or _cores()
        requests = min(total, _cores())
        threads = max(1, total // requests)
    elif mode == "throughput":
        requests = 2
    run_path = path
    if chosen.precision == "int8":
        from ..model.quantize import int8_model_path

        run_path = int8_model_path(path, "tensorrt" if chosen.device == "tensorrt" else "onnxruntime")
    elif chosen.precision == "fp16" and chosen.device == "cuda":
        from ..model.fp16 import fp16_model_path

        run_path = fp16_model_path(path)
    return OnnxRuntimeEngine(run_path, chosen.device, threads, max_batch=max_batch, requests=requests,
                             precision=chosen.precision, mode=mode)
