"""``SSDResNet34``: the MLPerf SSD-ResNet34 detector (COCO, 1200x1200), as FuriosaAI's model card.

The model (``resnet34-ssd1200.onnx`` from MLCommons, ``vision/classification_and_detection`` in
mlcommons/inference) is run up to its 12 head outputs (class logits and box offsets of the 6
feature maps); everything after them (softmax, box decoding, NMS) is this package's
postprocessor (``docs/postprocess.md``).

Usage::

    from ssd_resnet34 import SSDResNet34, session

    model = SSDResNet34.load()                    # official weights, truncated to the 12 heads
    with session.create(model) as sess:
        images, contexts = model.preprocess(["cat.jpg"])
        outputs = sess.run(images)
        results = model.postprocessor(outputs, contexts=contexts[0])   # batch of one
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from . import session as _session
from .coco import COCO_CLASSES
from .preprocessing import INPUT_SIZE, preprocess
from .reference import PythonPostProcessor
from .synthetic import MEANINGLESS, synthetic_model_path
from .truncate import truncated_model_path
from .types import ObjectDetectionResult
from .weights import resolve_model_path

__all__ = ["SSDResNet34"]

_warned_synthetic = False


def _warn_synthetic() -> None:
    global _warned_synthetic
    if not _warned_synthetic:
        _warned_synthetic = True
        warnings.warn(MEANINGLESS + " Use SSDResNet34.load() for real detections.", UserWarning, stacklevel=3)


class SSDResNet34:
    """MLCommons SSD-ResNet34 (COCO 2017, 80 classes, 1200x1200 input), FuriosaAI model-card API.

    Make one with :meth:`load` (official weights) or :meth:`synthetic` (the exact topology with
    random weights, for tests and timings: its detections are noise).

    Attributes:
        name: ``"SSDResNet34"``.
        model_path: the ``.onnx`` file a session runs (12 head outputs, see
            ``ssd_resnet34.truncate.HEAD_SHAPES``).
        source_path: the official or synthetic ``.onnx`` it was made from (``model_path`` itself
            when no truncation was needed).
        truncated: True when ``model_path`` is a truncated copy of ``source_path``.
        is_synthetic: True for random weights (detections are meaningless).
        device: ``"cpu"`` (or what :func:`ssd_resnet34.session.create` accepts), used by
            :meth:`detect` and as ``session.create``'s default.
        input_shape: ``(1, 3, 1200, 1200)``, float32 RGB NCHW (any batch size N works).
        classes: the 81 class names by model label (0 = background), ``COCO_CLASSES``.
        preprocess: :func:`ssd_resnet34.preprocessing.preprocess`: images -> ``(batch, contexts)``.
        postprocessor: ``NativePostProcessor`` (``use_native=True``) or ``PythonPostProcessor``:
            ``postprocessor(outputs, contexts)`` -> per image a list of ``ObjectDetectionResult``.
        postprocess: always the numpy reference ``PythonPostProcessor`` (as the model card).
    """

    name = "SSDResNet34"
    input_shape = (1, 3, INPUT_SIZE, INPUT_SIZE)
    classes = COCO_CLASSES

    def __init__(
        self,
        model_path: Union[str, "os.PathLike[str]"],
        *,
        source_path: Union[str, "os.PathLike[str]", None] = None,
        truncated: bool = False,
        is_synthetic: bool = False,
        use_native: bool = True,
        device: str = "cpu",
        score_threshold: float = 0.05,
    ) -> None:
        """Wrap an existing 12-head ``.onnx`` file; prefer :meth:`load` / :meth:`synthetic`.

        ``score_threshold`` is both postprocessors' score threshold (MLPerf: 0.05). Raises
        ``ValueError`` for a bad ``score_threshold``, ``ImportError`` when ``use_native`` and the
        extension is not built.
        """
        self.model_path = Path(model_path)
        self.source_path = Path(source_path) if source_path is not None else self.model_path
        self.truncated = bool(truncated)
        self.is_synthetic = bool(is_synthetic)
        self.device = device
        self.preprocess = preprocess
        self.postprocess = PythonPostProcessor(score_threshold=score_threshold)
        if use_native:
            from .postprocess import NativePostProcessor

            self.postprocessor = NativePostProcessor(score_threshold=score_threshold)
        else:
            self.postprocessor = self.postprocess

    @classmethod
    def load(
        cls,
        model_path: Union[str, "os.PathLike[str]", None] = None,
        use_native: bool = True,
        device: str = "cpu",
        truncate: bool = True,
        *,
        download: bool = True,
        verify: bool = True,
        score_threshold: float = 0.05,
    ) -> "SSDResNet34":
        """The official MLPerf model (``resnet34-ssd1200.onnx``).

        ``model_path``: the file; None looks in ``$SSD_RESNET34_MODEL``, then the cache, then
        downloads it (unless ``download=False``), see
        :func:`ssd_resnet34.weights.resolve_model_path`; the file's size and sha256 must be the
        official ones unless ``verify=False`` (another export of the same network, e.g. the
        synthetic full graph). ``truncate``: run it up to the 12 heads
        (default; the postprocess is this package's); ``truncate=False`` keeps the file as is,
        whose outputs are then the graph's own boxes/labels/scores, not what ``postprocessor``
        takes.

        Raises ``FileNotFoundError`` (no model and no download), ``ssd_resnet34.weights.DownloadError``,
        ``ssd_resnet34.weights.ChecksumError`` with a message saying where to put the file,
        ``--model`` and the environment variable.
        """
        source = Path(resolve_model_path(model_path, download=download, verify=verify))
        path = Path(truncated_model_path(source)) if truncate else source
        return cls(
            path,
            source_path=source,
            truncated=truncate,
            use_native=use_native,
            device=device,
            score_threshold=score_threshold,
        )

    @classmethod
    def synthetic(
        cls,
        seed: int = 0,
        use_native: bool = True,
        full_graph: bool = False,
        *,
        device: str = "cpu",
        score_threshold: float = 0.05,
    ) -> "SSDResNet34":
        """The exact MLPerf topology with random weights (``numpy.random.default_rng(seed)``).

        **Its detections are noise**: warns once per process (``UserWarning``) and sets
        ``is_synthetic``. For tests, timings and plumbing without the official file. The model is
        built on first use and cached (:func:`ssd_resnet34.synthetic.synthetic_model_path`).
        ``full_graph=True`` builds the variant with the decode + NMS tail, as the official file,
        and truncates it to the 12 heads (exercising :mod:`ssd_resnet34.truncate`).
        Raises ``TypeError`` for a non-int seed, ``OSError`` if the cache is not writable.
        """
        _warn_synthetic()
        source = Path(synthetic_model_path(seed, full_graph=full_graph))
        path = Path(truncated_model_path(source)) if full_graph else source
        return cls(
            path,
            source_path=source,
            truncated=full_graph,
            is_synthetic=True,
            use_native=use_native,
            device=device,
            score_threshold=score_threshold,
        )

    def __repr__(self) -> str:
        kind = "synthetic (random weights)" if self.is_synthetic else "official"
        return (
            f"SSDResNet34({kind}, model_path={str(self.model_path)!r}, device={self.device!r}, "
            f"postprocessor={type(self.postprocessor).__name__})"
        )

    def detect(
        self,
        images: Union[Any, Sequence[Any]],
        session: Optional[Any] = None,
        batch_size: int = 1,
    ) -> List[List[ObjectDetectionResult]]:
        """Preprocess, run and postprocess: one list of ``ObjectDetectionResult`` per image.

        ``images``: as :func:`ssd_resnet34.preprocessing.preprocess` (paths or uint8 BGR arrays).
        ``session``: an open session (``ssd_resnet34.session.create(model)``); None opens one on
        ``self.device`` for this call. ``batch_size``: images per inference (>= 1). Boxes are
        ltrb in pixels of each original image. Raises what ``preprocess``, the session and the
        postprocessor raise (``ImageError`` for a bad file), ``ValueError`` for ``batch_size < 1``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(images, (str, os.PathLike)) or getattr(images, "ndim", 0) in (2, 3):
            images = [images]
        items = list(images)
        if session is None:
            with _session.create(self, device=self.device) as own:
                return self.detect(items, own, batch_size)
        results: List[List[ObjectDetectionResult]] = []
        for start in range(0, len(items), batch_size):
            batch, contexts = self.preprocess(items[start : start + batch_size])
            results.extend(self.postprocessor(session.run(batch), contexts))
        return results
