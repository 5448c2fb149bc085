"""Benchmark the postprocess (head outputs -> detections); prints a markdown table.

    .venv/bin/python benches/bench_postprocess.py [--images 8] [--dense 8] [--random 4]
        [--rounds 30] [--python-rounds 2] [--data ../shared/data]

Implementations, timed on the same inputs in one run (milliseconds per image: median, p10, p90
over images x rounds), interleaved: each round runs every native implementation and furiosa's
once over the inputs, in turn, so that a change in the machine's load during the run affects
them alike and their ratios stay meaningful. Two cache regimes:

- cold: the images are decoded round-robin, so each call reads its head outputs (4.9 MB per
  image) from main memory;
- warm: each image is decoded ``--repeat`` times in a row, so its head outputs are in the CPU
  cache, as right after the inference engine wrote them in a serving loop.

The implementations:

- ``PythonPostProcessor.decode``, batch 1 (the numpy reference);
- ``NativePostProcessor.decode``, batch 1 (Python validation + Rust), and batch 8 divided by 8;
- ``_native.Postprocessor.decode``, batch 1, without the Python validation (the wrapper's cost
  is the difference);
- FuriosaAI's ``RustPostProcessor.eval`` (``furiosa-native-postprocess``, one image, no batch
  axis), skipped with a note when not installed.

Inputs: (a) sparse realistic: the oracle's outputs (``encode_ground_truth``: a near-perfect
model, a few hundred candidates) for the first ``--images`` COCO val2017 images of the shared
subset (synthetic ground truth when ``../shared`` is absent); (b) dense realistic: the same
ground truth at the candidate density of a real trained model (``_common.dense_head_outputs``:
the oracle plus N(0, 1) noise on every class logit, background logit +0.5; 2,000-4,000
candidates per image) for the first ``--dense`` images; (c) Gaussian random logits N(0, 1) and
offsets N(0, 1), the worst case for NMS (every class has hundreds of candidates). Each section
gives the number of candidates per image ((anchor, class) pairs with score > 0.05: mean and
range) and of detections, and how many times faster the native decode is than furiosa's
(ratio of the medians).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from ssd_resnet34 import NativePostProcessor, PythonPostProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DENSE_BACKGROUND_SHIFT,
    SHARED_DATA,
    candidate_count,
    cpu_name,
    dense_head_outputs,
    ground_truths,
    oracle,
)

BATCH = 8


def realistic_inputs(data: Path, count: int):
    """(description, per-image outputs with batch axis 1) of the oracle on ground truth."""
    description, truths = ground_truths(data, count)
    return f"(a) sparse: oracle, {description}", [
        oracle.encode_ground_truth(boxes, labels, seed=n)
        for n, (_, boxes, labels) in enumerate(truths)
    ]


def dense_inputs(data: Path, count: int):
    """The same ground truth at a trained model's candidate density (``dense_head_outputs``)."""
    description, truths = ground_truths(data, count)
    return (f"(b) dense: oracle + N(0,1) noise on every class logit, background logit "
            f"{DENSE_BACKGROUND_SHIFT:+g}, {description}"), [
        dense_head_outputs(boxes, labels, seed=n) for n, (_, boxes, labels) in enumerate(truths)
    ]


def random_inputs(count: int):
    images = [oracle.random_head_outputs(1, seed=1000 + n) for n in range(count)]
    return f"(c) random logits N(0,1), {count} images", images


def time_per_image(call: Callable, items: list, rounds: int, per_call: int = 1,
                   repeat: int = 1) -> List[float]:
    """Milliseconds per image of call(item): ``rounds`` passes over the items after a warm-up,
    each item called ``repeat`` times in a row (the first call of each run is not timed when
    ``repeat`` > 1, so every timing is warm)."""
    return time_interleaved([(call, items, per_call)], rounds, repeat)[0]


def time_interleaved(runs: List[Tuple[Callable, list, int]], rounds: int,
                     repeat: int = 1) -> List[List[float]]:
    """:func:`time_per_image` of several ``(call, items, per_call)`` at once: each round makes
    one pass over the items of every run in turn. Returns one list of timings per run."""
    for call, items, _ in runs:
        call(items[0])
    timings: List[List[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for (call, items, per_call), out in zip(runs, timings):
            for item in items:
                if repeat > 1:
                    call(item)
                for _ in range(repeat):
                    start = time.perf_counter()
                    call(item)
                    out.append((time.perf_counter() - start) * 1e3 / per_call)
    return timings


def batches_of(images, size: int):
    """Batches of ``size`` images (cycling through the images) as 12 stacked tensors."""
    batches = []
    for start in range(0, max(len(images), size), size):
        chosen = [images[(start + k) % len(images)] for k in range(size)]
        batches.append([np.concatenate(parts) for parts in zip(*chosen)])
    return batches


def furiosa_processor():
    # Its bindings (an old rust-numpy) import numpy.core.multiarray, deprecated in numpy 2.
    warnings.filterwarnings("ignore", "numpy.core.multiarray is deprecated", DeprecationWarning)
    try:
        from furiosa_native_postprocess.ssd_resnet34 import RustPostProcessor
    except ImportError:
        return None
    return RustPostProcessor()


def _stats(timings: Optional[List[float]]) -> str:
    if timings is None:
        return "- | -"
    p10, p90 = np.percentile(timings, [10, 90])
    return f"{statistics.median(timings):.2f} | {p10:.2f}-{p90:.2f}"


def row(name: str, cold: Optional[List[float]], warm: Optional[List[float]] = None,
        note: str = "") -> str:
    return f"| {name} | {_stats(cold)} | {_stats(warm)} | {note} |"


def bench_set(title: str, images, args, native_module, furiosa) -> List[str]:
    python_pp = PythonPostProcessor()
    native_pp = NativePostProcessor()
    raw = native_module.Postprocessor(score_threshold=0.05, iou_threshold=0.5,
                                      max_candidates_per_class=200, max_detections=200)
    detections = np.mean([len(d) for image in images for d in native_pp.decode(image)])
    counts = [candidate_count(image) for image in images]
    lines = [
        f"### {title}",
        "",
        f"{np.mean(counts):.0f} candidates (score > 0.05) per image on average "
        f"({min(counts)}-{max(counts)}), {detections:.0f} detections.",
        "",
        "| implementation | median ms/image, cold cache | p10-p90 | median ms/image, warm cache "
        "| p10-p90 | notes |",
        "|---|---|---|---|---|---|",
    ]

    lines.append(row("PythonPostProcessor.decode, batch 1",
                     time_per_image(python_pp.decode, images, args.python_rounds),
                     note="numpy reference; cold only"))
    batches = batches_of(images, BATCH)
    # Batch 1 through the Python front end and without it, and furiosa's, interleaved.
    runs = [(native_pp.decode, images, 1), (lambda o: raw.decode(o[:6], o[6:]), images, 1)]
    if furiosa is not None:
        unbatched = [([t[0] for t in o[6:]], [t[0] for t in o[:6]]) for o in images]
        runs.append((lambda a: furiosa.eval(*a), unbatched, 1))
    cold = time_interleaved(runs + [(native_pp.decode, batches, BATCH)], args.rounds)
    warm = time_interleaved(runs, max(1, args.rounds // args.repeat), repeat=args.repeat)
    lines.append(row("NativePostProcessor.decode, batch 1", cold[0], warm[0]))
    lines.append(row(f"NativePostProcessor.decode, batch {BATCH} (per image)", cold[-1],
                     note=f"{BATCH} images = {BATCH * 4.9:.0f} MB, so cold only"))
    lines.append(row("_native.Postprocessor.decode, batch 1 (no Python validation)", cold[1],
                     warm[1]))
    if furiosa is None:
        lines.append(row("furiosa RustPostProcessor.eval", None, None,
                         "skipped: furiosa-native-postprocess not installed"))
        return lines + [""]
    lines.append(row("furiosa RustPostProcessor.eval (furiosa-native-postprocess)", cold[2],
                     warm[2]))
    ratio_cold, ratio_warm = (statistics.median(t[2]) / statistics.median(t[1])
                              for t in (cold, warm))
    return lines + [
        "",
        f"Native decode (`_native.Postprocessor.decode`, batch 1) vs furiosa (`eval`, one image), "
        f"ratio of the medians: {ratio_cold:.1f}x faster cold, {ratio_warm:.1f}x warm.",
        "",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="COCO images for (a)")
    parser.add_argument("--dense", type=int, default=8, help="COCO images for (b)")
    parser.add_argument("--random", type=int, default=4, help="random-logit images for (c)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds for the native ones")
    parser.add_argument("--python-rounds", type=int, default=2, help="rounds for the reference")
    parser.add_argument("--repeat", type=int, default=10,
                        help="calls in a row per image in the warm-cache regime")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)

    native_module = importlib.import_module("ssd_resnet34._native")
    furiosa = furiosa_processor()
    sets = [realistic_inputs(args.data, args.images), dense_inputs(args.data, args.dense),
            random_inputs(args.random)]

    print("## Postprocess benchmark (ms per image)")
    print()
    print(f"- machine: {cpu_name()}, nproc {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}, numpy {np.__version__}")
    command = [".venv/bin/python", "benches/bench_postprocess.py"]
    command += sys.argv[1:] if argv is None else list(argv)
    print(f"- command: `{' '.join(command)}`")
    print(f"- rounds: {args.rounds} (native, furiosa; warm: {max(1, args.rounds // args.repeat)} x "
          f"{args.repeat} calls in a row), {args.python_rounds} (numpy reference); same inputs "
          "for every implementation")
    print()
    for title, images in sets:
        print("\n".join(bench_set(title, images, args, native_module, furiosa)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
