"""A video file, stream URL or camera, read frame by frame with OpenCV's ``VideoCapture``
(its FFmpeg backend for files and URLs, V4L2 for cameras on Linux; no demuxer of our own).

Opening and reading are bounded in time (``CAP_PROP_OPEN_TIMEOUT_MSEC`` /
``CAP_PROP_READ_TIMEOUT_MSEC``), so an unreachable or silent stream is an error after
``timeout_s``, never a hang. What cannot be read is a :class:`VideoError` naming the input and
what was expected: a file that is not a video (or an ``.mp4`` cut before its index), a URL that
does not answer, a camera that does not exist, and a file that ends before the frame count its
container declares (truncated or damaged: the frames before the damage are given, the error names
the first frame that could not be decoded).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Union

import cv2
import numpy as np

from .timestamps import FrameClock

__all__ = ["DEFAULT_TIMEOUT_S", "VIDEO_SUFFIXES", "Frame", "VideoError", "VideoSource", "is_stream_url",
           "is_video_input"]

#: File suffixes ``detect`` takes as videos (FFmpeg reads more; any file can be opened with
#: :class:`VideoSource` directly).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
#: URL schemes read as streams.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
#: Seconds allowed to open a stream and to wait for each frame.
DEFAULT_TIMEOUT_S = 10.0


class VideoError(Exception):
    """A video input that cannot be opened or read (the message names it and what was expected);
    ``frame``: the index of the first frame that could not be decoded, when the error is about one."""

    def __init__(self, message: str, frame: Optional[int] = None) -> None:
        super().__init__(message)
        self.frame = frame


def is_stream_url(text: Any) -> bool:
    """True for ``rtsp://``, ``http(s)://`` and other stream URLs (:data:`STREAM_SCHEMES`)."""
    return isinstance(text, str) and text.lower().startswith(STREAM_SCHEMES)


def is_video_input(text: Any) -> bool:
    """True for a stream URL or a path whose suffix is in :data:`VIDEO_SUFFIXES`."""
    if is_stream_url(text):
        return True
    return isinstance(text, (str, os.PathLike)) and os.path.splitext(os.fspath(text))[1].lower() in VIDEO_SUFFIXES


@dataclass
class Frame:
    """One decoded frame of stream ``stream`` (its position among the sources of a run).

    ``index``: the frame's position in its stream (0-based, counting every decoded frame, also
    the ones skipped or dropped); ``timestamp_s``: its time in seconds (:class:`FrameClock`);
    ``image``: uint8 BGR (H, W, 3), None once it is not needed any more; ``held``: the frames
    skipped after it by ``--every`` (drawn with its boxes), in order; ``dropped_before``: how many
    frames ``--realtime`` dropped just before it; ``read_at``: ``time.monotonic()`` when it was
    decoded (latency from frame to result)."""

    stream: int
    index: int
    timestamp_s: float
    image: Optional[np.ndarray]
    held: List["Frame"] = field(default_factory=list)
    dropped_before: int = 0
    read_at: float = 0.0


def _describe(target: Union[str, int]) -> str:
    return f"camera {target}" if isinstance(target, int) else str(target)


class VideoSource:
    """An open video: ``VideoSource(target, stream=0, timeout_s=10)``.

    ``target``: a file path, a stream URL (:func:`is_stream_url`) or a camera index (int).
    Raises :class:`VideoError` when it cannot be opened: a missing file (``FileNotFoundError``
    is a subclass of ``OSError``, raised as such), a file that is not a video, a URL that does not
    answer within ``timeout_s`` seconds, a camera that does not exist. ``stream`` numbers it
    among a run's sources (:attr:`Frame.stream`).

    Attributes: ``name`` (what to call it in messages and outputs), ``width``, ``height``
    (pixels), ``fps`` (declared frames per second, None when unknown), ``frame_count`` (declared
    by a file's container, None for streams, cameras and when unknown), ``live`` (a camera or
    stream URL), ``frames_read`` and ``error`` (the :class:`VideoError` that ended the
    reading early, else None).
    """

    def __init__(self, target: Union[str, int, "os.PathLike[str]"], stream: int = 0, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if isinstance(target, bool) or not isinstance(target, (str, int, os.PathLike)):
            raise TypeError(f"a video source is a path, a stream URL or a camera index, got {type(target).__name__}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.target: Union[str, int] = target if isinstance(target, int) else os.fspath(target)
        self.stream = stream
        self.name = _describe(self.target)
        self.camera = isinstance(self.target, int)
        self.url = is_stream_url(self.target)
        self.live = self.camera or self.url
        self.error: Optional[VideoError] = None
        self.frames_read = 0
        self._lock = threading.Lock()
        self._peeked: Optional[Frame] = None
        self._capture = self._open(timeout_s)
        capture = self._capture
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps: Optional[float] = float(fps) if math.isfinite(fps) and 0 < fps < 1000 else None
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count: Optional[int] = (int(count) if not self.live and math.isfinite(count) and count > 0
                                           else None)
        self.clock = FrameClock(self.fps, live=self.camera)
        if self.width <= 0 or self.height <= 0:  # not declared before the first frame (some streams)
            self._peeked = self.read()
            if self._peeked is None:
                raise self.error or VideoError(f"{self.name}: no frame could be read")
            self.height, self.width = self._peeked.image.shape[:2]

    def _open(self, timeout_s: float) -> Any:
        milliseconds = int(timeout_s * 1000)
        if self.camera:
            if self.target < 0:
                raise VideoError(f"camera {self.target}: a camera index is >= 0 (0 is the first camera)")
            capture = cv2.VideoCapture(self.target)
            if not capture.isOpened():
                capture.release()
                raise VideoError(f"camera {self.target}: no such camera, or it cannot be opened "
                                 f"(is it connected and free? e.g. /dev/video{self.target} on Linux)")
            return capture
        if not self.url:
            if not os.path.exists(self.target):
                raise FileNotFoundError(f"{self.target}: no such file")
            if os.path.isdir(self.target):
                raise VideoError(f"{self.target}: is a folder, expected a video file")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds, cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
        capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            if self.url:
                raise VideoError(f"{self.target}: the stream could not be opened within {timeout_s:g} s "
                                 "(unreachable, not answering, or not a video stream FFmpeg reads)")
            raise VideoError(f"{self.target}: not a video FFmpeg can read (or a damaged one, e.g. an .mp4 "
                             f"cut short before its index); expected a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
        return capture

    def read(self) -> Optional[Frame]:
        """The next frame (its ``image`` uint8 BGR), or None at the end of the stream (or once
        :meth:`close` was called). A file that ends before its declared frame count sets
        :attr:`error` (the first frame that could not be decoded) and returns None; so does a
        stream or camera that gives no frame at all."""
        with self._lock:
            if self._peeked is not None:
                frame, self._peeked = self._peeked, None
                return frame
            if self._capture is None:
                return None
            ok, image = self._capture.read()
            if not ok or image is None:
                self._finish()
                return None
            index = self.frames_read
            self.frames_read += 1
            stamp = self.clock.stamp(index, self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return Frame(self.stream, index, stamp, image, read_at=time.monotonic())

    def _finish(self) -> None:
        read = self.frames_read
        if self.frame_count is not None and read < self.frame_count:
            self.error = VideoError(
                f"{self.name}: truncated or damaged: frame {read} could not be decoded (the file declares "
                f"{self.frame_count} frames; frames 0..{read - 1} were read)" if read else
                f"{self.name}: truncated or damaged: frame 0 could not be decoded (the file declares "
                f"{self.frame_count} frames)", frame=read)
        elif read == 0:
            self.error = VideoError(f"{self.name}: no frame could be read (expected a video with at least one frame)",
                                    frame=0)
        self._release()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def _release(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def close(self) -> None:
        """Release the capture (idempotent); :meth:`read` returns None afterwards."""
        with self._lock:
            self._release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoSource({self.name!r}, {self.width}x{self.height}, fps={self.fps}, frames={self.frame_count})"
