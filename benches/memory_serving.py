"""Does the HTTP service's memory keep growing? A bounded run, printed as a markdown table.

    .venv/bin/python benches/memory_serving.py [--model tiny] [--requests 2000] [--step 200] [--clients 4]

The server runs in this process (uvicorn on 127.0.0.1, ephemeral port, on a thread; onnxruntime
fp32) so that ``tracemalloc`` and ``gc`` see its objects; ``--clients`` threads post COCO photos
to ``/v1/detect`` in a closed loop. After each ``--step`` requests: the process's resident memory
(``VmRSS``), the bytes ``tracemalloc`` holds, and the number of objects ``gc`` tracks. At the
end, the ``tracemalloc`` lines that grew most between the first step (after warm-up) and the
last. A leak shows as a traced size or object count that rises step after step; allocator warm-up
as RSS that rises over the first steps and then flattens while the traced size stays flat.

Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benches"))
from _common import SHARED_DATA, cpu_name  # noqa: E402
from _serving import in_process_server, photo_payloads  # noqa: E402
from _models import tiny_heads_model  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "synthetic"), default="tiny")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--step", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    payloads = photo_payloads(args.data, 16)
    if payloads is None:
        return 0

    import httpx

    from ssd_resnet34 import engines
    from ssd_resnet34.detector import SSDResNet34
    from ssd_resnet34.serving import ServerSettings

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore", UserWarning)
        tiny = args.model == "tiny"
        model = SSDResNet34(tiny_heads_model(Path(tmp) / "tiny.onnx")) if tiny else SSDResNet34.synthetic(0)
        engine = engines.create(model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
        base, _app = stack.enter_context(in_process_server(ServerSettings(), model, engine))
        statuses: dict = {}
        lock = threading.Lock()

        def run(count: int) -> None:
            counter = iter(range(count))

            def client() -> None:
                with httpx.Client(base_url=base, timeout=60) as http:
                    while True:
                        with lock:
                            k = next(counter, None)
                        if k is None:
                            return
                        status = http.post("/v1/detect", content=payloads[k % len(payloads)]).status_code
                        with lock:
                            statuses[status] = statuses.get(status, 0) + 1

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        run(args.step)  # warm-up, before tracing
        tracemalloc.start(args.frames)
        rows, first = [], None
        done = 0
        while done < args.requests:
            start = time.perf_counter()
            run(args.step)
            done += args.step
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
            snapshot = tracemalloc.take_snapshot()
            first = first or snapshot
            rows.append((done, _rss_mb(), traced / 2**20, len(gc.get_objects()),
                         args.step / (time.perf_counter() - start)))
            print("step", *rows[-1], file=sys.stderr, flush=True)
        last = snapshot
    print(f"{args.model} model, onnxruntime fp32, {cpu_name()}; {args.clients} clients, closed loop; "
          f"statuses {statuses}\n")
    print("| requests after warm-up | RSS MB | traced MB | gc objects | requests/s |")
    print("|---:|---:|---:|---:|---:|")
    for done, rss, traced, objects, rate in rows:
        print(f"| {done} | {rss:.1f} | {traced:.2f} | {objects} | {rate:.0f} |")
    print(f"\nRSS {rows[0][1]:.1f} -> {rows[-1][1]:.1f} MB ({rows[-1][1] - rows[0][1]:+.1f}); traced "
          f"{rows[0][2]:.2f} -> {rows[-1][2]:.2f} MB; gc objects {rows[0][3]} -> {rows[-1][3]}\n")
    print(f"top {args.top} tracemalloc growth, step {args.step} -> step {rows[-1][0]}:")
    for stat in last.compare_to(first, "lineno")[: args.top]:
        print(f"  {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks  {stat.traceback}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
