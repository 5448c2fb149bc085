"""Soak and overload of the HTTP service (``ssd-resnet34 serve`` in its own process), bounded in
time; prints a markdown table.

    .venv/bin/python benches/soak_serving.py [--model tiny|synthetic] [--minutes 10] [--overload-seconds 60]

1. capacity: a closed loop of 4 clients posting COCO photos to ``/v1/detect`` for
   ``--capacity-seconds``, split into ``--capacity-windows`` windows of equal time: images/s
   of each, their median and their lowest. On a shared machine one window can catch a quiet
   moment; an open loop at 80% of that would then be above capacity whenever the other work
   comes back, and fill the queue (503s that measure the neighbours, not the server);
2. soak: an open loop at 80% of the lowest window's rate for ``--minutes``: answers by
   status (only 200 expected), p50/p99 latency, and the server's resident memory (``VmRSS``
   of its process, sampled every 5 s) at the start of the soak, at its end and its peak;
3. overload: an open loop at 2x capacity for ``--overload-seconds`` with ``--max-queue 16``:
   answers by status (only 200 and 503 expected), p99 of the accepted ones;
4. recovery: after the load stops, the queue drains (``ssd_resnet34_queue_depth`` 0) and the
   next requests are all answered 200.

Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benches"))
from _common import SHARED_DATA, cpu_name  # noqa: E402
from _models import tiny_heads_model  # noqa: E402
from _serving import closed_loop, photo_payloads  # noqa: E402
from bench_serving import _percentile, _start_server, _wait_ready  # noqa: E402


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _capacity(base, payloads, clients, seconds):
    """Images/s of ``clients`` closed-loop clients posting for ``seconds`` (200s only)."""
    return closed_loop(base, payloads, clients, seconds)[0]


def _open_loop(base, payloads, rate, seconds, pid=None, samples=None):
    """Requests at ``rate`` per second for ``seconds`` (at most 64 in flight); returns
    (statuses Counter, latencies of the 200s)."""
    import httpx

    statuses, latencies, lock = Counter(), [], threading.Lock()
    local = threading.local()

    def one(k):
        http = getattr(local, "http", None) or httpx.Client(base_url=base, timeout=120)
        local.http = http
        start = time.perf_counter()
        try:
            status = http.post("/v1/detect", content=payloads[k % len(payloads)]).status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        with lock:
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - start)

    with ThreadPoolExecutor(64) as pool:
        start, k, next_sample = time.monotonic(), 0, 0.0
        while (now := time.monotonic() - start) < seconds:
            if pid is not None and now >= next_sample:
                samples.append(_rss_mb(pid))
                next_sample += 5
            pool.submit(one, k)
            k += 1
            time.sleep(max(0.0, start + k / rate - time.monotonic()))
    return statuses, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("synthetic", "tiny"), default="tiny")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--overload-seconds", type=float, default=60)
    parser.add_argument("--capacity-seconds", type=float, default=30)
    parser.add_argument("--capacity-windows", type=int, default=3)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    payloads = photo_payloads(args.data, 16)
    if payloads is None:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "tiny":
            model_args = ["--model", str(tiny_heads_model(Path(tmp) / "tiny.onnx")), "--no-verify"]
        else:
            model_args = ["--synthetic"]
        process, base = _start_server(model_args, 4, max_queue=16)
        try:
            _wait_ready(base)
            import httpx

            windows = [_capacity(base, payloads, 4, args.capacity_seconds / args.capacity_windows)
                       for _ in range(args.capacity_windows)]
            capacity = min(windows)
            rss: list = []
            soak, soak_lat = _open_loop(base, payloads, 0.8 * capacity, args.minutes * 60, process.pid, rss)
            rss.append(_rss_mb(process.pid))
            over, over_lat = _open_loop(base, payloads, 2 * capacity, args.overload_seconds)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                metrics = httpx.get(f"{base}/metrics", timeout=10).text
                if re.search(r"^ssd_resnet34_queue_depth 0\.0$", metrics, re.M):
                    break
                time.sleep(0.5)
            drained = time.monotonic() < deadline
            after = [httpx.post(f"{base}/v1/detect", content=payloads[0], timeout=120).status_code for _ in range(5)]
        finally:
            process.terminate()
            status = process.wait(120)
    soak_errors = {s: n for s, n in soak.items() if s != 200}
    print(f"{args.model} model, {cpu_name()}; capacity (4 clients, closed loop, {args.capacity_windows} windows of "
          f"{args.capacity_seconds / args.capacity_windows:g} s): {', '.join(f'{w:.2f}' for w in windows)} images/s, "
          f"median {statistics.median(windows):.2f}, lowest {capacity:.2f} (the soak runs at 80% of the lowest, "
          f"the overload at 2x); server exit status {status}\n")
    print("| phase | rate /s | requests | 200 | other | p50 ms | p99 ms | RSS MB |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    print(f"| soak {args.minutes:g} min | {0.8 * capacity:.2f} | {sum(soak.values())} | {soak[200]} | {soak_errors} | "
          f"{_percentile(soak_lat, 50) * 1000:.0f} | {_percentile(soak_lat, 99) * 1000:.0f} | start {rss[0]:.0f}, "
          f"end {rss[-1]:.0f} (+{rss[-1] - rss[0]:.0f}), peak {max(rss):.0f} |")
    others = {s: n for s, n in over.items() if s != 200}
    print(f"| overload {args.overload_seconds:g} s | {2 * capacity:.2f} | {sum(over.values())} | {over[200]} | "
          f"{others} | {_percentile(over_lat, 50) * 1000:.0f} | {_percentile(over_lat, 99) * 1000:.0f} | |")
    print(f"\nrecovery: queue drained {drained}; next 5 requests {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
