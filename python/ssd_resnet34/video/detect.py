"""Frames of one or more videos through the detection pipeline (:func:`iter_detect_video`).

There is no loop here: the frames of all sources, interleaved one by one, are the inputs of
:func:`ssd_resnet34.pipeline.run_pipeline`, the loop images go through. Its batches are built by
the one batch builder (:func:`ssd_resnet34.image.build_batch`, from the decoded arrays), run
with the engine's requests in flight and decoded by the native postprocessor; at most ``depth``
batches are alive, so memory is bounded for a file of any length and for an endless stream.
Results come back in input order, so each stream keeps its own frame order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..detections import Detections
from ..pipeline import Prepared, check_batch_size, prepare_images, run_pipeline
from ..types import ObjectDetectionResult
from .sampling import RealtimeReader
from .sampling import every as every_n
from .source import DEFAULT_TIMEOUT_S, Frame, VideoError, VideoSource

__all__ = ["FrameResult", "iter_detect_video", "open_sources"]

Target = Union[str, int, VideoSource, Any]


@dataclass
class FrameResult:
    """One processed frame, in its stream's order.

    ``for frame_index, timestamp_s, detections in model.iter_detect_video(...)`` unpacks the
    three fields below; the others are attributes.

    Attributes:
        frame_index: the frame's position in its stream (0-based, counting every decoded frame).
        timestamp_s: its time in seconds from the stream's start (float).
        detections: its :class:`~ssd_resnet34.Detections` (normalized ltrb boxes, score
            descending).
        stream: the source's position among the sources given (0-based); ``source``: its name.
        width, height: the frame's size in pixels.
        image: the decoded uint8 BGR frame when ``keep_images``, else None.
        held: the frames skipped after it by ``every`` (:class:`~ssd_resnet34.video.Frame`, their
            images only when ``keep_images``).
        dropped_before: frames ``realtime`` dropped just before this one.
        read_at: ``time.monotonic()`` when the frame was decoded (its latency is the time from
            then to when this result is used).
    """

    frame_index: int
    timestamp_s: float
    detections: Detections
    stream: int = 0
    source: str = ""
    width: int = 0
    height: int = 0
    image: Optional[np.ndarray] = None
    held: List[Frame] = field(default_factory=list)
    dropped_before: int = 0
    read_at: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.frame_index, self.timestamp_s, self.detections))

    @property
    def results(self) -> List[ObjectDetectionResult]:
        """The detections as ``ObjectDetectionResult`` (ltrb boxes in pixels of the frame)."""
        return self.detections.to_results(self.width, self.height)


def open_sources(targets: Iterable[Target], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> List[VideoSource]:
    """A :class:`VideoSource` per target (paths, URLs, camera indexes; ``VideoSource`` objects
    are kept as given, renumbered in order). Raises the first one's :class:`VideoError` /
    ``FileNotFoundError`` after closing those already opened."""
    sources: List[VideoSource] = []
    try:
        for position, target in enumerate(targets):
            source = target if isinstance(target, VideoSource) else VideoSource(target, position, timeout_s=timeout_s)
            source.stream = position
            sources.append(source)
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _interleave(streams: Sequence[Iterator[Frame]]) -> Iterator[Frame]:
    """One frame of each stream in turn (round robin); a stream that ends leaves the turn."""
    active = list(streams)
    while active:
        for stream in list(active):
            frame = next(stream, None)
            if frame is None:
                active.remove(stream)
            else:
                yield frame


def _prepare(keep_images: bool, exact: bool):
    """The pipeline's ``prepare`` for frames: the frames' arrays through the one batch builder
    (:func:`ssd_resnet34.pipeline.prepare_images`); each result's ``source`` is its
    :class:`Frame`, whose image is let go here unless it is kept for drawing."""

    def prepare(chunk: Sequence[Tuple[int, Frame]]) -> Prepared:
        prepared = prepare_images([(index, frame.image) for index, frame in chunk], exact=exact)
        for result, (_, frame) in zip(prepared.results, chunk):
            result.source = frame
            if not keep_images:
                frame.image = None
        return prepared

    return prepare


def iter_detect_frames(
    sources: Sequence[VideoSource],
    engine: Any,
    decode: Any,
    *,
    every: int = 1,
    realtime: bool = False,
    batch_size: int = 1,
    depth: Optional[int] = None,
    keep_images: bool = False,
    exact: bool = False,
) -> Iterator[FrameResult]:
    """The frames of open ``sources`` through :func:`ssd_resnet34.pipeline.run_pipeline` on
    ``engine`` (``decode``: the postprocessor); yields a :class:`FrameResult` per processed
    frame. A source that ends early keeps its :attr:`VideoSource.error`; nothing is raised for
    it here. With ``realtime`` the default ``depth`` is the engine's requests in flight (no batch
    waits behind them, so a frame's latency is about one inference). Stops the realtime readers when closed; the sources stay open (the caller's)."""
    every = int(every)
    if every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    if realtime and depth is None:  # a batch queued behind the requests in flight only adds latency
        depth = max(1, int(getattr(engine, "requests", 1)))
    readers: List[RealtimeReader] = []
    streams: List[Iterator[Frame]] = []
    for source in sources:
        frames: Iterator[Frame] = every_n(source, every, keep_held=keep_images)
        if realtime:
            reader = RealtimeReader(frames, source)
            readers.append(reader)
            frames = iter(reader)
        streams.append(frames)
    try:
        outcomes = run_pipeline(_interleave(streams), engine, decode, batch_size=batch_size, depth=depth,
                                prepare=_prepare(keep_images, exact))
        for outcome in outcomes:
            frame: Frame = outcome.source
            if outcome.error is not None:  # a decoded frame is always a valid array
                raise outcome.error
            source = sources[frame.stream]
            assert outcome.detections is not None and outcome.context is not None
            yield FrameResult(frame.index, frame.timestamp_s, outcome.detections, frame.stream, source.name,
                              outcome.context["width"], outcome.context["height"], frame.image, frame.held,
                              frame.dropped_before, frame.read_at)
    finally:
        for reader in readers:
            reader.close()


def iter_detect_video(
    model: Any,
    source: Union[Target, Sequence[Target]],
    session: Any = None,
    *,
    every: int = 1,
    realtime: bool = False,
    batch_size: int = 1,
    depth: Optional[int] = None,
    keep_images: bool = False,
    exact: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[FrameResult]:
    """``SSDResNet34.iter_detect_video``: see there. Opens (and closes) the sources given as
    paths, URLs or camera indexes; ``VideoSource`` objects given are left open."""
    from .. import engines

    batch_size = check_batch_size(batch_size)
    targets = list(source) if isinstance(source, (list, tuple)) else [source]
    if not targets:
        raise ValueError("iter_detect_video needs at least one source")
    given = [target for target in targets if isinstance(target, VideoSource)]
    sources = open_sources(targets, timeout_s=timeout_s)
    options = {"every": every, "realtime": realtime, "batch_size": batch_size, "depth": depth,
               "keep_images": keep_images, "exact": exact}
    try:
        if session is None:
            with engines.create(model, device=model.device, mode=engines.THROUGHPUT) as own:
                yield from iter_detect_frames(sources, own, model.postprocessor.decode, **options)
        else:
            yield from iter_detect_frames(sources, session, model.postprocessor.decode, **options)
        failed = [s.error for s in sources if s.error is not None]
        if failed:
            raise failed[0] if len(failed) == 1 else VideoError("; ".join(str(e) for e in failed), failed[0].frame)
    finally:
        for opened in sources:
            if not any(opened is g for g in given):
                opened.close()
