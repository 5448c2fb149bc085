"""Throughput of detection on Ray (``ssd_resnet34.distributed``) beside the single-process
``detect``, on this machine; prints a markdown table.

    .venv/bin/python benches/bench_distributed.py [--images 24] [--tiny-images 200] [--rounds 1] [--data ../shared/data]

Rows, run side by side in one process on the same COCO photos (each round runs every row once,
in turn, so load from other work on the machine spreads over all of them):

- single process: ``ssd-resnet34 detect PHOTOS --synthetic --no-draw --engine onnxruntime
  --precision fp32`` (the pipelined loop; the engine in throughput mode, one request of one
  thread per core), in this process; and the same with ``--threads 2``, what a Ray actor given
  2 CPUs gets (``threads`` is the total: on 2 cores, the same 2 requests of 1 thread);
- Ray, 1 actor: ``detect_dataset(..., workers=1, cpus_per_worker=2)`` (2 inference threads);
- Ray, 2 actors: ``detect_dataset(..., workers=2, cpus_per_worker=1)`` (1 thread each).

Each time is the wall time of the whole command or call, from the model not loaded to
``detections.json`` written (model loading, actor start-up and writing included). The Ray rows
run on one local Ray instance started once before (its start-up, and a first untimed run that
starts Ray Data's own actors, are reported apart), with ``detect_dataset``'s default task size
(4 images). The same rows with a tiny 12-head model (next to no inference) on more photos give
the cost per image of everything around the network (read, decode, preprocess, postprocess,
Ray). The script checks that every run of a model wrote the same ``detections.json``, byte for
byte.

Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from _models import tiny_heads_model  # noqa: E402

from _common import cpu_name  # noqa: E402

#: The engine of every row: onnxruntime fp32, whose results are the same bits whatever its thread
#: count (the check that all runs wrote the same file needs that; OpenVINO bf16 is not bit-stable
#: across thread and stream counts), in throughput mode as ``detect`` and the actors open it.
ENGINE = {"engine": "onnxruntime", "precision": "fp32"}


def _single(photos, out: Path, model_path=None, threads=None) -> float:
    """The single-process ``detect`` (synthetic model) or its pipeline with another heads model."""
    start = time.perf_counter()
    if model_path is None:
        from ssd_resnet34.cli import main

        argv = ["detect", *map(str, photos), "--synthetic", "--no-draw", "--out", str(out),
                "--engine", ENGINE["engine"], "--precision", ENGINE["precision"]]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = main(argv + ([] if threads is None else ["--threads", str(threads)]))
        assert status == 0, status
    else:
        from ssd_resnet34 import SSDResNet34, engines
        from ssd_resnet34.output.coco_results import assign_image_ids, to_coco_results, write_coco_results

        model = SSDResNet34(model_path)
        with engines.create(model, threads=threads, mode="throughput", **ENGINE) as engine:
            done = [(o.source, o.results) for o in model.iter_detect(list(map(str, photos)), engine)]
        ids, _ = assign_image_ids([p for p, _ in done])
        out.mkdir(parents=True, exist_ok=True)
        write_coco_results(out / "detections.json", [r for p, f in done for r in to_coco_results(f, ids[p])])
    return time.perf_counter() - start


def _ray(photos, out: Path, workers: int, model_path=None) -> float:
    from ssd_resnet34 import SSDResNet34
    from ssd_resnet34.distributed import detect_dataset

    source = {"synthetic": True} if model_path is None else {"model": SSDResNet34(model_path)}
    start = time.perf_counter()
    run = detect_dataset([str(p) for p in photos], out, workers=workers, cpus_per_worker=2 / workers,
                         progress=False, **source, **ENGINE)
    assert run.processed == len(photos) and not run.errors and run.workers == workers
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24, help="photos for the synthetic model")
    parser.add_argument("--tiny-images", type=int, default=200, help="photos for the tiny model")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    folder = args.data / "coco-val2017-subset" / "images"
    found = sorted(folder.glob("*.jpg"))
    if len(found) < max(args.images, args.tiny_images):
        print(f"skipped: {max(args.images, args.tiny_images)} COCO photos not found in {folder}")
        return 0
    sets = {"synthetic": found[: args.images], "tiny": found[: args.tiny_images]}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    warnings.simplefilter("ignore")
    import ray

    from ssd_resnet34 import SSDResNet34

    SSDResNet34.synthetic()  # build the model file once, outside the timings
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    tiny = tiny_heads_model(tmp / "tiny.onnx")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR",
             log_to_driver=False)
    ray_start = time.perf_counter() - start
    start = time.perf_counter()
    _ray(found[:2], tmp / "warm-up", 1, tiny)
    warm_up = time.perf_counter() - start

    rows = {  # name -> function(photos, out folder, model)
        "single process (`detect`, pipelined)": _single,
        "single process (`detect --threads 2`)": lambda photos, out, m: _single(photos, out, m, threads=2),
        "Ray, 1 actor (2 CPUs, 2 inference threads)": lambda photos, out, m: _ray(photos, out, 1, m),
        "Ray, 2 actors (1 CPU, 1 thread each)": lambda photos, out, m: _ray(photos, out, 2, m),
    }
    times = {(name, kind): [] for name in rows for kind in ("synthetic", "tiny")}
    outputs = {}
    for kind, model in (("tiny", tiny), ("synthetic", None)):
        for k in range(args.rounds):
            for n, (name, run) in enumerate(rows.items()):
                out = tmp / f"{kind}-{n}-{k}"
                times[(name, kind)].append(run(sets[kind], out, model))
                outputs.setdefault(kind, set()).add((out / "detections.json").read_bytes())
                print(f"{kind} round {k}: {name}: {times[(name, kind)][-1]:.1f} s", file=sys.stderr)
    ray.shutdown()

    print(f"Machine: {cpu_name()}, {os.cpu_count()} CPUs; batch 1, onnxruntime fp32 on CPU; median of "
          f"{args.rounds} round(s). Not included: the local Ray instance's start-up ({ray_start:.1f} s) and a first "
          f"Ray run of 2 images ({warm_up:.1f} s).\n")
    print(f"| run | synthetic model, {args.images} photos: s | images/s | vs single | "
          f"tiny model, {args.tiny_images} photos: ms/image | vs single |")
    print("|---|---:|---:|---:|---:|---:|")
    base = {kind: statistics.median(times[(next(iter(rows)), kind)]) for kind in ("synthetic", "tiny")}
    for name in rows:
        synthetic = statistics.median(times[(name, "synthetic")])
        tiny_s = statistics.median(times[(name, "tiny")])
        print(f"| {name} | {synthetic:.1f} | {args.images / synthetic:.3f} | {base['synthetic'] / synthetic:.2f}x "
              f"| {1000 * tiny_s / args.tiny_images:.0f} | {base['tiny'] / tiny_s:.2f}x |")
    same = all(len(found) == 1 for found in outputs.values())
    print(f"\ndetections.json identical across the runs of each model: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
