"""--every and --realtime on real decoded files: which frames go to inference, what is held or dropped."""

from __future__ import annotations

import threading
import time

import pytest
from _clips import make_clip
from ssd_resnet34.video import RealtimeReader, VideoSource, every


def test_every_n_keeps_one_frame_in_n_and_holds_the_rest(tmp_path):
    path = make_clip(tmp_path / "clip.avi", 11, fourcc="MJPG")
    with VideoSource(path) as source:
        taken = list(every(source, 3))
    assert [f.index for f in taken] == [0, 3, 6, 9]
    assert [[h.index for h in f.held] for f in taken] == [[1, 2], [4, 5], [7, 8], [10]]
    assert all(h.image is not None for f in taken for h in f.held)
    with VideoSource(path) as source:
        taken = list(every(source, 4, keep_held=False))
    assert [f.index for f in taken] == [0, 4, 8] and all(h.image is None for f in taken for h in f.held)
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        list(every([], 0))


def test_realtime_drops_what_a_slow_consumer_cannot_take_and_counts_it(tmp_path):
    path = make_clip(tmp_path / "fast.avi", 30, fps=100, fourcc="MJPG", photos=False)  # 0.3 s of video
    with VideoSource(path) as source:
        reader = RealtimeReader(source, source)
        taken = []
        for frame in reader:
            taken.append(frame)
            time.sleep(0.05)  # 5 frame periods per frame taken
        reader.close()
    indices = [f.index for f in taken]
    assert indices == sorted(indices) and indices[-1] == 29  # newest first, the last one always taken
    assert reader.dropped > 0 and len(taken) + reader.dropped == 30
    assert sum(f.dropped_before for f in taken) == reader.dropped
    for previous, frame in zip(taken, taken[1:]):  # dropped_before: exactly the gap before each frame
        assert frame.dropped_before == frame.index - previous.index - 1


def test_realtime_paces_a_file_at_its_frame_rate_and_stops_cleanly(tmp_path):
    path = make_clip(tmp_path / "clip.avi", 10, fps=20, fourcc="MJPG", photos=False)  # 0.5 s
    with VideoSource(path) as source:
        start = time.monotonic()
        taken = list(RealtimeReader(source, source))
        assert time.monotonic() - start >= 0.4  # read at its own pace, not at once
    assert [f.index for f in taken] == list(range(10))  # a fast consumer drops nothing
    with VideoSource(path) as source:
        reader = RealtimeReader(source, source)
        next(iter(reader))
        reader.close()
    assert not any(t.name.startswith("ssd-resnet34-video") and t.is_alive() for t in threading.enumerate())
