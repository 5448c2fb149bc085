"""Each frame's time in seconds from the start of its stream.

Files and streams carry presentation times: OpenCV reports the one of the frame just read as
``CAP_PROP_POS_MSEC``. They are used when they make sense (finite, >= 0, non-decreasing); a
source without them falls back to ``index / fps``; a camera (whose times are the driver's clock,
or nothing) is stamped with the monotonic clock since its first frame.
"""

from __future__ import annotations

import math
import time
from typing import Optional

__all__ = ["FrameClock"]


class FrameClock:
    """Timestamps of one stream's frames.

    ``fps``: the stream's declared frame rate (None or <= 0: unknown); ``live``: a camera
    (stamped with the wall clock). :meth:`stamp` gives frame ``index``'s time in seconds (float,
    >= 0, non-decreasing over a stream), from the decoder's ``pos_msec`` when usable.
    """

    def __init__(self, fps: Optional[float], live: bool = False) -> None:
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else None
        self.live = live
        self._origin_ms: Optional[float] = None
        self._start: Optional[float] = None
        self._last = 0.0

    def stamp(self, index: int, pos_msec: Optional[float] = None) -> float:
        if self.live:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            seconds = now - self._start
        elif pos_msec is not None and math.isfinite(pos_msec) and pos_msec >= 0 and (index == 0 or pos_msec > 0):
            if self._origin_ms is None:  # a stream joined midway starts at its own first time
                self._origin_ms = pos_msec if index == 0 else 0.0
            seconds = (pos_msec - self._origin_ms) / 1000.0
        elif self.fps is not None:
            seconds = index / self.fps
        else:
            seconds = self._last
        seconds = max(seconds, self._last)
        self._last = seconds
        return seconds
