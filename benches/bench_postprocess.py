"""Benchmark the postprocess (head outputs -> detections); prints a markdown table.

    .venv/bin/python benches/bench_postprocess.py [--images 8] [--dense 8] [--random 4]
        [--rounds 30] [--python-rounds 2] [--data ../shared/data]
    .venv/bin/python benches/bench_postprocess.py --regimes [--dense 8] [--rounds 30]
        [--baseline path/to/other/_native.abi3.so]
    .venv/bin/python benches/bench_postprocess.py --float16 [--dense 8] [--rounds 30]

``--regimes``: the dense realistic inputs (b) in the regimes where the postprocess really
runs, native and furiosa side by side in one run, call by call (see :func:`regimes`):
back to back on both cores (the default table's regime), alternating call by call with
furiosa, after a 10 ms pause, and on one thread (``RAYON_NUM_THREADS=1`` for both, in a
child process) back to back, alternating, cold (a 96 MB buffer read, or written, between
calls, so the heads come from main memory, as right after another workload) and cold after
a pause. ``--baseline``
adds another build of the extension (e.g. main's) to every regime, for before/after in one
run. ``--float16``: the same inputs as float16 heads, decoded natively, against converting
them first (``astype(np.float32)``) and against float32 heads.

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
    baseline_runs = []
    if args.baseline is not None:
        base = load_baseline(args.baseline).Postprocessor()
        baseline_runs = [(lambda o: base.decode(o[:6], o[6:]), images, 1)]
    cold = time_interleaved(runs + [(native_pp.decode, batches, BATCH)] + baseline_runs,
                            args.rounds)
    warm = time_interleaved(runs + baseline_runs, max(1, args.rounds // args.repeat),
                            repeat=args.repeat)
    if baseline_runs:
        lines.append(row(f"baseline _native.Postprocessor.decode, batch 1 ({args.baseline})",
                         cold[-1], warm[-1], "another build, for before/after"))
        cold, warm = cold[:-1], warm[:-1]
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


#: Bytes written between calls in the cold regimes: more than any L3 of the machines at hand.
EVICT_BYTES = 96 << 20


class _Evictor:
    """Touches one value per 64-byte line of an ``EVICT_BYTES`` buffer, so that the head
    outputs are out of every cache level: ``read()`` reads them (the caches then hold clean
    lines), ``write()`` increments them (dirty lines, written back to memory as the next call
    reads; on this VM that costs the next call about 2 ms more than a read, far more than
    the write-back of 4.9 MB should, so both are shown)."""

    def __init__(self) -> None:
        self.buffer = np.zeros(EVICT_BYTES // 4, np.float32)

    def read(self) -> None:
        self.buffer[::16].sum()

    def write(self) -> None:
        self.buffer[::16] += 1


def load_baseline(path: Path):
    """Another build of ``ssd_resnet34._native`` (e.g. main's), loaded beside this one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ssd_resnet34_baseline._native", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def regime_timings(calls, images, rounds: int, mode: str, evict=None) -> List[List[float]]:
    """Milliseconds of each call of ``calls`` (functions of one image's 12 outputs) in a regime:

    - ``back_to_back``: each call over all images, ``rounds`` times in a row, then the next
      call (rounds interleaved between the calls);
    - ``alternating``: for each image, every call once in turn (native, furiosa, native, ...);
    - ``pause``: as alternating, with a 10 ms sleep before each call;
    - ``cold``: as alternating, with ``evict.read()`` before each call;
    - ``cold_write``: as alternating, with ``evict.write()`` before each call;
    - ``cold_pause``: ``evict.read()`` then a 10 ms sleep before each call.
    """
    for call in calls:
        call(images[0])
    out: List[List[float]] = [[] for _ in calls]

    def timed(call, image, into):
        start = time.perf_counter()
        call(image)
        into.append((time.perf_counter() - start) * 1e3)

    for _ in range(rounds):
        if mode == "back_to_back":
            for call, into in zip(calls, out):
                for _ in range(3):
                    for image in images:
                        timed(call, image, into)
            continue
        for image in images:
            for call, into in zip(calls, out):
                if mode in ("cold", "cold_pause"):
                    evict.read()
                elif mode == "cold_write":
                    evict.write()
                if mode in ("pause", "cold_pause"):
                    time.sleep(0.010)
                timed(call, image, into)
    return out


def regime_calls(args, furiosa):
    """(names, calls) of the regimes: this build's raw decode, the baseline's, furiosa's."""
    native_module = importlib.import_module("ssd_resnet34._native")
    raw = native_module.Postprocessor()
    names, calls = ["native (this build)"], [lambda o: raw.decode(o[:6], o[6:])]
    if args.baseline is not None:
        base = load_baseline(args.baseline).Postprocessor()
        names.append(f"native baseline ({args.baseline})")
        calls.append(lambda o: base.decode(o[:6], o[6:]))
    if furiosa is not None:
        names.append("furiosa RustPostProcessor.eval")
        calls.append(lambda o: furiosa.eval([t[0] for t in o[6:]], [t[0] for t in o[:6]]))
    return names, calls


REGIMES = [
    ("back_to_back", "back to back, both cores (pool warm)"),
    ("alternating", "alternating call by call, both cores"),
    ("pause", "after a 10 ms pause, both cores"),
    ("cold", "cold (96 MB read before each call), both cores"),
]
ONE_THREAD_REGIMES = [
    ("back_to_back", "one thread, back to back"),
    ("alternating", "one thread, alternating call by call"),
    ("cold", "one thread, cold (96 MB read before each call)"),
    ("cold_write", "one thread, cold (96 MB written before each call)"),
    ("cold_pause", "one thread, cold (96 MB read) + 10 ms pause"),
]


def _run_regimes(args, regimes) -> dict:
    _, images = dense_inputs(args.data, args.dense)
    names, calls = regime_calls(args, furiosa_processor())
    evict = _Evictor()
    return {"names": names,
            "rows": [(title, regime_timings(calls, images, args.rounds, mode, evict))
                     for mode, title in regimes]}


def regimes(args) -> int:
    """Prints the regimes table: this process (both cores) and a child with one thread."""
    import json
    import subprocess

    description, images = dense_inputs(args.data, args.dense)
    counts = [candidate_count(image) for image in images]
    both = _run_regimes(args, REGIMES)
    command = [sys.executable, __file__, "--regimes-child", "--dense", str(args.dense),
               "--rounds", str(args.rounds), "--data", str(args.data)]
    if args.baseline is not None:
        command += ["--baseline", str(args.baseline)]
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    child = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    one = json.loads(child.stdout.strip().splitlines()[-1])
    names = both["names"]
    print("## Postprocess regimes (ms per image, dense realistic inputs)")
    print()
    print(f"- machine: {cpu_name()}, nproc {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"- inputs: {description}; {np.mean(counts):.0f} candidates per image "
          f"({min(counts)}-{max(counts)})")
    print(f"- {args.rounds} rounds; calls of each implementation interleaved as the regime says; "
          "median (p10-p90) of every call")
    print()
    head = " | ".join(f"{n} median (p10-p90)" for n in names)
    ratio_head = " | furiosa / native" if names[-1].startswith("furiosa") else ""
    print(f"| regime | {head}{ratio_head} |")
    print("|---" * (1 + len(names) + bool(ratio_head)) + "|")
    for title, timings in both["rows"] + [tuple(r) for r in one["rows"]]:
        cells = []
        for t in timings:
            p10, p90 = np.percentile(t, [10, 90])
            cells.append(f"{statistics.median(t):.2f} ({p10:.2f}-{p90:.2f})")
        ratio = (f" | {statistics.median(timings[-1]) / statistics.median(timings[0]):.1f}x"
                 if ratio_head else "")
        print(f"| {title} | {' | '.join(cells)}{ratio} |")
    return 0


def float16_table(args) -> int:
    """Dense realistic inputs as float16 heads: native float16, converting first, float32."""
    description, images = dense_inputs(args.data, args.dense)
    halves = [[o.astype(np.float16) for o in image] for image in images]
    pp = NativePostProcessor()
    raw = importlib.import_module("ssd_resnet34._native").Postprocessor()
    for h in halves:
        for a, b in zip(pp.decode(h)[0], pp.decode([o.astype(np.float32) for o in h])[0]):
            np.testing.assert_array_equal(a, b)
    def converted_first(h):
        wide = [o.astype(np.float32) for o in h]
        return raw.decode(wide[:6], wide[6:])

    runs = [
        (lambda h: raw.decode(h[:6], h[6:]), halves, 1),
        (converted_first, halves, 1),
        (lambda o: raw.decode(o[:6], o[6:]), images, 1),
        (pp.decode, halves, 1),
    ]
    cold = time_interleaved(runs, args.rounds)
    warm = time_interleaved(runs, max(1, args.rounds // args.repeat), repeat=args.repeat)
    print("## float16 heads (ms per image, dense realistic inputs, batch 1)")
    print()
    print(f"- machine: {cpu_name()}, nproc {os.cpu_count()}; inputs: {description}, as float16")
    print()
    print("| implementation | median ms/image, cold cache | p10-p90 | median, warm | p10-p90 | notes |")
    print("|---|---|---|---|---|---|")
    print(row("_native decode, float16 heads (read natively)", cold[0], warm[0], "2.4 MB"))
    print(row("_native decode after astype(float32) of the float16 heads", cold[1], warm[1],
              "what a caller did before"))
    print(row("_native decode, float32 heads", cold[2], warm[2], "4.9 MB"))
    print(row("NativePostProcessor.decode, float16 heads", cold[3], warm[3]))
    saved = statistics.median(cold[1]) - statistics.median(cold[0])
    print()
    print(f"Saved by reading float16 natively instead of converting first: {saved:.2f} ms "
          f"per image cold ({statistics.median(warm[1]) - statistics.median(warm[0]):.2f} warm).")
    return 0


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
    parser.add_argument("--regimes", action="store_true",
                        help="the regimes table (dense inputs, with furiosa; see the docstring)")
    parser.add_argument("--regimes-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another _native.abi3.so to time beside this build (before/after)")
    parser.add_argument("--float16", action="store_true", help="the float16 heads table")
    args = parser.parse_args(argv)
    if args.regimes_child:
        import json

        result = _run_regimes(args, ONE_THREAD_REGIMES)
        print(json.dumps(result))
        return 0
    if args.regimes:
        return regimes(args)
    if args.float16:
        return float16_table(args)

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
