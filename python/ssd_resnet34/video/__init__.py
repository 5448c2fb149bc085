"""Video in: files, stream URLs and cameras as frames for the detection pipeline.

- ``source.py``: :class:`VideoSource` (OpenCV ``VideoCapture`` with bounded open/read timeouts),
  :class:`Frame`, :class:`VideoError`, :data:`VIDEO_SUFFIXES`, :func:`is_video_input`;
- ``timestamps.py``: :class:`FrameClock`, each frame's time in seconds;
- ``sampling.py``: ``--every N`` (:func:`every`) and ``--realtime`` (:class:`RealtimeReader`, which
  drops frames when inference is slower than the stream);
- ``detect.py``: :func:`iter_detect_video`, frames through :func:`ssd_resnet34.pipeline.run_pipeline`
  (the same loop, batch builder, engine and postprocess as images) -> :class:`FrameResult`.
"""

from .detect import FrameResult, iter_detect_video
from .sampling import RealtimeReader, every
from .source import (
    DEFAULT_TIMEOUT_S,
    VIDEO_SUFFIXES,
    Frame,
    VideoError,
    VideoSource,
    is_stream_url,
    is_video_input,
)
from .timestamps import FrameClock

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameClock",
    "FrameResult",
    "RealtimeReader",
    "VideoError",
    "VideoSource",
    "every",
    "is_stream_url",
    "is_video_input",
    "iter_detect_video",
]
