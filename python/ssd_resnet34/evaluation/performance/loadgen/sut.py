"""The systems under test: :class:`PipelineSUT` (SingleStream, MultiStream, Offline: each query
through the detector's pipeline) and :class:`ServerSUT` (dynamic batching of the Server's
single-sample queries), both answering LoadGen through one :class:`Responder`."""

from __future__ import annotations

import array
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from ....pipeline import ImageResult, Prepared, run_pipeline
from .codec import RESPONSE_WIDTH, Detections, encode_response
from .qsl import ImageSampleLibrary

__all__ = ["PipelineSUT", "Responder", "ServerSUT"]


class Responder:
    """Answers LoadGen (``QuerySamplesComplete``) and remembers the first error; thread-safe.
    ``on_complete(n)``: called (under its lock) after each answer of n samples, for progress."""

    def __init__(self, lg: Any, on_complete: Optional[Callable[[int], None]] = None) -> None:
        self.lg = lg
        self.on_complete = on_complete
        self.completed = 0
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def respond(self, samples: Sequence[Any], detections: Optional[Sequence[Detections]]) -> None:
        """Answer ``samples`` (LoadGen QuerySample objects); with ``detections`` None (an error),
        answer them empty so that LoadGen finishes."""
        if detections is None or self.error is not None:
            results = [np.empty((0, RESPONSE_WIDTH), np.float32) for _ in samples]
        else:
            results = [encode_response(s.index, d) for s, d in zip(samples, detections)]
        buffers = [array.array("B", r.tobytes()) for r in results]  # alive until QuerySamplesComplete returns
        responses = []
        for sample, buf in zip(samples, buffers):
            address, length = buf.buffer_info()
            responses.append(self.lg.QuerySampleResponse(sample.id, address, length * buf.itemsize))
        self.lg.QuerySamplesComplete(responses)
        with self._lock:
            self.completed += len(samples)
            if self.on_complete is not None:
                try:
                    self.on_complete(len(samples))
                except Exception:  # progress must never cost a LoadGen answer
                    self.on_complete = None


class PipelineSUT:
    """SingleStream, MultiStream, Offline: each query through the pipeline, in LoadGen's issue thread."""

    def __init__(self, library: ImageSampleLibrary, engine: Any, decode: Callable, batch_size: int,
                 responder: Responder) -> None:
        self.library, self.engine, self.decode, self.batch_size = library, engine, decode, batch_size
        self.responder = responder

    def _prepare(self, chunk: Sequence[Tuple[int, Any]]) -> Prepared:
        indices = [sample.index for _, sample in chunk]
        results = [ImageResult(position, sample) for position, sample in chunk]
        return Prepared(self.library.batch(indices), self.library.contexts(indices), results,
                        list(range(len(chunk))))

    def issue_queries(self, samples: List[Any]) -> None:
        if self.responder.error is not None:
            self.responder.respond(samples, None)
            return
        answered = 0
        try:
            # One batch (SingleStream, small MultiStream queries): nothing to overlap, so no threads.
            depth = 0 if len(samples) <= self.batch_size else None
            stream = run_pipeline(samples, self.engine, self.decode,
                                  batch_size=self.batch_size, depth=depth, prepare=self._prepare)
            for outcome in stream:
                self.responder.respond([outcome.source], [outcome.detections])
                answered += 1
        except BaseException as error:  # never let an exception unwind into LoadGen's C++ thread
            self.responder.fail(error)
            self.responder.respond(samples[answered:], None)

    def flush_queries(self) -> None:
        pass

    def close(self) -> None:
        pass


_STOP = object()


class ServerSUT:
    """Server: dynamic batching of single-sample queries, requests overlapping on the engine."""

    def __init__(self, library: ImageSampleLibrary, engine: Any, decode: Callable, max_batch: int,
                 timeout_s: float, responder: Responder) -> None:
        self.library, self.engine, self.decode = library, engine, decode
        self.max_batch, self.timeout_s, self.responder = max_batch, timeout_s, responder
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._pending: List[Future] = []
        self._thread = threading.Thread(target=self._batcher, name="ssd-resnet34-server-batcher", daemon=True)
        self._thread.start()

    def issue_queries(self, samples: List[Any]) -> None:
        for sample in samples:
            self._queue.put(sample)

    def flush_queries(self) -> None:
        pass

    def _next_batch(self, first: Any) -> Tuple[List[Any], bool]:
        batch, deadline = [first], time.monotonic() + self.timeout_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                sample = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if sample is _STOP:
                return batch, True
            batch.append(sample)
        return batch, False

    def _batcher(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._next_batch(first)
            if self.responder.error is not None:
                self.responder.respond(batch, None)
                continue
            try:
                images = self.library.batch([s.index for s in batch])
                future = self.engine.submit(images, then=lambda heads, b=batch: self.responder.respond(b, self.decode(heads)))
            except BaseException as error:
                self.responder.fail(error)
                self.responder.respond(batch, None)
                continue
            future.add_done_callback(lambda f, b=batch: self._check(f, b))
            self._pending.append(future)

    def _check(self, future: Future, batch: List[Any]) -> None:
        error = future.exception()
        if error is not None:
            self.responder.fail(error)
            self.responder.respond(batch, None)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        for future in self._pending:
            try:
                future.result()
            except BaseException:  # already answered and recorded by _check
                pass
