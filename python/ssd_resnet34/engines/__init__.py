"""Inference engines: preprocessed images -> the model's 12 head tensors.

:func:`create` opens an :class:`Engine` over an SSD-ResNet34 model (an ``SSDResNet34`` or the
path of an ``.onnx`` file). One module per backend, each declaring its registry entry
(``BACKEND``: devices, precisions per device, availability, model artefacts, how it opens):

- ``openvino.py``: OpenVINO on Intel CPUs, GPUs and NPUs (fp32, bf16, fp16, int8);
- ``onnxruntime.py``: onnxruntime with its CPU, CUDA and TensorRT execution providers (fp32,
  fp16 on GPUs, int8).

``_registry.py`` lists the backends and resolves ``"auto"`` engine, device and precision
(:func:`resolve`, the one resolver); ``_base.py`` is the protocol every engine follows (``run``,
``submit``, ``close``; ``device``, ``precision``, ``requests``), the resolved :class:`Choice`, the
:class:`Outputs` that ``run`` returns and the defaults (:data:`AUTO`, :data:`LATENCY`,
:data:`THROUGHPUT`).

The public name is also ``ssd_resnet34.session`` (``from ssd_resnet34 import session;
session.create(model)``), as FuriosaAI's model card calls it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, List, Optional

import numpy as np

from ._base import (
    AUTO,
    ENGINE_MODES,
    LATENCY,
    THROUGHPUT,
    Choice,
    Engine,
    Outputs,
    check_images,
)
from ._registry import (
    BACKENDS,
    CUDA_DEVICES,
    DEVICES,
    ENGINES,
    PRECISIONS,
    backend,
    choice,
    int8_targets,
    resolve,
)

__all__ = ["AUTO", "BACKENDS", "CUDA_DEVICES", "DEVICES", "ENGINES", "ENGINE_MODES", "LATENCY", "PRECISIONS",
           "THROUGHPUT", "Choice", "Engine", "Outputs", "check_images", "choice", "create", "int8_targets",
           "quantize", "resolve"]


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


def _threads(value: Any) -> Optional[int]:
    """``threads`` checked, and capped at the cores this process may use (with a warning saying
    so): more threads than cores only stall the machine (10,000 onnxruntime threads did)."""
    threads = _positive_int_or_none("threads", value)
    cores = _cores()
    if threads is not None and threads > cores:
        warnings.warn(f"threads={threads} is more than the {cores} core(s) this process may use: "
                      f"using {cores}", RuntimeWarning, stacklevel=3)
        threads = cores
    return threads


def create(model: Any, device: Optional[str] = None, engine: str = AUTO, precision: str = AUTO,
           threads: Optional[int] = None, mode: str = LATENCY, *, max_batch: Optional[int] = None) -> Engine:
    """Open an inference engine for an SSD-ResNet34 model.

    Args:
        model: an object with a ``.model_path`` attribute (``SSDResNet34``) or the str/Path of
            an .onnx file: a heads model (``truncated_model_path``, the synthetic model) for
            the 12 heads, or (onnxruntime only) a full graph for its raw outputs.
        device: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"npu"`` (OpenVINO), ``"cuda"``,
            ``"tensorrt"`` (onnxruntime); case-insensitive. None: ``model.device`` (an
            ``SSDResNet34``'s device), else ``"auto"``.
        engine: ``"auto"``, ``"openvino"`` or ``"onnxruntime"``. ``"auto"``: onnxruntime for
            ``cuda``/``tensorrt`` (and for ``auto`` when onnxruntime has CUDA), OpenVINO
            otherwise; onnxruntime for a model that is not a heads model.
        precision: ``"auto"``, ``"fp32"`` (the faithful path), ``"bf16"`` (OpenVINO on CPUs with
            AMX/AVX512_BF16), ``"fp16"`` (GPUs), ``"int8"`` (a model calibrated beforehand with
            ``ssd-resnet34 quantize`` / ``ssd_resnet34.quantize``). ``"auto"``: bf16 on such CPUs,
            fp16 on GPUs, fp32 elsewhere. See :mod:`ssd_resnet34.engines._registry`.
        threads: the runtime's inference threads in all (None: its default, one per physical
            core); more than the cores this process may use are capped at that number, with a
            ``RuntimeWarning`` saying so. In throughput mode on the CPU, onnxruntime runs one
            request per core (at most ``threads``), each with its share of the threads.
        mode: ``"latency"`` (one request at a time, all cores on it) or ``"throughput"`` (several
            requests in flight: OpenVINO's THROUGHPUT hint and streams; for onnxruntime one
            request per core, each on one thread). Pipelines keep ``engine.requests`` batches
            in flight.
        max_batch: onnxruntime: largest number of images per runtime call for a dynamic-batch
            heads model (None: the whole batch at once). OpenVINO runs one image per request.

    Returns:
        An open :class:`Engine`; its ``name``, ``device`` and ``precision`` say what it really
        runs (e.g. ``openvino``, ``cpu``, ``bf16``). A model that is not a heads model (a full
        graph) goes to onnxruntime when ``engine`` is ``"auto"``, with ``precision`` resolved
        for onnxruntime (``"auto"`` gives fp32 on the CPU); a precision onnxruntime cannot run
        there raises ``ValueError``, never a silent change.

    Raises:
        TypeError: an argument has the wrong type.
        FileNotFoundError / IsADirectoryError: the .onnx file does not exist, or is a folder.
        ValueError: unknown engine, device, precision or mode; a device this machine lacks or a
            precision it cannot run (the message lists OpenVINO's devices and onnxruntime's
            providers); a model without exactly one 4-D input; a full graph for OpenVINO; a model
            onnxruntime cannot run (an unknown operator: the message says which).
        ssd_resnet34.model.quantize.MissingInt8ModelError: ``precision="int8"`` before the model
            was calibrated (the message names the command to run).
        RuntimeError: the runtime could not start the requested device.
    """
    from ..model.graph import model_file

    path = model_file(model)
    if device is None:
        device = getattr(model, "device", AUTO)
    requested = choice("engine", engine, ENGINES)
    mode = choice("mode", mode, ENGINE_MODES)
    threads = _threads(threads)
    max_batch = _positive_int_or_none("max_batch", max_batch)
    chosen = resolve(device, requested, precision)
    try:
        return _open(path, chosen, threads, mode, max_batch)
    except ValueError as error:
        from .openvino import NotHeadsModelError

        if not isinstance(error, NotHeadsModelError) or requested != AUTO:
            raise
    # a full graph (decode + NMS tail): onnxruntime runs any ONNX graph; the precision asked for
    # is resolved again for it (auto: fp32 on the CPU), and refused when it cannot run it there
    try:
        chosen = resolve(device, "onnxruntime", precision)
    except ValueError as error:
        raise ValueError(f"{path} is a full graph (not the 12 heads), which only onnxruntime runs: {error}") from None
    return _open(path, chosen, threads, mode, max_batch)


def _open(path: Any, chosen: Choice, threads: Optional[int], mode: str, max_batch: Optional[int]) -> Engine:
    entry = backend(chosen.engine)
    return entry.open(entry.artefact(path, chosen.precision, chosen.device), chosen, threads, mode,
                      max_batch=max_batch)


def quantize(model: Any, images: Any, count: Optional[int] = None, *, engine: str = AUTO,
             device: str = AUTO) -> List[Any]:
    """Calibrate int8 models of ``model`` on real photos; ``create(model, precision="int8")``
    then uses them (``ssd_resnet34.quantize``; command line ``ssd-resnet34 quantize``).

    Args:
        model, images, count: as :func:`ssd_resnet34.model.quantize.quantize` (count None: its
            default, 300).
        engine: ``"openvino"`` (NNCF), ``"onnxruntime"`` (QDQ for its CPU and CUDA providers, or
            with ``device="tensorrt"`` symmetric QDQ for TensorRT), ``"all"`` (every backend's
            artefacts), or ``"auto"``: the engine ``create(model)`` picks on this machine.
        device: the device the artefact is for (``"auto"``: the engine's first; only
            onnxruntime's ``tensorrt`` has its own artefact). The device need not be present.

    Returns:
        One :class:`ssd_resnet34.model.quantize.Int8Model` per artefact.

    Raises:
        As :func:`ssd_resnet34.model.quantize.quantize`; ``ValueError`` for an unknown engine or
        device (the message lists the accepted ones).
    """
    from ..model.quantize import DEFAULT_COUNT
    from ..model.quantize import quantize as calibrate

    targets = [target for _, target in int8_targets(engine, device)]
    return calibrate(model, images, DEFAULT_COUNT if count is None else count, targets=targets)
