"""The detection pipeline loop: inputs -> read + preprocess -> engine -> postprocess -> results.

This is the one loop every user of the detector runs through (``SSDResNet34.iter_detect`` /
``detect``, the ``detect`` and ``eval`` commands, the LoadGen Offline SUT). It keeps the stages
busy at once, with bounded memory:

- inputs are taken lazily in batches of ``batch_size``; each batch is one task on a thread pool
  that reads and preprocesses its images (OpenCV and the native normalize release the GIL), then
  submits the batch to the engine and waits for it;
- the engine keeps up to ``engine.requests`` batches in flight (onnxruntime on worker threads,
  OpenVINO through its ``AsyncInferQueue``); the postprocessor runs on each batch's heads as soon
  as they arrive (``Engine.submit(..., then=...)``), GIL released in the native decode;
- at most ``depth`` batches exist at any time (being prepared, inferred or waiting to be
  yielded): ``depth`` x ``batch_size`` images of 17 MB each, never the whole folder;
- results are yielded in input order; a bad input (unreadable file, not an image, bad array) is
  an :class:`ImageResult` with ``error`` set, and the other images go on;
- closing the iterator (``break``, an exception, Ctrl-C) cancels the batches not started, waits
  for the ones running, and leaves no thread behind.

``depth=0`` runs everything serially in the calling thread (the reference for order and results,
and the baseline of ``bench --stages``).
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .image import ImageError, load_image, preprocess_into
from .layout import INPUT_SIZE
from .types import ObjectDetectionResult

__all__ = ["INPUT_ERRORS", "ImageResult", "Prepared", "default_depth", "prepare_images", "run_pipeline"]

#: Exceptions that concern one input (a bad file or array): reported per image, never raised.
INPUT_ERRORS = (ImageError, TypeError, ValueError)


@dataclass
class ImageResult:
    """What the pipeline gives for one input, in input order.

    Attributes:
        index: the input's position (0-based) in the iterable given.
        source: the input itself (a path or an array).
        results: the detections (``ObjectDetectionResult``, boxes ltrb in pixels), score
            descending; None when ``error`` is set.
        error: why this input could not be processed (``ImageError`` for a file, ``TypeError``
            or ``ValueError`` for an array), else None.
        context: ``width``/``height`` of the original image in pixels (and ``path``,
            ``file_name`` for files); None when the input could not be read.
        image: the decoded uint8 BGR image when asked for (``keep_images=True``), else None.
    """

    index: int
    source: Any
    results: Optional[List[ObjectDetectionResult]] = None
    error: Optional[BaseException] = None
    context: Optional[Dict[str, Any]] = None
    image: Optional[np.ndarray] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Prepared:
    """One batch ready for the engine: the (n, 3, 1200, 1200) float32 input, the contexts of its
    n images, and the :class:`ImageResult` of every input of the batch (good and bad, in order);
    ``good[i]`` is the position in ``results`` of batch row ``i``."""

    batch: Optional[np.ndarray]
    contexts: List[Dict[str, Any]]
    results: List[ImageResult]
    good: List[int]


def prepare_images(chunk: Sequence[Tuple[int, Any]], keep_images: bool = False) -> Prepared:
    """Read and preprocess a batch of ``(index, input)``: the default ``prepare`` of
    :func:`run_pipeline`. A bad input becomes an :class:`ImageResult` with its error."""
    results: List[ImageResult] = []
    images: List[np.ndarray] = []
    contexts: List[Dict[str, Any]] = []
    good: List[int] = []
    for index, item in chunk:
        outcome = ImageResult(index, item)
        try:
            image, context = load_image(item, f"images[{index}]")
        except INPUT_ERRORS as error:
            outcome.error = error
        else:
            outcome.context = context
            outcome.image = image if keep_images else None
            good.append(len(results))
            images.append(image)
            contexts.append(context)
        results.append(outcome)
    batch = None
    if images:
        batch = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        for row, image in enumerate(images):
            preprocess_into(image, batch[row])
    return Prepared(batch, contexts, results, good)


def default_depth(engine: Any) -> int:
    """Batches alive at once: the engine's requests in flight plus one being prepared per core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(getattr(engine, "requests", 1)) + max(1, cores)


def _chunks(items: Iterable[Any], size: int) -> Iterator[List[Tuple[int, Any]]]:
    numbered = enumerate(items)
    while True:
        chunk = list(itertools.islice(numbered, size))
        if not chunk:
            return
        yield chunk


def run_pipeline(
    items: Iterable[Any],
    engine: Any,
    postprocessor: Callable[[List[np.ndarray], List[Dict[str, Any]]], List[List[ObjectDetectionResult]]],
    *,
    batch_size: int = 1,
    depth: Optional[int] = None,
    keep_images: bool = False,
    prepare: Optional[Callable[[Sequence[Tuple[int, Any]]], Prepared]] = None,
) -> Iterator[ImageResult]:
    """Detect on ``items``; yields one :class:`ImageResult` per input, in input order.

    Args:
        items: inputs (paths or uint8 BGR arrays), consumed lazily.
        engine: an open engine (:func:`ssd_resnet34.engines.create`).
        postprocessor: ``postprocessor(heads, contexts)`` -> per image a list of results.
        batch_size: images per engine call.
        depth: batches alive at once (None: :func:`default_depth`); 0 runs serially in the
            calling thread.
        keep_images: put each decoded image in its result (for drawing).
        prepare: turns a batch of ``(index, item)`` into a :class:`Prepared` (default:
            :func:`prepare_images`, which reads and preprocesses them).

    Raises what the engine or the postprocessor raise (not per image); the iterator cleans up
    first.
    """
    prepare_fn = prepare or (lambda chunk: prepare_images(chunk, keep_images))

    def process(chunk: Sequence[Tuple[int, Any]]) -> List[ImageResult]:
        prepared = prepare_fn(chunk)
        if prepared.batch is not None:
            contexts = prepared.contexts
            detections = engine.submit(prepared.batch, then=lambda heads: postprocessor(heads, contexts)).result()
            for position, found in zip(prepared.good, detections):
                prepared.results[position].results = found
        return prepared.results

    chunks = _chunks(items, batch_size)
    depth = default_depth(engine) if depth is None else depth
    if depth == 0:
        for chunk in chunks:
            yield from process(chunk)
        return

    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="ssd-resnet34-pipeline")
    pending: "deque[Future[List[ImageResult]]]" = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(process, chunk))
            if len(pending) >= depth:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
