"""A locust run (a real load tool) against ``ssd-resnet34 serve``, bounded in users and time;
prints a markdown table.

    pip install locust
    PYTHONPATH=python .venv/bin/python benches/load_serving.py [--model tiny|synthetic] [--users 8]
        [--run-time 60] [--photos 16] [--max-batch 4]

1. starts ``ssd-resnet34 serve --model <tiny onnx>`` (or ``--synthetic``) in its own process on
   127.0.0.1 with an ephemeral port (OpenVINO fp32, ``--max-batch``, ``--max-delay-ms 5``, as
   benches/bench_serving.py), waits until it is ready and answers one photo;
2. runs ``locust -f benches/locustfile.py --headless -u USERS -r USERS --run-time S --csv ...``
   as its own process (locust patches the standard library with gevent: it cannot share a
   process with ssd_resnet34): USERS clients in a closed loop, three requests in four a COCO photo
   to ``/v1/detect``, one in four the same as a V2 ``BYTES`` infer;
3. stops the server (SIGTERM; its exit status is printed) and prints, per endpoint and in all,
   from locust's ``*_stats.csv``: requests, failures (goal: 0), requests/s (one image per request,
   so images/s), p50/p90/p95/p99/max latency (locust rounds them: to 10 ms above 100 ms, to
   100 ms above 1 s), and the busy fraction of the machine's CPUs during the run.

Exit status 1 when a request failed (or locust wrote no statistics). Skips (exit 0, with a
message) when the COCO photos or locust are absent. Locust is a bench tool only: it is not a
dependency of the package or of its ``test`` extra.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHES = REPO / "benches"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCHES))
from _serving import (  # noqa: E402
    bench_header,
    busy_fraction,
    cpu_times,
    load_average,
    photo_payloads,
)

LOCUSTFILE = BENCHES / "locustfile.py"
#: The columns of locust's ``*_stats.csv`` read here, and what they are called in the table.
COLUMNS = {"requests": "Request Count", "failures": "Failure Count", "rps": "Requests/s", "p50": "50%",
           "p90": "90%", "p95": "95%", "p99": "99%", "max": "Max Response Time"}
MAX_USERS, MAX_RUN_TIME_S = 64, 600


def locust_command() -> str | None:
    """The ``locust`` program beside this Python (its virtual environment), else on ``PATH``."""
    beside = Path(sys.executable).parent / "locust"
    return str(beside) if beside.is_file() else shutil.which("locust")


def read_locust_stats(path: Path) -> list[dict[str, object]]:
    """The rows of a locust ``*_stats.csv`` (one per endpoint, the last ``Aggregated``): ``name``
    and the :data:`COLUMNS` as numbers (None where locust wrote ``N/A``: no request)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            row: dict[str, object] = {"name": record["Name"]}
            for key, column in COLUMNS.items():
                value = record[column]
                row[key] = None if value in ("", "N/A") else float(value)
            rows.append(row)
    if not rows or rows[-1]["name"] != "Aggregated":
        raise ValueError(f"{path}: not a locust statistics file (no 'Aggregated' row)")
    return rows


def read_locust_failures(path: Path) -> list[str]:
    """``"N x METHOD name: error"`` for each row of a locust ``*_failures.csv`` (none if absent)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [f"{r['Occurrences']} x {r['Method']} {r['Name']}: {r['Error']}" for r in csv.DictReader(f)]


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "synthetic"), default="tiny")
    parser.add_argument("--users", type=int, default=8, help=f"locust users (closed-loop clients), 1..{MAX_USERS}")
    parser.add_argument("--run-time", type=int, default=60, help=f"seconds of load, 1..{MAX_RUN_TIME_S}")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    if not (1 <= args.users <= MAX_USERS and 1 <= args.run_time <= MAX_RUN_TIME_S):
        parser.error(f"--users must be 1..{MAX_USERS} and --run-time 1..{MAX_RUN_TIME_S}")
    locust = locust_command()
    if locust is None:
        print("skipped: locust is not installed (pip install locust)")
        return 0
    payloads = photo_payloads(args.data, args.photos)
    if payloads is None:
        return 0

    import httpx
    from _models import tiny_heads_model
    from bench_serving import ENGINE, _start_server, _wait_ready

    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "tiny":
            model_args = ["--model", str(tiny_heads_model(Path(tmp) / "tiny.onnx")), "--no-verify"]
        else:
            model_args = ["--synthetic"]
        process, base = _start_server(model_args, args.max_batch)
        try:
            _wait_ready(base)
            httpx.post(f"{base}/v1/detect", content=payloads[0], timeout=600).raise_for_status()  # warm-up
            prefix = Path(tmp) / "locust"
            command = [locust, "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users), "-r", str(args.users),
                       "--run-time", f"{args.run_time}s", "--host", base, "--csv", str(prefix), "--only-summary",
                       "--loglevel", "WARNING"]
            env = dict(os.environ, SSD_RESNET34_DATA=str(args.data), SSD_RESNET34_PHOTO_COUNT=str(args.photos))
            before = cpu_times()
            done = subprocess.run(command, check=False, env=env, capture_output=True, text=True,
                                  timeout=args.run_time + 120)
            busy = busy_fraction(before, cpu_times())
            load = load_average()
        finally:
            process.terminate()
            status = process.wait(120)
        stats_path = Path(f"{prefix}_stats.csv")
        if not stats_path.is_file():
            print(f"locust wrote no statistics (exit {done.returncode}):\n{done.stderr[-3000:]}")
            return 1
        rows = read_locust_stats(stats_path)
        failures = read_locust_failures(Path(f"{prefix}_failures.csv"))

    print(bench_header(f"locust, {args.users} users for {args.run_time} s, {args.model} model, {ENGINE['engine']} "
                       f"{ENGINE['precision']}, --max-batch {args.max_batch} --max-delay-ms 5"))
    print(f"\nload average at the end of the run {load}; CPUs busy {busy:.0%} during it; locust exit status "
          f"{done.returncode}; server exit status {status}\n")
    print("| endpoint | requests | failures | requests/s | p50 ms | p90 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        name = "**all**" if row["name"] == "Aggregated" else f"`{row['name']}`"
        print(f"| {name} | {row['requests']:.0f} | {row['failures']:.0f} | {row['rps']:.2f} | {_ms(row['p50'])} | "
              f"{_ms(row['p90'])} | {_ms(row['p95'])} | {_ms(row['p99'])} | {_ms(row['max'])} |")
    for line in failures:
        print(f"\nfailure: {line}")
    return 0 if rows[-1]["failures"] == 0 and rows[-1]["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
