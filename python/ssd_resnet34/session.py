"""onnxruntime inference sessions for SSD-ResNet34 models.

A :class:`Session` feeds NCHW float32 image batches (``(N, 3, 1200, 1200)``, RGB,
normalized as in MLCommons' ``dataset.py`` ``pre_process_coco_resnet34``) to an ONNX
model with onnxruntime and returns its outputs. For a heads-only model (the output of
:func:`ssd_resnet34.truncate.truncated_model_path`, or the synthetic heads model) these
are the model card's 12 head tensors, ready for the postprocess of ``docs/postprocess.md``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .paths import cache_dir
from .truncate import HEAD_SHAPES

__all__ = ["DEVICES", "Session", "create", "providers_for"]

#: Accepted values of ``device``.
DEVICES = ("cpu", "cuda", "tensorrt", "auto")

_CPU, _CUDA, _TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_IMAGE_CHW = (3, 1200, 1200)


def providers_for(device: str, available: Sequence[str] | None = None) -> list[str]:
    """The onnxruntime execution providers to use for ``device``, in priority order.

    ``"cpu"``: CPU. ``"cuda"``: CUDA, then CPU. ``"tensorrt"``: TensorRT, then CUDA when
    available, then CPU. ``"auto"``: CUDA when this onnxruntime build has it, else CPU
    (TensorRT is never picked automatically: building its engine takes minutes).

    Args:
        device: one of :data:`DEVICES`.
        available: the providers to choose from (default
            ``onnxruntime.get_available_providers()``).

    Raises:
        TypeError: ``device`` is not a str.
        ValueError: ``device`` is not one of :data:`DEVICES`, or this onnxruntime build
            lacks its provider (the message lists the providers it has).
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, one of {DEVICES}, got {type(device).__name__}")
    available = list(ort.get_available_providers() if available is None else available)
    dev = device.lower()
    if dev not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if dev == "auto":
        return [_CUDA, _CPU] if _CUDA in available else [_CPU]
    want = {"cpu": _CPU, "cuda": _CUDA, "tensorrt": _TRT}[dev]
    if want not in available:
        raise ValueError(
            f"device {device!r} needs onnxruntime's {want}, which this onnxruntime build "
            f"({ort.__version__}) lacks; it has {available}"
            + ("" if dev == "cpu" else " (install onnxruntime-gpu for CUDA/TensorRT)"))
    if dev == "cpu":
        return [_CPU]
    if dev == "cuda":
        return [_CUDA, _CPU]
    return [_TRT, *([_CUDA] if _CUDA in available else []), _CPU]


def _model_path(model) -> Path:
    if hasattr(model, "model_path"):
        model = model.model_path
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError("model must be a str or os.PathLike path of an .onnx file, or an object "
                        f"with a .model_path attribute (SSDResNet34), got {type(model).__name__}")
    path = Path(model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path


def _positive_int_or_none(name: str, value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (or None for the default), got {value}")
    return int(value)


class Session:
    """An onnxruntime session over one SSD-ResNet34 .onnx file; a context manager.

    Prefer :func:`create`. ``run`` takes ``(N, 3, 1200, 1200)`` float32 NCHW images (RGB,
    normalized) and returns:

    * for a heads-only model (``is_heads``: 12 outputs of per-image shapes
      :data:`~ssd_resnet34.truncate.HEAD_SHAPES`): the 12 heads in the model card's order,
      float32 ``(N, 324, 50, 50)`` ... ``(N, 16, 3, 3)``, for any N. When the model's batch
      dim is fixed (e.g. 1, as the official export), the images go through in chunks of
      that size (the last one zero-padded) and the results are concatenated; ``max_batch``
      also caps the chunk size of a dynamic-batch model.
    * for any other model (e.g. the official full graph with decode + NMS): the model's
      raw outputs for one call, in its output order (for the official model
      ``bboxes`` (1, K, 4) normalized ltrb, ``labels`` (1, K), ``scores`` (1, K)). Their
      per-image lengths differ, so N must be a batch the model accepts (1 for a
      batch-1 export); use a heads model for larger batches.

    Attributes:
        model_path: the .onnx file.
        device: the requested device.
        input_name: the model's input tensor name (``image`` for the official model).
        output_names: the model's output tensor names.
        batch_size: the model's fixed batch dim, or None when dynamic.
        is_heads: whether the outputs are the 12 SSD heads.
    """

    def __init__(self, model_path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 *, max_batch: int | None = None) -> None:
        self.model_path = _model_path(model_path)
        self.device = device
        threads = _positive_int_or_none("threads", threads)
        self.max_batch = _positive_int_or_none("max_batch", max_batch)
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
            provider_args[0] = (_TRT, {"trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": str(trt_cache)})
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(self.model_path), options, providers=provider_args)
        got = self._session.get_providers()
        if providers[0] not in got and device.lower() != "auto":
            raise RuntimeError(
                f"onnxruntime could not start {providers[0]} for device {device!r} (missing CUDA/TensorRT "
                f"libraries?); the session only has {got}")
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
        self._chw = tuple(d if isinstance(d, int) and d > 0 else want for d, want in zip(shape[1:], _IMAGE_CHW))
        outputs = self._session.get_outputs()
        self.output_names: list[str] = [o.name for o in outputs]
        self.is_heads: bool = len(outputs) == len(HEAD_SHAPES) and all(
            tuple(o.shape[1:]) == want for o, want in zip(outputs, HEAD_SHAPES))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return self._live().get_providers()

    @property
    def closed(self) -> bool:
        return self._session is None

    def _live(self) -> ort.InferenceSession:
        if self._session is None:
            raise RuntimeError(f"the session for {self.model_path} is closed")
        return self._session

    def _check(self, images) -> np.ndarray:
        want = f"(N, {', '.join(map(str, self._chw))}) float32 (NCHW, RGB, normalized)"
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy.ndarray of shape {want}, got {type(images).__name__}")
        if images.dtype != np.float32:
            raise TypeError(f"images must be float32 with shape {want}, got dtype {images.dtype} "
                            "(convert with images.astype(numpy.float32))")
        if images.ndim != 4 or tuple(images.shape[1:]) != self._chw or images.shape[0] < 1:
            raise ValueError(f"images must have shape {want} with N >= 1, got {images.shape}")
        return np.ascontiguousarray(images)

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """Run the model on a batch of images.

        Args:
            images: ``(N, 3, 1200, 1200)`` float32, NCHW, RGB, normalized; N >= 1.
                Non-contiguous arrays are copied.

        Returns:
            Heads model: the 12 head tensors (see the class docstring), each with N rows.
            Other models: the raw outputs of one call.

        Raises:
            TypeError: ``images`` is not a numpy array, or not float32.
            ValueError: wrong rank or shape (expected ``(N, 3, 1200, 1200)``), N = 0, or
                N is not a batch a non-heads model with a fixed batch dim accepts.
            RuntimeError: the session is closed.
        """
        session = self._live()
        images = self._check(images)
        n = images.shape[0]
        if not self.is_heads:
            if self.batch_size is not None and n != self.batch_size:
                raise ValueError(
                    f"{self.model_path.name} takes exactly {self.batch_size} image(s) per call and its outputs "
                    f"{self.output_names} are not the 12 SSD heads, so a batch of {n} cannot be split and "
                    "rejoined; pass one batch of the model's size, or use the heads model "
                    "(ssd_resnet34.truncate.truncated_model_path)")
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

    def close(self) -> None:
        """Release the onnxruntime session (idempotent); ``run`` then raises RuntimeError."""
        self._session = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"providers={self.providers}"
        return f"Session({str(self.model_path)!r}, device={self.device!r}, {state})"


def create(model, device: str = "cpu", threads: int | None = None, *, max_batch: int | None = None) -> Session:
    """Open an onnxruntime session for an SSD-ResNet34 model.

    Args:
        model: an object with a ``.model_path`` attribute (``SSDResNet34``) or the
            str/Path of an .onnx file: a heads model (``truncated_model_path``, the
            synthetic model) for the 12 heads, or a full graph for its raw outputs.
        device: ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"auto"`` (see
            :func:`providers_for`).
        threads: onnxruntime ``intra_op_num_threads`` (None: onnxruntime's default, one
            per physical core).
        max_batch: largest number of images per onnxruntime call for a dynamic-batch
            heads model (None: the whole batch at once).

    The graph optimization level is ``ORT_ENABLE_ALL``.

    Raises:
        TypeError: ``model``, ``device``, ``threads`` or ``max_batch`` has the wrong type.
        FileNotFoundError: the .onnx file does not exist.
        ValueError: unknown device, or one this onnxruntime build lacks (lists what it
            has); a model without exactly one 4-D input.
        RuntimeError: onnxruntime could not start the requested GPU provider.
    """
    return Session(_model_path(model), device, threads, max_batch=max_batch)
