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
- results are yielded in input order, each image's :class:`~ssd_resnet34.Detections` (pixel
  ``ObjectDetectionResult`` on demand); a bad input (unreadable file, not an image, bad array)
  is an :class:`ImageResult` with ``error`` set, and the other images go on;
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
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

import numpy as np

from .detections import Detections
from .image import INPUT_ERRORS, build_batch
from .layout import INPUT_SIZE, NUM_ANCHORS, NUM_CLASSES
from .types import ObjectDetectionResult

__all__ = [
    "BYTES_PER_IMAGE",
    "INPUT_ERRORS",
    "MAX_BATCH_SIZE",
    "ImageResult",
    "Prepared",
    "check_batch_size",
    "default_depth",
    "prepare_images",
    "run_pipeline",
]

#: ``decode(heads)``: the 12 head outputs of a batch -> one :class:`Detections` per image
#: (``postprocessor.decode``; a postprocessor itself is accepted by :func:`run_pipeline`).
Decode = Callable[[List[np.ndarray]], List[Detections]]


@dataclass
class ImageResult:
    """What the pipeline gives for one input, in input order.

    Attributes:
        index: the input's position (0-based) in the iterable given.
        source: the input itself (a path, bytes or an array).
        detections: its :class:`~ssd_resnet34.Detections` (normalized boxes, score descending);
            None when ``error`` is set.
        error: why this input could not be processed (``ImageError`` for a file, ``TypeError``
            or ``ValueError`` for an array), else None.
        context: ``width``/``height`` of the original image in pixels (and ``path``,
            ``file_name`` for files); None when the input could not be read.
        image: the decoded uint8 BGR image when asked for (``keep_images=True``), else None.
        results: the detections as ``ObjectDetectionResult`` (boxes ltrb in pixels of the
            original image), the model card's form; None when ``error`` is set.
    """

    index: int
    source: Any
    detections: Optional[Detections] = None
    error: Optional[BaseException] = None
    context: Optional[Dict[str, Any]] = None
    image: Optional[np.ndarray] = None
    _results: Optional[List[ObjectDetectionResult]] = field(default=None, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def results(self) -> Optional[List[ObjectDetectionResult]]:
        if self._results is None and self.detections is not None and self.context is not None:
            self._results = self.detections.to_results(self.context["width"], self.context["height"])
        return self._results


@dataclass
class Prepared:
    """One batch ready for the engine: the (n, 3, 1200, 1200) float32 input, the contexts of its
    n images, and the :class:`ImageResult` of every input of the batch (good and bad, in order);
    ``good[i]`` is the position in ``results`` of batch row ``i``. ``decode``: this batch's own
    ``decode(heads)`` (None: :func:`run_pipeline`'s); the server uses it to decode with each
    request's postprocess options and to answer a batch as soon as its heads are decoded, before
    the pipeline yields it in order."""

    batch: Optional[np.ndarray]
    contexts: List[Dict[str, Any]]
    results: List[ImageResult]
    good: List[int]
    decode: Optional[Decode] = None


def prepare_images(chunk: Sequence[Tuple[int, Any]], keep_images: bool = False, exact: bool = False) -> Prepared:
    """Read and preprocess a batch of ``(index, input)`` with the one batch builder
    (:func:`ssd_resnet34.image.build_batch`): the default ``prepare`` of :func:`run_pipeline`.
    A bad input becomes an :class:`ImageResult` with its error."""
    batch, entries = build_batch(chunk, exact=exact, keep_images=keep_images)
    results = [ImageResult(e.index, e.source, error=e.error, context=e.context, image=e.image) for e in entries]
    good = [position for position, entry in enumerate(entries) if entry.row is not None]
    return Prepared(batch, [results[position].context for position in good], results, good)


#: Bytes one image costs in a batch: its (3, 1200, 1200) float32 input and its 12 float32
#: head outputs (15,130 anchors x (81 scores + 4 offsets)); about 22 MB.
BYTES_PER_IMAGE = 4 * (3 * INPUT_SIZE * INPUT_SIZE + NUM_ANCHORS * (NUM_CLASSES + 4))
#: The largest batch size accepted (about 2.8 GB per batch): a batch is held whole in memory,
#: and ``depth`` batches are alive at once.
MAX_BATCH_SIZE = 128


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int in 1..:data:`MAX_BATCH_SIZE`; ``ValueError`` otherwise, saying
    what a batch costs (:data:`BYTES_PER_IMAGE` per image)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if batch_size > MAX_BATCH_SIZE:
        raise ValueError(
            f"batch_size {batch_size} is too large: a batch is held in memory whole, "
            f"{BYTES_PER_IMAGE / 1e6:.0f} MB per image ({batch_size * BYTES_PER_IMAGE / 1e9:.1f} GB for this one); "
            f"the limit is {MAX_BATCH_SIZE} ({MAX_BATCH_SIZE * BYTES_PER_IMAGE / 1e9:.1f} GB)"
        )
    return int(batch_size)


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
    decode: Any,
    *,
    batch_size: int = 1,
    depth: Optional[int] = None,
    keep_images: bool = False,
    exact: bool = False,
    prepare: Optional[Callable[[Sequence[Tuple[int, Any]]], Prepared]] = None,
) -> Iterator[ImageResult]:
    """Detect on ``items``; yields one :class:`ImageResult` per input, in input order.

    Args:
        items: inputs (paths, encoded bytes, ``EncodedImage`` or uint8 BGR arrays), consumed
            lazily; an iterable of them (``SSDResNet34.iter_detect`` applies the one-image rule,
            :func:`ssd_resnet34.image.is_single_image`).
        engine: an open engine (:func:`ssd_resnet34.engines.create`).
        decode: ``decode(heads)`` -> one :class:`~ssd_resnet34.Detections` per image
            (``postprocessor.decode``), or a postprocessor (its ``decode`` is used).
        batch_size: images per engine call.
        depth: batches alive at once (None: :func:`default_depth`); 0 runs serially in the
            calling thread.
        keep_images: put each decoded image in its result (for drawing).
        exact: preprocess with MLPerf's float path as written (bit-for-bit; slower), see
            :func:`ssd_resnet34.image.preprocess`.
        prepare: turns a batch of ``(index, item)`` into a :class:`Prepared` (default:
            :func:`prepare_images`, which reads and preprocesses them).

    Raises what the engine or the postprocessor raise (not per image); the iterator cleans up
    first.
    """
    prepare_fn = prepare or (lambda chunk: prepare_images(chunk, keep_images, exact))
    decode_fn: Decode = getattr(decode, "decode", decode)

    def process(chunk: Sequence[Tuple[int, Any]]) -> List[ImageResult]:
        prepared = prepare_fn(chunk)
        if prepared.batch is not None:
            detections = engine.submit(prepared.batch, then=prepared.decode or decode_fn).result()
            for position, found in zip(prepared.good, detections):
                prepared.results[position].detections = found
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
