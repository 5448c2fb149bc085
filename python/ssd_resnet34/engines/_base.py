"""What every inference engine shares: the :class:`Engine` interface and the input check.

An engine runs one SSD-ResNet34 ONNX model on batches of preprocessed images: ``run(images)``
takes ``(N, 3, 1200, 1200)`` float32 NCHW (RGB, normalized as MLCommons' ``dataset.py``
``pre_process_coco_resnet34``) and returns the model card's 12 head tensors. ``submit`` does
the same asynchronously, so a pipeline can keep several requests in flight.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import numpy as np

from ..layout import INPUT_SHAPE

__all__ = ["Engine", "check_images", "copy_heads"]

T = TypeVar("T")

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


def copy_heads(heads: List[np.ndarray]) -> List[np.ndarray]:
    """Copies of the head tensors (engines may reuse their output memory after a callback)."""
    return [np.array(h, copy=True) for h in heads]


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
    mode: str = "latency"
    requests: int = 1
    is_heads: bool = True

    def __init__(self) -> None:
        self._closed = False
        self._lock = threading.Lock()
        self._executor: Optional[ThreadPoolExecutor] = None

    # -- the interface -------------------------------------------------------------------
    def run(self, images: np.ndarray) -> List[np.ndarray]:
        """Run the model on a batch.

        Args:
            images: ``(N, 3, 1200, 1200)`` float32, NCHW, RGB, normalized; N >= 1.
                Non-contiguous arrays are copied.

        Returns:
            The 12 head tensors in the model card's order, float32, each with N rows
            (class logits ``(N, 324, 50, 50)`` ... then box offsets ... ``(N, 16, 3, 3)``);
            for a model that is not a heads model, its raw outputs.

        Raises:
            TypeError: ``images`` is not a float32 numpy array.
            ValueError: wrong rank or shape, or N = 0.
            RuntimeError: the engine is closed.
        """
        self._check_open()
        return self._run(check_images(images, self._input_chw()))

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
