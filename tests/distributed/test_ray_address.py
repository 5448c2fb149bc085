"""``--ray HOST:PORT`` with nothing listening, or with a port that accepts connections but is not
Ray's (silent, plain HTTP), fails within a bounded time with one clear error (issue 15, item 10):
Ray itself retries such an address, or waits in ray.init, forever."""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (extra ray)")


def _command() -> list:
    script = Path(sys.executable).with_name("ssd-resnet34")
    return [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from ssd_resnet34.cli import main; sys.exit(main())"]


def _detect_with_ray(tmp_path, address: str, connect_timeout: str) -> tuple[int, str, float]:
    """``detect IMAGE --synthetic --ray=ADDRESS`` in a process of its own: (exit status, stderr,
    seconds); killed, and the test failed, after 120 s."""
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    env = {**os.environ, "SSD_RESNET34_RAY_CONNECT_TIMEOUT": connect_timeout}
    env.pop("RAY_ADDRESS", None)
    start = time.monotonic()
    process = subprocess.Popen([*_command(), "detect", str(image), "--synthetic", f"--ray={address}",
                                "--out", str(tmp_path / "O")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"detect --ray={address} did not return within 120 s")
    return process.returncode, stderr, time.monotonic() - start


def test_detect_with_a_ray_address_nobody_listens_on_fails_fast(tmp_path):
    code, stderr, elapsed = _detect_with_ray(tmp_path, "127.0.0.1:1", "10")
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 1, stderr
    assert errors == ["error: no Ray cluster at 127.0.0.1:1: connection refused: nothing listens on that port; "
                      "start one (ray start --head) or give the address its head node prints (HOST:6379, or "
                      "ray://HOST:10001 for Ray Client)"], stderr
    assert "Traceback" not in stderr and not (tmp_path / "O").exists()
    assert elapsed < 60, elapsed


@contextmanager
def _silent_server():
    """A real TCP server on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@contextmanager
def _http_server():
    """A real HTTP/1.1 server on 127.0.0.1 (the standard library's), as a web server or Ray's
    dashboard would answer."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["silent", "http"])
def test_detect_with_a_ray_address_that_is_not_ray_fails_within_the_bound(tmp_path, kind):
    """A port that accepts TCP connections but is not Ray's (silent, or a plain HTTP/1.1 server):
    Ray would wait inside ray.init forever; the run fails within the connect timeout, with one error."""
    with (_silent_server() if kind == "silent" else _http_server()) as port:
        code, stderr, elapsed = _detect_with_ray(tmp_path, f"127.0.0.1:{port}", "3")
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 1, stderr
    why = (r"the port accepts connections but sent nothing within 3 s, where Ray answers at once \(gRPC over "
           r"HTTP/2\): not a Ray port \(\$SSD_RESNET34_RAY_CONNECT_TIMEOUT sets the wait\)" if kind == "silent" else
           r"the port answered b'.*', which is not Ray's protocol \(gRPC over HTTP/2\): e\.g\. a web "
           r"server, or Ray's dashboard \(8265\)")
    assert len(errors) == 1, stderr
    assert re.fullmatch(rf"error: no Ray cluster at 127\.0\.0\.1:{port}: {why}; start one \(ray start --head\) or "
                        r"give the address its head node prints .*", errors[0]), errors
    assert "Traceback" not in stderr and "SIGTERM" not in stderr and not (tmp_path / "O").exists()
    assert elapsed < 60, elapsed


def test_check_reachable_bounds_and_messages():

    from ssd_resnet34.distributed.cluster import check_reachable, ray_session

    with pytest.raises(ConnectionError, match=r"no Ray cluster at ray://127\.0\.0\.1:1: connection refused"):
        check_reachable("ray://127.0.0.1:1", 5)
    with pytest.raises(ValueError, match="with a port in 1..65535"):
        check_reachable("127.0.0.1", 5)
    with socket.socket() as server:  # accepts, then stays silent: not Ray, refused within the bound
        server.bind(("127.0.0.1", 0))
        server.listen()
        start = time.monotonic()
        with pytest.raises(ConnectionError, match=r"accepts connections but sent nothing within 1 s.*not a Ray port"):
            check_reachable(f"127.0.0.1:{server.getsockname()[1]}", 1)
        assert time.monotonic() - start < 5
    with socket.socket() as server:  # accepts and closes at once
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        def close_after_reading() -> None:
            connection = server.accept()[0]
            connection.recv(64)  # the whole probe read first: a clean close, not a reset
            connection.close()

        closer = threading.Thread(target=close_after_reading, daemon=True)
        closer.start()
        with pytest.raises(ConnectionError, match=r"closed the connection without answering Ray's protocol"):
            check_reachable(f"127.0.0.1:{port}", 5)
    with pytest.raises(ValueError, match="connect timeout = 0"):
        with ray_session("127.0.0.1:1", connect_timeout=0):
            pass
