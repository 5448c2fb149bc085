"""What every inference engine shares: the :class:`Engine` interface and the input check.

An engine runs one SSD-ResNet34 ONNX model on batches of preprocessed images: ``run(images)``
takes ``(N, 3, 1200, 1200)`` float32 NCHW (RGB, normalized as MLCommons' ``dataset.py``
``pre_process_coco_resnet34``) and returns the model card's 12 head tensors (an
:class:`Outputs`). ``submit`` does the same asynchronously, so a pipeline can keep several
requests in flight.

Also the types the registry (``_registry.py``) and the backends share: :class:`Choice` (a resolved
engine, device and precision), :class:`Probe` (what a backend sees on this machine) and
:class:`Backend` (one entry per backend module), and the defaults every layer uses:
:data:`AUTO` for the device, engine and precision, and the two engine modes, :data:`LATENCY`
and :data:`THROUGHPUT`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple, TypeVar

import numpy as np

from ..layout import INPUT_SHAPE

__all__ = ["AUTO", "ENGINE_MODES", "LATENCY", "THROUGHPUT", "Backend", "Choice", "Engine", "Outputs", "Probe",
           "check_images", "copy_heads"]

T = TypeVar("T")

#: The default device, engine and precision everywhere: resolved for this machine by
#: :func:`ssd_resnet34.engines.resolve`.
AUTO = "auto"
#: Engine mode for one ``run`` call at a time: one request, all cores on it (the default of
#: :func:`ssd_resnet34.engines.create`).
LATENCY = "latency"
#: Engine mode for a stream of images (pipelines, LoadGen MultiStream/Server/Offline): several
#: requests in flight (OpenVINO's THROUGHPUT hint and streams; onnxruntime one request per core).
THROUGHPUT = "throughput"
#: The engine modes :func:`ssd_resnet34.engines.create` accepts (not LoadGen's test modes).
ENGINE_MODES = (LATENCY, THROUGHPUT)


class Choice(NamedTuple):
    """A resolved choice, with no ``"auto"`` left (made by :func:`ssd_resnet34.engines.resolve`,
    immutable): ``engine`` (``"openvino"``, ``"onnxruntime"``), ``device`` (lower case: ``"cpu"``,
    ``"gpu"``, ``"npu"``, ``"cuda"``, ``"tensorrt"``) and ``precision`` (``"fp32"``, ``"bf16"``,
    ``"fp16"``, ``"int8"``). Engine constructors take it as it is and do not check it again."""

    engine: str
    device: str
    precision: str


class Probe(NamedTuple):
    """What one backend sees on this machine (``Backend.probe()``; tests build their own).

    Attributes:
        runnable: for each device of the backend present here, the precisions it can run, the
            one ``precision="auto"`` picks first (``{"cpu": ("bf16", "fp32", "fp16", "int8")}``).
        seen: what the backend reports, for error messages (``"OpenVINO devices ['CPU']"``).
        notes: per device, why a precision may be missing (``"OpenVINO's CPU capabilities are [...]"``).
    """

    runnable: Mapping[str, Tuple[str, ...]]
    seen: str
    notes: Mapping[str, str] = {}


class Backend(NamedTuple):
    """One inference backend, as its module declares it (``BACKEND``) and the registry lists it.

    Attributes:
        name: the engine name (``create(engine=name)``).
        devices: the devices it runs, in the order ``device="auto"`` prefers them.
        precisions: per device, the precisions it can run at all (this machine may run fewer:
            :attr:`probe`).
        auto_devices: the devices ``device="auto"`` may pick (never one that takes minutes to
            start, as TensorRT, or the NPU).
        needs: per device, what the machine needs for it (for the message when it is missing).
        available: whether its Python package is installed (cheap: no import).
        probe: what it sees on this machine (:class:`Probe`); called only when available.
        artefact: ``artefact(model_path, precision, device) -> Path``: the model file a precision
            needs (the heads model itself, a float16 copy, a calibrated int8 model).
        int8_targets: the int8 artefacts it runs, ``{target: devices}``; each target is one
            quantizer of :mod:`ssd_resnet34.model.int8_tools` and one entry of the int8 cache.
        open: ``open(model_path, choice, threads, mode, **options) -> Engine`` (the model file from
            :attr:`artefact`).
    """

    name: str
    devices: Tuple[str, ...]
    precisions: Mapping[str, Tuple[str, ...]]
    auto_devices: Tuple[str, ...]
    needs: Mapping[str, str]
    available: Callable[[], bool]
    probe: Callable[[], Probe]
    artefact: Callable[..., Path]
    int8_targets: Mapping[str, Tuple[str, ...]]
    open: Callable[..., "Engine"]


class Outputs(list):
    """The 12 head tensors of one ``run`` call, in the model card's order: a ``list`` of float32
    numpy arrays (``(N, 324, 50, 50)`` ... ``(N, 16, 3, 3)``), so it indexes, unpacks and feeds
    the postprocessors as a list does. :meth:`numpy` returns the arrays, as the model card's
    ``sess.run(image).numpy()`` expects."""

    __slots__ = ()

    def numpy(self) -> List[np.ndarray]:
        """The arrays, as a plain list (no copy)."""
        return list(self)

_CHW = INPUT_SHAPE[1:]


def check_images(images: Any, chw=_CHW) -> np.ndarray:
    """``images`` as a C-contiguous ``(N, 3, 1200, 1200)`` float32 array (copied only when not
    contiguous).

    Raises ``TypeError`` for a non-array or a dtype other than float32, ``ValueError`` for
    another rank or shape, or N = 0.
    """
    want = f"(N, {', '.join(map(str, chw))}) float32 (NCHW, RGB, normalized)"
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy.ndarray of shape {want}, got {type(images).__name__}")
    if images.dtype != np.float32:
        raise TypeError(f"images must be float32 with shape {want}, got dtype {images.dtype} "
                        "(convert with images.astype(numpy.float32))")
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(chw) or images.shape[0] < 1:
        raise ValueError(f"images must have shape {want} with N >= 1, got {images.shape}")
    return np.ascontiguousarray(images)


def copy_heads(heads: List[np.ndarray]) -> "Outputs":
    """Copies of the head tensors, as :class:`Outputs` (engines may reuse their output memory after
    a callback)."""
    return Outputs(np.array(h, copy=True) for h in heads)


class Engine:
    """An inference engine over one SSD-ResNet34 model; a context manager.

    Attributes (set by each engine):
        name: ``"onnxruntime"`` or ``"openvino"``.
        model_path: the ``.onnx`` file it runs.
        device: the device it really runs on (e.g. ``"cpu"``, ``"gpu.0"``, ``"cuda"``).
        precision: the precision it really computes in (``"fp32"``, ``"bf16"``, ``"fp16"``,
            ``"int8"``).
        mode: ``"latency"`` (one request at a time) or ``"throughput"`` (several in flight).
        requests: how many requests it serves at once usefully; a pipeline keeps that many in
            flight (:meth:`submit`).
        is_heads: whether ``run`` returns the 12 SSD heads (else the model's raw outputs).

    Subclasses implement :meth:`_run` (a checked contiguous batch -> outputs) and may override
    :meth:`submit` (the default runs :meth:`run` on ``requests`` worker threads) and
    :meth:`_release`.
    """

    name = "engine"
    model_path: Path
    device: str
    precision: str = "fp32"
    mode: str = LATENCY
    requests: int = 1
    is_heads: bool = True

    def __init__(self) -> None:
        self._closed = False
        self._lock = threading.Lock()
        self._executor: Optional[ThreadPoolExecutor] = None

    # -- the interface -------------------------------------------------------------------
    def run(self, images: np.ndarray) -> Outputs:
        """Run the model on a batch.

        Args:
            images: ``(N, 3, 1200, 1200)`` float32, NCHW, RGB, normalized; N >= 1.
                Non-contiguous arrays are copied.

        Returns:
            An :class:`Outputs` (a list; ``.numpy()`` gives the arrays): the 12 head tensors in
            the model card's order, float32, each with N rows
            (class logits ``(N, 324, 50, 50)`` ... then box offsets ... ``(N, 16, 3, 3)``);
            for a model that is not a heads model, its raw outputs.

        Raises:
            TypeError: ``images`` is not a float32 numpy array.
            ValueError: wrong rank or shape, or N = 0.
            RuntimeError: the engine is closed.
        """
        self._check_open()
        return Outputs(self._run(check_images(images, self._input_chw())))

    def submit(self, images: np.ndarray, then: Optional[Callable[[List[np.ndarray]], T]] = None) -> "Future[T]":
        """Run a batch asynchronously; returns a ``concurrent.futures.Future``.

        ``then(heads)`` is called on the engine's thread as soon as the heads are ready, while
        they are still valid (engines may reuse the memory afterwards); the future resolves to
        its return value. Without ``then`` the future resolves to a copy of the heads. The
        batch is checked here, so a bad batch raises at once (as :meth:`run`).
        """
        self._check_open()
        batch = check_images(images, self._input_chw())
        finish = then or copy_heads
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.requests, thread_name_prefix=f"{self.name}-request")
            executor = self._executor
        return executor.submit(lambda: finish(self._run(batch)))

    def close(self) -> None:
        """Wait for the requests in flight, then release the engine (idempotent); ``run`` then
        raises ``RuntimeError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for subclasses ------------------------------------------------------------------
    def _run(self, images: np.ndarray) -> List[np.ndarray]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the runtime's resources (called once, by :meth:`close`)."""

    def _input_chw(self):
        return _CHW

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {self.name} engine for {self.model_path} is closed")
