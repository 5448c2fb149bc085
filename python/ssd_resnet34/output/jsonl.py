"""``detections.jsonl``: one JSON line per processed video frame, written as frames finish.

Each line: ``{"source": str, "stream": int, "frame": int, "timestamp_s": float, "width": int,
"height": int, "detections": [{"category_id": int, "label": str, "bbox": [x, y, w, h],
"score": float}, ...]}``. ``bbox`` is COCO's xywh in pixels of the frame, ``category_id`` the
official COCO id (1..90), ``label`` its class name; detections are score-descending; with
tracking each detection also has ``"track_id"`` (int, or null for an untracked box). Lines of
one stream are in its frame order (streams interleave). ``timestamp_s`` is rounded to the
microsecond. Every line is flushed when written, so a run stopped at any point leaves complete
lines up to the last finished frame.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, List, Optional

from ..coco import COCO_CLASSES, label_to_category_id

__all__ = ["JSONL_NAME", "JsonlWriter", "frame_record"]

#: The file's name in the run folder.
JSONL_NAME = "detections.jsonl"


def frame_record(result: Any, track_ids: Optional[Iterable[Optional[int]]] = None) -> dict:
    """The line of one :class:`~ssd_resnet34.video.FrameResult` (a dict, see the module)."""
    detections = result.detections
    boxes = detections.xywh(result.width, result.height).tolist() if len(detections) else []
    labels = detections.labels.tolist()
    categories = label_to_category_id(detections.labels).tolist() if len(detections) else []
    records = [
        {"category_id": int(category), "label": COCO_CLASSES[label], "bbox": box, "score": score}
        for category, label, box, score in zip(categories, labels, boxes, detections.scores.tolist())
    ]
    if track_ids is not None:
        for record, track in zip(records, track_ids):
            record["track_id"] = None if track is None else int(track)
    return {"source": result.source, "stream": int(result.stream), "frame": int(result.frame_index),
            "timestamp_s": round(float(result.timestamp_s), 6), "width": int(result.width),
            "height": int(result.height), "detections": records}


class JsonlWriter:
    """Writes ``detections.jsonl`` into a run's staging area: ``folder`` is anything with
    ``path(name)``, a :class:`~ssd_resnet34.output.run_writer.RunWriter` (its format
    :class:`~ssd_resnet34.output.run_writer.FrameLines`) or a
    :class:`~ssd_resnet34.output.run_folder.RunFolder`; moved into place by their commit.

    ``add(result, track_ids=None)`` writes one frame's line (flushed); ``close()`` closes the
    file and returns the names written (``[JSONL_NAME]``).
    ``frames`` and ``detections`` count what was written. Raises ``OSError`` when the file
    cannot be written.
    """

    def __init__(self, folder: Any, name: str = JSONL_NAME) -> None:
        self.name = name
        self.frames = 0
        self.detections = 0
        self._handle: Any = open(folder.path(name), "w", encoding="utf-8")

    def add(self, result: Any, track_ids: Optional[Iterable[Optional[int]]] = None) -> None:
        record = frame_record(result, track_ids)
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        self.frames += 1
        self.detections += len(record["detections"])

    def close(self) -> List[str]:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        return [self.name]

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
