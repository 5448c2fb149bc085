"""--track: ByteTrack (trackers' ByteTrackTracker, or supervision's) on real Detections of moving
boxes, and through ``detect --track`` into the jsonl."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from _clips import make_clip
from _models import tiny_heads_model

from ssd_resnet34.cli import main
from ssd_resnet34.detections import Detections
from ssd_resnet34.video import FrameResult

tracking = pytest.importorskip("ssd_resnet34.video.tracking")
try:
    tracking.StreamTracker(10)
except ImportError as error:
    pytest.skip(f"no ByteTrack installed ({error})", allow_module_level=True)


def _frame(index: int) -> FrameResult:
    """Two boxes moving right by 1% of the width a frame, a person above a car."""
    shift = 0.01 * index
    boxes = np.array([[0.1 + shift, 0.1, 0.3 + shift, 0.4], [0.5 + shift, 0.6, 0.7 + shift, 0.9]], np.float32)
    found = Detections(boxes, np.array([1, 3], np.int64), np.array([0.9, 0.8], np.float32))
    return FrameResult(index, index / 10, found, 0, "clip", 640, 480)


def test_moving_boxes_keep_their_track_ids():
    tracker = tracking.StreamTracker(10)
    ids = [tracker.track(_frame(k)) for k in range(8)]
    confirmed = [frame for frame in ids if None not in frame]
    assert len(confirmed) >= 5  # confirmed after ByteTrack's first frames
    assert all(frame == confirmed[0] for frame in confirmed) and confirmed[0][0] != confirmed[0][1]


def test_detect_track_writes_track_ids(tmp_path):
    clip = make_clip(tmp_path / "clip.avi", 6, fourcc="MJPG", photos=False)
    tiny = tiny_heads_model(tmp_path / "tiny.onnx")
    out = tmp_path / "out"
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = main(["detect", str(clip), "--track", "--model", str(tiny), "--no-verify", "--engine", "onnxruntime",
                       "--device", "cpu", "--out", str(out)])
    assert status == 0, stderr.getvalue()
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all("track_id" in d for r in records for d in r["detections"])
    assert any(d["track_id"] is not None for r in records[1:] for d in r["detections"])
    assert json.loads((out / "run.json").read_text())["summary"]["track"] is True
