"""Real encoded video files for the video tests, and a real HTTP server on 127.0.0.1 serving them.

:func:`make_clip` writes frames with ``cv2.VideoWriter`` (OpenCV's FFmpeg): the shared COCO photos
resized (a "clip made from the photos", one photo per frame) when they are there, else synthetic
frames (a gradient with a moving box), so the tests run without ../shared too.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator, List

import cv2
import numpy as np
from _paths import SHARED_DATA

COCO_IMAGES = SHARED_DATA / "coco-val2017-subset" / "images"


def clip_frames(count: int, width: int = 320, height: int = 240, *, photos: bool = True) -> List[np.ndarray]:
    """``count`` uint8 BGR frames: COCO photos resized (cycled) when present and ``photos``,
    else synthetic ones; each frame differs from the others."""
    paths = sorted(COCO_IMAGES.glob("*.jpg"))[:count] if photos and COCO_IMAGES.is_dir() else []
    frames = []
    for k in range(count):
        if paths:
            frame = cv2.resize(cv2.imread(str(paths[k % len(paths)]), cv2.IMREAD_COLOR), (width, height),
                               interpolation=cv2.INTER_AREA)
        else:
            x = np.linspace(0, 255, width, dtype=np.float32)
            frame = np.empty((height, width, 3), np.uint8)
            frame[...] = np.stack([np.roll(x, 7 * k), x[::-1], np.full_like(x, 40 + 9 * k % 200)], axis=-1)
            left = (15 * k) % (width - 60)
            cv2.rectangle(frame, (left, 60), (left + 60, 140), (20, 220, 240), cv2.FILLED)
        frames.append(frame)
    return frames


def make_clip(path: Path, count: int, *, fps: float = 10.0, width: int = 320, height: int = 240,
              fourcc: str = "mp4v", photos: bool = True) -> Path:
    """Encode ``count`` frames (:func:`clip_frames`) into ``path`` (``mp4v`` in .mp4, ``MJPG`` in
    .avi/.mkv ...) at ``fps``; returns ``path``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    for frame in clip_frames(count, width, height, photos=photos):
        writer.write(frame)
    writer.release()
    return path


def decode_all(path) -> List[np.ndarray]:
    """Every frame of a video file, as OpenCV decodes them."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def video_info(path) -> dict:
    """Frames decoded, declared fps and size of a video file."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    info = {"opened": capture.isOpened(), "fps": capture.get(cv2.CAP_PROP_FPS),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}
    capture.release()
    info["frames"] = len(decode_all(path)) if info["opened"] else 0
    return info


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``folder``; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
