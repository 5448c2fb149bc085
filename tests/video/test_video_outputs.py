"""The video run outputs as format classes over a RunFolder: the annotated video in each encoder
this machine has (decoded back with OpenCV), the dropped / held frames, the jsonl lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _clips import clip_frames, decode_all, video_info
from ssd_resnet34.detections import Detections
from ssd_resnet34.output.jsonl import JsonlWriter, frame_record
from ssd_resnet34.output.run_folder import RunFolder
from ssd_resnet34.output.video_writer import AnnotatedVideoWriter, available_codec
from ssd_resnet34.video import Frame, FrameResult

BOXES = Detections(np.array([[0.1, 0.2, 0.5, 0.9]], np.float32), np.array([1], np.int64), np.array([0.8], np.float32))


def _result(index, image, held=(), dropped=0):
    return FrameResult(index, index / 10, BOXES, 0, "clip.mp4", image.shape[1], image.shape[0], image, list(held), dropped)


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_the_annotated_video_keeps_size_rate_and_frame_count(tmp_path, codec):
    if codec == "h264":
        pytest.importorskip("av")
    frames = clip_frames(9, photos=False)
    with RunFolder(tmp_path / "out", "detect") as folder:
        writer = AnnotatedVideoWriter(folder, "clip.mp4", 320, 240, 10.0, codec=codec)
        assert writer.codec == codec
        writer.add(_result(0, frames[0], held=[Frame(0, k, k / 10, frames[k]) for k in (1, 2)]))
        writer.add(_result(5, frames[5], dropped=2))  # frames 3 and 4 dropped: the last annotated one repeated
        writer.add(_result(6, frames[6], held=[Frame(0, k, k / 10, frames[k]) for k in (7, 8)]))
        folder.commit({}, only=writer.close())
    info = video_info(tmp_path / "out" / "clip.mp4")
    assert (info["frames"], info["width"], info["height"]) == (9, 320, 240) and info["fps"] == pytest.approx(10)
    decoded = decode_all(tmp_path / "out" / "clip.mp4")
    assert np.abs(decoded[3].astype(int) - decoded[2]).mean() < 3  # a repeat of frame 2's drawing
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() > 1  # boxes drawn
    assert np.abs(decoded[1].astype(int) - frames[1]).mean() < np.abs(decoded[1].astype(int) - frames[5]).mean()


def test_odd_sizes_fall_back_to_mp4v_and_bad_codecs_are_refused():
    assert available_codec(321, 240) == "mp4v"
    with pytest.raises(ValueError, match="codec must be one of"):
        available_codec(320, 240, "vp9")


def test_jsonl_lines(tmp_path):
    image = np.zeros((240, 320, 3), np.uint8)
    record = frame_record(_result(3, image))
    assert record == {"source": "clip.mp4", "stream": 0, "frame": 3, "timestamp_s": 0.3, "width": 320, "height": 240,
                      "detections": [{"category_id": 1, "label": "person", "bbox": pytest.approx([32, 48, 128, 168]),
                                      "score": pytest.approx(0.8)}]}
    assert frame_record(_result(0, image), track_ids=[7])["detections"][0]["track_id"] == 7
    with RunFolder(tmp_path / "out", "detect") as folder:
        writer = JsonlWriter(folder)
        writer.add(_result(0, image))
        staged = folder.path("detections.jsonl").read_text()  # flushed as written
        assert json.loads(staged)["frame"] == 0
        writer.add(_result(1, image))
        folder.commit({}, only=writer.close())
    assert [json.loads(line)["frame"] for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()] == [0, 1]
