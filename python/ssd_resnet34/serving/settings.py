"""The server's settings and their defaults: one source for ``ssd-resnet34 serve``'s options,
:func:`ssd_resnet34.serving.create_app` and the README ("Serving")."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional

__all__ = ["API_KEY_ENV", "MODEL_NAME", "MODEL_VERSION", "ServerSettings"]

#: The model's name on the open inference protocol (``/v2/models/ssd-resnet34``).
MODEL_NAME = "ssd-resnet34"
#: Its only version (``/v2/models/ssd-resnet34/versions/1``).
MODEL_VERSION = "1"
#: The environment variable holding the bearer token when ``--api-key`` is not given.
API_KEY_ENV = "SSD_RESNET34_API_KEY"


@dataclass
class ServerSettings:
    """What a server does; every field has a safe default.

    Batching:
        max_batch: images per engine batch (1..128, :data:`ssd_resnet34.pipeline.MAX_BATCH_SIZE`).
        max_delay_ms: how long the first image of a batch waits for more (milliseconds, >= 0),
            when there is concurrency (other images queued or a batch in flight); a lone image on
            an idle server is dispatched at once.
        max_queue: images waiting for a batch at most; past it requests get 503 + ``Retry-After``.
        depth: batches alive at once in the pipeline (None: its default).
    Limits:
        max_body_bytes: largest request body after decompression (413 beyond; 64 MiB: three
            preprocessed FP32 images, or a great many JPEGs).
        max_image_pixels: largest width x height an image's header may declare (413 beyond),
            read before decoding (decompression bombs).
        max_images_per_request: images in one request at most (413 beyond).
        request_timeout_s: each request's deadline from arrival (504 past it; its work is dropped).
        body_timeout_s: the whole body must arrive within this (408 beyond: slow clients).
        max_connections: concurrent connections and requests (uvicorn's ``limit_concurrency``;
            503 beyond).
        keep_alive_s: idle keep-alive connections are closed after this.
        graceful_timeout_s: on SIGTERM/SIGINT, how long requests in flight may take to finish.
    Security:
        api_key: the bearer token every endpoint but the health checks requires (None: no
            authentication; the server binds 127.0.0.1 by default).
    Model:
        model_name: the name on the protocol; score_threshold: the default postprocess score
        threshold (requests may ask for another); exact: MLPerf's float preprocessing.
    """

    max_batch: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 64
    depth: Optional[int] = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_images_per_request: int = 64
    request_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    max_connections: int = 256
    keep_alive_s: int = 5
    graceful_timeout_s: float = 30.0
    api_key: Optional[str] = field(default=None, repr=False)
    model_name: str = MODEL_NAME
    score_threshold: float = 0.05
    exact: bool = False

    def __post_init__(self) -> None:
        from ..pipeline import check_batch_size

        self.max_batch = check_batch_size(self.max_batch)
        for name in ("max_queue", "max_body_bytes", "max_image_pixels", "max_images_per_request", "max_connections",
                     "keep_alive_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("max_delay_ms", "request_timeout_s", "body_timeout_s", "graceful_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.request_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("request_timeout_s and body_timeout_s must be > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty: give a token, or None for no authentication")

    def to_json(self) -> str:
        """These settings as JSON (for the worker processes of ``--workers N``)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServerSettings":
        data: Dict[str, Any] = json.loads(text)
        return cls(**data)
