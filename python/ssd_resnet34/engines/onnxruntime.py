"""The onnxruntime engine: CPU, CUDA and TensorRT through onnxruntime's execution providers.

Precisions: ``fp32`` everywhere (the faithful path); ``fp16`` on CUDA (a float16 copy of the
model, :func:`ssd_resnet34.model.fp16.fp16_model_path`) and TensorRT (``trt_fp16_enable``);
``int8`` with a QDQ model from :func:`ssd_resnet34.model.quantize.quantize` (per-channel,
symmetric int8: onnxruntime's CPU and CUDA kernels run it, TensorRT builds explicit-precision
int8 engines from it).

An :class:`OnnxRuntimeEngine` feeds NCHW float32 image batches (``(N, 3, 1200, 1200)``, RGB,
normalized as in MLCommons' ``dataset.py`` ``pre_process_coco_resnet34``) to an ONNX
model with onnxruntime and returns its outputs. For a heads-only model (the output of
:func:`ssd_resnet34.model.truncate.truncated_model_path`, or the synthetic heads model) these
are the model card's 12 head tensors, ready for the postprocess of ``docs/postprocess.md``.
"""
from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import cache_dir
from ..layout import HEAD_SHAPES, INPUT_SHAPE
from ._base import AUTO, LATENCY, THROUGHPUT, Backend, Choice, Engine, Probe

__all__ = ["BACKEND", "CUDA_DEVICES", "DEVICES", "OnnxRuntimeEngine", "probe", "providers_for"]

#: The devices this backend runs, each through one execution provider.
DEVICES = ("cpu", "cuda", "tensorrt")
#: Its devices that need an NVIDIA GPU.
CUDA_DEVICES = ("cuda", "tensorrt")

_CPU, _CUDA, _TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_PROVIDER = {"cpu": _CPU, "cuda": _CUDA, "tensorrt": _TRT}
_DEVICE_OF_PROVIDER = {provider: device for device, provider in _PROVIDER.items()}
#: What each device runs, ``precision="auto"``'s pick first (bf16 is OpenVINO's).
_RUNNABLE = {"cpu": ("fp32", "int8"), "cuda": ("fp16", "fp32", "int8"), "tensorrt": ("fp16", "fp32", "int8")}
_GPU_HINT = "pip install onnxruntime-gpu, with the CUDA libraries"


def _available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers_for(device: str, available: Sequence[str] | None = None) -> list[str]:
    """The onnxruntime execution providers for a resolved ``device``, in priority order.

    ``"cpu"``: CPU. ``"cuda"``: CUDA, then CPU. ``"tensorrt"``: TensorRT, then CUDA when
    available, then CPU. ``"auto"``: CUDA when this onnxruntime build has it, else CPU.
    The device is not checked here: :func:`ssd_resnet34.engines.resolve` checks it (that the
    provider is present, too).

    Args:
        device: ``"auto"`` or one of :data:`DEVICES`.
        available: the providers to choose from (default ``onnxruntime.get_available_providers()``).
    """
    available = list(_available_providers() if available is None else available)
    if device == AUTO:
        device = "cuda" if _CUDA in available else "cpu"
    if device == "cpu":
        return [_CPU]
    if device == "cuda":
        return [_CUDA, _CPU]
    return [_TRT, *([_CUDA] if _CUDA in available else []), _CPU]


def probe(providers: Sequence[str] | None = None) -> Probe:
    """What onnxruntime sees: its devices whose execution provider this build has (``providers``,
    default ``onnxruntime.get_available_providers()``) and what each runs."""
    providers = list(_available_providers() if providers is None else providers)
    return Probe({device: _RUNNABLE[device] for device in DEVICES if _PROVIDER[device] in providers},
                 f"onnxruntime providers {providers}")


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _artefact(model_path: Path, precision: str, device: str) -> Path:
    """The model file onnxruntime runs: the heads model; for fp16 on CUDA its float16 copy
    (TensorRT makes fp16 itself); for int8 the QDQ model calibrated for the device (symmetric for
    TensorRT)."""
    if precision == "int8":
        from ..model.quantize import int8_model_path

        return int8_model_path(model_path, "onnxruntime-tensorrt" if device == "tensorrt" else "onnxruntime")
    if precision == "fp16" and device == "cuda":
        from ..model.fp16 import fp16_model_path

        return fp16_model_path(model_path)
    return model_path


def _open(model_path: Path, choice: Choice, threads: int | None, mode: str, *,
          max_batch: int | None = None) -> "OnnxRuntimeEngine":
    """Latency: one request with all ``threads``. Throughput on the CPU: ``threads`` is the total,
    as for OpenVINO: one request per core (at most one per thread), the threads shared among them,
    so requests x threads never oversubscribes. Throughput on a GPU: two requests."""
    requests = 1
    if mode == THROUGHPUT and choice.device == "cpu":
        total = threads or _cores()
        requests = min(total, _cores())
        threads = max(1, total // requests)
    elif mode == THROUGHPUT:
        requests = 2
    return OnnxRuntimeEngine(model_path, choice, threads, max_batch=max_batch, requests=requests, mode=mode)


def _input_name_and_chw(path: Path) -> tuple[str, tuple[int, int, int]]:
    """The data input's name and (C, H, W) (1200x1200 where symbolic), for TensorRT profiles."""
    from ..model.graph import load_onnx, model_input

    value = model_input(load_onnx(path).graph)
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
    return value.name, tuple(d if d > 0 else want for d, want in zip(dims, INPUT_SHAPE[1:]))


class OnnxRuntimeEngine(Engine):
    """An onnxruntime session over one SSD-ResNet34 .onnx file; prefer :func:`ssd_resnet34.engines.create`.

    ``run`` takes ``(N, 3, 1200, 1200)`` float32 NCHW images (RGB, normalized) and returns:

    * for a heads-only model (``is_heads``: 12 outputs of per-image shapes
      :data:`~ssd_resnet34.layout.HEAD_SHAPES`): the 12 heads in the model card's order,
      float32 ``(N, 324, 50, 50)`` ... ``(N, 16, 3, 3)``, for any N. When the model's batch
      dim is fixed (e.g. 1, as the official export), the images go through in chunks of
      that size (the last one zero-padded) and the results are concatenated; ``max_batch``
      also caps the chunk size of a dynamic-batch model.
    * for any other model (e.g. the official full graph with decode + NMS): the model's
      raw outputs for one call, in its output order (for the official model
      ``bboxes`` (1, K, 4) normalized ltrb, ``labels`` (1, K), ``scores`` (1, K)). Their
      per-image lengths differ, so N must be a batch the model accepts (1 for a
      batch-1 export); use a heads model for larger batches.

    Attributes (besides :class:`~ssd_resnet34.engines.Engine`'s):
        input_name: the model's input tensor name (``image`` for the official model).
        output_names: the model's output tensor names.
        batch_size: the model's fixed batch dim, or None when dynamic.
        providers: the execution providers the session really uses.
        threads: the intra-op threads of each request (None: onnxruntime's default).
    """

    name = "onnxruntime"

    def __init__(self, model_path: Path, choice: Choice, threads: int | None = None,
                 *, max_batch: int | None = None, requests: int = 1, mode: str = LATENCY) -> None:
        """Open a session over ``model_path``: the model to run as is (``BACKEND.artefact``: for
        ``fp16`` on CUDA the float16 copy, for ``int8`` the QDQ model), for the resolved
        ``choice`` (:func:`ssd_resnet34.engines.resolve`; not checked again): its device's
        providers, its precision (which sets TensorRT's fp16/int8 flags). With TensorRT and ``max_batch``, one engine is built for
        batches 1..``max_batch`` (optimization profile tuned for ``max_batch``); without, TensorRT
        builds one per new batch size.

        Raises:
            ValueError: not one 4-D input; the model is not one onnxruntime can run (an unknown
                operator, an invalid graph: the message says what is wrong).
            RuntimeError: onnxruntime could not start the requested GPU provider.
        """
        import onnxruntime as ort

        super().__init__()
        device, precision = choice.device, choice.precision
        self.model_path = Path(model_path)
        self.max_batch = max_batch
        self.requests = requests
        self.threads = threads  # intra-op threads of each request (None: onnxruntime's default)
        self.precision = precision
        self.mode = mode
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
        provider_args: list = list(providers)
        if _TRT in providers:
            trt_cache = cache_dir() / "tensorrt"
            trt_cache.mkdir(exist_ok=True)
            trt_options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache),
                           "trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8"}
            if max_batch is not None:  # one engine for batches 1..max_batch, tuned for max_batch
                name, (c, h, w) = _input_name_and_chw(self.model_path)
                trt_options.update({f"trt_profile_{kind}_shapes": f"{name}:{n}x{c}x{h}x{w}"
                                    for kind, n in (("min", 1), ("opt", max_batch), ("max", max_batch))})
            provider_args[0] = (_TRT, trt_options)
        self._session: Any = _session(self.model_path, options, provider_args)
        got = self._session.get_providers()
        if providers[0] not in got:
            raise RuntimeError(
                f"onnxruntime could not start {providers[0]} for device {device!r} (missing CUDA/TensorRT "
                f"libraries?); the session only has {got}")
        self.providers: list[str] = got
        self.device = _DEVICE_OF_PROVIDER.get(got[0], got[0])
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.model_path}: expected a model with one input (the NCHW image), "
                             f"it has {[i.name for i in inputs]}")
        self.input_name: str = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ValueError(f"{self.model_path}: expected a 4-D NCHW image input, "
                             f"{self.input_name!r} has shape {shape}")
        self.batch_size: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._chw = tuple(d if isinstance(d, int) and d > 0 else want for d, want in zip(shape[1:], INPUT_SHAPE[1:]))
        outputs = self._session.get_outputs()
        self.output_names: list[str] = [o.name for o in outputs]
        self.is_heads = len(outputs) == len(HEAD_SHAPES) and all(
            tuple(o.shape[1:]) == want for o, want in zip(outputs, HEAD_SHAPES))

    def _input_chw(self):
        return self._chw

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        session = self._session
        n = images.shape[0]
        if not self.is_heads:
            if self.batch_size is not None and n != self.batch_size:
                raise ValueError(
                    f"{self.model_path.name} takes exactly {self.batch_size} image(s) per call and its outputs "
                    f"{self.output_names} are not the 12 SSD heads, so a batch of {n} cannot be split and "
                    "rejoined; pass one batch of the model's size, or use the heads model "
                    "(ssd_resnet34.model.truncate.truncated_model_path)")
            return session.run(None, {self.input_name: images})
        chunk = self.batch_size or self.max_batch or n
        if chunk >= n and (self.batch_size is None or self.batch_size == n):
            return session.run(None, {self.input_name: images})
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, chunk):
            block = images[start:start + chunk]
            rows = block.shape[0]
            if self.batch_size is not None and rows < self.batch_size:
                block = np.concatenate([block, np.zeros((self.batch_size - rows, *block.shape[1:]), np.float32)])
            parts.append([out[:rows] for out in session.run(None, {self.input_name: block})])
        return [np.concatenate(tensors) for tensors in zip(*parts)]

    def _release(self) -> None:
        self._session = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"providers={self.providers}"
        return (f"OnnxRuntimeEngine({str(self.model_path)!r}, device={self.device!r}, precision={self.precision!r}, "
                f"mode={self.mode!r}, {state})")


def _session(path: Path, options: Any, providers: list) -> Any:
    """An ``onnxruntime.InferenceSession``; a model onnxruntime cannot run (its ``Fail``,
    ``InvalidGraph``, ``NotImplemented``, ``InvalidArgument``, ``InvalidProtobuf``: an unknown
    operator or domain, a broken graph) raises ``ValueError`` naming the file and what is wrong."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    refused = tuple(getattr(state, name) for name in ("Fail", "InvalidGraph", "NotImplemented", "InvalidArgument",
                                                     "InvalidProtobuf", "NoSuchFile") if hasattr(state, name))
    from .._files import read_trusted

    try:
        # A trusted file (a heads model made here) is loaded from the bytes its digest was checked on.
        data = read_trusted(path)
        return ort.InferenceSession(str(path) if data is None else data, options, providers=providers)
    except refused as error:
        # "[ONNXRuntimeError] : 1 : FAIL : Load model from PATH failed:Fatal error: ..." -> "Fatal error: ..."
        detail = re.sub(r"^(\[ONNXRuntimeError\] : )?\d+ : [A-Z_]+ : ", "", str(error).strip())
        detail = re.sub(r"^Load model from .* failed:", "", detail).strip()
        raise ValueError(f"{path}: onnxruntime cannot run this model ({type(error).__name__}): {detail}") from None


#: This backend's entry in the engine registry.
BACKEND = Backend(
    name="onnxruntime",
    devices=DEVICES,
    precisions={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16", "int8"), "tensorrt": ("fp32", "fp16", "int8")},
    auto_devices=("cuda", "cpu"),
    needs={"cpu": "onnxruntime's CPUExecutionProvider",
           "cuda": f"onnxruntime's CUDAExecutionProvider ({_GPU_HINT})",
           "tensorrt": f"onnxruntime's TensorrtExecutionProvider ({_GPU_HINT} and TensorRT)"},
    available=lambda: importlib.util.find_spec("onnxruntime") is not None,
    probe=probe,
    artefact=_artefact,
    int8_targets={"onnxruntime": ("cpu", "cuda"), "onnxruntime-tensorrt": ("tensorrt",)},
    open=_open,
)
