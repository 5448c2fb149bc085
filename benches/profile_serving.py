"""Where a lone ``POST /v1/detect`` spends its time, beside in-process ``detect``; one run, the
batcher's two waiting rules side by side. Prints markdown tables.

    .venv/bin/python benches/profile_serving.py [--model tiny|synthetic] [--requests 40] [--max-delay-ms 5]

The server runs in this process (uvicorn on 127.0.0.1, ephemeral port, on a thread; onnxruntime
fp32; default :class:`~ssd_resnet34.serving.ServerSettings` but ``--max-delay-ms``) and one client
posts COCO photos one at a time. Timestamps are taken by wrapping the server's own functions
(this script only; the package is not changed): the middleware's entry and exit, the end of
``read_body``, ``Batcher.submit``, the start of ``Batcher._prepare`` and the end of its
``build_batch`` (decode + preprocess), ``Job.finish`` (engine + postprocess done) and the end of
``Service.detect``. Stages, p50 in ms:

- to server: client send until the ASGI middleware runs (httpx, TCP, h11 parsing);
- body + checks: reading the body, options, the header check of the image, the job;
- queue wait: submit until the batch is prepared (the batcher's ``max_delay_ms`` and the thread hop);
- decode + preprocess, engine + postprocess: the same work as in-process ``detect``;
- wake-up: ``Job.finish`` until the request's coroutine resumes (``call_soon_threadsafe``);
- JSON + send: building and encoding the answer, until the middleware returns;
- to client: until httpx has the response.

Requests alternate between ``wait_when_idle=True`` (the first image always waits
``max_delay_ms`` for companions: the rule before) and ``False`` (a lone image on an idle server
goes at once), so both see the same load. In-process ``detect`` of the same photo bytes runs
interleaved too. Skips (exit 0, with a message) when the COCO photos are absent.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benches"))
from _common import SHARED_DATA, cpu_name  # noqa: E402
from _serving import in_process_server, photo_payloads  # noqa: E402
from _models import tiny_heads_model  # noqa: E402

STAGES = [("to server", "sent", "entered"), ("body + checks", "entered", "submitted"),
          ("queue wait", "submitted", "prepare"), ("decode + preprocess", "prepare", "preprocessed"),
          ("engine + postprocess", "preprocessed", "finished"), ("wake-up", "finished", "detected"),
          ("JSON + send", "detected", "left"), ("to client", "left", "received")]


def _instrument(marks):
    """Wrap the server's functions so that each records ``time.perf_counter()`` in ``marks``."""
    from ssd_resnet34.serving import app as app_module
    from ssd_resnet34.serving import batcher as batcher_module
    from ssd_resnet34.serving.service import Service

    def mark(name):
        marks[name] = time.perf_counter()

    observe = app_module.Observe.__call__

    async def observed(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/detect":
            mark("entered")
            try:
                return await observe(self, scope, receive, send)
            finally:
                mark("left")
        return await observe(self, scope, receive, send)

    submit, prepare, build, finish, detect = (batcher_module.Batcher.submit, batcher_module.Batcher._prepare,
                                              batcher_module.build_batch, batcher_module.Job.finish, Service.detect)

    @functools.wraps(submit)
    def submitted(self, jobs):
        mark("submitted")
        return submit(self, jobs)

    @functools.wraps(prepare)
    def prepared(self, chunk):
        mark("prepare")
        return prepare(self, chunk)

    @functools.wraps(build)
    def built(*args, **kwargs):
        try:
            return build(*args, **kwargs)
        finally:
            mark("preprocessed")

    @functools.wraps(finish)
    def finished(self, *args, **kwargs):
        mark("finished")
        return finish(self, *args, **kwargs)

    @functools.wraps(detect)
    async def detected(self, *args, **kwargs):
        try:
            return await detect(self, *args, **kwargs)
        finally:
            mark("detected")

    app_module.Observe.__call__ = observed
    batcher_module.Batcher.submit, batcher_module.Batcher._prepare = submitted, prepared
    batcher_module.build_batch, batcher_module.Job.finish, Service.detect = built, finished, detected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "synthetic"), default="tiny")
    parser.add_argument("--requests", type=int, default=40, help="requests per rule")
    parser.add_argument("--max-delay-ms", type=float, default=None, help="default: ServerSettings' default")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    payloads = photo_payloads(args.data, 8)
    if payloads is None:
        return 0

    import httpx

    from ssd_resnet34 import engines
    from ssd_resnet34.detector import SSDResNet34
    from ssd_resnet34.serving import ServerSettings

    marks: dict = {}
    _instrument(marks)
    settings = ServerSettings() if args.max_delay_ms is None else ServerSettings(max_delay_ms=args.max_delay_ms)
    rows = {True: [], False: []}
    local = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tiny = args.model == "tiny"
        model = SSDResNet34(tiny_heads_model(Path(tmp) / "tiny.onnx")) if tiny else SSDResNet34.synthetic(0)
        engine = engines.create(model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
        local_engine = engines.create(model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
        try:
            with in_process_server(settings, model, engine) as (base, app), \
                    httpx.Client(base_url=base, timeout=120) as http:
                model.detect(payloads[0], local_engine)
                for k in range(2 * args.requests + 2):
                    rule = k % 2 == 0
                    app.state.service.batcher.wait_when_idle = rule
                    payload = payloads[(k // 2) % len(payloads)]
                    marks.clear()
                    marks["sent"] = time.perf_counter()
                    reply = http.post("/v1/detect", content=payload, headers={"content-type": "image/jpeg"})
                    marks["received"] = time.perf_counter()
                    assert reply.status_code == 200, reply.text
                    if k >= 2:  # the first of each rule warms up
                        rows[rule].append(dict(marks))
                    if rule:
                        start = time.perf_counter()
                        model.detect(payload, local_engine)
                        local.append(time.perf_counter() - start)
        finally:
            local_engine.close()

    def p50(samples, a, b):
        return statistics.median(s[b] - s[a] for s in samples) * 1000

    detect_ms = statistics.median(local) * 1000
    print(f"{args.model} model, onnxruntime fp32, {cpu_name()}; one client, {args.requests} requests per rule "
          f"(alternating), --max-delay-ms {settings.max_delay_ms:g}; in-process detect of the same photos p50 "
          f"{detect_ms:.1f} ms\n")
    print("| stage (p50 ms) | wait_when_idle=True (before) | wait_when_idle=False (now) |")
    print("|---|---:|---:|")
    for name, a, b in STAGES:
        print(f"| {name} | {p50(rows[True], a, b):.1f} | {p50(rows[False], a, b):.1f} |")
    totals = {rule: p50(rows[rule], "sent", "received") for rule in rows}
    print(f"| **end to end** | **{totals[True]:.1f}** | **{totals[False]:.1f}** |")
    print(f"| end to end - in-process detect | {totals[True] - detect_ms:+.1f} | {totals[False] - detect_ms:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
