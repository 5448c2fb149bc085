"""A video run goes through the one run writer (output/run_writer.py), as an image run does: one
``detection_formats`` lists the formats of both, ``RunWriter`` writes ``detections.jsonl`` and the
annotated videos as one set, and a run that fails leaves the folder as it was."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ssd_resnet34.detections import Detections
from ssd_resnet34.output.run_writer import (
    AnnotatedVideos,
    CocoResults,
    Drawings,
    FrameLines,
    ParquetTable,
    RunWriter,
    detection_formats,
)
from ssd_resnet34.video import FrameResult, VideoSource

BOXES = Detections(np.array([[0.1, 0.2, 0.5, 0.9]], np.float32), np.array([1], np.int64), np.array([0.8], np.float32))
WIDTH, HEIGHT, FPS, FRAMES = 64, 48, 10.0, 3


@pytest.fixture()
def source(tmp_path):
    """A real 3-frame MJPG clip, opened by the real VideoSource."""
    path = tmp_path / "in" / "clip.avi"
    path.parent.mkdir()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for k in range(FRAMES):
        writer.write(np.full((HEIGHT, WIDTH, 3), 40 * k, np.uint8))
    writer.release()
    with VideoSource(path, 0) as opened:
        yield opened


def _frame(source, index, image=True):
    pixels = np.full((HEIGHT, WIDTH, 3), 40 * index, np.uint8) if image else None
    return FrameResult(index, index / FPS, BOXES, source.stream, source.name, WIDTH, HEIGHT, pixels)


def test_a_video_run_and_an_image_run_share_the_one_writer(tmp_path, source):
    out = tmp_path / "out"
    images = detection_formats(["cat.jpg"], out, drawings=True, table=True)
    videos = detection_formats([], out, drawings=True, table=False, videos=[source])
    assert [type(f) for f in images] == [CocoResults, Drawings, ParquetTable]
    assert [type(f) for f in videos] == [FrameLines, AnnotatedVideos]
    assert [type(f) for f in detection_formats([], out, drawings=False, table=False, videos=[source])] == [FrameLines]
    with pytest.raises(ValueError, match="a video run writes detections.jsonl"):
        detection_formats(["cat.jpg"], out, drawings=True, table=False, videos=[source])

    with RunWriter(out, "detect", videos) as writer:
        for k in range(FRAMES):
            writer.add_frame(_frame(source, k), track_ids=[k + 1])
            staged = writer.path("detections.jsonl").read_text()  # flushed frame by frame
            assert staged.count("\n") == k + 1
        assert (writer.frames, writer.num_detections) == (FRAMES, FRAMES)
        assert not (out / "detections.jsonl").exists()  # staged only
        files = writer.commit({"frames": writer.frames})
    assert [p.name for p in files] == ["detections.jsonl", "clip.mp4", "run.json"]
    assert writer.describe() == f"{out / 'detections.jsonl'} (3 frames, 3 detections), {out / 'clip.mp4'}, {out / 'run.json'}"
    assert videos[1].codec(0) in ("h264", "mp4v")
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [(line["frame"], line["detections"][0]["track_id"]) for line in lines] == [(0, 1), (1, 2), (2, 3)]
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == FRAMES
    assert json.loads((out / "run.json").read_text())["files"] == ["detections.jsonl", "clip.mp4"]


def test_a_failed_video_run_leaves_the_folder_as_it_was_and_its_files_closed(tmp_path, source):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("not ours\n")
    formats = detection_formats([], out, drawings=True, table=False, videos=[source])
    with pytest.raises(ValueError, match="needs the frames' images"):
        with RunWriter(out, "detect", formats) as writer:
            writer.add_frame(_frame(source, 0))
            writer.add_frame(_frame(source, 1, image=False))  # a run that did not keep the images
    assert writer.frames == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # no staging folder, nothing moved in
    assert formats[0].writer._handle is None and all(w._encoder._closed for w in formats[1].writers.values())
