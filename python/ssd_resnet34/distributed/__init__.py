"""Detection over a large image set on a Ray cluster, with Ray Data.

Needs the optional extra ``pip install 'ssd-resnet34[ray]'`` (Ray Data); without it,
:func:`detect_dataset` raises ``ImportError`` naming the extra. Importing this package does not
import Ray.

::

    from ssd_resnet34.distributed import detect_dataset

    run = detect_dataset("s3://bucket/val2017/", "out", address="auto", device="cuda", batch_size=8)
    print(run.processed, run.num_detections, run.errors)   # out/detections.json, detections.parquet

The images are read as bytes on the nodes (``ray.data.read_binary_files``), decoded and
preprocessed exactly as ``ssd-resnet34 detect`` does, and detected by an autoscaling pool of
actors that each load the model once (``map_batches``; ``num_gpus=1`` per actor on a GPU). The
driver gathers the per-image results in input order and writes the single-machine
``detections.json``.

- ``dataset.py``: :func:`detect_dataset`, :func:`build_dataset` (the lazy Ray Dataset, to write
  elsewhere), :class:`DetectionRun`, :class:`ImageDetections`;
- ``worker.py``: :class:`ImageDetector` (the actor), :class:`ModelSpec` (the model it loads);
- ``inputs.py``: the input list (local files and folders, object-storage URIs), in ``detect``'s order;
- ``cluster.py``: connecting to a cluster or starting a local instance; :func:`require_ray`;
(``--ray [ADDRESS]`` of the ``detect`` and ``eval`` commands is :mod:`ssd_resnet34.cli.ray`.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DetectionRun": "dataset",
    "ImageDetections": "dataset",
    "build_dataset": "dataset",
    "detect_dataset": "dataset",
    "ImageDetector": "worker",
    "ModelSpec": "worker",
    "list_inputs": "inputs",
    "RAY_EXTRA": "cluster",
    "require_ray": "cluster",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .cluster import RAY_EXTRA, require_ray
    from .dataset import DetectionRun, ImageDetections, build_dataset, detect_dataset
    from .inputs import list_inputs
    from .worker import ImageDetector, ModelSpec
