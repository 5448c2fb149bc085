"""The OpenVINO engine: Intel CPUs (AMX/AVX-512 bf16 and int8), GPUs and NPUs.

An :class:`OpenVinoEngine` compiles a heads model (the 12-output ``.onnx`` of
:func:`ssd_resnet34.model.truncate.truncated_model_path` or the synthetic model, or an int8
OpenVINO IR from :func:`ssd_resnet34.model.quantize.quantize`) for one device, with the batch
fixed to 1 (static shapes are OpenVINO's fast path; a batch of N images runs as N requests, in
parallel in throughput mode, and OpenVINO's GPU plugin batches them itself). Requests go through
an ``openvino.AsyncInferQueue``: :meth:`OpenVinoEngine.submit` returns at once and
``then(heads)`` runs in OpenVINO's completion callback on the request's own output tensors.

``PERFORMANCE_HINT`` is ``LATENCY`` (one request, all cores on it) or ``THROUGHPUT`` (as many
streams and requests as OpenVINO finds best: 2 on a 2-core CPU). ``INFERENCE_PRECISION_HINT``
is ``f32``, ``bf16`` or ``f16``; an int8 IR computes its quantized layers in int8 and the rest at
the device's default precision. Compiled models are cached in ``cache_dir()/openvino``
(OpenVINO's ``CACHE_DIR``; the key is a hash of the model and the compile options), so a second
start skips the compilation. The precision reported is the one the compiled model's convolutions
really run in (its runtime model); when a cached model does not run the precision asked for
(OpenVINO 2026.4 loads a CPU f16 model from its cache as f32), it is compiled afresh.
"""
from __future__ import annotations

import atexit
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import numpy as np

from .._files import cache_dir
from ..layout import HEAD_SHAPES, INPUT_SHAPE
from ._base import Engine, check_images, copy_heads
from ._choose import openvino_core

__all__ = ["NotHeadsModelError", "OpenVinoEngine", "compiled_cache_dir"]

T = TypeVar("T")

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CLOSE_TIMEOUT_S = 300  # close() waits this long at most for callbacks still running
_PRECISION_OF_TYPE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


class NotHeadsModelError(ValueError):
    """The model's outputs are not the 12 SSD heads (e.g. a full graph with its decode + NMS)."""


def compiled_cache_dir() -> Path:
    """Where OpenVINO caches compiled models: ``cache_dir()/openvino``."""
    return cache_dir() / "openvino"


# Engines not closed by their users are closed at exit, before the interpreter tears down the
# objects OpenVINO's request threads refer to (else the process may abort: "terminate called
# without an active exception").
_OPEN: "weakref.WeakSet[OpenVinoEngine]" = weakref.WeakSet()


@atexit.register
def _close_open_engines() -> None:
    for engine in list(_OPEN):
        engine.close()


class _Job:
    """One submitted batch: its future, what to call with the heads, and for N > 1 images the
    arrays the N requests fill."""

    __slots__ = ("future", "finish", "batch", "outputs", "remaining", "lock")

    def __init__(self, future: Future, finish: Callable, batch: np.ndarray) -> None:
        self.future, self.finish, self.batch = future, finish, batch
        n = batch.shape[0]
        self.outputs = None if n == 1 else [np.empty((n, *shape), np.float32) for shape in HEAD_SHAPES]
        self.remaining = n
        self.lock = threading.Lock()


class OpenVinoEngine(Engine):
    """An OpenVINO compiled heads model on one device; prefer :func:`ssd_resnet34.engines.create`.

    ``run`` takes ``(N, 3, 1200, 1200)`` float32 NCHW images (RGB, normalized) and returns the 12
    heads in the model card's order, float32 ``(N, 324, 50, 50)`` ... ``(N, 16, 3, 3)``.

    Attributes (besides :class:`~ssd_resnet34.engines.Engine`'s):
        mode: ``"latency"`` or ``"throughput"``.
        requests: infer requests in the queue: by default OpenVINO's
            ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` (1 in latency mode, the streams in throughput mode).
        streams: the compiled model's ``NUM_STREAMS``.
        read_seconds, compile_seconds: wall time to read the model and to compile it (or load it
            from the cache).
        ov_device: OpenVINO's name of the device it runs on (``EXECUTION_DEVICES``, e.g. ``CPU``).
    """

    name = "openvino"

    def __init__(self, model_path: Path, device: str = "cpu", precision: str = "fp32", threads: Optional[int] = None,
                 mode: str = "latency", *, cache: bool = True, config: Optional[dict] = None,
                 requests: Optional[int] = None) -> None:
        """Compile ``model_path`` (``.onnx`` or OpenVINO ``.xml``) for ``device`` (``cpu``, ``gpu``,
        ``npu``, or OpenVINO's own names such as ``GPU.1``) at ``precision`` (``fp32``, ``bf16``,
        ``fp16``, or ``int8`` for an already quantized IR). ``config``: more OpenVINO properties
        (e.g. ``{"NUM_STREAMS": 4}``), applied last; ``cache=False`` compiles without the cache;
        ``requests``: infer requests in the queue (default OpenVINO's optimal number).

        Raises:
            NotHeadsModelError: the model's outputs are not the 12 heads.
            ValueError: not one 4-D image input.
            RuntimeError: OpenVINO could not read or compile the model.
        """
        super().__init__()
        core = openvino_core()
        if core is None:
            raise ImportError("the openvino engine needs the openvino package: pip install openvino")
        self.model_path = Path(model_path)
        self.mode = mode
        start = time.perf_counter()
        model = core.read_model(str(self.model_path))
        self.read_seconds = time.perf_counter() - start
        _check_heads(model, self.model_path)
        model.reshape({model.inputs[0]: list(INPUT_SHAPE)})
        extra = config
        config = {"PERFORMANCE_HINT": "THROUGHPUT" if mode == "throughput" else "LATENCY"}
        if precision in _HINTS:
            config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        config.update(extra or {})
        start = time.perf_counter()
        compiled = core.compile_model(model, device.upper(), {**config, "CACHE_DIR": str(compiled_cache_dir())}
                                      if cache else config)
        self.precision = _conv_precision(compiled) or precision
        if cache and precision in _HINTS and self.precision != precision:
            # OpenVINO 2026.4's CPU plugin loads an f16 model from its cache as f32: compile afresh.
            compiled = core.compile_model(model, device.upper(), config)
            self.precision = _conv_precision(compiled) or precision
        self.compile_seconds = time.perf_counter() - start
        self._compiled = compiled
        del model
        self.ov_device = str(compiled.get_property("EXECUTION_DEVICES")[0])
        self.device = self.ov_device.lower()
        self.optimal_requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = requests or self.optimal_requests
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        import openvino

        self._queue = openvino.AsyncInferQueue(compiled, self.requests)
        self._queue.set_callback(self._completed)
        self._start_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0  # requests started whose callback has not returned yet
        _OPEN.add(self)

    # -- the interface -------------------------------------------------------------------
    def submit(self, images: np.ndarray, then: Optional[Callable[[List[np.ndarray]], T]] = None) -> "Future[T]":
        """Start a batch; returns a ``concurrent.futures.Future`` at once (blocks only while all
        ``requests`` are busy).

        Each image is one request. ``then(heads)`` (the 12 heads, ``(N, C, H, W)`` float32) runs
        in OpenVINO's completion callback: for one image on the request's own output tensors,
        valid only during the call (copy what you keep); the future resolves to its return value,
        or to a copy of the heads without ``then``. Raises as :meth:`run` for a bad batch.
        """
        self._check_open()
        return self._start(check_images(images), then or copy_heads)

    def _run(self, images: np.ndarray) -> List[np.ndarray]:
        return self._start(images, copy_heads).result()

    def _start(self, batch: np.ndarray, finish: Callable) -> Future:
        job = _Job(Future(), finish, batch)
        with self._start_lock:
            for row in range(batch.shape[0]):
                with self._idle:
                    self._in_flight += 1
                try:
                    # share_inputs: OpenVINO reads the batch's memory in place; the job keeps it alive.
                    self._queue.start_async({0: batch[row:row + 1]}, (job, row), share_inputs=True)
                except BaseException:
                    self._done_one()
                    raise
        return job.future

    def _completed(self, request, userdata) -> None:
        job, row = userdata
        try:
            if job.outputs is None:
                heads = [request.get_output_tensor(k).data for k in range(len(HEAD_SHAPES))]
                job.future.set_result(job.finish(heads))
                return
            for k, out in enumerate(job.outputs):
                out[row] = request.get_output_tensor(k).data[0]
            with job.lock:
                job.remaining -= 1
                last = job.remaining == 0
            if last:
                job.future.set_result(job.finish(job.outputs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
            if not job.future.done():
                job.future.set_exception(error)
        finally:
            self._done_one()

    def _done_one(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def _release(self) -> None:
        # Wait until every callback has run to its end (not only the inferences, which is what
        # wait_all waits for): a callback thread that still needs the GIL while the interpreter
        # shuts down aborts the process.
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=_CLOSE_TIMEOUT_S)
        self._queue.wait_all()
        self._queue = None
        self._compiled = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"requests={self.requests}, streams={self.streams}"
        return (f"OpenVinoEngine({str(self.model_path)!r}, device={self.ov_device!r}, precision={self.precision!r}, "
                f"mode={self.mode!r}, {state})")


def _conv_precision(compiled) -> Optional[str]:
    """The precision most of the compiled model's convolutions really run in (the runtime model's
    ``runtimePrecision``: e.g. bf16, or u8/i8 for int8), or None when the device does not say."""
    counts: dict = {}
    try:
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and "runtimePrecision" in info and "Convolution" in info["layerType"].astype(str):
                name = _PRECISION_OF_TYPE.get(info["runtimePrecision"].astype(str))
                if name:
                    counts[name] = counts.get(name, 0) + 1
    except (RuntimeError, AttributeError):
        return None
    return max(counts, key=counts.get) if counts else None


def _check_heads(model, path: Path) -> None:
    """The model must take one 4-D image and output the 12 heads (per-image :data:`HEAD_SHAPES`)."""
    if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
        raise ValueError(f"{path}: expected a model with one 4-D NCHW image input, it has "
                         f"{[i.get_any_name() for i in model.inputs]}")
    shapes = []
    for out in model.outputs:
        shape = out.get_partial_shape()
        shapes.append(tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else None)
    if len(shapes) != len(HEAD_SHAPES) or any(
            s is None or tuple(s[1:]) != want for s, want in zip(shapes, HEAD_SHAPES)):
        raise NotHeadsModelError(
            f"{path}: the openvino engine runs heads models (12 outputs of per-image shapes {list(HEAD_SHAPES)}), "
            f"this model's outputs have shapes {shapes}; truncate it (ssd_resnet34.model.truncate."
            "truncated_model_path) or use engine='onnxruntime'")
