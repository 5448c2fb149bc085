"""The same application as a Ray Serve deployment (``serve --ray --replicas N``) on a real local
Ray instance bound to 127.0.0.1: two replicas of the tiny model, each with its own engine, give
the same endpoints and the same answers as in-process ``detect``; the deployment stops cleanly."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'ray[serve]')")

from ssd_resnet34 import engines  # noqa: E402
from ssd_resnet34.serving import ServerSettings, bind  # noqa: E402
from ssd_resnet34.serving.ray_serve import serve_on_ray  # noqa: E402


def test_two_replicas_answer_as_in_process(tiny_model, cat_bytes, monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with engines.create(tiny_model, engine="onnxruntime", precision="fp32") as engine:
        expected = tiny_model.detect([cat_bytes], engine)[0]
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    stop = threading.Event()
    failure = []

    def run():
        try:
            serve_on_ray(ServerSettings(max_batch=2), tiny_model, {"engine": "onnxruntime", "precision": "fp32"},
                         address=None, replicas=2, host="127.0.0.1", port=port, cpus_per_replica=0.5, stop=stop)
        except BaseException as error:  # reported below
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert not failure, failure
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Ray Serve was not ready in time"
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
    finally:
        stop.set()
        thread.join(120)
    assert not thread.is_alive() and not failure
    assert os.environ.get("RAY_ADDRESS") is None
