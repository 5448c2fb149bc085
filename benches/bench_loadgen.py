"""MLPerf LoadGen in its four scenarios beside the bare engine; prints a markdown table.

    .venv/bin/python benches/bench_loadgen.py [--images DIR] [--count 32] [--duration-ms 30000]
        [--server-bound-ms 3000] [--model PATH | (synthetic)] [--engine auto] [--precision auto]

One run, on the same engine and precision (the command's defaults unless given):

1. the bare engine in throughput mode: the images preprocessed once, then submitted with the
   engine's requests in flight, nothing else (images/s, median of 3 passes);
2. ``ssd-resnet34 bench`` in each scenario, PerformanceOnly, each in its own process:
   Offline (samples/s, and the ratio to the bare engine: decode and preprocess are in LoadGen's
   untimed QSL load, inference and postprocess in the timed SUT), SingleStream (p90 latency),
   MultiStream (MLPerf's 8 samples per query, p99 latency per query), Server (the highest
   target QPS, in steps, that LoadGen still reports VALID under ``--server-bound-ms``; each run
   needs ``--server-queries`` queries, as LoadGen's early stopping asks for 459 to establish
   the 99th percentile, so the Server runs take about 3 minutes each here).

The minimums are lowered (``--min-duration-ms``, ``--min-query-count``), so these are not
MLPerf-compliant results: MLPerf asks for 600 s per run and, for the Server, a 100 ms bound
that a 2-core CPU cannot meet for this 433-GFLOP model.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, cpu_name  # noqa: E402


def bare_engine_images_per_second(args, paths) -> tuple[float, str]:
    """Throughput of the bare engine on preprocessed images, all submitted at once."""
    import warnings

    import numpy as np

    from ssd_resnet34 import SSDResNet34, engines
    from ssd_resnet34.image import preprocess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = SSDResNet34.load(args.model, verify=False) if args.model else SSDResNet34.synthetic()
    batch, _ = preprocess([str(p) for p in paths])
    options = {k: v for k, v in (("engine", args.engine), ("precision", args.precision)) if v}
    with engines.create(model, mode="throughput", **options) as engine:
        engine.run(batch[:1])
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            for future in [engine.submit(batch[i : i + 1]) for i in range(len(batch))]:
                future.result()
            rates.append(len(batch) / (time.perf_counter() - start))
        described = f"{engine.name}, {engine.device}, {engine.precision}, {engine.requests} requests"
    return statistics.median(rates), described


def bench(args, scenario: str, *extra: str) -> str:
    """Run ``ssd-resnet34 bench`` in its own process; returns its standard output."""
    command = [sys.executable, "-m", "ssd_resnet34.cli", "bench", "--images", str(args.images), "--count",
               str(args.count), "--scenario", scenario, "--min-duration-ms", str(args.duration_ms),
               "--out", tempfile.mkdtemp(prefix=f"lg-{scenario}-"), *extra]
    command += ["--model", args.model, "--no-verify"] if args.model else ["--synthetic"]
    for flag, value in (("--engine", args.engine), ("--precision", args.precision)):
        if value:
            command += [flag, value]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def field(text: str, pattern: str) -> float:
    match = re.search(pattern, text, re.M)
    if not match:
        raise RuntimeError(f"{pattern!r} not in LoadGen's summary:\n{text}")
    return float(match.group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=SHARED_DATA / "coco-val2017-subset" / "images")
    parser.add_argument("--count", type=int, default=32, help="images in the QSL (default 32)")
    parser.add_argument("--duration-ms", type=int, default=30000, help="LoadGen min_duration per run (default 30000)")
    parser.add_argument("--server-bound-ms", type=float, default=3000, help="Server latency bound (default 3000)")
    parser.add_argument("--server-queries", type=int, default=460,
                        help="Server: min_query_count (default 460: LoadGen's early stopping needs 459 queries, "
                        "none over the bound, to establish a 99th percentile)")
    parser.add_argument("--model", help="an SSD-ResNet34 .onnx (default: the synthetic model)")
    parser.add_argument("--engine")
    parser.add_argument("--precision")
    args = parser.parse_args(argv)
    paths = sorted(args.images.glob("*.jpg"))[: args.count]
    if not paths:
        print(f"SKIPPED: no photos in {args.images}")
        return 0

    bare, engine = bare_engine_images_per_second(args, paths)
    rows = [("bare engine, throughput mode (preprocessed images)", f"{bare:.2f} images/s", "1.00x")]

    offline = field(bench(args, "Offline", "--target-qps", f"{bare:.3f}", "--min-query-count", str(args.count)),
                    r"^Samples per second\s*:\s*([0-9.]+)")
    rows.append(("Offline, samples/s", f"{offline:.2f}", f"{offline / bare:.2f}x of the bare engine"))

    single = bench(args, "SingleStream", "--min-query-count", str(min(args.count, 32)))
    p90 = field(single, r"^90.0+th percentile latency \(ns\)\s*:\s*(\d+)") / 1e6
    rows.append(("SingleStream, p90 latency", f"{p90:.0f} ms", f"{1e3 / p90:.2f} images/s at one in flight"))

    multi = bench(args, "MultiStream", "--samples-per-query", "8", "--min-query-count", "8",
                  "--target-latency-ms", f"{8e3 / bare:.0f}")
    p99 = field(multi, r"^99.0+th percentile latency \(ns\)\s*:\s*(\d+)") / 1e6
    rows.append(("MultiStream (8 samples/query), p99 latency per query", f"{p99:.0f} ms",
                 f"{8e3 / p99:.2f} samples/s"))

    best, failed = None, ""
    for fraction in (0.6, 0.75, 0.9):
        qps = round(bare * fraction, 2)
        out = bench(args, "Server", "--target-qps", f"{qps}", "--target-latency-ms", f"{args.server_bound_ms:.0f}",
                    "--min-query-count", str(args.server_queries), "--max-batch", "2")
        if "Result is : VALID" not in out:
            p99 = field(out, r"^99\.00 percentile latency \(ns\)\s*:\s*(\d+)") / 1e6
            reasons = ", ".join(re.findall(r"^\s+(.+?)\s*:\s*NO$", out, re.M))
            failed = f"; INVALID at {qps:.2f} QPS (p99 {p99:.0f} ms; not satisfied: {reasons})"
            break
        best = qps
    rows.append((f"Server, highest VALID target QPS under a {args.server_bound_ms:.0f} ms p99 bound "
                 f"(steps 0.6, 0.75, 0.9 x bare; {args.server_queries} queries)",
                 "none" if best is None else f"{best:.2f} QPS",
                 ("-" if best is None else f"{best / bare:.2f}x of the bare engine") + failed))

    print(f"LoadGen scenarios, {len(paths)} COCO photos in the QSL, min_duration {args.duration_ms} ms "
          f"(not MLPerf-compliant: lowered minimums); engine: {engine}; model: "
          f"{args.model or 'synthetic (random weights)'}; nproc {os.cpu_count()}, {cpu_name()}\n")
    print("| measure | value | note |")
    print("|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
