"""Dynamic batching into the one pipeline loop (:func:`ssd_resnet34.pipeline.run_pipeline`).

Requests put their images (:class:`Job`) on a bounded queue (:meth:`Batcher.submit`: 503 with
``Retry-After`` past ``max_queue`` waiting images). One worker thread runs ``run_pipeline`` over
an iterator that takes the queue's jobs in groups: up to ``max_batch`` images with the same
postprocess options, the first waiting at most ``max_delay_ms`` for the others when there is
concurrency (another batch in flight, or other jobs queued); a lone job on an idle server goes
at once, since waiting could only add its delay (``wait_when_idle=True``: always wait). The pipeline
then reads and preprocesses each group on its threads, keeps the engine's requests in flight and
decodes each batch as its heads arrive, exactly as for files; each batch's own ``decode``
(``Prepared.decode``) answers its jobs at once, so no request waits for the pipeline's in-order
yield. Jobs past their deadline are dropped before they are prepared (their request has had its
504). :meth:`Batcher.close` stops taking jobs, finishes those queued and in flight, and returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..detections import Detections
from ..image import build_batch
from ..pipeline import ImageResult, Prepared, run_pipeline
from .errors import HTTPError
from .options import Options, PostprocessorCache

__all__ = ["Answer", "Batcher", "Job"]

_log = logging.getLogger("ssd_resnet34.serving")


@dataclass
class Answer:
    """One image's answer: its :class:`~ssd_resnet34.Detections`, its ``context`` (``width``,
    ``height`` of the original in pixels) and, when asked for, the decoded uint8 BGR image."""

    detections: Detections
    context: Dict[str, Any]
    image: Optional[np.ndarray] = None


@dataclass(eq=False)
class Job:
    """One image of a request: encoded ``data`` (a file's bytes) or a preprocessed ``tensor``
    ((3, 1200, 1200) float32) with the original ``size`` (width, height); ``name`` names it in
    errors (``image_files[2]``); ``options`` its postprocess options; ``deadline``
    (``time.monotonic()``); ``done(job)`` is called once, from any thread, when ``answer`` or
    ``error`` is set."""

    name: str
    options: Options
    deadline: float
    done: Callable[["Job"], None]
    data: Optional[bytes] = None
    tensor: Optional[np.ndarray] = None
    size: Optional[Tuple[int, int]] = None
    keep_image: bool = False
    answer: Optional[Answer] = None
    error: Optional[HTTPError] = None
    cancelled: bool = False
    _finished: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finish(self, answer: Optional[Answer] = None, error: Optional[HTTPError] = None) -> None:
        """Set the answer or the error (the first call wins) and call ``done``."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self.answer, self.error = answer, error
        self.done(self)

    @property
    def expired(self) -> bool:
        return self.cancelled or time.monotonic() > self.deadline


def _timeout(job: Job) -> HTTPError:
    return HTTPError(504, f"{job.name}: the request's deadline passed before it reached the engine; its work was dropped")


class Batcher:
    """Gathers jobs into engine batches and runs them through the pipeline on a worker thread.

    ``engine``: an open engine; ``postprocessors``: the postprocessor for each set of options;
    ``max_batch``, ``max_delay_ms``, ``max_queue``, ``depth``, ``exact``: as
    :class:`~ssd_resnet34.serving.ServerSettings`; ``on_batch(rows)``: called for each engine
    batch (metrics); ``wait_when_idle``: wait ``max_delay_ms`` for companions even when the job
    is alone (no other queued, no batch in flight; default False: dispatch it at once). Call
    :meth:`start`, then :meth:`submit`; :meth:`close` at the end.
    """

    def __init__(self, engine: Any, postprocessors: PostprocessorCache, *, max_batch: int, max_delay_ms: float,
                 max_queue: int, depth: Optional[int] = None, exact: bool = False,
                 on_batch: Optional[Callable[[int], None]] = None, wait_when_idle: bool = False) -> None:
        self.engine = engine
        self.postprocessors = postprocessors
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_ms / 1000.0, max_queue
        self.depth, self.exact, self.on_batch = depth, exact, on_batch
        self.wait_when_idle = wait_when_idle
        self._queue: Deque[Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._outstanding: Dict[int, List[Job]] = {}
        self._outstanding_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="ssd-resnet34-serving-batcher", daemon=True)
        self.failures = 0

    # -- the requests' side --------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Images queued, not yet in a batch."""
        return len(self._queue)

    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue a request's jobs, all or none. Raises ``HTTPError`` 503 (with ``Retry-After``)
        when they would make more than ``max_queue`` images wait, or when shutting down."""
        with self._cond:
            if self._closing:
                raise HTTPError(503, "the server is shutting down", {"Retry-After": "5"})
            if len(self._queue) + len(jobs) > self.max_queue:
                raise HTTPError(503, f"the server is busy: {len(self._queue)} images are waiting (the limit is "
                                     f"{self.max_queue}); retry later", {"Retry-After": "1"})
            self._queue.extend(jobs)
            self._cond.notify()

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop taking jobs; finish the queued and running ones (at most ``timeout`` seconds)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker's side ---------------------------------------------------------------
    def _take(self, first: Optional[Job], until: float) -> Optional[Job]:
        """The next queued job with ``first``'s options, waiting until ``until`` (None when none)."""
        with self._cond:
            while not self._queue and not self._closing:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if not self._queue or (first is not None and self._queue[0].options != first.options):
                return None
            return self._queue.popleft()

    def _groups(self) -> Iterator[List[Job]]:
        """Groups of jobs for the pipeline; ends when closing and the queue is empty."""
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                first = self._queue.popleft()
                alone = not self._queue
            if first.expired:
                first.finish(error=_timeout(first))
                continue
            with self._outstanding_lock:
                idle = not self._outstanding
            wait = self.max_delay_s if (self.wait_when_idle or not (alone and idle)) else 0.0
            group, until = [first], time.monotonic() + wait
            while len(group) < self.max_batch:
                job = self._take(first, until)
                if job is None:
                    break
                if job.expired:
                    job.finish(error=_timeout(job))
                else:
                    group.append(job)
            with self._outstanding_lock:
                self._outstanding[id(group)] = group
            yield group

    def _settled(self, group: List[Job]) -> None:
        with self._outstanding_lock:
            self._outstanding.pop(id(group), None)

    def _prepare(self, chunk: Sequence[Tuple[int, Any]]) -> Prepared:
        (_, group), = chunk
        live = []
        for job in group:
            if job.expired:
                job.finish(error=_timeout(job))
            else:
                live.append(job)
        encoded = [(k, job.data) for k, job in enumerate(live) if job.data is not None]
        keep = any(job.keep_image for job in live)
        jobs: List[Job] = []
        contexts: List[Dict[str, Any]] = []
        images: List[Optional[np.ndarray]] = []
        parts = []
        if encoded:
            batch, entries = build_batch(encoded, exact=self.exact, keep_images=keep)
            for entry in entries:
                job = live[entry.index]
                if entry.error is not None:
                    reason = getattr(entry.error, "reason", None) or str(entry.error)
                    job.finish(error=HTTPError(400, f"{job.name}: {reason}"))
                    continue
                jobs.append(job)
                contexts.append(entry.context)
                images.append(entry.image)
            if batch is not None:
                parts.append(batch)
        tensors = [job for job in live if job.tensor is not None]
        if tensors:
            parts.append(np.stack([job.tensor for job in tensors]))
            for job in tensors:
                jobs.append(job)
                contexts.append({"width": job.size[0], "height": job.size[1]})
                images.append(None)
        if not parts:
            self._settled(group)
            return Prepared(None, [], [], [])
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        postprocessor = self.postprocessors.get(group[0].options)

        def decode(heads: List[np.ndarray]) -> List[Detections]:
            found = postprocessor.decode(heads)
            for job, detections, context, image in zip(jobs, found, contexts, images):
                job.finish(Answer(detections, context, image if job.keep_image else None))
            self._settled(group)
            if self.on_batch is not None:
                self.on_batch(len(jobs))
            return found

        results = [ImageResult(row, job.name, context=context) for row, (job, context) in enumerate(zip(jobs, contexts))]
        return Prepared(batch, contexts, results, list(range(len(jobs))), decode=decode)

    def _fail_outstanding(self, error: BaseException) -> None:
        with self._outstanding_lock:
            groups, self._outstanding = list(self._outstanding.values()), {}
        for group in groups:
            for job in group:
                job.finish(error=HTTPError(500, f"inference failed: {type(error).__name__}: {error}"))

    def _work(self) -> None:
        while True:
            try:
                for _ in run_pipeline(self._groups(), self.engine, self.postprocessors.base.decode, batch_size=1,
                                      depth=self.depth, prepare=self._prepare):
                    pass  # each batch was answered by its own decode
                return
            except BaseException as error:  # an engine or postprocess failure: answer 500, go on
                self.failures += 1
                _log.error("inference failed: %s: %s", type(error).__name__, error)
                self._fail_outstanding(error)
                with self._cond:
                    if self._closing and not self._queue:
                        return
