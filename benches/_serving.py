"""Helpers of the serving benches run with the server in their own process
(memory_serving.py, profile_serving.py, soak_serving.py): the shared COCO photos and a uvicorn server on a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple


def photo_payloads(data: Path, count: int) -> Optional[List[bytes]]:
    """The bytes of the first ``count`` shared COCO photos; None (after printing why) when absent."""
    folder = Path(data) / "coco-val2017-subset" / "images"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (../shared absent)")
        return None
    return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:count]]


@contextlib.contextmanager
def in_process_server(settings, model, engine, timeout: float = 300) -> Iterator[Tuple[str, object]]:
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
