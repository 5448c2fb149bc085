"""Video through ``ssd-resnet34 detect``: frames/s on a clip against the same frames as images,
resident memory for a 10x longer clip, and ``--realtime`` on a stream faster than inference.

    PYTHONPATH=python python benches/bench_video.py [--frames 12] [--rss-frames 100]

1. Two 640x480 clips of ``--frames`` frames: one made from the shared COCO photos (one photo per
   frame, MPEG-4 mp4v via OpenCV), one a pan across ``cat.jpg`` (H.264 via PyAV, as a camera
   clip). For each: ``detect clip --synthetic`` and ``detect FOLDER --synthetic`` on the same
   decoded frames written as PNG (lossless: the same pixels), same engine (the default), wall
   time of the whole command (model load included in both), one run each.
2. Peak RSS (``ru_maxrss``) of ``detect`` on ``--rss-frames`` and 10x as many frames, with the
   tiny 12-head model of the tests (tests/_models.py), annotated video on.
3. ``detect --realtime`` on a 25 fps clip of 8 s (synthetic model) and a 100 fps clip of 6 s (tiny
   model): frames processed and dropped, and the latency from a frame's decoding to its result
   (run.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))

RUN = ("import resource, sys; from ssd_resnet34.cli import main; status = main(sys.argv[1:]); "
       "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(status)")


def detect(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", RUN, "detect", *map(str, args)], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"detect {' '.join(map(str, args))} failed:\n{run.stderr}")
    rss = int(run.stderr.rsplit("maxrss_kb", 1)[1].split()[0])
    return {"seconds": seconds, "rss_mb": rss / 1024, "stderr": run.stderr}


def coco_frames(count: int):
    paths = sorted((SHARED / "coco-val2017-subset" / "images").glob("*.jpg"))[:count]
    return [cv2.resize(cv2.imread(str(p)), (640, 480), interpolation=cv2.INTER_AREA) for p in paths]


def pan_frames(count: int):
    cat = cv2.imread(str(SHARED / "images" / "cat.jpg"))  # 1024x768
    return [cv2.resize(cat[100:100 + 540, int(k * 380 / max(1, count - 1)):][:, :720], (640, 480)) for k in range(count)]


def write_mp4v(path: Path, frames, fps=10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_h264(path: Path, frames, fps=10.0) -> Path:
    from ssd_resnet34.output.video_writer import open_encoder

    encoder = open_encoder(path, 640, 480, fps, "h264")
    for frame in frames:
        encoder.write(frame)
    encoder.close()
    return path


def decoded(path: Path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rss-frames", type=int, default=100)
    parser.add_argument("--skip", nargs="*", default=[], choices=["fps", "rss", "realtime"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-video-"))
    if "fps" not in args.skip:
        print(f"1. detect on a clip vs the same frames as images, synthetic model, {args.frames} frames 640x480")
        for name, clip in (("COCO photos, mp4v", write_mp4v(root / "coco.mp4", coco_frames(args.frames))),
                           ("cat.jpg pan, H.264", write_h264(root / "pan.mp4", pan_frames(args.frames)))):
            folder = root / f"{clip.stem}-frames"
            folder.mkdir()
            frames = decoded(clip)
            for k, frame in enumerate(frames):
                cv2.imwrite(str(folder / f"{k:06d}.png"), frame)
            video = detect(clip, "--synthetic", "--out", root / f"{clip.stem}-video-out")
            images = detect(folder, "--synthetic", "--out", root / f"{clip.stem}-images-out")
            fv, fi = len(frames) / video["seconds"], len(frames) / images["seconds"]
            print(f"  {name}: video {fv:.3f} frames/s ({video['seconds']:.1f} s), images {fi:.3f} images/s "
                  f"({images['seconds']:.1f} s), ratio {fv / fi:.2f}x")
    if "rss" not in args.skip:
        from _models import tiny_heads_model

        tiny = tiny_heads_model(root / "tiny.onnx")
        print(f"2. peak RSS, tiny 12-head model, 640x480 MJPG clips, annotated video on")
        base = coco_frames(min(args.rss_frames, 40)) if SHARED.is_dir() else [np.zeros((480, 640, 3), np.uint8)]
        for count in (args.rss_frames, 10 * args.rss_frames):
            path = root / f"rss-{count}.avi"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
            for k in range(count):
                writer.write(base[k % len(base)])
            writer.release()
            result = detect(path, "--model", tiny, "--no-verify", "--batch-size", "2", "--out", root / f"rss-{count}-out")
            print(f"  {count} frames: peak RSS {result['rss_mb']:.0f} MB, {count / result['seconds']:.1f} frames/s")
    if "realtime" not in args.skip:
        path = write_mp4v(root / "live.mp4", (coco_frames(40) * 5)[:200], fps=25.0)
        out = root / "realtime-out"
        result = detect(path, "--synthetic", "--realtime", "--out", out)
        summary = json.loads((out / "run.json").read_text())["summary"]
        stream = summary["streams"][0]
        print(f"3. --realtime, synthetic model, 25 fps clip of 200 frames (8 s): {stream['frames']} processed, "
              f"{stream['dropped']} dropped, latency median {summary['latency_s']['median']:.2f} s, "
              f"max {summary['latency_s']['max']:.2f} s, wall {result['seconds']:.1f} s")
        from _models import tiny_heads_model

        tiny = tiny_heads_model(root / "tiny-rt.onnx")
        path = write_mp4v(root / "fast.mp4", (coco_frames(40) * 15)[:600], fps=100.0)
        out = root / "realtime-tiny-out"
        result = detect(path, "--model", tiny, "--no-verify", "--realtime", "--out", out)
        summary = json.loads((out / "run.json").read_text())["summary"]
        stream = summary["streams"][0]
        print(f"   --realtime, tiny 12-head model, 100 fps clip of 600 frames (6 s): {stream['frames']} processed, "
              f"{stream['dropped']} dropped, latency median {summary['latency_s']['median'] * 1000:.0f} ms, "
              f"max {summary['latency_s']['max'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
