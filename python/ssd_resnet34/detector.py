"""``SSDResNet34``: the MLPerf SSD-ResNet34 detector (COCO, 1200x1200), as FuriosaAI's model card.

The model (``resnet34-ssd1200.onnx`` from MLCommons, ``vision/classification_and_detection`` in
mlcommons/inference) is run up to its 12 head outputs (class logits and box offsets of the 6
feature maps); everything after them (softmax, box decoding, NMS) is this package's
postprocessor (``docs/postprocess.md``). ``SSDResNet34`` owns the pipeline: ``iter_detect``
(and ``detect`` on top of it) runs images through :mod:`ssd_resnet34.pipeline`.

Usage::

    from ssd_resnet34 import SSDResNet34, session

    model = SSDResNet34.load()                    # official weights, truncated to the 12 heads
    with session.create(model) as sess:
        images, contexts = model.preprocess(["cat.jpg"])
        outputs = sess.run(images)
        results = model.postprocessor(outputs, contexts=contexts)   # per image, a list of results
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import engines
from . import postprocess as postprocessors
from .coco import COCO_CLASSES
from .image import as_images
from .image import preprocess as _preprocess
from .layout import INPUT_SHAPE
from .model.synthetic import MEANINGLESS, synthetic_model_path
from .model.truncate import truncated_model_path
from .model.weights import OFFICIAL_SHA256, resolve_model_path
from .pipeline import ImageResult, check_batch_size, run_pipeline
from .postprocess.defaults import SCORE_THRESHOLD
from .types import ObjectDetectionResult

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
        model_path: the ``.onnx`` file an engine runs (12 head outputs, see
            :data:`ssd_resnet34.layout.HEAD_SHAPES`).
        source_path: the official or synthetic ``.onnx`` it was made from (``model_path`` itself
            when no truncation was needed).
        truncated: True when ``model_path`` is a truncated copy of ``source_path``.
        is_synthetic: True for random weights (detections are meaningless).
        device: the default device of :meth:`detect` / :meth:`iter_detect` and
            ``session.create`` (see :func:`ssd_resnet34.engines.create`).
        input_shape: ``(1, 3, 1200, 1200)``, float32 RGB NCHW (any batch size N works).
        classes: the 81 class names by model label (0 = background), ``COCO_CLASSES``.
        postprocessor: the selected postprocessor, ``NativePostProcessor`` (default) or
            ``PythonPostProcessor``: ``postprocessor(outputs, contexts)`` -> per image a list
            of ``ObjectDetectionResult``.
    """

    name = "SSDResNet34"
    input_shape = INPUT_SHAPE
    classes = COCO_CLASSES

    def __init__(
        self,
        model_path: Union[str, "os.PathLike[str]"],
        *,
        source_path: Union[str, "os.PathLike[str]", None] = None,
        truncated: bool = False,
        is_synthetic: bool = False,
        use_native: bool = True,
        device: str = "auto",
        score_threshold: float = SCORE_THRESHOLD,
    ) -> None:
        """Wrap an existing 12-head ``.onnx`` file; prefer :meth:`load` / :meth:`synthetic`.

        ``use_native`` selects the postprocessor (Rust, or the numpy reference);
        ``score_threshold`` is its score threshold (MLPerf's 0.05 by default,
        :mod:`ssd_resnet34.postprocess.defaults`). Raises ``ValueError`` /
        ``TypeError`` for a bad ``score_threshold``, ``ImportError`` when ``use_native`` and the
        extension is not built.
        """
        self.model_path = Path(model_path)
        self.source_path = Path(source_path) if source_path is not None else self.model_path
        self.truncated = bool(truncated)
        self.is_synthetic = bool(is_synthetic)
        self.device = device
        self.postprocessor = postprocessors.create(use_native, score_threshold=score_threshold)

    def configure_postprocessor(self, **options: Any) -> None:
        """Replace :attr:`postprocessor` by one of the same kind built with ``options``:
        ``score_threshold`` (a float or a mapping label -> threshold), ``iou_threshold``,
        ``max_candidates_per_class``, ``max_detections``, ``classes``, ``class_agnostic``
        (``docs/postprocess.md``, "Parameters" and "Options"). Raises ``TypeError`` /
        ``ValueError`` for a bad option (the current postprocessor is kept then)."""
        kind = "python" if isinstance(self.postprocessor, postprocessors.PythonPostProcessor) else "native"
        self.postprocessor = postprocessors.create(kind, **options)

    @classmethod
    def load(
        cls,
        model_path: Union[str, "os.PathLike[str]", None] = None,
        use_native: bool = True,
        device: str = "auto",
        truncate: bool = True,
        *,
        download: bool = True,
        verify: bool = True,
        score_threshold: float = SCORE_THRESHOLD,
    ) -> "SSDResNet34":
        """The official MLPerf model (``resnet34-ssd1200.onnx``).

        ``model_path``: the file; None looks in ``$SSD_RESNET34_MODEL``, then the cache, then
        downloads it (unless ``download=False``), see
        :func:`ssd_resnet34.model.weights.resolve_model_path`; the file's size and sha256 must be
        the official ones unless ``verify=False`` (another export of the same network, e.g. the
        synthetic full graph). ``truncate``: run it up to the 12 heads (default; the postprocess
        is this package's); ``truncate=False`` keeps the file as is, whose outputs are then the
        graph's own boxes/labels/scores, not what ``postprocessor`` takes.

        Raises ``FileNotFoundError`` (no model and no download), ``IsADirectoryError``,
        ``ssd_resnet34.model.weights.DownloadError``, ``ssd_resnet34.model.weights.ChecksumError``
        with a message saying where to put the file; ``ValueError`` when the file is empty, not
        ONNX or not an SSD-ResNet34 graph.
        """
        source = Path(resolve_model_path(model_path, download=download, verify=verify))
        # The heads are keyed by (and a rebuild checks) the digest the source was verified against.
        checked = OFFICIAL_SHA256 if verify else None
        path = Path(truncated_model_path(source, source_sha256=checked)) if truncate else source
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
        device: str = "auto",
        score_threshold: float = SCORE_THRESHOLD,
    ) -> "SSDResNet34":
        """The exact MLPerf topology with random weights (``numpy.random.default_rng(seed)``).

        **Its detections are noise**: warns once per process (``UserWarning``) and sets
        ``is_synthetic``. For tests, timings and plumbing without the official file. The model is
        built on first use and cached (:func:`ssd_resnet34.model.synthetic.synthetic_model_path`).
        ``full_graph=True`` builds the variant with the decode + NMS tail, as the official file,
        and truncates it to the 12 heads (exercising :mod:`ssd_resnet34.model.truncate`).
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

    def preprocess(self, images: Any, *, exact: bool = False):
        """Images -> ``(batch, contexts)``: :func:`ssd_resnet34.image.preprocess`
        (``(N, 3, 1200, 1200)`` float32 RGB NCHW, and per image a dict with ``width``/``height``)."""
        return _preprocess(images, exact=exact)

    def postprocess(self, outputs: Sequence[np.ndarray], contexts: Any) -> List[List[ObjectDetectionResult]]:
        """The selected :attr:`postprocessor` (native by default), as the model card's
        ``postprocess``: the 12 heads and the contexts (a list, or one dict for one image) ->
        per image a list of ``ObjectDetectionResult`` with boxes in pixels."""
        return self.postprocessor(outputs, contexts=contexts)

    def iter_detect(
        self,
        images: Union[Any, Iterable[Any]],
        session: Optional[engines.Engine] = None,
        batch_size: int = 1,
        *,
        keep_images: bool = False,
        depth: Optional[int] = None,
        exact: bool = False,
    ) -> Iterator[ImageResult]:
        """Detect on images as a stream: yields, per input and in input order, an
        :class:`~ssd_resnet34.pipeline.ImageResult` holding either its results or its error.

        ``images``: one image or an iterable of them, consumed lazily (paths, encoded bytes,
        ``EncodedImage`` or uint8 BGR arrays, as :func:`ssd_resnet34.image.preprocess` takes; a
        single path, bytes, ``EncodedImage`` or array is one image,
        :func:`ssd_resnet34.image.is_single_image`). Each result holds the image's
        :class:`~ssd_resnet34.Detections` (``results``: the same in pixels). ``session``: an open
        engine (``ssd_resnet34.session.create(model)``); None opens one on :attr:`device` for
        the run, in throughput mode with the default engine and precision (OpenVINO bf16 on CPUs
        with AMX/AVX512_BF16; open a ``precision="fp32"`` session for the faithful path), and
        closes it at the end. ``batch_size``: images per inference. ``keep_images``:
        put each decoded image in its result. ``depth``: batches alive at once (None: the
        engine's requests in flight plus one per core; 0: serial, in the calling thread).
        ``exact``: preprocess with MLPerf's float path as written (bit-for-bit, slower).

        Reading, preprocessing, inference and the postprocess overlap (see
        :mod:`ssd_resnet34.pipeline`); memory stays bounded by ``depth`` batches. A bad input is
        reported in its result, not raised. Raises ``ValueError`` for a bad ``batch_size`` and
        what the engine raises; stopping the iteration early cleans everything up.
        ``TypeError`` for ``images`` that is neither an image nor an iterable.
        """
        batch_size = check_batch_size(batch_size)
        images = as_images(images)
        options = {"batch_size": batch_size, "depth": depth, "keep_images": keep_images, "exact": exact}
        if session is None:
            with engines.create(self, device=self.device, mode=engines.THROUGHPUT) as own:
                yield from run_pipeline(images, own, self.postprocessor.decode, **options)
            return
        yield from run_pipeline(images, session, self.postprocessor.decode, **options)

    def iter_detect_video(
        self,
        source: Any,
        session: Optional[engines.Engine] = None,
        *,
        every: int = 1,
        realtime: bool = False,
        batch_size: int = 1,
        keep_images: bool = False,
        depth: Optional[int] = None,
        exact: bool = False,
        timeout_s: float = 10.0,
    ) -> Iterator[Any]:
        """Detect on the frames of a video file, stream URL or camera: yields, per processed frame
        and in each stream's frame order, a :class:`~ssd_resnet34.video.FrameResult` that unpacks
        as ``(frame_index, timestamp_s, detections)`` (``int``, ``float`` seconds,
        :class:`~ssd_resnet34.Detections`).

        ``source``: a path (``.mp4 .avi .mkv .mov .webm`` ..., whatever FFmpeg reads), an
        ``rtsp://`` / ``http(s)://`` URL, a camera index (int), a
        :class:`~ssd_resnet34.video.VideoSource`, or a list of them: the frames of several sources
        share the engine and its batches (``FrameResult.stream`` says whose). The frames go
        through the same pipeline as images (:mod:`ssd_resnet34.pipeline`: batch builder, requests
        in flight, postprocess); memory stays bounded by ``depth`` batches for any length.
        ``every``: process one frame in N (the others are in ``held``). ``realtime``: read each
        source on a thread at its own pace and process only the newest frame when inference falls
        behind (``dropped_before`` counts what was dropped). ``session``, ``batch_size``,
        ``keep_images``, ``depth``, ``exact``: as :meth:`iter_detect`. ``timeout_s``: seconds
        allowed to open a stream and to wait for a frame.

        Raises :class:`~ssd_resnet34.video.VideoError` (not a video, unreachable URL, no such
        camera) or ``FileNotFoundError`` before the first frame; for a file that ends before its
        declared frame count, a ``VideoError`` naming the first frame that could not be decoded
        after the frames before it were yielded. ``ValueError`` for a bad ``every`` /
        ``batch_size``.
        """
        from .video.detect import iter_detect_video

        return iter_detect_video(self, source, session, every=every, realtime=realtime, batch_size=batch_size,
                                 depth=depth, keep_images=keep_images, exact=exact, timeout_s=timeout_s)

    def detect(
        self,
        images: Union[Any, Sequence[Any]],
        session: Optional[engines.Engine] = None,
        batch_size: int = 1,
    ) -> List[List[ObjectDetectionResult]]:
        """Preprocess, run and postprocess: one list of ``ObjectDetectionResult`` per image.

        ``images``, ``session``, ``batch_size``: as :meth:`iter_detect`. Boxes are ltrb in
        pixels of each original image. Raises the first bad input's error (``ImageError`` for a
        bad file, ``TypeError``/``ValueError`` for a bad array) after the run, what the engine
        raises, and ``ValueError`` for ``batch_size < 1``.
        """
        outcomes = list(self.iter_detect(images, session, batch_size))
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
        return [outcome.results for outcome in outcomes]
