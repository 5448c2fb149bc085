"""Benchmark the inference engines on real COCO photos, side by side in one run; prints markdown.

    .venv/bin/python benches/bench_engines.py [--images 20] [--calibration 8] [--repeats 3]
        [--rounds-of 4] [--skip-slow] [--data ../shared/data]

Runs on the synthetic SSD-ResNet34 (the exact topology, RANDOM weights: its detections are
meaningless; the timings and the agreement between engines are real). Sections:

1. Engines: engine x precision x mode on the same photos, interleaved in rounds of
   ``--rounds-of`` photos (every configuration runs each round, so load from other work hits all
   alike): images/s, per-request ms p50/p90, head SQNR (dB, min..max over the 12 heads, over all
   photos) and detection agreement (share of onnxruntime fp32's detections reproduced: same label,
   IoU >= 0.5) against onnxruntime fp32, and the ratio to onnxruntime fp32 and to the AMX bf16
   limit (2 x conv MACs per image against 2 cores x 2.5 GHz x 2048 FLOP/cycle).
2. End to end: ``SSDResNet34.detect`` over the photo files (read, preprocess, infer, postprocess,
   pipelined) beside the bare engine on the preprocessed arrays (all submitted at once), one right
   after the other, ``--repeats`` times interleaved; medians, and the package's overhead as the
   median over the adjacent (detect, bare) pairs of 1 - bare time / detect time, and as the extra
   CPU time (all threads of the process) per image, which other work on the machine disturbs less.
   "today" is the former default (onnxruntime fp32, latency).
3. Start: cold (empty OpenVINO cache) and warm (cached) engine start in a fresh process.
4. Truncation: the heads graph as exported (initializers also graph inputs, BatchNorms unfused),
   with constant weights, and with the BatchNorms folded (what ``truncate`` writes).

int8 models are calibrated on the folder's LAST ``--calibration`` photos (disjoint from the
measured ones) with ``ssd_resnet34.quantize`` (cached). Speed is reported, never asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, conv_macs, cpu_name  # noqa: E402

from ssd_resnet34 import SSDResNet34, quantize, session  # noqa: E402
from ssd_resnet34.evaluation.accuracy.compare import detection_agreement  # noqa: E402

#: AMX bf16 peak of this 2-core machine: cores x GHz x FLOP/cycle (2048: 1024 bf16 FMAs per cycle).
AMX_TFLOPS = 2 * 2.5e9 * 2048 / 1e12

CONFIGS = [  # (engine, precision, mode); the first is the reference
    ("onnxruntime", "fp32", "latency"),
    ("onnxruntime", "fp32", "throughput"),
    ("onnxruntime", "int8", "latency"),
    ("openvino", "fp32", "latency"),
    ("openvino", "fp16", "latency"),
    ("openvino", "bf16", "latency"),
    ("openvino", "bf16", "throughput"),
    ("openvino", "int8", "latency"),
    ("openvino", "int8", "throughput"),
]
SLOW = {("onnxruntime", "fp32", "throughput"), ("onnxruntime", "int8", "latency"), ("openvino", "fp16", "latency")}


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


class Measure:
    """Timings, SQNR sums and detection agreement of one configuration."""

    def __init__(self, engine):
        self.engine = engine
        self.latencies, self.seconds, self.images = [], 0.0, 0
        self.signal, self.noise = np.zeros(12), np.zeros(12)
        self.detections = []

    def run_round(self, batch):
        """Run the photos of one round; returns their heads (list per photo)."""
        n = batch.shape[0]
        out = [None] * n
        if self.engine.mode == "latency":
            for i in range(n):
                start = time.perf_counter()
                out[i] = self.engine.run(batch[i:i + 1])
                took = time.perf_counter() - start
                self.latencies.append(took)
                self.seconds += took
        else:
            sent, done = [0.0] * n, [0.0] * n

            def keep(i):
                def then(heads):
                    done[i] = time.perf_counter()
                    return [np.array(h) for h in heads]
                return then

            start = time.perf_counter()
            futures = []
            for i in range(n):
                sent[i] = time.perf_counter()
                futures.append(self.engine.submit(batch[i:i + 1], then=keep(i)))
            out = [f.result() for f in futures]
            self.seconds += time.perf_counter() - start
            self.latencies += [d - s for s, d in zip(sent, done)]
        self.images += n
        return out

    def compare(self, reference, heads):
        for k, (ref, got) in enumerate(zip(reference, heads)):
            ref = ref.astype(np.float64)
            self.signal[k] += np.square(ref).sum()
            self.noise[k] += np.square(ref - got).sum()

    def sqnr(self):
        with np.errstate(divide="ignore"):
            db = np.where(self.noise > 0, 10 * np.log10(self.signal / np.where(self.noise > 0, self.noise, 1)), np.inf)
        return float(db.min()), float(db.max())


def bench_engines(model, paths, batch, contexts, rounds_of, skip_slow):
    configs = [c for c in CONFIGS if not (skip_slow and c in SLOW)]
    measures = {}
    for config in configs:
        engine, precision, mode = config
        measures[config] = Measure(session.create(model, device="cpu", engine=engine, precision=precision, mode=mode))
    post = model.postprocessor
    reference = CONFIGS[0]
    for start in range(0, len(paths), rounds_of):
        chunk = batch[start:start + rounds_of]
        ctx = contexts[start:start + rounds_of]
        ref_heads = None
        for config in configs:
            heads = measures[config].run_round(chunk)
            if config == reference:
                ref_heads = heads
                ref_dets = [post(h, contexts=[c])[0] for h, c in zip(heads, ctx)]
                measures[config].ref_dets = getattr(measures[config], "ref_dets", []) + ref_dets
            for h_ref, h, c in zip(ref_heads, heads, ctx):
                measures[config].compare(h_ref, h)
                measures[config].detections.append(post(h, contexts=[c])[0])
        print(f"  round {start // rounds_of + 1}: {min(start + rounds_of, len(paths))} of {len(paths)} photos",
              file=sys.stderr, flush=True)
    ref_dets = measures[reference].ref_dets
    rows = []
    for config, m in measures.items():
        rate = m.images / m.seconds
        rows.append((config, m, rate, detection_agreement(ref_dets, m.detections)))
    for _, m, _, _ in rows:
        m.engine.close()
    return rows


def print_engine_table(rows, limit):
    base = rows[0][2]
    print("| engine | precision | mode | requests | images/s | ms/image p50 | p90 | head SQNR dB (min..max) "
          "| detections agreeing | x onnxruntime fp32 | of AMX limit |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for (engine, precision, mode), m, rate, agree in rows:
        lo, hi = m.sqnr()
        db = "reference" if (engine, precision, mode) == CONFIGS[0] else (
            "identical" if not np.isfinite(lo) else f"{lo:.1f}..{hi:.1f}")
        print(f"| {engine} | {m.engine.precision} | {mode} | {m.engine.requests} | {rate:.2f} | "
              f"{1e3 * pct(m.latencies, 50):.0f} | {1e3 * pct(m.latencies, 90):.0f} | {db} | {agree:.1%} | "
              f"{rate / base:.1f}x | {rate / limit:.0%} |")


def bench_end_to_end(model, paths, batch, repeats):
    """detect() over the files beside the bare engine on the arrays, ``repeats`` times interleaved."""
    runs = {
        "today: onnxruntime fp32, latency": dict(engine="onnxruntime", precision="fp32", mode="latency"),
        "default settings: detect(paths) (auto: OpenVINO bf16; its own engine, throughput)": None,
        "auto, throughput (recommended default)": dict(mode="throughput"),
        "OpenVINO int8, throughput": dict(engine="openvino", precision="int8", mode="throughput"),
    }
    times = {name: {"detect": [], "bare": [], "detect_cpu": [], "bare_cpu": []} for name in runs}
    engines = {name: session.create(model, device="cpu", **kw) for name, kw in runs.items() if kw is not None}
    for rep in range(repeats):
        for name, kw in runs.items():
            start, cpu = time.perf_counter(), time.process_time()
            if kw is None:
                model.detect([str(p) for p in paths])  # opens (and closes) its own engine, as users do
            else:
                model.detect([str(p) for p in paths], session=engines[name])
            times[name]["detect"].append(time.perf_counter() - start)
            times[name]["detect_cpu"].append(time.process_time() - cpu)
            engine = engines.get(name) or engines["auto, throughput (recommended default)"]
            if kw is None:
                engine = session.create(model, mode="throughput")  # the engine detect() opens
            start, cpu = time.perf_counter(), time.process_time()
            for f in [engine.submit(batch[i:i + 1], then=lambda heads: None) for i in range(len(paths))]:
                f.result()
            times[name]["bare"].append(time.perf_counter() - start)
            times[name]["bare_cpu"].append(time.process_time() - cpu)
            if kw is None:
                engine.close()
        print(f"  end to end: repeat {rep + 1} of {repeats}", file=sys.stderr, flush=True)
    for engine in engines.values():
        engine.close()
    n = len(paths)
    today = n / statistics.median(times[next(iter(runs))]["detect"])
    print(f"| run ({n} photos, median of {repeats}) | detect images/s | bare engine images/s | package overhead, "
          "wall (median of adjacent pairs) | CPU s/image detect / bare | package overhead, CPU time | detect x today |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in runs:
        t = times[name]
        detect = n / statistics.median(t["detect"])
        bare = n / statistics.median(t["bare"])
        paired = statistics.median(1 - b / d for d, b in zip(t["detect"], t["bare"]))
        cpu_d, cpu_b = statistics.median(t["detect_cpu"]) / n, statistics.median(t["bare_cpu"]) / n
        print(f"| {name} | {detect:.2f} | {bare:.2f} | {paired:+.1%} | {cpu_d:.2f} / {cpu_b:.2f} | "
              f"{cpu_d / cpu_b - 1:+.1%} | {detect / today:.1f}x |")


_START = """
import sys, time
t0 = time.perf_counter()
from ssd_resnet34.engines import Choice
from ssd_resnet34.engines.openvino import OpenVinoEngine
t1 = time.perf_counter()
engine = OpenVinoEngine(sys.argv[1], Choice("openvino", "cpu", sys.argv[2]), mode=sys.argv[3])
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {engine.read_seconds:.3f} {engine.compile_seconds:.3f} {t2 - t1:.3f}")
"""


def bench_start(model_path, int8_path, repeats=3):
    """Engine start in a fresh process: import, read, compile (cold: empty cache; warm: cached)."""
    print("| model | precision | mode | start | import s | read s | compile s | engine total s |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for path, precision in ((model_path, "bf16"), (int8_path, "int8"), (model_path, "fp32")):
        for mode in ("latency", "throughput"):
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "SSD_RESNET34_CACHE_DIR": cache}
                for label in ["cold"] + ["warm"] * repeats:
                    out = subprocess.run([sys.executable, "-c", _START, str(path), precision, mode], env=env,
                                         capture_output=True, text=True, check=True).stdout.split()
                    if label == "cold":
                        cold = out
                    else:
                        warm = out
                for label, values in (("cold", cold), ("warm", warm)):
                    print(f"| {Path(path).name[:40]} | {precision} | {mode} | {label} | {' | '.join(values)} |")


def bench_truncation(rounds):
    """The heads graph three ways, onnxruntime fp32 (and OpenVINO bf16 where it can take it)."""
    import onnx
    import onnxruntime as ort

    from ssd_resnet34.engines import Choice
    from ssd_resnet34.engines.openvino import OpenVinoEngine
    from ssd_resnet34.model.optimize import constant_weights, dynamic_batch
    from ssd_resnet34.model.synthetic import build_synthetic_model
    from ssd_resnet34.model.truncate import truncate_model

    full = build_synthetic_model(0, full_graph=True)
    exported = truncate_model(full, optimize=False)
    constants = truncate_model(full, optimize=False)
    constant_weights(constants)
    dynamic_batch(constants)
    folded = truncate_model(full)
    x = np.random.default_rng(0).standard_normal((1, 3, 1200, 1200), dtype=np.float32)
    work = Path(tempfile.mkdtemp())
    variants = {}
    for name, proto in (("as exported (weights are inputs, BN unfused)", exported),
                        ("constant weights, BN unfused", constants),
                        ("constant weights, BN folded (truncate's output)", folded)):
        path = work / f"{len(variants)}.onnx"
        onnx.save(proto, str(path))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        start = time.perf_counter()
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        opened = time.perf_counter() - start
        ov = None
        if len(proto.graph.input) == 1:
            ov = OpenVinoEngine(path, Choice("openvino", "cpu", "bf16"), cache=False)
        variants[name] = dict(sess=sess, opened=opened, ov=ov, ort=[], ovt=[], nodes=len(proto.graph.node),
                              inputs=len(proto.graph.input))
        sess.run(None, {"image": x})
        if ov:
            ov.run(x)
    for _ in range(rounds):
        for v in variants.values():
            start = time.perf_counter()
            v["sess"].run(None, {"image": x})
            v["ort"].append(time.perf_counter() - start)
            if v["ov"]:
                start = time.perf_counter()
                v["ov"].run(x)
                v["ovt"].append(time.perf_counter() - start)
    base = statistics.median(next(iter(variants.values()))["ort"])
    print(f"| heads graph ({rounds} rounds, medians) | nodes | graph inputs | onnxruntime session open s "
          "| onnxruntime fp32 s/image | speed-up | OpenVINO bf16 s/image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, v in variants.items():
        t = statistics.median(v["ort"])
        ov = f"{statistics.median(v['ovt']):.3f}" if v["ovt"] else "n/a (weights as inputs)"
        print(f"| {name} | {v['nodes']} | {v['inputs']} | {v['opened']:.2f} | {t:.2f} | {base / t:.2f}x | {ov} |")
        if v["ov"]:
            v["ov"].close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="photos to measure (default 20)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration photos (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end repeats (default 3)")
    parser.add_argument("--rounds-of", type=int, default=4, help="photos per interleaved round (default 4)")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the slow fp32/fp16 variants")
    parser.add_argument("--sections", default="engines,e2e,start,truncation",
                        help="comma-separated: engines, e2e, start, truncation")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    folder = args.data / "coco-val2017-subset" / "images"
    files = sorted(folder.glob("*.jpg"))
    if len(files) < args.images + args.calibration:
        print(f"skipped: need {args.images + args.calibration} photos in {folder}")
        return 0
    paths, calibration = files[:args.images], files[-args.calibration:]
    sections = set(args.sections.split(","))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = SSDResNet34.synthetic(0)
    import onnx
    import onnxruntime
    import openvino

    gflop = 2 * conv_macs(onnx.load(str(model.model_path))) / 1e9
    limit = AMX_TFLOPS * 1e3 / gflop
    print("# Engines on the synthetic SSD-ResNet34 (random weights: detections meaningless, timings real)\n")
    print(f"Machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}; "
          f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}. {gflop:.0f} GFLOP per image; "
          f"AMX bf16 limit {AMX_TFLOPS:.1f} TFLOP/s = {limit:.1f} images/s. {len(paths)} COCO val2017 photos "
          f"({paths[0].name} ...); int8 calibrated on the last {len(calibration)} of the folder.\n")
    start = time.perf_counter()
    made = quantize(model, calibration, count=len(calibration), engine="all")
    print("int8 calibration: " + "; ".join(
        f"{m.target} {'cached' if m.reused else f'{m.seconds:.0f} s'}" for m in made) + "\n", flush=True)
    batch, contexts = model.preprocess([str(p) for p in paths])
    if "engines" in sections:
        print("## Engines (bare engine calls, interleaved rounds)\n")
        print_engine_table(bench_engines(model, paths, batch, contexts, args.rounds_of, args.skip_slow), limit)
        print(flush=True)
    if "e2e" in sections:
        print("## End to end: SSDResNet34.detect over the files vs the bare engine\n")
        bench_end_to_end(model, paths, batch, args.repeats)
        print(flush=True)
    if "start" in sections:
        print("## Engine start in a fresh process (OpenVINO CPU; cold = empty compile cache)\n")
        bench_start(model.model_path, made[0].path)
        print(flush=True)
    if "truncation" in sections:
        print("## Truncation: the heads graph of the official-like export\n")
        bench_truncation(rounds=5)
        print()
    print(f"(total {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
