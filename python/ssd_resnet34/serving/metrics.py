"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own.

- ``ssd_resnet34_requests_total{endpoint, method, status}``: requests answered;
- ``ssd_resnet34_request_duration_seconds{endpoint}``: latency histogram;
- ``ssd_resnet34_batch_size{engine, device, precision}``: images per engine batch;
- ``ssd_resnet34_images_total{engine, device, precision}``: images detected (``rate()``: images/s);
- ``ssd_resnet34_queue_depth``: images waiting for a batch;
- ``ssd_resnet34_engine_info{model, engine, device, precision}``: 1 (what runs).
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The server's metrics; ``engine``: the open engine (its name, device and precision become
    labels), ``model_name`` its protocol name, ``queue_depth()`` the images waiting."""

    def __init__(self, engine: Any, model_name: str, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        labels = {"engine": str(engine.name), "device": str(engine.device), "precision": str(engine.precision)}
        self.requests = Counter("ssd_resnet34_requests", "Requests answered", ["endpoint", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("ssd_resnet34_request_duration_seconds", "Time from request to answer",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("ssd_resnet34_batch_size", "Images per engine batch", list(labels),
                                    buckets=_BATCH_BUCKETS, registry=self.registry).labels(**labels)
        self.images = Counter("ssd_resnet34_images", "Images detected", list(labels),
                              registry=self.registry).labels(**labels)
        depth = Gauge("ssd_resnet34_queue_depth", "Images waiting for a batch", registry=self.registry)
        depth.set_function(queue_depth)
        info = Gauge("ssd_resnet34_engine_info", "The engine that runs the model", ["model", *labels],
                     registry=self.registry)
        info.labels(model=model_name, **labels).set(1)

    def on_batch(self, rows: int) -> None:
        self.batch_size.observe(rows)
        self.images.inc(rows)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
