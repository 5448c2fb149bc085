"""Per-image isolation holds for images the decoders choke on (issue 15, items 2 and 13): a real
``ssd-resnet34 detect`` process given a 3 GiB file, a file OpenCV raises on and a JPEG with
corrupt data between two good images reports each bad one on its own ``error:`` line (no raw
libjpeg line) and writes the good ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def _command() -> list:
    script = Path(sys.executable).with_name("ssd-resnet34")
    return [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from ssd_resnet34.cli import main; sys.exit(main())"]


def test_detect_goes_on_past_a_3_gib_file_and_an_opencv_exception(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), (rng.random((96, 128, 3)) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    big = tmp_path / "big.jpg"
    big.write_bytes((tmp_path / "a.jpg").read_bytes())
    os.truncate(big, 3 * 2**30)  # sparse: no disk space used
    wide = tmp_path / "wide.pgm"  # within the pixel limit, but cv2.imdecode raises cv2.error on it
    wide.write_bytes(b"P5\n2000000 1\n255\n" + bytes(2_000_000))
    good = (tmp_path / "a.jpg").read_bytes()
    corrupt = tmp_path / "corrupt.jpg"  # 2,000 bytes cut from its middle: OpenCV would decode it garbled
    corrupt.write_bytes(good[: len(good) // 2] + good[len(good) // 2 + 2000 :])
    out = tmp_path / "O"
    inputs = [str(tmp_path / "a.jpg"), str(big), str(wide), str(corrupt), str(tmp_path / "b.jpg")]
    completed = subprocess.run([*_command(), "detect", *inputs, "--synthetic", "--out", str(out)],
                               capture_output=True, text=True, timeout=600)
    stderr = completed.stderr
    assert completed.returncode == 1, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    errors = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {big}: file too large: 3,221,225,472 bytes, more than a JPEG image of at most 100,000,000 "
        "pixels (ssd_resnet34.image.MAX_IMAGE_PIXELS) can take (867,108,864 bytes); refused before reading it",
        f"error: {wide}: not an image (OpenCV could not decode it: (-215:Assertion failed) "
        "static_cast<size_t>(size.width) <= CV_IO_MAX_IMAGE_WIDTH in function 'validateInputImageSize')",
        f"error: {corrupt}: corrupt JPEG data (libjpeg-turbo: Corrupt JPEG data: premature end of data segment); "
        "refused: it would decode with grey or garbled blocks. Re-encode the file to use it",
    ], stderr
    assert "\nCorrupt JPEG data" not in stderr and not stderr.startswith("Corrupt JPEG data")
    assert completed.stdout.count(": ") >= 2 and "a.jpg" in completed.stdout and "b.jpg" in completed.stdout
    ids = json.loads((out / "image_ids.json").read_text())
    assert sorted(os.path.basename(name) for name in ids.values()) == ["a.jpg", "b.jpg"]
    assert (out / "a.jpg").is_file() and (out / "b.jpg").is_file()
