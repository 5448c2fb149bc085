"""VideoSource on real encoded files, a real local HTTP stream, and bad inputs (clear errors, bounded time)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from _clips import decode_all, http_server, make_clip
from ssd_resnet34.video import (
    FrameClock,
    VideoError,
    VideoSource,
    is_stream_url,
    is_video_input,
)


@pytest.mark.parametrize("name, fourcc", [("clip.mp4", "mp4v"), ("clip.avi", "MJPG"), ("clip.mkv", "MJPG")])
def test_frames_of_an_encoded_file_in_order_with_timestamps(tmp_path, name, fourcc):
    path = make_clip(tmp_path / name, 12, fps=10, fourcc=fourcc)
    with VideoSource(path) as source:
        assert (source.width, source.height, source.fps, source.frame_count) == (320, 240, 10.0, 12)
        assert not source.live
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(12) / 10, atol=1e-6)
    expected = decode_all(path)
    assert all(np.array_equal(f.image, e) for f, e in zip(frames, expected))
    assert source.error is None and source.frames_read == 12
    assert source.read() is None  # closed


def test_a_local_http_stream_gives_the_files_frames(tmp_path):
    # Matroska streams front to back; an .mp4 whose index is at its end needs a server with
    # Range requests (http.server has none) or a "faststart" file.
    path = make_clip(tmp_path / "clip.mkv", 12, fps=10, fourcc="MJPG")
    with http_server(tmp_path) as base, VideoSource(f"{base}/clip.mkv", timeout_s=5) as source:
        assert source.live and source.frame_count is None and (source.width, source.height) == (320, 240)
        frames = list(source)
    assert source.error is None
    assert len(frames) == 12
    assert all(np.array_equal(f.image, e) for f, e in zip(frames, decode_all(path)))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(12) / 10, atol=1e-6)


def test_a_truncated_file_keeps_the_frames_before_the_damage_and_names_the_frame(tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", 12, fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    with VideoSource(cut) as source:
        frames = list(source)
    assert 0 < len(frames) < 12
    assert isinstance(source.error, VideoError) and source.error.frame == len(frames)
    assert f"frame {len(frames)} could not be decoded" in str(source.error)
    assert "declares 12 frames" in str(source.error) and "cut.mkv" in str(source.error)


def test_not_a_video_missing_and_folder(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with pytest.raises(VideoError, match=r"notes\.mp4: not a video FFmpeg can read"):
        VideoSource(tmp_path / "notes.mp4")
    whole = make_clip(tmp_path / "whole.mp4", 12).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # an mp4 cut before its index (moov)
    with pytest.raises(VideoError, match=r"cut\.mp4: not a video .*cut short before its index"):
        VideoSource(tmp_path / "cut.mp4")
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
        VideoSource(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="is a folder"):
        VideoSource(tmp_path)
    with pytest.raises(TypeError, match="path, a stream URL or a camera index"):
        VideoSource(1.5)
    with pytest.raises(ValueError, match="timeout_s"):
        VideoSource(tmp_path / "whole.mp4", timeout_s=0)


def test_an_unreachable_or_silent_stream_fails_within_the_timeout():
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(VideoError, match=r"could not be opened within 1 s"):
        VideoSource(f"http://127.0.0.1:{port}/clip.mp4", timeout_s=1)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        for scheme in ("http", "rtsp"):
            start = time.monotonic()
            with pytest.raises(VideoError, match=rf"{scheme}://127.0.0.1:\d+/x: the stream could not be opened within 1 s"):
                VideoSource(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/x", timeout_s=1)
            assert time.monotonic() - start < 8


def test_a_camera_that_does_not_exist():
    with pytest.raises(VideoError, match=r"camera 97: no such camera"):
        VideoSource(97)
    with pytest.raises(VideoError, match="camera index is >= 0"):
        VideoSource(-1)


def test_what_counts_as_a_video_input():
    assert is_video_input("a/clip.MP4") and is_video_input("x.webm") and is_video_input("rtsp://cam/live")
    assert is_stream_url("https://host/v.m3u8") and not is_stream_url("clip.mp4")
    assert not is_video_input("cat.jpg") and not is_video_input("folder")


def test_the_clock_uses_stream_times_then_fps():
    clock = FrameClock(25.0)
    assert [clock.stamp(k, None) for k in range(3)] == [0.0, 0.04, 0.08]
    clock = FrameClock(25.0)
    assert [clock.stamp(k, ms) for k, ms in enumerate([0.0, 40.0, 80.0])] == [0.0, 0.04, 0.08]
    clock = FrameClock(None)
    assert clock.stamp(0, float("nan")) == 0.0  # no time at all: never decreasing
    live = FrameClock(30.0, live=True)
    first, second = live.stamp(0), live.stamp(1)
    assert first == 0.0 and second >= first
