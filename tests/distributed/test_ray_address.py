"""``--ray HOST:PORT`` with nothing listening fails within a bounded time with one clear error
(issue 15, item 10): Ray itself retries such an address forever."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (extra ray)")


def _command() -> list:
    script = Path(sys.executable).with_name("ssd-resnet34")
    return [str(script)] if script.exists() else [sys.executable, "-c", "import sys; from ssd_resnet34.cli import main; sys.exit(main())"]


def test_detect_with_a_ray_address_nobody_listens_on_fails_fast(tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    env = {**os.environ, "SSD_RESNET34_RAY_CONNECT_TIMEOUT": "10"}
    env.pop("RAY_ADDRESS", None)
    start = time.monotonic()
    process = subprocess.Popen([*_command(), "detect", str(image), "--synthetic", "--ray=127.0.0.1:1",
                                "--out", str(tmp_path / "O")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("detect --ray=127.0.0.1:1 did not return within 120 s")
    elapsed = time.monotonic() - start
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert process.returncode == 1, stderr
    assert errors == ["error: no Ray cluster at 127.0.0.1:1: connection refused: nothing listens on that port; "
                      "start one (ray start --head) or give the address its head node prints (HOST:6379, or "
                      "ray://HOST:10001 for Ray Client)"], stderr
    assert "Traceback" not in stderr and not (tmp_path / "O").exists()
    assert elapsed < 60, elapsed


def test_check_reachable_bounds_and_messages():
    import socket

    from ssd_resnet34.distributed.cluster import check_reachable, ray_session

    with pytest.raises(ConnectionError, match=r"no Ray cluster at ray://127\.0\.0\.1:1: connection refused"):
        check_reachable("ray://127.0.0.1:1", 5)
    with pytest.raises(ValueError, match="with a port in 1..65535"):
        check_reachable("127.0.0.1", 5)
    with socket.socket() as server:  # something listening: the probe passes, Ray takes over
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", 5)
    with pytest.raises(ValueError, match="connect timeout = 0"):
        with ray_session("127.0.0.1:1", connect_timeout=0):
            pass
