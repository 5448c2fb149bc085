"""The FastAPI application: the open inference protocol's endpoints (``/v2/...``), the people's
endpoint (``POST /v1/detect``), ``/metrics``; authentication, one access-log line and the
metrics of every request (:class:`Observe`); every error as ``{"error": "<message>"}``.

:func:`create_app` builds it around a :class:`~ssd_resnet34.serving.service.Service`, started in
the application's lifespan (ready once the engine is open and warmed up) and closed at shutdown
after the requests in flight are answered.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Any, Dict, Optional

import cv2
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..coco import COCO_CATEGORY_IDS, COCO_CLASSES
from .errors import HTTPError
from .limits import check_image, check_token, read_body
from .metrics import CONTENT_TYPE_LATEST
from .model_io import INPUTS, OUTPUTS, items_from_inputs, output_tensors
from .openapi import DETECT_BODY, INFER_BODY
from .options import read_options
from .service import Service
from .settings import MODEL_VERSION, ServerSettings
from .v2 import encode_response, parse_request

__all__ = ["OPEN_PATHS", "Observe", "create_app"]

_access = logging.getLogger("ssd_resnet34.serving.access")

#: The paths open without the bearer token: the health checks.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
_PARSE_IN_THREAD = 1 << 20  # bodies above 1 MiB are parsed off the event loop


def _error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Observe:
    """ASGI middleware: the bearer token (when set; not for :data:`OPEN_PATHS`), then the
    request; after it, its metrics and one access-log line (client, method, path, status,
    bytes, milliseconds)."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        sent = {"status": 500, "bytes": 0}

        async def send_observed(message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            key = self.service.settings.api_key
            if key is not None and scope["path"] not in OPEN_PATHS:
                try:
                    check_token(Headers(scope=scope).get("authorization"), key)
                except HTTPError as error:
                    await _error(error.status, error.message, error.headers)(scope, receive, send_observed)
                    return
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            if self.service.metrics is not None:
                self.service.metrics.observe(endpoint, scope["method"], sent["status"], seconds)
            client = scope.get("client") or ("-", 0)
            _access.info('%s:%s "%s %s HTTP/%s" %d %dB %.1fms', client[0], client[1], scope["method"], scope["path"],
                         scope.get("http_version", "1.1"), sent["status"], sent["bytes"], seconds * 1000)


def _deadline(request: Request, timeout_s: float) -> float:
    return request.scope.get("state", {}).get("arrived", time.monotonic()) + timeout_s


def create_app(settings: ServerSettings, model: Any, engine: Any = None,
               engine_options: Optional[Dict[str, Any]] = None, *, warm_up_in_background: bool = True) -> FastAPI:
    """The server's ASGI application for ``model`` (an ``SSDResNet34``).

    ``engine``: an open engine (the application closes it at shutdown), or None to open one at
    startup with ``engine_options`` (``device``, ``engine``, ``precision``, ``threads``, as
    :func:`ssd_resnet34.engines.create`). ``warm_up_in_background``: open and warm up the engine
    on a thread after startup, so that the server answers at once (``/v2/health/live`` 200,
    ``/v2/health/ready`` 503 until warmed up); False: before the server accepts anything (Ray Serve,
    whose replica is routed to once constructed). Serve it with uvicorn
    (:func:`ssd_resnet34.serving.serve`).
    """
    service = Service(settings, model, engine, engine_options)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if warm_up_in_background:
            service.start_in_background()
        else:
            await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    app = FastAPI(title="ssd-resnet34", summary="SSD-ResNet34 (COCO) object detection on the open inference "
                  "protocol (KServe V2)", version=MODEL_VERSION, lifespan=lifespan)
    app.state.service = service
    app.add_middleware(Observe, service=service)

    @app.exception_handler(HTTPError)
    async def on_error(_request: Request, error: HTTPError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors())
        return _error(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    def _not_ready() -> JSONResponse:
        if service.failure is not None:
            return _error(503, f"not ready: the engine could not start ({service.failure})")
        return _error(503, "not ready: the engine is starting", {"Retry-After": "5"})

    def check_model(name: str, version: Optional[str] = None) -> None:
        if name != settings.model_name:
            raise HTTPError(404, f"unknown model {name!r}; this server serves {settings.model_name!r}")
        if version is not None and version != MODEL_VERSION:
            raise HTTPError(404, f"unknown version {version!r} of {name!r}; its version is {MODEL_VERSION!r}")

    # -- health and metadata -------------------------------------------------------------
    @app.get("/v2/health/live", summary="The server is up")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="The engine is open and warmed up")
    async def ready():
        if not service.ready:
            return _not_ready()
        return {"ready": True}

    @app.get("/v2", summary="Server metadata")
    async def server_metadata():
        return {"name": "ssd-resnet34", "version": _version(), "extensions": ["binary_tensor_data"]}

    def metadata(name: str, version: Optional[str] = None):
        check_model(name, version)
        engine_ = service.engine
        return {
            "name": settings.model_name, "versions": [MODEL_VERSION],
            "platform": f"ssd-resnet34/{getattr(engine_, 'name', 'engine')}",
            "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in INPUTS],
            "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in OUTPUTS],
            "parameters": {"engine": getattr(engine_, "name", None), "device": getattr(engine_, "device", None),
                           "precision": getattr(engine_, "precision", None), "max_batch": settings.max_batch,
                           "padding": "outputs padded to the largest count; rows past count[i] are zeros"},
        }

    def model_ready(name: str, version: Optional[str] = None):
        check_model(name, version)
        if not service.ready:
            return _not_ready()
        return {"name": name, "ready": True}

    @app.get("/v2/models/{model_name}", summary="Model metadata")
    async def model_metadata(model_name: str):
        return metadata(model_name)

    @app.get("/v2/models/{model_name}/versions/{version}", summary="Model metadata of a version")
    async def version_metadata(model_name: str, version: str):
        return metadata(model_name, version)

    @app.get("/v2/models/{model_name}/ready", summary="The model is ready")
    async def model_is_ready(model_name: str):
        return model_ready(model_name)

    @app.get("/v2/models/{model_name}/versions/{version}/ready", summary="The version is ready")
    async def version_is_ready(model_name: str, version: str):
        return model_ready(model_name, version)

    # -- inference -----------------------------------------------------------------------
    async def infer(request: Request, model_name: str, version: Optional[str]) -> Response:
        check_model(model_name, version)
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        header = request.headers.get("inference-header-content-length")
        if len(body) > _PARSE_IN_THREAD:
            parsed = await run_in_threadpool(parse_request, body, header)
        else:
            parsed = parse_request(body, header)
        options = read_options(parsed.parameters)
        service.options(options)
        if parsed.outputs is not None:
            output_tensors([], list(parsed.outputs))  # unknown names: 400 before any work
        items = await run_in_threadpool(items_from_inputs, parsed.inputs, settings)
        timeout_s = settings.request_timeout_s
        micros = parsed.parameters.get("timeout")
        if isinstance(micros, int) and not isinstance(micros, bool) and micros > 0:
            timeout_s = min(timeout_s, micros / 1e6)
        answers = await service.detect(items, options, _deadline(request, timeout_s))
        wanted = list(parsed.outputs) if parsed.outputs is not None else []
        outputs = output_tensors(answers, wanted)
        binary = {name: (parsed.outputs or {}).get(name, parsed.binary_output) for name, _ in outputs}
        content, headers = encode_response(settings.model_name, MODEL_VERSION, outputs, binary, parsed.id)
        return Response(content, headers=headers)

    @app.post("/v2/models/{model_name}/infer", summary="Inference (JSON or the binary tensor extension)",
              openapi_extra=INFER_BODY)
    async def model_infer(request: Request, model_name: str):
        return await infer(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{version}/infer", summary="Inference on a version",
              openapi_extra=INFER_BODY)
    async def version_infer(request: Request, model_name: str, version: str):
        return await infer(request, model_name, version)

    @app.post("/v1/detect", summary="Detect objects in one image (raw bytes or multipart)", openapi_extra=DETECT_BODY)
    async def detect(
        request: Request,
        score_threshold: Optional[float] = Query(None, description="keep detections scoring above this, in [0, 1]"),
        classes: Optional[str] = Query(None, description="COCO class names or labels 1..80, comma-separated"),
        max_detections: Optional[int] = Query(None, description="at most this many detections (>= 1)"),
        draw: bool = Query(False, description="answer the image with the boxes drawn (JPEG) instead of JSON"),
    ):
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        data = await _image_from_body(request, body)
        accepted = {part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")}
        as_png = "image/png" in accepted
        draw = draw or as_png or "image/jpeg" in accepted
        options = read_options({"score_threshold": score_threshold, "classes": classes,
                                "max_detections": max_detections})
        service.options(options)
        check_image(data, "image", settings.max_image_pixels)
        item = {"name": "image", "data": data, "keep_image": draw}
        (answer,) = await service.detect([item], options, _deadline(request, settings.request_timeout_s))
        width, height = answer.context["width"], answer.context["height"]
        found = answer.detections
        if draw:
            content = await run_in_threadpool(_drawing, answer, ".png" if as_png else ".jpg")
            return Response(content, media_type="image/png" if as_png else "image/jpeg")
        boxes = found.xyxy(width, height).tolist()
        # Plain Python values already: a JSONResponse skips FastAPI's jsonable_encoder, which
        # costs ~4x json.dumps (14 ms for 200 detections on this 2-core machine, under load).
        return JSONResponse({
            "width": int(width), "height": int(height), "count": len(found),
            "detections": [
                {"box": box, "score": score, "label": label, "category_id": int(COCO_CATEGORY_IDS[label]),
                 "name": COCO_CLASSES[label]}
                for box, label, score in zip(boxes, found.labels.tolist(), found.scores.tolist())
            ],
        })

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        if service.metrics is None:
            return Response(b"", media_type=CONTENT_TYPE_LATEST)
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _image_from_body(request: Request, body: bytes) -> bytes:
    """The image of a ``/v1/detect`` body: the body itself, or the first file part of a
    ``multipart/form-data`` body (the field ``image`` first)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=4, max_fields=16).parse()
    except (MultiPartException, ValueError, KeyError) as error:
        raise HTTPError(400, f"malformed multipart/form-data body: {error}") from None
    try:
        files = [(key, value) for key, value in form.multi_items() if hasattr(value, "read")]
        if not files:
            raise HTTPError(400, "the multipart/form-data body has no file part; send the image as a file field "
                                 "named 'image'")
        files.sort(key=lambda kv: kv[0] != "image")
        return await files[0][1].read()
    finally:
        await form.close()


def _drawing(answer, suffix: str) -> bytes:
    from ..output.draw import draw_detections

    width, height = answer.context["width"], answer.context["height"]
    ok, encoded = cv2.imencode(suffix, draw_detections(answer.image, answer.detections.to_results(width, height)))
    if not ok:
        raise HTTPError(500, f"OpenCV could not encode the drawing as {suffix}")
    return encoded.tobytes()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ssd-resnet34")
    except Exception:
        return os.environ.get("SSD_RESNET34_VERSION", "unknown")
