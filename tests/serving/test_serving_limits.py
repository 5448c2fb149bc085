"""Slow clients, bearer-token authentication, metrics and the access log, on real servers."""

from __future__ import annotations

import logging
import socket
import time

import httpx
import pytest
from conftest import TINY_SETTINGS, running_server
from ssd_resnet34 import engines
from ssd_resnet34.serving import ServerSettings

INFER = "/v2/models/ssd-resnet34/infer"


def test_slow_client_gets_408_and_holds_nothing(tiny_server):
    """A body sent one byte at a time is cut off after --body-timeout (1 s here) with 408, and the
    server answers others meanwhile."""
    host, port = tiny_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(0.25)
        reply = b""
        while time.monotonic() - started < 8 and b"\r\n\r\n" not in reply:
            try:
                sock.sendall(b"\xff")
            except OSError:
                pass
            assert httpx.get(f"{tiny_server}/v2/health/live", timeout=5).status_code == 200
            try:
                reply += sock.recv(4096)
            except socket.timeout:
                pass
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"did not arrive within 1 s" in reply
    assert elapsed < 5


def test_slow_or_silent_request_heads_are_closed(tiny_server, monkeypatch):
    """A connection that sends nothing, or its headers a byte at a time, is closed after the head
    deadline (10 s by default; 1 s here), not held."""
    from ssd_resnet34.serving.protocol import GuardedH11Protocol

    monkeypatch.setattr(GuardedH11Protocol, "head_timeout_s", 1.0)
    host, port = tiny_server.removeprefix("http://").split(":")
    for trickle in (b"", b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            sock.settimeout(0.2)
            closed = False
            for byte in trickle:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.05)
            while time.monotonic() - started < 8 and not closed:
                try:
                    closed = sock.recv(4096) == b""
                except socket.timeout:
                    if trickle:
                        try:
                            sock.sendall(b"a")
                        except OSError:
                            closed = True
                except OSError:
                    closed = True
            assert closed and time.monotonic() - started < 6, trickle
    # a normal request on a kept-alive connection is unaffected
    with httpx.Client(base_url=tiny_server) as http:
        assert http.get("/v2/health/live").status_code == 200
        time.sleep(1.5)
        assert http.get("/v2/health/live").status_code == 200


def test_bearer_token(tiny_model, cat_bytes):
    engine = engines.create(tiny_model, engine="onnxruntime", precision="fp32")
    settings = ServerSettings(**dict(TINY_SETTINGS, api_key="s3cret-token"))
    with running_server(settings, tiny_model, engine) as base, httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic czNjcmV0LXRva2Vu"},
                        {"authorization": "Bearer"}):
            reply = http.post("/v1/detect", content=cat_bytes, headers=headers)
            assert reply.status_code == 401, headers
            assert reply.headers["www-authenticate"] == "Bearer" and "error" in reply.json()
        assert http.get("/v2/models/ssd-resnet34").status_code == 401
        assert http.get("/metrics").status_code == 401
        good = {"authorization": "Bearer s3cret-token"}
        assert http.post("/v1/detect", content=cat_bytes, headers=good).status_code == 200
        assert http.get("/metrics", headers=good).status_code == 200


def test_metrics_and_one_access_log_line_per_request(tiny_server, cat_bytes, caplog):
    with caplog.at_level(logging.INFO, logger="ssd_resnet34.serving.access"), \
            httpx.Client(base_url=tiny_server, timeout=30) as http:
        assert http.post("/v1/detect", content=cat_bytes).status_code == 200
        assert http.post("/v1/detect", content=b"nope").status_code == 400
        assert http.get("/v2/models/nope").status_code == 404
        text = http.get("/metrics").text
    lines = [r.getMessage() for r in caplog.records if r.name == "ssd_resnet34.serving.access"]
    assert len(lines) == 4, lines
    assert '"POST /v1/detect HTTP/1.1" 200' in lines[0] and '"POST /v1/detect HTTP/1.1" 400' in lines[1]
    assert lines[0].startswith("127.0.0.1:") and lines[0].endswith("ms")
    for needle in ('ssd_resnet34_requests_total{endpoint="/v1/detect",method="POST",status="200"}',
                   'ssd_resnet34_requests_total{endpoint="/v1/detect",method="POST",status="400"}',
                   'ssd_resnet34_requests_total{endpoint="/v2/models/{model_name}",method="GET",status="404"}',
                   "ssd_resnet34_request_duration_seconds_bucket",
                   'ssd_resnet34_batch_size_bucket{device="cpu",engine="onnxruntime",le="1.0",precision="fp32"}',
                   'ssd_resnet34_images_total{device="cpu",engine="onnxruntime",precision="fp32"}',
                   "ssd_resnet34_queue_depth 0.0",
                   'ssd_resnet34_engine_info{device="cpu",engine="onnxruntime",model="ssd-resnet34",precision="fp32"} 1.0'):
        assert needle in text, needle


def test_live_before_ready_and_an_engine_that_cannot_start(tiny_model, cat_bytes):
    """The server answers at once; the engine opens in the background. One that cannot open (no
    NPU here) leaves it live but not ready, saying why, and requests get 503, not 500."""
    with running_server(ServerSettings(**TINY_SETTINGS), tiny_model, engine_options={"device": "npu"},
                        wait_for="live") as base, httpx.Client(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + 60
        while "could not start" not in http.get("/v2/health/ready").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        reply = http.get("/v2/health/ready")
        assert reply.status_code == 503 and "npu" in reply.json()["error"].lower()
        assert http.get("/v2/health/live").status_code == 200
        assert http.post("/v1/detect", content=cat_bytes).status_code == 503
        assert http.get("/v2/models/ssd-resnet34/ready").status_code == 503


def test_settings_are_checked():
    with pytest.raises(ValueError, match="batch_size 500 is too large"):
        ServerSettings(max_batch=500)
    with pytest.raises(ValueError, match="max_queue"):
        ServerSettings(max_queue=0)
    with pytest.raises(ValueError, match="api_key is empty"):
        ServerSettings(api_key=" ")
