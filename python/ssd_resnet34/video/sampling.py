"""Which frames go to inference: one in N (``--every N``), and only the latest when inference
is slower than the stream (``--realtime``).

Neither loses a frame from the annotated video: a frame skipped by :func:`every` travels in the
``held`` list of the processed frame before it (drawn with that frame's boxes); a frame dropped
by :class:`RealtimeReader` is counted in ``dropped_before`` of the next frame taken (the video
repeats the last annotated frame in its place: memory stays bounded whatever the lag).
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Iterator, Optional

from .source import Frame, VideoSource

__all__ = ["RealtimeReader", "every"]


def every(frames: Iterable[Frame], n: int, *, keep_held: bool = True) -> Iterator[Frame]:
    """Frames 0, n, 2n, ... of ``frames``; each carries the n - 1 frames after it in ``held``
    (their images dropped unless ``keep_held``). ``n == 1`` gives every frame. Raises
    ``ValueError`` for ``n < 1``. Holds at most n frames at a time."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"every must be an int >= 1, got {n!r}")
    current: Optional[Frame] = None
    for position, frame in enumerate(frames):
        if position % n == 0:
            if current is not None:
                yield current
            current = frame
        else:
            assert current is not None
            if not keep_held:
                frame.image = None
            current.held.append(frame)
    if current is not None:
        yield current


class RealtimeReader:
    """Reads ``frames`` (from ``source``) on a thread as fast as the stream gives them and keeps
    only the latest one not yet taken: iterating takes it, so a consumer slower than the stream
    gets the newest frame each time, and the ones it never took are dropped and counted
    (:attr:`dropped`, and ``dropped_before`` of the next frame taken, summing the frames it
    held).

    A file is read at its own pace (each frame at its timestamp, from the moment of the first),
    as a live stream would give it; a stream URL or camera is paced by the stream itself.
    :meth:`close` stops the thread (waiting at most one read, bounded by the source's read
    timeout). At most two frames (and their ``held``) exist in the reader at a time.
    """

    def __init__(self, frames: Iterable[Frame], source: VideoSource) -> None:
        self.source = source
        self.dropped = 0
        self._frames = iter(frames)
        self._pace = not source.live
        self._slot: Optional[Frame] = None
        self._pending_drops = 0
        self._done = False
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=f"ssd-resnet34-video-{source.stream}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start: Optional[float] = None
        first_ts = 0.0
        try:
            for frame in self._frames:
                if self._stop.is_set():
                    break
                if self._pace:
                    if start is None:
                        start, first_ts = time.monotonic(), frame.timestamp_s
                    delay = start + (frame.timestamp_s - first_ts) - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                with self._changed:
                    if self._slot is not None:  # never taken: dropped
                        lost = 1 + len(self._slot.held)
                        self.dropped += lost
                        self._pending_drops += lost + self._slot.dropped_before
                    self._slot = frame
                    self._changed.notify_all()
        except BaseException as error:  # reported to the consumer, not lost on the thread
            self.error = error
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._changed:
                while self._slot is None and not self._done:
                    self._changed.wait()
                frame, self._slot = self._slot, None
                if frame is None:
                    if self.error is not None:
                        raise self.error
                    return
                frame.dropped_before += self._pending_drops
                self._pending_drops = 0
            yield frame

    def close(self) -> None:
        """Stop reading and wait for the thread (idempotent)."""
        self._stop.set()
        self._thread.join()
