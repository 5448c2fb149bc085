"""The service behind the routes: one engine, its batcher, the postprocessors and the metrics,
started once (engine opened if not given, warmed up, then ready) and closed once (queued and
running work finished, engine closed)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..layout import INPUT_SHAPE
from .batcher import Answer, Batcher, Job
from .errors import HTTPError
from .metrics import Metrics
from .options import Options, PostprocessorCache
from .settings import ServerSettings

__all__ = ["Service"]

_log = logging.getLogger("ssd_resnet34.serving")


class Service:
    """``model``: an ``SSDResNet34``; ``engine``: an open engine for it (the service closes it at
    the end), or None to open one in :meth:`start` with ``engine_options`` (as
    :func:`ssd_resnet34.engines.create`, ``mode`` ``"throughput"``)."""

    def __init__(self, settings: ServerSettings, model: Any, engine: Any = None,
                 engine_options: Optional[Dict[str, Any]] = None) -> None:
        self.settings = settings
        self.model = model
        self.engine = engine
        self.engine_options = dict(engine_options or {})
        self.postprocessors = PostprocessorCache(model.postprocessor)
        self.batcher: Optional[Batcher] = None
        self.metrics: Optional[Metrics] = None
        self.ready = False
        self.failure: Optional[str] = None
        self._closed = False
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Open the engine (if needed), warm it up (one batch), start the batcher; then ready."""
        from .. import engines

        with self._start_lock:
            if self.batcher is not None or self._closed:
                return
            if self.engine is None:
                self.engine = engines.create(self.model, mode=engines.THROUGHPUT, **self.engine_options)
            self.postprocessors.base.decode(self.engine.run(np.zeros((1, *INPUT_SHAPE[1:]), np.float32)))
            settings = self.settings
            batcher = Batcher(self.engine, self.postprocessors, max_batch=settings.max_batch,
                              max_delay_ms=settings.max_delay_ms, max_queue=settings.max_queue,
                              depth=settings.depth, exact=settings.exact)
            self.metrics = Metrics(self.engine, settings.model_name, lambda: batcher.waiting)
            batcher.on_batch = self.metrics.on_batch
            batcher.start()
            self.batcher = batcher
            self.ready = True
            engine = self.engine
            _log.info("ready: model %s on %s %s %s", settings.model_name, engine.name, engine.device, engine.precision)

    def start_in_background(self) -> threading.Thread:
        """:meth:`start` on a thread, so that the server answers (live, not ready) meanwhile; a
        failure is logged and kept in :attr:`failure` (``/v2/health/ready`` says it)."""

        def run() -> None:
            try:
                self.start()
            except Exception as error:  # reported by the ready endpoint and the log
                self.failure = f"{type(error).__name__}: {error}"
                _log.error("the engine could not start: %s", self.failure)

        thread = threading.Thread(target=run, name="ssd-resnet34-serving-start", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Finish the queued and running work, then close the engine (idempotent; waits for a
        start in progress)."""
        self.ready = False
        with self._start_lock:
            self._closed = True
        if self.batcher is not None:
            self.batcher.close(self.settings.graceful_timeout_s)
        if self.engine is not None:
            self.engine.close()

    def options(self, options: Options) -> None:
        """Check a request's postprocess options (``HTTPError`` 400 naming the bad one)."""
        self.postprocessors.get(options)

    async def detect(self, items: Sequence[Dict[str, Any]], options: Options, deadline: float) -> List[Answer]:
        """Run ``items`` (each ``name`` and ``data``, or ``tensor`` and ``size``; ``keep_image``)
        through the batcher; their answers in order. ``deadline``: ``time.monotonic()`` after
        which the answer is 504 and the work not started is dropped. Raises ``HTTPError``: 503
        (queue full, not ready), 504, the first image's error (400/413) or 500."""
        if self.batcher is None or not self.ready:
            raise HTTPError(503, "the model is not ready yet (see /v2/health/ready)", {"Retry-After": "5"})
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        left = [len(items)]
        lock = threading.Lock()

        def resolve() -> None:
            if not finished.done():
                finished.set_result(None)

        def done(_job: Job) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                try:
                    loop.call_soon_threadsafe(resolve)
                except RuntimeError:  # the event loop is gone (shutdown)
                    pass

        jobs = [Job(item["name"], options, deadline, done, data=item.get("data"), tensor=item.get("tensor"),
                    size=item.get("size"), keep_image=item.get("keep_image", False)) for item in items]
        self.batcher.submit(jobs)
        try:
            await asyncio.wait_for(asyncio.shield(finished), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            for job in jobs:
                job.cancelled = True
            raise HTTPError(504, f"no answer within the request's deadline ({self.settings.request_timeout_s:g} s "
                                 "at most, --request-timeout); its work not yet started was dropped") from None
        errors = [job.error for job in jobs if job.error is not None]
        if errors:
            raise min(errors, key=lambda e: (e.status >= 500, e.status))
        return [job.answer for job in jobs]
