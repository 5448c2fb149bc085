"""The same application as a Ray Serve deployment (``serve --ray --replicas N``) on a real local
Ray instance bound to 127.0.0.1: two replicas of the tiny model, each with its own engine, give
the same endpoints and the same answers as in-process ``detect``; SIGTERM stops the deployment
and the command exits 0.

The command runs in its own process, as a user runs it: Ray reads its cluster switch
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``: loopback only) and auth mode once per process, and the
Ray tests of tests/distributed have set theirs in this one."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ssd_resnet34 import engines

_RAY = importlib.util.find_spec("ray")  # finding ray.serve would import ray
pytestmark = pytest.mark.skipif(_RAY is None or not (Path(_RAY.origin).parent / "serve").is_dir(),
                                reason="Ray Serve is not installed (pip install 'ray[serve]')")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_replicas_answer_as_in_process(tiny_model, cat_bytes):
    with engines.create(tiny_model, engine="onnxruntime", precision="fp32") as engine:
        expected = tiny_model.detect([cat_bytes], engine)[0]
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))  # a token of this test's own, never ~/.ray/auth_token
    command = [sys.executable, "-m", "ssd_resnet34.cli", "serve", "--ray", "--replicas", "2", "--port", str(port),
               "--model", str(tiny_model.model_path), "--no-verify", "--engine", "onnxruntime", "--precision", "fp32",
               "--max-batch", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                               start_new_session=True)
    lines: list = []
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, f"serve --ray exited: {''.join(lines)}"
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"Ray Serve was not ready in time: {''.join(lines)}"
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=120) as http:
            answers = [http.post("/v1/detect", content=cat_bytes) for _ in range(4)]
            meta = http.get("/v2/models/ssd-resnet34").json()
        assert meta["parameters"]["engine"] == "onnxruntime"
        for answer in answers:
            assert answer.status_code == 200, answer.text
            got = answer.json()["detections"]
            assert [d["box"] for d in got] == [list(r.boundingbox) for r in expected]
            assert [d["score"] for d in got] == [r.score for r in expected]
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
