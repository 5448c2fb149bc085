"""``ssd-resnet34 serve --ray`` with 1 and then 2 replicas on a local Ray instance, the same load
on each; prints a markdown table.

    PYTHONPATH=python .venv/bin/python benches/ray_serving.py [--model tiny|synthetic] [--clients 8]
        [--seconds 30] [--photos 16] [--max-batch 4]

For each replica count, one after the other:

1. ``ssd-resnet34 serve --ray --replicas N`` in its own process (and process group) on
   127.0.0.1 (a free port; OpenVINO fp32, ``--max-batch``, ``--max-delay-ms 5`` as
   benches/bench_serving.py): the command starts its own local Ray instance, in a temporary
   folder of this run (``RAY_TMPDIR``), with a token of its own, and shuts it down when it ends;
2. once it says it is serving (Ray Serve has started every replica) and is ready: each photo
   posted once to ``/v1/detect`` (the answers, compared with the 1-replica answers), then
   ``--clients`` clients in a closed loop for ``--seconds`` (benches/_serving.closed_loop):
   images/s, p50/p99 latency, answers other than 200, and the busy fraction of the machine's CPUs;
3. SIGTERM; the command's exit status. Any Ray process still running from this run's folder
   afterwards (none expected) is ended by its id.

The ratio 2 replicas / 1 replica is bounded by the cores: 2 replicas can at most double what one
does only when one replica leaves a whole core idle; the busy column says how much was left.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benches"))
from _serving import (  # noqa: E402
    bench_header,
    busy_fraction,
    closed_loop,
    cpu_times,
    load_average,
    photo_payloads,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _leftover_pids(marker: str) -> list:
    """Ids of this user's processes whose command line names ``marker`` (this run's Ray folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in entry.joinpath("cmdline").read_bytes().decode("utf-8", "replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _answers(base, payloads):
    import httpx

    with httpx.Client(base_url=base, timeout=600) as http:
        replies = [http.post("/v1/detect", content=p) for p in payloads]
    return [r.json()["detections"] if r.status_code == 200 else r.status_code for r in replies]


def run_replicas(args, model_args, replicas: int, payloads, ray_dir: Path):
    """Serve on Ray with ``replicas`` replicas, measure, stop; returns a dict of the results."""
    import httpx
    from bench_serving import ENGINE, _percentile

    port = _free_port()
    ray_dir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_dir), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    command = [sys.executable, "-m", "ssd_resnet34.cli", "serve", "--ray", "--replicas", str(replicas), "--port",
               str(port), *model_args, "--engine", ENGINE["engine"], "--precision", ENGINE["precision"],
               "--max-batch", str(args.max_batch), "--max-delay-ms", "5", "--request-timeout", "600",
               "--log-level", "warning"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                               start_new_session=True)
    lines: list = []
    said = threading.Event()

    def read():
        for line in process.stderr:
            lines.append(line)
            if re.search(r"serving .* on http://", line):
                said.set()

    threading.Thread(target=read, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + args.start_timeout
        while not said.wait(0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve --ray --replicas {replicas} did not start:\n{''.join(lines)[-3000:]}")
        while True:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve --ray --replicas {replicas} was not ready:\n{''.join(lines)[-3000:]}")
            time.sleep(0.5)
        answers = _answers(base, payloads)  # also the warm-up of every replica's path
        before = cpu_times()
        rate, latencies, others = closed_loop(base, payloads, args.clients, args.seconds, timeout=600)
        busy = busy_fraction(before, cpu_times())
        load = load_average()
        process.send_signal(signal.SIGTERM)
        status = process.wait(180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "killed"
    time.sleep(2)
    left = _leftover_pids(str(ray_dir))
    for pid in left:  # only this run's Ray processes, by id
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    p50 = _percentile(latencies, 50) * 1000 if latencies else float("nan")
    p99 = _percentile(latencies, 99) * 1000 if latencies else float("nan")
    return {"replicas": replicas, "rate": rate, "requests": len(latencies) + sum(others.values()), "p50": p50,
            "p99": p99, "others": dict(others), "busy": busy, "load": load, "status": status, "answers": answers,
            "leftover": len(left)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "synthetic"), default="tiny")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds a deployment may take to start")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.seconds <= 600):
        parser.error("--clients must be 1..64 and --seconds at most 600")
    ray = importlib.util.find_spec("ray")  # finding ray.serve would import ray
    if ray is None or not (Path(ray.origin).parent / "serve").is_dir():
        print("skipped: Ray Serve is not installed (pip install 'ray[serve]')")
        return 0
    payloads = photo_payloads(args.data, args.photos)
    if payloads is None:
        return 0
    from _models import tiny_heads_model
    from bench_serving import ENGINE

    with tempfile.TemporaryDirectory(prefix="ray-bench-", dir="/tmp") as tmp:
        if args.model == "tiny":
            model_args = ["--model", str(tiny_heads_model(Path(tmp) / "tiny.onnx")), "--no-verify"]
        else:
            model_args = ["--synthetic"]
        results = [run_replicas(args, model_args, n, payloads, Path(tmp) / f"r{n}") for n in (1, 2)]

    one = results[0]
    print(bench_header(f"Ray Serve, {args.model} model, {ENGINE['engine']} {ENGINE['precision']}, --max-batch "
                       f"{args.max_batch} --max-delay-ms 5; {args.clients} clients in a closed loop for "
                       f"{args.seconds:g} s per deployment, {len(payloads)} COCO photos"))
    print("\n| replicas | requests | images/s | x 1 replica | p50 ms | p99 ms | not 200 | CPUs busy | load average "
          "at the end | same answers as 1 replica | exit status |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|")
    for r in results:
        same = "-" if r is one else ("yes" if r["answers"] == one["answers"] else "NO")
        print(f"| {r['replicas']} | {r['requests']} | {r['rate']:.2f} | {r['rate'] / one['rate']:.2f} | "
              f"{r['p50']:.0f} | {r['p99']:.0f} | {r['others'] or 0} | {r['busy']:.0%} | {r['load']} | {same} | "
              f"{r['status']} |")
    if any(r["leftover"] for r in results):
        print(f"\nRay processes left after the command ended (ended here by id): {[r['leftover'] for r in results]}")
    return 0 if all(r["answers"] == one["answers"] and not r["others"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
