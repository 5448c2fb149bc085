"""What runs on the cluster: the model to load (:class:`ModelSpec`) and the Ray Data actor that
detects on batches of image files (:class:`ImageDetector`).

Each actor loads the model and opens its engine once, then runs every batch Ray Data gives it
through the package's own pipeline (:func:`ssd_resnet34.pipeline.run_pipeline`): the bytes are
decoded and preprocessed exactly as ``detect`` does for a file (:func:`ssd_resnet34.image.decode_image`),
and a bad image becomes a row with its error instead of failing the batch.

A batch in is Ray Data's ``read_binary_files(..., include_paths=True)`` rows (``path``, ``bytes``);
a batch out has one row per image with the columns of :func:`result_schema`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ..engines import AUTO

__all__ = ["ImageDetector", "ModelSpec", "result_schema"]

_KINDS = ("official", "synthetic", "heads")


@dataclass(frozen=True)
class ModelSpec:
    """How each actor gets its :class:`~ssd_resnet34.SSDResNet34` (a plain, picklable recipe:
    the model itself holds a native postprocessor that does not travel).

    ``kind``: ``"official"`` (``SSDResNet34.load(path)``: ``path`` None searches
    ``$SSD_RESNET34_MODEL``, the cache, then downloads, on each node), ``"synthetic"`` (random
    weights, ``seed``; built in each node's cache) or ``"heads"`` (an existing 12-head ``.onnx``
    file at ``path``, ``SSDResNet34(path)``). ``path`` must exist on every node.
    """

    kind: str = "official"
    path: Optional[str] = None
    seed: int = 0
    verify: bool = True
    use_native: bool = True
    score_threshold: float = 0.05
    #: Clip each box to its image before the records are made (``detect --clip``).
    clip: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"ModelSpec.kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "heads" and not self.path:
            raise ValueError("ModelSpec(kind='heads') needs the path of the .onnx file")

    @classmethod
    def from_model(cls, model: Any) -> "ModelSpec":
        """The recipe of an existing ``SSDResNet34``: its heads file (``model.model_path``, which
        the nodes must see), postprocessor kind and score threshold."""
        from ..detector import SSDResNet34
        from ..postprocess import NativePostProcessor

        if not isinstance(model, SSDResNet34):
            raise TypeError(f"model must be an SSDResNet34, got {type(model).__name__}")
        return cls("heads", os.fspath(model.model_path), use_native=isinstance(model.postprocessor, NativePostProcessor),
                   score_threshold=model.postprocessor.score_threshold)

    def build(self, device: str = AUTO) -> Any:
        """The ``SSDResNet34`` (its files found or built in this node's cache). Raises what
        ``SSDResNet34.load`` / ``synthetic`` raise."""
        from ..detector import SSDResNet34

        common = {"use_native": self.use_native, "device": device, "score_threshold": self.score_threshold}
        if self.kind == "synthetic":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the driver says it once
                return SSDResNet34.synthetic(self.seed, **common)
        if self.kind == "heads":
            return SSDResNet34(self.path, **common)
        return SSDResNet34.load(self.path, verify=self.verify, **common)


def result_schema() -> Any:
    """The ``pyarrow`` schema of the rows :class:`ImageDetector` returns, one per image: the one
    table of :mod:`ssd_resnet34.output.parquet` (``detections.parquet``). In these rows
    ``image_id`` (of the row and of its records) is the COCO id in the file name, else null (the
    driver numbers the others, as ``detect`` does)."""
    from ..output.parquet import schema

    return schema()


def _reason(error: BaseException) -> str:
    """The message of a per-image error without the file name (the driver prefixes the path
    the user gave)."""
    from ..image import ImageError

    return error.reason if isinstance(error, ImageError) else str(error)


class ImageDetector:
    """A Ray Data ``map_batches`` callable class: one loaded model and open engine per actor.

    Args:
        spec: the :class:`ModelSpec` to build.
        device: the engine's device (``"cpu"``, ``"cuda"``, ...).
        batch_size: images per engine call.
        engine_options: keyword arguments for :func:`ssd_resnet34.engines.create`, unchanged
            (``engine``, ``threads``, ``mode``, ...).

    Calling it on a ``pyarrow.Table`` with ``path`` (string) and ``bytes`` (binary) columns
    returns a ``pyarrow.Table`` of :func:`result_schema`, one row per input row, in order.
    """

    def __init__(self, spec: ModelSpec, device: str = AUTO, batch_size: int = 1,
                 engine_options: Optional[Mapping[str, Any]] = None) -> None:
        from .. import engines

        self._model = spec.build(device)
        self._engine = engines.create(self._model, device=device, **dict(engine_options or {}))
        self._batch_size = batch_size
        self._clip = spec.clip

    def __call__(self, batch: Any) -> Any:
        from ..image import EncodedImage
        from ..output.coco_results import image_id_from_file_name, image_records
        from ..output.parquet import rows_table
        from ..pipeline import run_pipeline

        paths = batch.column("path").to_pylist()
        items = [EncodedImage(path, data) for path, data in zip(paths, batch.column("bytes").to_pylist())]
        rows: List[Dict[str, Any]] = []
        for outcome in run_pipeline(items, self._engine, self._model.postprocessor, batch_size=self._batch_size):
            path = paths[outcome.index]
            context = outcome.context or {}
            failed = outcome.error is not None
            rows.append({"path": path, "image_id": image_id_from_file_name(path), "width": context.get("width"),
                         "height": context.get("height"), "error": _reason(outcome.error) if failed else None,
                         "detections": [] if failed else image_records(self._results(outcome))})
        return rows_table(rows)

    def _results(self, outcome: Any) -> Any:
        if not self._clip:
            return outcome.results
        return outcome.detections.clip().to_results(outcome.context["width"], outcome.context["height"])

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()
