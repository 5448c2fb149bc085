"""The HTTP service (``ssd-resnet34 serve``) beside in-process detection, on the shared COCO
photos; prints markdown tables.

    .venv/bin/python benches/bench_serving.py [--model synthetic|tiny] [--clients 1,2,4,8,16]
        [--photos 8] [--per-client 2] [--max-batch 4] [--fuzz-examples 100 --fuzz-seconds 120]

- in process: ``SSDResNet34.iter_detect`` over the photos (the pipelined loop, ``batch_size``
  = ``--max-batch``) on an engine opened as the server opens its own (OpenVINO fp32, throughput
  mode): images/s; and ``detect`` of one photo at a time: the p50 latency;
- served: ``ssd-resnet34 serve`` in its own process (same engine, precision and ``--max-batch``,
  ``--max-delay-ms 5``), N concurrent clients in a closed loop (each posts a photo to
  ``/v1/detect``, waits for the answer, posts the next), ``--per-client`` x N requests per
  level (at least ``--photos``): images/s, its ratio to in-process, p50/p90/p99 latency, errors;
- optionally (``--fuzz-examples``) a longer schemathesis run against the server's OpenAPI
  document: cases and 5xx answers.

``--model tiny`` (a 12-head model with next to no inference) measures what the server itself
costs per request. Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from _common import SHARED_DATA, cpu_name  # noqa: E402
from _models import tiny_heads_model  # noqa: E402

ENGINE = {"engine": "openvino", "precision": "fp32"}


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _in_process(model, photos, max_batch):
    from ssd_resnet34 import engines

    with engines.create(model, mode=engines.THROUGHPUT, **ENGINE) as engine:
        list(model.iter_detect(photos[:1], engine))  # warm-up
        start = time.perf_counter()
        outcomes = list(model.iter_detect(photos, engine, batch_size=max_batch))
        seconds = time.perf_counter() - start
        assert all(o.ok for o in outcomes)
        latencies = []
        for photo in photos[:3]:
            start = time.perf_counter()
            model.detect(photo, engine)
            latencies.append(time.perf_counter() - start)
    return len(photos) / seconds, statistics.median(latencies)


def _start_server(model_args, max_batch, max_queue=256):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "python"), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "ssd_resnet34.cli", "serve", *model_args, "--engine", ENGINE["engine"],
               "--precision", ENGINE["precision"], "--port", "0", "--max-batch", str(max_batch),
               "--max-delay-ms", "5", "--max-queue", str(max_queue), "--request-timeout", "600", "--log-level", "warning"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in process.stderr:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, found.group(1)
    raise RuntimeError(f"serve did not start (exit {process.wait()})")


def _wait_ready(base, timeout=600):
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the server was not ready in time")


def _closed_loop(base, payloads, clients, requests):
    import httpx

    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        with httpx.Client(base_url=base, timeout=600) as http:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                start = time.perf_counter()
                reply = http.post("/v1/detect", content=payloads[k % len(payloads)],
                                  headers={"content-type": "image/jpeg"})
                elapsed = time.perf_counter() - start
                with lock:
                    (latencies if reply.status_code == 200 else errors).append(elapsed if reply.status_code == 200
                                                                               else reply.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return len(latencies) / seconds, latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("synthetic", "tiny"), default="synthetic")
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--fuzz-examples", type=int, default=0, help="schemathesis examples per operation (0: none)")
    parser.add_argument("--fuzz-seconds", type=float, default=120)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    folder = args.data / "coco-val2017-subset" / "images"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (../shared absent)")
        return 0
    photos = sorted(str(p) for p in folder.glob("*.jpg"))[: args.photos]
    payloads = [Path(p).read_bytes() for p in photos]
    levels = [int(c) for c in args.clients.split(",")]

    from ssd_resnet34.detector import SSDResNet34

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if args.model == "tiny":
            path = tiny_heads_model(Path(tmp) / "tiny.onnx")
            model, model_args = SSDResNet34(path), ["--model", str(path), "--no-verify"]
        else:
            model, model_args = SSDResNet34.synthetic(0), ["--synthetic"]
        rate, latency = _in_process(model, photos, args.max_batch)
        process, base = _start_server(model_args, args.max_batch)
        rows, fuzz_line = [], None
        try:
            _wait_ready(base)
            _closed_loop(base, payloads, 1, 1)  # warm the connection path
            for clients in levels:
                served, latencies, errors = _closed_loop(base, payloads, clients, max(args.photos, args.per_client * clients))
                rows.append((clients, served, latencies, errors))
            if args.fuzz_examples:
                sys.path.insert(0, str(REPO / "benches"))
                from _fuzz import fuzz

                report = fuzz(base, max_examples=args.fuzz_examples, seconds=args.fuzz_seconds)
                fuzz_line = (f"schemathesis: {report['cases']} cases over {report['operations']} operations in "
                             f"{report['seconds']:.0f} s, {len(report['server_errors'])} 5xx; statuses "
                             f"{dict(sorted(report['statuses'].items()))}")
        finally:
            process.terminate()
            status = process.wait(120)
    print(f"{args.model} model, {ENGINE['engine']} {ENGINE['precision']}, {cpu_name()}, {os.cpu_count()} cores; "
          f"{len(photos)} COCO photos; --max-batch {args.max_batch} --max-delay-ms 5; server exit status {status}\n")
    print(f"in process: iter_detect {rate:.2f} images/s (batch_size {args.max_batch}); detect of one photo "
          f"p50 {latency * 1000:.0f} ms\n")
    print("| clients | requests | images/s | x in-process | p50 ms | p90 ms | p99 ms | p50 - detect ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clients, served, latencies, errors in rows:
        p50 = _percentile(latencies, 50) if latencies else float("nan")
        print(f"| {clients} | {len(latencies) + len(errors)} | {served:.2f} | {served / rate:.2f} | {p50 * 1000:.0f} | "
              f"{_percentile(latencies, 90) * 1000:.0f} | {_percentile(latencies, 99) * 1000:.0f} | "
              f"{(p50 - latency) * 1000:+.0f} | {len(errors)} |")
    if fuzz_line:
        print(f"\n{fuzz_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
