"""What the ``Detections`` result costs beside the decode that makes it; prints a markdown table.

    .venv/bin/python benches/bench_detections.py [--images 20] [--rounds 200] [--data ../shared/data]

Per image (median over images x rounds, microseconds), on COCO ground truth encoded as head
outputs (``evaluation.accuracy.oracle.encode_ground_truth``: a few hundred candidates, as real outputs):

- ``NativePostProcessor.decode`` of one image (the Rust decode, returning ``Detections``);
- ``Detections._trusted``: the wrapper the postprocessors use for their already-valid arrays;
- ``Detections(...)``: the public, validating constructor on the same arrays;
- ``to_results`` / ``to_coco``: the pixel conversions ``detect`` and ``eval`` run per image.

Skips (exit 0, with a message) when the COCO annotations are absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benches"))
from _common import cpu_name


def _median_us(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _measure(pp, heads, image, rows, rounds: int) -> int:
    from ssd_resnet34 import Detections

    d = pp.decode(heads)[0]
    rows["decode"].append(_median_us(lambda: pp.decode(heads), max(1, rounds // 20)))
    rows["_trusted"].append(_median_us(lambda: Detections._trusted(d.boxes, d.labels, d.scores), rounds))
    rows["Detections(...)"].append(_median_us(lambda: Detections(d.boxes, d.labels, d.scores), rounds))
    rows["to_results"].append(_median_us(lambda: d.to_results(image.width, image.height), rounds))
    rows["to_coco"].append(_median_us(lambda: d.to_coco(1, image.width, image.height), rounds))
    return len(d)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    annotations = args.data / "coco-val2017-subset" / "instances_val2017_subset.json"
    if not annotations.is_file():
        print(f"skipped: {annotations} not found")
        return 0

    from ssd_resnet34 import NativePostProcessor
    from ssd_resnet34.evaluation.accuracy.ground_truth import load_coco_ground_truth
    from ssd_resnet34.evaluation.accuracy.oracle import encode_ground_truth

    pp = NativePostProcessor()
    rows = {name: [] for name in ("decode", "_trusted", "Detections(...)", "to_results", "to_coco")}
    counts = []
    for n, image in enumerate(load_coco_ground_truth(annotations)[: args.images]):
        counts.append(_measure(pp, encode_ground_truth(image.boxes, image.labels, seed=n), image, rows, args.rounds))
    print(f"CPU: {cpu_name()}; {len(counts)} COCO images, {statistics.mean(counts):.0f} detections per image\n")
    print("| step | median per image (us) |\n|---|---:|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
