"""Track ids across a stream's frames (``detect --track``) with ByteTrack from a well-kept library:
Roboflow's ``trackers`` (``ByteTrackTracker``, where supervision's tracker moved), else
supervision's own ``ByteTrack`` (supervision < 0.27). Extra ``ssd-resnet34[track]``.

The boxes go in as ``Detections.to_supervision`` (pixels); each detection of the frame gets its
track id, or None while its track is not confirmed yet (ByteTrack's ``-1``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

__all__ = ["TRACK_EXTRA", "StreamTracker"]

#: What to install for ``--track``.
TRACK_EXTRA = "ssd-resnet34[track]"


def _bytetrack(frame_rate: float) -> Any:
    try:
        from trackers import ByteTrackTracker
    except ImportError:
        pass
    else:
        return ByteTrackTracker(frame_rate=frame_rate)
    try:
        import supervision
    except ImportError:
        supervision = None
    if supervision is not None and hasattr(supervision, "ByteTrack"):
        return supervision.ByteTrack(frame_rate=int(round(frame_rate)))
    raise ImportError(f"--track needs ByteTrack from the trackers package (or supervision < 0.27): "
                      f"pip install '{TRACK_EXTRA}'")


class StreamTracker:
    """ByteTrack over one stream. ``frame_rate``: the rate of the frames it is given (the
    stream's fps divided by ``--every``). :meth:`track` takes the frames in order. Raises
    ``ImportError`` naming the extra when no ByteTrack is installed."""

    def __init__(self, frame_rate: Optional[float]) -> None:
        self._tracker = _bytetrack(float(frame_rate) if frame_rate and frame_rate > 0 else 30.0)
        self._update = getattr(self._tracker, "update", None) or self._tracker.update_with_detections

    def track(self, result: Any) -> List[Optional[int]]:
        """The track id of each detection of ``result`` (a :class:`~ssd_resnet34.video.FrameResult`),
        in its order: an int >= 0 (ids are stable along the stream), or None (not tracked yet)."""
        detections = result.detections.to_supervision(result.width, result.height)
        detections.data["position"] = np.arange(len(detections))
        tracked = self._update(detections)
        ids: List[Optional[int]] = [None] * len(result.detections)
        if len(tracked) and tracked.tracker_id is not None:
            for position, track in zip(tracked.data["position"].tolist(), tracked.tracker_id.tolist()):
                ids[position] = int(track) if track >= 0 else None
        return ids
