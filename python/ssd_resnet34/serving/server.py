"""Running the application with uvicorn: :func:`serve` (one process, or ``workers`` processes each
with its own engine), :func:`bind` (the listening socket, port 0 for an ephemeral one) and the
uvicorn settings that bound slow and idle clients.

SIGTERM and SIGINT stop it gracefully: no new connections, the requests in flight are answered
(at most ``graceful_timeout_s``), the batcher drains, the engine closes, and :func:`serve`
returns 0. A second SIGINT forces the exit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import sys
from typing import Any, Dict, Optional

from .settings import ServerSettings

__all__ = ["WORKER_ENV", "bind", "serve", "uvicorn_options"]

#: The environment variable passing the worker processes of ``--workers N`` their settings.
WORKER_ENV = "SSD_RESNET34_SERVE_WORKER"
#: The largest request head (request line and headers) accepted, bytes (h11's limit; 431/400 beyond).
MAX_HEADER_BYTES = 64 * 1024


def uvicorn_options(settings: ServerSettings) -> Dict[str, Any]:
    """The uvicorn settings that follow from ``settings``: no access log of its own (the
    application writes one line per request), idle keep-alive connections closed after
    ``keep_alive_s``, at most ``max_connections`` at once (503 beyond), request heads bounded by
    :data:`MAX_HEADER_BYTES` and in time (:class:`~.protocol.GuardedH11Protocol`), and the
    graceful-shutdown bound."""
    from .protocol import GuardedH11Protocol

    return {
        "http": GuardedH11Protocol,
        "access_log": False,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": max(1, math.ceil(settings.graceful_timeout_s)),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "server_header": False,
        "lifespan": "on",
    }


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (IPv4 or IPv6; port 0: an ephemeral one, see
    ``sock.getsockname()``). Raises ``OSError`` when the address is taken or not this machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a signal ends it gracefully with status 0 (uvicorn re-raises the
        signal after its shutdown, which would end the process by that signal)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("ssd_resnet34.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def serve(settings: ServerSettings, model: Any, *, host: str = "127.0.0.1", port: int = 8000,
          engine: Any = None, engine_options: Optional[Dict[str, Any]] = None, workers: int = 1,
          sock: Optional[socket.socket] = None, log_level: str = "info") -> int:
    """Serve ``model`` until SIGTERM/SIGINT; returns the exit status (0 after a graceful stop, 1
    when the application could not start).

    ``engine`` (an open engine, closed at the end) or ``engine_options`` (opened at startup);
    ``sock``: an already listening socket (else :func:`bind` on ``host``:``port``);
    ``workers`` > 1 runs that many processes on the socket, each opening its own engine from
    ``engine_options`` (``engine`` must then be None).
    """
    import uvicorn

    from .app import create_app

    _configure_logging(log_level)
    sock = sock or bind(host, port)
    options = uvicorn_options(settings)
    if workers > 1:
        if engine is not None:
            raise ValueError("workers > 1 open one engine per process: pass engine_options, not an open engine")
        os.environ[WORKER_ENV] = json.dumps({**worker_spec(settings, model, engine_options), "log_level": log_level})
        config = uvicorn.Config("ssd_resnet34.serving.server:worker_app", factory=True, workers=workers,
                                log_level=log_level, **options)
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
        return 0
    app = create_app(settings, model, engine, engine_options)
    server = _server_class()(uvicorn.Config(app, log_level=log_level, **options))
    server.run(sockets=[sock])
    return 0 if server.started else 1


def worker_spec(settings: ServerSettings, model: Any, engine_options: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """What a process that serves ``model`` on its own needs (JSON): the settings, the heads
    model's path, its kind and postprocessor, the engine options."""
    return {"settings": json.loads(settings.to_json()), "model_path": str(model.model_path),
            "is_synthetic": bool(model.is_synthetic), "postprocessor": type(model.postprocessor).__name__,
            "engine_options": dict(engine_options or {})}


def app_from_spec(spec: Dict[str, Any], warm_up_in_background: bool = True):
    """The application a :func:`worker_spec` describes, with an engine of its own (opened at
    startup; see :func:`~ssd_resnet34.serving.create_app`)."""
    from ..detector import SSDResNet34
    from .app import create_app

    model = SSDResNet34(spec["model_path"], is_synthetic=spec["is_synthetic"],
                        use_native=spec["postprocessor"] != "PythonPostProcessor",
                        score_threshold=spec["settings"]["score_threshold"])
    return create_app(ServerSettings(**spec["settings"]), model, None, spec["engine_options"],
                      warm_up_in_background=warm_up_in_background)


def worker_app():
    """The application of one worker process of ``serve(workers=N)`` (uvicorn's factory), from
    :data:`WORKER_ENV`. Its engine opens and warms up before the worker accepts connections: the
    workers share one listening socket, so a connection goes to a worker that is ready, never to
    one still warming up (which would answer 503)."""
    spec = json.loads(os.environ[WORKER_ENV])
    _configure_logging(spec.get("log_level", "info"))  # a fresh process: its own access log handler
    return app_from_spec(spec, warm_up_in_background=False)
