"""Benchmark image preprocessing on real COCO photos; prints a markdown table.

    .venv/bin/python benches/bench_preprocess.py [--images 20] [--rounds 5] [--data ../shared/data]

Per photo (median over images x rounds timings, milliseconds):

- JPEG decode: ``ssd_resnet34.preprocessing.read_image`` (bytes, Pillow header check, ``cv2.imdecode``);
- MLPerf as written: ``maybe_resize`` + ``pre_process_coco_resnet34`` from mlcommons/inference
  ``vision/classification_and_detection/python/dataset.py`` (float32 cvtColor/resize, numpy
  ``img / 255.0 - mean``, ``/ std``, transpose) plus the copy into a contiguous NCHW batch;
- ``preprocess(image, exact=True)``: the same values, computed in place;
- ``preprocess(image)``: the fast path end to end (uint8 resize + native fused normalize into a
  new batch array);
- the fast path into a reused batch slot, and its two parts (uint8 resize, native normalize).

Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
# The test oracle, written from MLPerf's dataset.py, is also the baseline here.
from test_preprocessing import mlperf_reference as mlperf_as_written  # noqa: E402

sys.path.insert(0, str(REPO / "benches"))
from _common import cpu_name  # noqa: E402


def time_ms(function, inputs, rounds: int) -> list:
    function(inputs[0])  # warm-up
    timings = []
    for _ in range(rounds):
        for item in inputs:
            start = time.perf_counter()
            function(item)
            timings.append((time.perf_counter() - start) * 1e3)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=20, help="COCO photos to use (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the photos (default 5)")
    args = parser.parse_args(argv)

    folder = args.data / "coco-val2017-subset" / "images"
    files = sorted(folder.glob("*.jpg"))[: args.images]
    if not files:
        print(f"SKIPPED: no COCO photos in {folder} (../shared/data next to the repository)")
        return 0

    from ssd_resnet34 import _native
    from ssd_resnet34.preprocessing import INPUT_SIZE, _preprocess_fast, preprocess, read_image

    images = [read_image(path) for path in files]
    resized = [cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR) for image in images]
    slot = np.empty((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    batch_copy = np.empty_like(slot)

    def reference(image):
        batch_copy[0] = mlperf_as_written(image)

    rows = [
        ("JPEG decode (`read_image`: bytes, Pillow header, `cv2.imdecode`)", time_ms(read_image, files, args.rounds)),
        ("MLPerf as written (float32 resize, numpy formula, allocating) + copy to batch", time_ms(reference, images, args.rounds)),
        ("`preprocess(image, exact=True)` (same values, in place)", time_ms(lambda im: preprocess(im, exact=True), images, args.rounds)),
        ("**`preprocess(image)`** fast path, end to end (new batch array)", time_ms(preprocess, images, args.rounds)),
        ("fast path into a reused batch slot (resize + normalize)", time_ms(lambda im: _preprocess_fast(im, slot[0]), images, args.rounds)),
        ("... of which `cv2.resize` uint8 INTER_LINEAR", time_ms(lambda im: cv2.resize(im, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR), images, args.rounds)),
        ("... of which `_native.normalize_image` (LUT, BGR->RGB, HWC->CHW)", time_ms(lambda r: _native.normalize_image(r, slot[0]), resized, args.rounds)),
    ]
    fast = statistics.median(rows[3][1])
    sizes = sorted(f"{im.shape[1]}x{im.shape[0]}" for im in images)
    print(
        f"Preprocessing per photo, {len(files)} COCO val2017 photos ({sizes[0]} .. {sizes[-1]}) x {args.rounds} rounds; "
        f"nproc {os.cpu_count()}, {cpu_name()}; cv2 {cv2.__version__} ({cv2.getNumThreads()} threads), "
        f"numpy {np.__version__}, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| step | median ms | p10 ms | p90 ms | vs fast path |")
    print("|---|---:|---:|---:|---:|")
    for name, timings in rows:
        q = np.percentile(timings, [10, 90])
        median = statistics.median(timings)
        print(f"| {name} | {median:.2f} | {q[0]:.2f} | {q[1]:.2f} | {median / fast:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
