"""``ssd_resnet34.serving``: an HTTP detection service on the open inference protocol (KServe V2).

``ssd-resnet34 serve`` (or :func:`serve`) runs it: FastAPI routes on uvicorn, one engine fed by
dynamic batching into the detector's pipeline, limits on every request, Prometheus metrics and
optional bearer-token authentication. Needs the ``serve`` extra (``pip install
'ssd-resnet34[serve]'``).

- ``settings.py``: :class:`ServerSettings`, every limit and its default;
- ``v2.py``: the protocol's request parsing and response encoding (JSON and the binary tensor
  extension); ``model_io.py``: this model's inputs and outputs on it (and the padding of the
  outputs);
- ``batcher.py``: the queue, the batches and the worker thread running ``run_pipeline``;
  ``service.py``: engine, batcher, postprocessors and metrics together;
- ``limits.py``: body size and time, encodings, the token, the image's declared size;
  ``options.py``: per-request postprocess options; ``metrics.py``: Prometheus;
- ``app.py``: the FastAPI application and its routes; ``server.py``: uvicorn, signals, workers.

Why FastAPI + uvicorn (not MLServer, LitServe or Ray Serve): the V2 protocol here is a few
routes over this package's own pipeline, which must stay the one loop; MLServer brings its own
model runtime, batching and worker processes (a second pipeline, and a large dependency tree
pinning FastAPI/uvicorn versions); LitServe's batching is its own loop too and it speaks its own
API rather than V2; Ray Serve is the scale-out path (a deployment can wrap this same
application) but a heavy requirement for one machine. FastAPI and uvicorn are small, well kept
and already what MLServer and KServe's Python server are built on.
"""

from typing import Any

from .settings import API_KEY_ENV, MODEL_NAME, ServerSettings

__all__ = ["API_KEY_ENV", "MODEL_NAME", "ServerSettings", "bind", "create_app", "serve"]

_SERVER_PACKAGES = (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client"),
                    ("python_multipart", "python-multipart"))


def __getattr__(name: str) -> Any:
    """``create_app``, ``serve``, ``bind``: imported on first use, after checking that the
    ``serve`` extra is installed (``MissingExtraError`` naming it otherwise)."""
    if name not in ("bind", "create_app", "serve"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .._extras import require

    for module, package in _SERVER_PACKAGES:
        require(module, "serve", "the HTTP server (ssd-resnet34 serve, ssd_resnet34.serving)", package=package)
    from . import app, server

    return {"bind": server.bind, "create_app": app.create_app, "serve": server.serve}[name]
