"""Real servers for the serving tests: uvicorn on 127.0.0.1 with an ephemeral port, in a thread
of the test process, stopped at the end even when a test fails (:func:`running_server`).

Most tests serve a small real ONNX model with the 12 heads' shapes (``_models.tiny_heads_model``)
on a real onnxruntime engine, so they take milliseconds per request; the equality test serves the
synthetic SSD-ResNet34 (tests/serving/test_serving_detections.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'ssd-resnet34[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'ssd-resnet34[serve]')")

import uvicorn  # noqa: E402
from _models import tiny_heads_model  # noqa: E402
from _paths import SHARED_DATA  # noqa: E402
from ssd_resnet34 import engines  # noqa: E402
from ssd_resnet34.detector import SSDResNet34  # noqa: E402
from ssd_resnet34.serving import ServerSettings, bind, create_app  # noqa: E402
from ssd_resnet34.serving.server import uvicorn_options  # noqa: E402

CAT = SHARED_DATA / "images" / "cat.jpg"
COCO_IMAGES = SHARED_DATA / "coco-val2017-subset" / "images"
#: The longest a server may take to start (engine open and warm-up) or to stop.
START_TIMEOUT_S = 120.0


@contextlib.contextmanager
def running_server(settings: ServerSettings, model, engine=None, engine_options=None, *,
                   wait_for: str = "ready") -> Iterator[str]:
    """Serve ``model`` on 127.0.0.1:<ephemeral>; yields the base URL once ``/v2/health/<wait_for>``
    answers 200 (``"ready"``, or ``"live"``); stops the server
    (graceful, then forced) and joins its thread at the end, whatever happened."""
    app = create_app(settings, model, engine, engine_options)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not thread.is_alive():
                raise RuntimeError("the server stopped during startup")
            try:
                if httpx.get(f"{base}/v2/health/{wait_for}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not ready within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> SSDResNet34:
    return SSDResNet34(tiny_heads_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx"))


#: The limits of the tiny server, small so that every one can be reached cheaply.
TINY_SETTINGS = dict(max_batch=4, max_delay_ms=2, max_queue=4, max_images_per_request=8,
                     max_body_bytes=20 * 2**20, max_image_pixels=4_000_000, request_timeout_s=20,
                     body_timeout_s=1.0, graceful_timeout_s=5)


@pytest.fixture(scope="module")
def tiny_server(tiny_model) -> Iterator[str]:
    """A server of the tiny model (onnxruntime, fp32) with :data:`TINY_SETTINGS`; its base URL."""
    engine = engines.create(tiny_model, engine="onnxruntime", precision="fp32", mode=engines.THROUGHPUT)
    with running_server(ServerSettings(**TINY_SETTINGS), tiny_model, engine) as base:
        yield base


@pytest.fixture(scope="session")
def cat_bytes() -> bytes:
    if not CAT.is_file():
        pytest.skip(f"shared photo {CAT} not found (../shared absent)")
    return CAT.read_bytes()


@pytest.fixture(scope="session")
def coco_photos() -> list:
    """Two shared COCO photos (the grayscale one among the first sorted when present)."""
    if not COCO_IMAGES.is_dir():
        pytest.skip(f"shared COCO photos not found at {COCO_IMAGES} (../shared absent)")
    return sorted(COCO_IMAGES.glob("*.jpg"))[:2]
