"""The annotated video of a stream: its frames with the boxes drawn, the input's size, frame rate
and frame count.

Encoders, best first (``codec="auto"``):

- ``"h264"``: H.264 (libx264, yuv420p, ``+faststart``) in ``.mp4`` through PyAV (the ``av``
  package, extra ``ssd-resnet34[video]``; supervision depends on it too): plays in browsers,
  phones and every player. Needs an even width and height (yuv420p).
- ``"mp4v"``: MPEG-4 Part 2 in ``.mp4`` through ``cv2.VideoWriter``, always available with
  ``opencv-python(-headless)``: plays in VLC, mpv, ffplay, QuickTime, Windows' player, not in
  most browsers. (The opencv-python wheels cannot write H.264: ``avc1``/``H264`` fail to open,
  their FFmpeg has no H.264 encoder.)

What goes in, per :class:`~ssd_resnet34.video.FrameResult` (:meth:`AnnotatedVideoWriter.add`):
the frames ``--realtime`` dropped before it (as many copies of the last annotated frame, so
the timing and frame count are kept without holding frames), the frame with its boxes, then the
frames ``--every`` skipped after it, with the same boxes. The file is finalized by
:meth:`close` (also after Ctrl-C / SIGTERM), so it is playable up to the last frame written.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, List, Optional

import cv2
import numpy as np

from .draw import draw_detections

__all__ = ["CODECS", "DEFAULT_FPS", "AnnotatedVideoWriter", "FrameEncoder", "available_codec", "open_encoder"]

#: Encoders, best first (``"auto"`` takes the first that works for the size).
CODECS = ("h264", "mp4v")
#: Frame rate written when the input declares none (some cameras and streams).
DEFAULT_FPS = 30.0


def _have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def available_codec(width: int, height: int, codec: str = "auto") -> str:
    """The encoder ``codec`` resolves to for a ``width`` x ``height`` video: ``"auto"`` gives
    ``"h264"`` when PyAV is installed and both sides are even, else ``"mp4v"``. Raises
    ``ValueError`` for an unknown name, ``ImportError`` for ``"h264"`` without PyAV."""
    if codec not in ("auto", *CODECS):
        raise ValueError(f"codec must be one of auto, {', '.join(CODECS)}; got {codec!r}")
    if codec == "h264" and not _have_pyav():
        raise ImportError("H.264 output needs PyAV: pip install 'ssd-resnet34[video]'")
    if codec == "auto":
        return "h264" if _have_pyav() and width % 2 == 0 and height % 2 == 0 else "mp4v"
    return codec


class FrameEncoder:
    """Writes uint8 BGR frames of one size to a video file: ``write(image)``, ``close()``."""

    def __init__(self, write: Callable[[np.ndarray], None], close: Callable[[], None], codec: str) -> None:
        self._write, self._close, self.codec = write, close, codec
        self.frames = 0
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        self._write(image)
        self.frames += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()


def _pyav_encoder(path: Path, width: int, height: int, fps: float) -> FrameEncoder:
    import av

    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "23"}

    def write(image: np.ndarray) -> None:
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
            container.mux(packet)

    def close() -> None:
        try:
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()

    return FrameEncoder(write, close, "h264")


def _opencv_encoder(path: Path, width: int, height: int, fps: float) -> FrameEncoder:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an mp4v video of {width}x{height} at {fps:g} fps")
    return FrameEncoder(writer.write, writer.release, "mp4v")


def open_encoder(path: "str | Path", width: int, height: int, fps: Optional[float], codec: str = "auto") -> FrameEncoder:
    """A :class:`FrameEncoder` writing ``path`` (``.mp4``) at ``fps`` (None or not a positive
    number: :data:`DEFAULT_FPS`). Raises ``ValueError`` for a bad size or codec, ``OSError``
    when the file cannot be written."""
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"a video needs a positive width and height, got {width}x{height}")
    rate = float(fps) if fps is not None and math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    chosen = available_codec(width, height, codec)
    return (_pyav_encoder if chosen == "h264" else _opencv_encoder)(Path(path), width, height, rate)


class AnnotatedVideoWriter:
    """The annotated video of one stream, written as ``name`` into a run's staging area:
    ``folder`` is anything with ``path(name)``, a :class:`~ssd_resnet34.output.run_writer.RunWriter`
    (its format :class:`~ssd_resnet34.output.run_writer.AnnotatedVideos`, one writer per stream) or
    a :class:`~ssd_resnet34.output.run_folder.RunFolder`; moved into place by their commit.

    ``width``, ``height``, ``fps``: the input's (frames of another size are resized to it).
    ``add(result)`` writes a :class:`~ssd_resnet34.video.FrameResult` (its ``image`` and the
    images of its ``held`` frames are needed: ``keep_images=True``); ``labels`` optionally
    replaces each box's ``ObjectDetectionResult`` list (e.g. with track ids in the label).
    ``close()`` finalizes the file and returns ``[name]``. ``frames``: frames written.
    """

    def __init__(self, folder: Any, name: str, width: int, height: int, fps: Optional[float],
                 codec: str = "auto") -> None:
        self.name = name
        self.size = (width, height)
        self._encoder = open_encoder(folder.path(name), width, height, fps, codec)
        self.codec = self._encoder.codec
        self._last: Optional[np.ndarray] = None

    @property
    def frames(self) -> int:
        return self._encoder.frames

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def add(self, result: Any, drawn: Optional[List[Any]] = None) -> None:
        if result.image is None:
            raise ValueError("the annotated video needs the frames' images: run with keep_images=True")
        boxes = result.results if drawn is None else drawn
        annotated = self._fit(draw_detections(result.image, boxes))
        for _ in range(result.dropped_before):
            self._encoder.write(self._last if self._last is not None else annotated)
        self._encoder.write(annotated)
        self._last = annotated
        for held in result.held:
            if held.image is not None:
                self._last = self._fit(draw_detections(held.image, boxes))
            self._encoder.write(self._last)

    def close(self) -> List[str]:
        self._encoder.close()
        return [self.name]

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
