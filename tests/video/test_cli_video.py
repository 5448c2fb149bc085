"""``ssd-resnet34 detect`` on videos end to end: real encoded files, a real local HTTP stream,
bad inputs, --every / --realtime / --no-draw, and real SIGINT / SIGTERM to a subprocess.

The model is a real ONNX network with the 12 heads' shapes (``_models.tiny_heads_model``, given
as ``--model PATH --no-verify``) on a real onnxruntime session, so every run takes seconds; the
synthetic SSD-ResNet34 goes through the same code (README "Video").
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _clips import decode_all, http_server, make_clip, video_info
from _models import tiny_heads_model
from _paths import REPO_ROOT
from ssd_resnet34 import engines
from ssd_resnet34.cli import main
from ssd_resnet34.coco import COCO_CATEGORY_IDS
from ssd_resnet34.detector import SSDResNet34

ENGINE = ["--engine", "onnxruntime", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 12, fps=10)


def detect(tiny_path, *args) -> dict:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["detect", *map(str, args), "--model", str(tiny_path), "--no-verify", *ENGINE])
    return {"status": status, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def lines(out: Path) -> list:
    return [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]


def test_a_clip_gives_jsonl_an_annotated_video_and_run_json(tiny_path, clip, tmp_path):
    out = tmp_path / "out"
    run = detect(tiny_path, clip, "--out", out, "--batch-size", "2")
    assert run["status"] == 0, run["stderr"]
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "detections.jsonl", "run.json"]
    records = lines(out)
    assert [r["frame"] for r in records] == list(range(12))
    np.testing.assert_allclose([r["timestamp_s"] for r in records], np.arange(12) / 10, atol=1e-6)
    assert {(r["source"], r["stream"], r["width"], r["height"]) for r in records} == {(str(clip), 0, 320, 240)}
    # per frame: the detections of `detect` on the same decoded frames given as arrays
    model = SSDResNet34(tiny_path)
    with engines.create(model, device="cpu", engine="onnxruntime", mode=engines.THROUGHPUT) as engine:
        expected = [r.detections for r in model.iter_detect(decode_all(clip), engine, batch_size=2)]
    valid = set(COCO_CATEGORY_IDS[1:])
    for record, found in zip(records, expected):
        assert len(record["detections"]) == len(found) > 0
        coco = found.to_coco(0, 320, 240)
        assert [d["category_id"] for d in record["detections"]] == [c["category_id"] for c in coco]
        assert all(d["category_id"] in valid and d["label"] for d in record["detections"])
        np.testing.assert_allclose([d["bbox"] for d in record["detections"]], [c["bbox"] for c in coco], atol=1e-9)
        np.testing.assert_allclose([d["score"] for d in record["detections"]], [c["score"] for c in coco])
    # the annotated video: the input's frame count, size and frame rate, boxes drawn
    info = video_info(out / "clip.mp4")
    assert (info["frames"], info["width"], info["height"]) == (12, 320, 240) and info["fps"] == pytest.approx(10)
    drawn, original = decode_all(out / "clip.mp4"), decode_all(clip)
    assert np.abs(drawn[0].astype(int) - original[0]).mean() > 5
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["files"] == ["detections.jsonl", "clip.mp4"]
    summary = manifest["summary"]
    assert (summary["frames"], summary["interrupted"]) == (12, False)
    assert summary["streams"][0]["frames_read"] == 12 and summary["streams"][0]["codec"] in ("h264", "mp4v")
    assert "frames/s" in run["stderr"] and "Traceback" not in run["stderr"]


def test_two_streams_every_n_and_a_local_http_stream(tiny_path, clip, tmp_path):
    make_clip(tmp_path / "served.mkv", 9, fps=25, fourcc="MJPG", photos=False)
    out = tmp_path / "out"
    with http_server(tmp_path) as base:
        run = detect(tiny_path, clip, f"{base}/served.mkv", "--every", "4", "--batch-size", "3", "--out", out)
    assert run["status"] == 0, run["stderr"]
    records = lines(out)
    assert [r["frame"] for r in records if r["stream"] == 0] == [0, 4, 8]
    assert [r["frame"] for r in records if r["stream"] == 1] == [0, 4, 8]
    assert [r["stream"] for r in records] == [0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose([r["timestamp_s"] for r in records if r["stream"] == 1], [0, 0.16, 0.32], atol=1e-6)
    # every frame is in the annotated videos, the skipped ones with the boxes of the last processed one
    assert video_info(out / "clip.mp4")["frames"] == 12
    assert video_info(out / "served.mp4")["frames"] == 9 and video_info(out / "served.mp4")["fps"] == pytest.approx(25)


def test_no_draw_writes_only_the_jsonl(tiny_path, clip, tmp_path):
    out = tmp_path / "out"
    run = detect(tiny_path, clip, "--no-draw", "--out", out)
    assert run["status"] == 0, run["stderr"]
    assert sorted(p.name for p in out.iterdir()) == ["detections.jsonl", "run.json"]
    assert len(lines(out)) == 12


def test_realtime_drops_frames_and_counts_them(tiny_path, tmp_path):
    fast = make_clip(tmp_path / "fast.avi", 40, fps=400, fourcc="MJPG", photos=False)  # 0.1 s of video
    out = tmp_path / "out"
    run = detect(tiny_path, fast, "--realtime", "--out", out)
    assert run["status"] == 0, run["stderr"]
    stream = json.loads((out / "run.json").read_text())["summary"]["streams"][0]
    records = lines(out)
    assert stream["dropped"] > 0 and len(records) + stream["dropped"] == 40 == stream["frames_read"]
    frames = [r["frame"] for r in records]
    assert frames == sorted(frames) and frames[-1] == 39
    assert video_info(out / "fast.mp4")["frames"] == 40  # dropped frames: the last annotated one repeated
    assert "dropped (--realtime)" in run["stderr"]


def test_bad_inputs_get_clear_errors(tiny_path, clip, tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", 12, fourcc="MJPG").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(whole[: len(whole) * 6 // 10])
    (tmp_path / "text.mp4").write_text("not a video\n")
    out = tmp_path / "out"
    run = detect(tiny_path, tmp_path / "cut.mkv", tmp_path / "text.mp4", "--out", out)
    assert run["status"] == 1
    assert f"error: {tmp_path / 'text.mp4'}: not a video FFmpeg can read" in run["stderr"]
    kept = len(lines(out))
    assert 0 < kept < 12
    assert f"error: {tmp_path / 'cut.mkv'}: truncated or damaged: frame {kept} could not be decoded" in run["stderr"]
    assert video_info(out / "cut.mp4")["frames"] == kept  # the frames up to the damage, playable

    untouched = tmp_path / "untouched"
    run = detect(tiny_path, tmp_path / "text.mp4", "--out", untouched)
    assert run["status"] == 1 and "no video could be opened" in run["stderr"] and not untouched.exists()
    run = detect(tiny_path, "--camera", "97", "--out", untouched, "--timeout", "2")
    assert run["status"] == 1 and "camera 97: no such camera" in run["stderr"]
    run = detect(tiny_path, clip, REPO_ROOT / "README.md", "--out", untouched)
    assert run["status"] == 1 and "give either images or videos" in run["stderr"]
    run = detect(tiny_path, "--out", untouched)
    assert run["status"] == 2 and "give image files or folders, video files, stream URLs or --camera N" in run["stderr"]
    assert "Traceback" not in run["stderr"]


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_leaves_a_playable_partial_video_and_complete_lines(tiny_path, tmp_path, signum, status):
    long = make_clip(tmp_path / "long.avi", 400, fps=25, fourcc="MJPG", photos=False)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "ssd_resnet34.cli", "detect", str(long), "--out", str(out), "--model", str(tiny_path),
         "--no-verify", *ENGINE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            staged = list(out.glob(".ssd-resnet34-run-*/detections.jsonl"))
            if staged and staged[0].read_text().count("\n") >= 5:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1]
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status, stderr
    records = lines(out)  # every line complete JSON
    assert 5 <= len(records) < 400 and [r["frame"] for r in records] == list(range(len(records)))
    info = video_info(out / "long.mp4")
    assert info["opened"] and info["frames"] == len(records) and (info["width"], info["height"]) == (320, 240)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["summary"]["interrupted"] is True and manifest["summary"]["frames"] == len(records)
    assert not list(out.glob(".ssd-resnet34-run-*")) and "Traceback" not in stderr
