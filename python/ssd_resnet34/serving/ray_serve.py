"""The same application as a Ray Serve deployment (``ssd-resnet34 serve --ray [ADDRESS]
--replicas N``): one engine per replica (each replica builds the application of
:func:`~ssd_resnet34.serving.server.app_from_spec` and opens its engine at startup), ``num_gpus=1``
per replica on GPU devices, and the same endpoints and answers behind Ray Serve's HTTP proxy.

Needs Ray Serve (``pip install 'ray[serve]'``, with the ``ray`` extra's Ray). A local Ray
instance (no ADDRESS) listens on 127.0.0.1 only, as ``ssd_resnet34.distributed``'s.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Dict, Optional

from .server import app_from_spec, worker_spec
from .settings import ServerSettings

__all__ = ["GPU_DEVICES", "deployment", "serve_on_ray"]

#: Devices whose replicas ask Ray for one GPU each.
GPU_DEVICES = ("cuda", "tensorrt", "gpu")


def _require_serve() -> Any:
    try:
        from ray import serve
    except ImportError as error:
        raise ImportError(f"serve --ray needs Ray Serve, which is not installed ({error}): "
                          "pip install 'ssd-resnet34[ray]' 'ray[serve]'") from None
    return serve


def deployment(settings: ServerSettings, model: Any, engine_options: Optional[Dict[str, Any]], replicas: int,
               cpus_per_replica: Optional[float] = None) -> Any:
    """The bound Ray Serve application: ``replicas`` replicas of the server's application."""
    serve = _require_serve()
    spec = worker_spec(settings, model, engine_options)
    gpus = 1 if str((engine_options or {}).get("device", "auto")).split(".")[0] in GPU_DEVICES else 0

    def build():  # in the replica: ready (routed to) once its engine is open and warmed up
        return app_from_spec(spec, warm_up_in_background=False)

    @serve.deployment(name="ssd-resnet34", num_replicas=replicas, max_ongoing_requests=settings.max_queue,
                      ray_actor_options={"num_cpus": 1 if cpus_per_replica is None else cpus_per_replica,
                                         "num_gpus": gpus})
    @serve.ingress(build)
    class SSDResNet34Replica:
        """One replica: the FastAPI application with its own engine."""

    return SSDResNet34Replica.bind()


def serve_on_ray(settings: ServerSettings, model: Any, engine_options: Optional[Dict[str, Any]], *,
                 address: Optional[str], replicas: int, host: str, port: int,
                 cpus_per_replica: Optional[float] = None, stop: Optional[threading.Event] = None) -> int:
    """Run the deployment until SIGTERM/SIGINT (or ``stop`` is set); returns 0. ``address``: the
    Ray cluster (None: a local instance on 127.0.0.1)."""
    from ..distributed.cluster import ray_session

    serve = _require_serve()
    stop = stop or threading.Event()
    with ray_session(address):
        serve.start(http_options={"host": host, "port": port})
        if threading.current_thread() is threading.main_thread():
            # After ray.init, which installs its own SIGTERM handler (it aborts the process):
            # SIGTERM and SIGINT stop the deployment and the command exits 0.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        try:
            serve.run(deployment(settings, model, engine_options, replicas, cpus_per_replica), name="ssd-resnet34",
                      route_prefix="/", blocking=False)
            print(f"serving {settings.model_name} on http://{host}:{port} (Ray Serve, {replicas} replicas); ready at "
                  "/v2/health/ready", file=sys.stderr, flush=True)
            stop.wait()
        finally:
            serve.shutdown()
    return 0
