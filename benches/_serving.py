"""Helpers of the serving benches (memory_serving.py, profile_serving.py, soak_serving.py,
load_serving.py, bench_loadgen_http.py, ray_serving.py, and benches/locustfile.py): the shared COCO
photos, a uvicorn server on a thread, a timed closed loop of clients, the machine's CPU busy time
and the head line of a bench's table.

Only the standard library is imported here at the top: benches/locustfile.py imports this module
inside locust, which patches the standard library with gevent, and must not import ssd_resnet34."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path


def photo_payloads(data: Path, count: int) -> list[bytes] | None:
    """The bytes of the first ``count`` shared COCO photos; None (after printing why) when absent."""
    folder = Path(data) / "coco-val2017-subset" / "images"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (../shared absent)")
        return None
    return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:count]]


@contextlib.contextmanager
def in_process_server(settings, model, engine, timeout: float = 300) -> Iterator[tuple[str, object]]:
    """Serve ``model`` on ``engine`` (closed at the end) at 127.0.0.1:<ephemeral> on a thread of
    this process; yields ``(base URL, application)`` once ready, stops the server at the end."""
    import httpx
    import uvicorn

    from ssd_resnet34.serving import bind, create_app
    from ssd_resnet34.serving.server import uvicorn_options

    app = create_app(settings, model, engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(settings)))
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise TimeoutError("the server did not become ready")
            time.sleep(0.1)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def closed_loop(base: str, payloads: Sequence[bytes], clients: int, seconds: float, *, path: str = "/v1/detect",
                timeout: float = 120) -> tuple[float, list[float], Counter]:
    """``clients`` threads, each on its own kept-alive connection, post ``payloads`` in turn (raw
    bytes) to ``base + path`` for ``seconds``, each waiting for its answer before the next (a
    closed loop). Returns (200 answers per second, their latencies in seconds, a Counter of the
    other answers: status codes, or the name of the client error)."""
    import httpx

    latencies: list[float] = []
    others: Counter = Counter()
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def client(first: int) -> None:
        with httpx.Client(base_url=base, timeout=timeout) as http:
            k = first
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    status = http.post(path, content=payloads[k % len(payloads)]).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        others[status] += 1
                k += 1

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - start), latencies, others


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all the machine's cores since boot (``/proc/stat``); the busy
    fraction of an interval is the ratio of the differences. (0, 0) where there is no /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The fraction of the machine's CPU time that was busy between two :func:`cpu_times`."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_header(title: str) -> str:
    """The line above a bench's table: ``title``, the command line that printed it, the CPU, the
    cores and the load average now."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import cpu_name

    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    return (f"{title}; `{command}`; {cpu_name()}, {os.cpu_count()} cores; load average {load_average()} "
            "(1, 5, 15 min)")
