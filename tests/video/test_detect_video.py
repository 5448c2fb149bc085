"""SSDResNet34.iter_detect_video: the frames through the one pipeline, the same detections as the
decoded frames given as arrays, several streams in one run, bounded reading.

The engine is a real onnxruntime session over a tiny model with the 12 heads' shapes
(``_models.tiny_heads_model``), so these run in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from _clips import decode_all, make_clip
from _models import tiny_heads_model
from ssd_resnet34 import engines
from ssd_resnet34.detector import SSDResNet34
from ssd_resnet34.video import FrameResult, VideoError, VideoSource


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SSDResNet34:
    return SSDResNet34(tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return (make_clip(folder / "a.mp4", 12, fps=10), make_clip(folder / "b.mkv", 7, fps=25, fourcc="MJPG",
                                                                photos=False))


def test_frames_give_the_detections_of_the_decoded_frames_as_arrays(tiny, clips):
    path = clips[0]
    arrays = decode_all(path)
    expected = [r.detections for r in tiny.iter_detect(arrays, batch_size=3)]
    got = list(tiny.iter_detect_video(path, batch_size=3))
    assert all(isinstance(r, FrameResult) for r in got)
    assert [index for index, _, _ in got] == list(range(12))
    np.testing.assert_allclose([t for _, t, _ in got], np.arange(12) / 10, atol=1e-6)
    assert len(got) == len(expected) and all(r.detections == e for r, e in zip(got, expected))
    assert all(len(r.detections) > 0 for r in got)  # the comparison is not between empty sets
    assert (got[0].width, got[0].height, got[0].source, got[0].image) == (320, 240, str(path), None)
    assert got[0].results == expected[0].to_results(320, 240)


def test_two_streams_share_the_engine_and_keep_their_own_order(tiny, clips):
    with engines.create(tiny, device="cpu", engine="onnxruntime", mode=engines.THROUGHPUT) as engine:
        got = list(tiny.iter_detect_video(list(clips), engine, batch_size=4, keep_images=True))
        frames = [decode_all(path) for path in clips]
        # the same frames as arrays, interleaved as the streams are: the same batches, bit for bit
        order = [(s, k) for k in range(12) for s in (0, 1) if k < len(frames[s])]
        arrays = [frames[s][k] for s, k in order]
        expected = [r.detections for r in tiny.iter_detect(arrays, engine, batch_size=4)]
    assert [(r.stream, r.frame_index) for r in got] == order  # batches mix the streams, each in its order
    assert all(r.detections == e for r, e in zip(got, expected))
    assert all(np.array_equal(r.image, frames[r.stream][r.frame_index]) for r in got)
    assert [r.source for r in got[:2]] == [str(clips[0]), str(clips[1])]


def test_every_n(tiny, clips):
    got = list(tiny.iter_detect_video(clips[0], every=5))
    assert [r.frame_index for r in got] == [0, 5, 10]
    assert [[h.index for h in r.held] for r in got] == [[1, 2, 3, 4], [6, 7, 8, 9], [11]]
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        list(tiny.iter_detect_video(clips[0], every=0))


def test_reading_stays_bounded_by_the_pipeline_depth(tiny, tmp_path):
    path = make_clip(tmp_path / "long.avi", 60, fourcc="MJPG", photos=False)
    with VideoSource(path) as source:
        results = tiny.iter_detect_video(source, batch_size=2, depth=2)
        first = next(results)
        assert first.frame_index == 0
        assert source.frames_read <= 2 * 2 + 2  # depth x batch_size frames in flight, one batch being taken
        results.close()
        assert source.frames_read < 60


def test_a_truncated_file_yields_the_frames_before_the_damage_then_raises(tiny, tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", 12, fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    seen = []
    with pytest.raises(VideoError, match=r"cut\.mkv: truncated or damaged: frame (\d+) could not be decoded") as info:
        for result in tiny.iter_detect_video(cut, batch_size=2):
            seen.append(result.frame_index)
    assert seen == list(range(info.value.frame)) and 0 < len(seen) < 12


def test_bad_sources_raise_before_any_frame(tiny, tmp_path):
    (tmp_path / "text.mp4").write_text("hello\n")
    with pytest.raises(VideoError, match="not a video"):
        next(tiny.iter_detect_video(tmp_path / "text.mp4"))
    with pytest.raises(ValueError, match="at least one source"):
        next(tiny.iter_detect_video([]))
