"""``ssd-resnet34 serve`` as a real process: it prints where it listens (port 0: an ephemeral
port on 127.0.0.1), serves, and on SIGTERM/SIGINT finishes the request in flight and exits 0."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from ssd_resnet34.cli import main


def _start(model_path, *extra):
    command = [sys.executable, "-m", "ssd_resnet34.cli", "serve", "--model", str(model_path), "--no-verify",
               "--engine", "onnxruntime", "--precision", "fp32", "--port", "0", *extra]
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _wait_ready(process, lines, timeout=60.0):
    """The base URL from the 'serving ... on http://...' line, once /v2/health/ready is 200."""
    deadline = time.monotonic() + timeout
    base = None
    while base is None:
        line = process.stderr.readline()
        assert line or process.poll() is None, f"serve exited: {''.join(lines)}"
        lines.append(line)
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        base = found.group(1) if found else None
        assert time.monotonic() < deadline, "no 'serving ... on' line"
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    while httpx.get(f"{base}/v2/health/ready", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)
    return base


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_finishes_in_flight_and_exits_0(tiny_model, cat_bytes, sig):
    # --max-delay-ms 1500 and one request of two images: they are queued together, so the first
    # is not alone and waits in the batcher for companions (a lone image on an idle server would
    # go at once); the request is in flight at the signal
    process = _start(tiny_model.model_path, "--max-delay-ms", "1500", "--max-batch", "4")
    lines = []
    try:
        base = _wait_ready(process, lines)
        answer = {}
        body = {"inputs": [{"name": "image_files", "shape": [2], "datatype": "BYTES",
                            "data": [base64.b64encode(cat_bytes).decode()] * 2}]}

        def post():
            answer["reply"] = httpx.post(f"{base}/v2/models/ssd-resnet34/infer", json=body, timeout=30)

        client = threading.Thread(target=post)
        client.start()
        time.sleep(0.5)
        process.send_signal(sig)
        client.join(30)
        assert process.wait(30) == 0, "".join(lines)
        reply = answer["reply"]
        assert reply.status_code == 200, reply.text
        counts = {o["name"]: o["data"] for o in reply.json()["outputs"]}["count"]
        assert len(counts) == 2 and min(counts) > 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/v2/health/live", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    log = "".join(lines)
    assert '"POST /v2/models/ssd-resnet34/infer HTTP/1.1" 200' in log and "Traceback" not in log


def test_two_worker_processes(tiny_model, cat_bytes):
    process = _start(tiny_model.model_path, "--workers", "2")
    lines = []
    try:
        base = _wait_ready(process, lines)
        for _ in range(4):
            reply = httpx.post(f"{base}/v1/detect", content=cat_bytes, timeout=30)
            assert reply.status_code == 200 and reply.json()["count"] > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    log = "".join(lines)
    assert "2 workers" in log and log.count('"POST /v1/detect HTTP/1.1" 200') == 4 and "Traceback" not in log


def test_usage_errors(capsys):
    assert main(["serve", "--synthetic", "--max-batch", "500"]) == 1
    assert "batch_size 500 is too large" in capsys.readouterr().err
    assert main(["serve", "--synthetic", "--port", "-1"]) == 2


def test_missing_extra_names_it(monkeypatch):
    from ssd_resnet34 import _extras, serving

    def missing(module, extra, purpose, package=None):
        raise _extras.MissingExtraError(f"{purpose} needs {package}, which is not installed: "
                                        f"{_extras.install_hint(extra)}")

    monkeypatch.setattr(_extras, "require", missing)
    with pytest.raises(ImportError, match=r"pip install 'ssd-resnet34\[serve\]'"):
        serving.serve  # noqa: B018
