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
start skips the compilation; processes compiling at once take turns (:func:`cache_lock`), so one
never reads another's half-written blob. The precision reported is the one the compiled model's convolutions
really run in (its runtime model); when a cached model does not run the precision asked for
(OpenVINO 2026.4 loads a CPU f16 model from its cache as f32), it is compiled afresh.

:data:`BACKEND` is this module's entry in the engine registry (``_registry.py``).
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, TypeVar

import numpy as np

from .._files import cache_dir, read_trusted
from ..layout import HEAD_SHAPES, INPUT_SHAPE
from ._base import (
    LATENCY,
    THROUGHPUT,
    Backend,
    Choice,
    Engine,
    Probe,
    check_images,
    copy_heads,
)

__all__ = ["BACKEND", "NotHeadsModelError", "OpenVinoEngine", "cache_lock", "compiled_cache_dir", "openvino_capabilities",
           "openvino_core", "openvino_devices", "probe"]

T = TypeVar("T")

#: The devices this backend runs (OpenVINO's CPU, GPU and NPU plugins).
DEVICES = ("cpu", "gpu", "npu")
_ALL = ("fp32", "bf16", "fp16", "int8")
#: ``precision="auto"`` prefers these, in order, among what the device's capabilities list.
_PREFERENCE = {"cpu": ("bf16", "fp32", "fp16", "int8"), "gpu": ("fp16", "fp32", "bf16", "int8"),
               "npu": ("fp16", "fp32", "bf16", "int8")}
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CLOSE_TIMEOUT_S = 300  # close() waits this long at most for callbacks still running
_PRECISION_OF_TYPE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


@functools.lru_cache(maxsize=1)
def openvino_core() -> Optional[Any]:
    """One shared ``openvino.Core`` for the process, or None when ``openvino`` is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.Core()


def openvino_devices() -> Optional[list]:
    """OpenVINO's ``available_devices`` (e.g. ``['CPU', 'GPU.0']``), or None without openvino."""
    core = openvino_core()
    return None if core is None else list(core.available_devices)


def openvino_capabilities(device: str) -> list:
    """The ``OPTIMIZATION_CAPABILITIES`` of an OpenVINO device (``CPU``, ``GPU``, ``NPU``), e.g.
    ``['BF16', 'FP32', 'FP16', 'INT8', ...]``; [] when it cannot be read."""
    core = openvino_core()
    try:
        return list(core.get_property(device.upper(), "OPTIMIZATION_CAPABILITIES")) if core else []
    except RuntimeError:
        return []


def probe(devices: Optional[Sequence[str]] = None, capabilities: Optional[Callable[[str], list]] = None) -> Probe:
    """What OpenVINO sees: for each of its devices present (``devices``, default
    :func:`openvino_devices`, e.g. ``['CPU', 'GPU.0']``), the precisions its
    ``OPTIMIZATION_CAPABILITIES`` (``capabilities(name)``, default :func:`openvino_capabilities`)
    list, ``precision="auto"``'s pick first: bf16 on a CPU that lists BF16 (AMX or AVX512_BF16),
    fp16 on a GPU or NPU that lists FP16, else fp32. A device whose capabilities cannot be read
    is assumed to run every precision, fp32 first."""
    devices = list(openvino_devices() or []) if devices is None else list(devices)
    capabilities = capabilities or openvino_capabilities
    runnable, notes = {}, {}
    for name in devices:
        kind = name.split(".")[0].lower()
        if kind not in DEVICES or kind in runnable:
            continue
        caps = list(capabilities(kind.upper()))
        runnable[kind] = tuple(p for p in _PREFERENCE[kind] if _CAPABILITY[p] in caps) if caps else _ALL
        notes[kind] = f"OpenVINO's {kind.upper()} capabilities are {caps}"
    return Probe(runnable, f"OpenVINO devices {devices}", notes)


def _artefact(model_path: Path, precision: str, device: str) -> Path:
    """The model file OpenVINO compiles: the heads model, or for int8 the calibrated IR (one for all
    OpenVINO devices)."""
    if precision == "int8":
        from ..model.quantize import int8_model_path

        return int8_model_path(model_path, "openvino")
    return model_path


def _open(model_path: Path, choice: Choice, threads: Optional[int], mode: str, *, max_batch: Optional[int] = None,
          **options: Any) -> "OpenVinoEngine":
    """``max_batch`` is onnxruntime's: OpenVINO runs one image per request whatever the batch."""
    return OpenVinoEngine(model_path, choice, threads, mode, **options)


class NotHeadsModelError(ValueError):
    """The model's outputs are not the 12 SSD heads (e.g. a full graph with its decode + NMS)."""


def compiled_cache_dir() -> Path:
    """Where OpenVINO caches compiled models: ``cache_dir()/openvino``."""
    return cache_dir() / "openvino"


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Hold the compiled-model cache for one ``compile_model`` with ``CACHE_DIR``, across threads
    and processes (an exclusive ``flock`` on ``compiled_cache_dir()/.lock``; the kernel drops it
    when a holder dies).

    OpenVINO writes a cache blob in place: a second process that starts meanwhile (Ray actors,
    server workers, parallel ``detect`` runs on a fresh cache) read the half-written blob, removed it
    as invalid, and the writer then failed ("filesystem error: cannot set permissions ...
    <hash>.blob"), or the reader died of SIGBUS on the truncated mapping. Under the lock the first
    process compiles and writes, and the others wait and load the complete blob. Where ``fcntl``
    is missing (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder = compiled_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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


class _Flight:
    """The requests started whose completion callback has not returned yet (the callback's only
    state besides the job: it holds no reference to the engine)."""

    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def started(self) -> None:
        with self._idle:
            self._count += 1

    def done(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout=timeout)


#: ``active`` is True on a thread while it runs a completion callback.
_IN_CALLBACK = threading.local()


def _completed(flight: _Flight, request, userdata) -> None:
    """OpenVINO's completion callback: the heads of one request into its job (``then`` runs here,
    on the request's own output tensors for a one-image job)."""
    job, row = userdata
    _IN_CALLBACK.active = True
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
    except BaseException as error:  # handed to the caller through the future
        if not job.future.done():
            job.future.set_exception(error)
    finally:
        _IN_CALLBACK.active = False
        flight.done()


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

    def __init__(self, model_path: Path, choice: Choice, threads: Optional[int] = None, mode: str = LATENCY, *,
                 cache: bool = True, config: Optional[dict] = None, requests: Optional[int] = None) -> None:
        """Compile ``model_path`` (``.onnx`` or OpenVINO ``.xml``: the file ``BACKEND.artefact``
        gives, e.g. an int8 IR) for the resolved ``choice`` (:func:`ssd_resnet34.engines.resolve`;
        not checked again): its ``device`` (``cpu``, ``gpu``, ``npu``) at its ``precision``.
        ``config``: more OpenVINO properties (e.g. ``{"NUM_STREAMS": 4}``), applied last;
        ``cache=False`` compiles without the cache; ``requests``: infer requests in the queue
        (default OpenVINO's optimal number).

        Raises:
            NotHeadsModelError: the model's outputs are not the 12 heads.
            ValueError: not one 4-D image input; OpenVINO cannot read the model (an operator its
                ONNX front end does not know: the message names it).
            RuntimeError: OpenVINO could not compile the model.
        """
        super().__init__()
        core = openvino_core()
        if core is None:
            raise ImportError("the openvino engine needs the openvino package: pip install openvino")
        self.model_path = Path(model_path)
        self.mode = mode
        start = time.perf_counter()
        try:
            # A trusted file (a heads model made here) is read from the bytes its digest was checked on.
            data = read_trusted(self.model_path)
            if data is None:
                model = core.read_model(str(self.model_path))
            elif self.model_path.suffix == ".xml":  # an IR: its weights were checked with it
                weights = read_trusted(self.model_path.with_suffix(".bin"))
                if weights is None:
                    raise ValueError(f"{self.model_path}: its weights {self.model_path.with_suffix('.bin')} were not "
                                     "checked with it; refused")
                model = core.read_model(data, weights)
            else:
                model = core.read_model(data)
        except RuntimeError as error:  # e.g. an operator OpenVINO's ONNX front end does not know
            raise ValueError(f"{self.model_path}: OpenVINO cannot read this model: {_reason(error)}") from None
        self.read_seconds = time.perf_counter() - start
        _check_heads(model, self.model_path)
        model.reshape({model.inputs[0]: list(INPUT_SHAPE)})
        device, precision = choice.device, choice.precision
        extra = config
        config = {"PERFORMANCE_HINT": "THROUGHPUT" if mode == THROUGHPUT else "LATENCY"}
        if precision in _HINTS:
            config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        config.update(extra or {})
        start = time.perf_counter()
        if cache:
            with cache_lock():
                compiled = core.compile_model(model, device.upper(), {**config, "CACHE_DIR": str(compiled_cache_dir())})
        else:
            compiled = core.compile_model(model, device.upper(), config)
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
        # The callback must not hold the engine: engine -> queue -> callback -> engine is a cycle
        # through a C++ object the garbage collector cannot see, so an engine dropped without
        # close() kept its compiled model (~140 MB here) for ever.
        self._flight = _Flight()
        self._queue.set_callback(functools.partial(_completed, self._flight))
        self._start_lock = threading.Lock()
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
                self._flight.started()
                try:
                    # share_inputs: OpenVINO reads the batch's memory in place; the job keeps it alive.
                    self._queue.start_async({0: batch[row:row + 1]}, (job, row), share_inputs=True)
                except BaseException:
                    self._flight.done()
                    raise
        return job.future

    def __del__(self) -> None:
        # An engine dropped without close() (no cycle holds it: see _Flight) is closed here: the
        # queue dropped while a request is still finishing its callback kept the compiled model
        # (~170 MB here) alive. Not from a completion callback, which close() would wait for.
        if getattr(self, "_closed", True) or getattr(_IN_CALLBACK, "active", False) or not hasattr(self, "_flight"):
            return
        try:
            self.close()
        except Exception:  # nothing to report to in a finalizer
            pass

    def _release(self) -> None:
        # Wait until every callback has run to its end (not only the inferences, which is what
        # wait_all waits for): a callback thread that still needs the GIL while the interpreter
        # shuts down aborts the process.
        self._flight.wait_idle(_CLOSE_TIMEOUT_S)
        self._queue.wait_all()
        self._queue = None
        self._compiled = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"requests={self.requests}, streams={self.streams}"
        return (f"OpenVinoEngine({str(self.model_path)!r}, device={self.ov_device!r}, precision={self.precision!r}, "
                f"mode={self.mode!r}, {state})")


def _reason(error: Exception) -> str:
    """The useful part of an OpenVINO exception: its summary lines (``-- No conversion rule found
    for operations: NoSuchOp-17``), else its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Summary:" in lines:
        lines = lines[lines.index("Summary:") + 1:]
        return "; ".join(line.lstrip("- ").strip() for line in lines) or str(error)
    return lines[-1] if lines else type(error).__name__


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


#: This backend's entry in the engine registry.
BACKEND = Backend(
    name="openvino",
    devices=DEVICES,
    precisions={device: _ALL for device in DEVICES},
    auto_devices=("gpu", "cpu"),
    needs={"gpu": "an Intel GPU with its OpenVINO driver", "npu": "an Intel NPU with its OpenVINO driver"},
    available=lambda: importlib.util.find_spec("openvino") is not None,
    probe=probe,
    artefact=_artefact,
    int8_targets={"openvino": DEVICES},
    open=_open,
)
