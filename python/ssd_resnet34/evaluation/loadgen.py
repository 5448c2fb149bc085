"""MLPerf LoadGen harness: a real SUT and QSL over image files, run in SingleStream or Offline.

It follows the structure of MLCommons' reference harness
(``vision/classification_and_detection/python/main.py`` in mlcommons/inference): the QSL
(query sample library) preprocesses the images LoadGen asks for into memory, the SUT
(system under test) runs inference + postprocess on the samples of each query and
answers ``lg.QuerySamplesComplete`` with the detections encoded as the reference does for
SSD-ResNet34 (``PostProcessCocoPt``): per detection 7 float32 values
``[qsl_index, top, left, bottom, right, score, label]``, box corners normalized to the image
(0..1) and ``label`` the model label 1..80 (``accuracy-coco.py --use-inv-map`` maps it to the
COCO category id). LoadGen writes its logs (``mlperf_log_summary.txt``,
``mlperf_log_detail.txt``, ...) to the output directory; :func:`run_loadgen` returns the summary.

Requires ``mlcommons-loadgen`` (``import mlperf_loadgen``; extra ``ssd-resnet34[eval]``).
"""

from __future__ import annotations

import array
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "SCENARIOS",
    "Detections",
    "ImageSampleLibrary",
    "LoadGenResult",
    "LoadGenSettings",
    "decode_response",
    "encode_response",
    "run_loadgen",
]

#: The scenarios :func:`run_loadgen` supports.
SCENARIOS = ("SingleStream", "Offline")

#: Per image: boxes (K, 4) float32 normalized ltrb, labels (K,) int64 1..80, scores (K,) float32.
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]

#: Values per detection in a LoadGen response (the MLCommons reference's layout).
RESPONSE_WIDTH = 7


def _loadgen() -> Any:
    try:
        import mlperf_loadgen
    except ImportError:
        raise ImportError(
            "MLPerf LoadGen is not installed: pip install mlcommons-loadgen (or ssd-resnet34[eval])"
        ) from None
    return mlperf_loadgen


def encode_response(qsl_index: int, detections: Detections) -> np.ndarray:
    """One sample's detections as the (K, 7) float32 array sent to LoadGen.

    Columns: ``qsl_index, top, left, bottom, right, score, label`` (normalized corners, model
    label 1..80), as MLCommons' ``PostProcessCocoPt``. Raises ``ValueError`` on mismatched lengths.
    """
    boxes, labels, scores = detections
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float32)
    if not (len(boxes) == len(labels) == len(scores)):
        raise ValueError(
            f"detections must have as many boxes, labels and scores, got {len(boxes)}, {len(labels)}, {len(scores)}"
        )
    out = np.empty((len(boxes), RESPONSE_WIDTH), dtype=np.float32)
    out[:, 0] = qsl_index
    out[:, 1] = boxes[:, 1]
    out[:, 2] = boxes[:, 0]
    out[:, 3] = boxes[:, 3]
    out[:, 4] = boxes[:, 2]
    out[:, 5] = scores
    out[:, 6] = labels
    return out


def decode_response(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_response` on the raw bytes: a (K, 7) float32 array."""
    if len(data) % (4 * RESPONSE_WIDTH):
        raise ValueError(f"a response must hold a multiple of {RESPONSE_WIDTH} float32 values, got {len(data)} bytes")
    return np.frombuffer(data, dtype=np.float32).reshape(-1, RESPONSE_WIDTH)


class ImageSampleLibrary:
    """The QSL's storage: image files, preprocessed into memory when LoadGen loads them.

    ``paths``: the image files (sample index i is ``paths[i]``). ``preprocess``: maps a list of
    image paths to ``(batch (n, 3, H, W) float32 NCHW, contexts)``, e.g.
    ``ssd_resnet34.preprocessing.preprocess``. Each loaded sample takes 3*1200*1200*4 bytes
    (17.3 MB), so keep ``performance_count`` moderate.
    """

    def __init__(self, paths: Sequence[str | Path], preprocess: Callable[[list], tuple[np.ndarray, list]]):
        if len(paths) == 0:
            raise ValueError("the sample library needs at least one image path, got none")
        self.paths = [Path(p) for p in paths]
        self._preprocess = preprocess
        self._loaded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def loaded_count(self) -> int:
        """How many samples are in memory now."""
        return len(self._loaded)

    def load(self, indices: Sequence[int]) -> None:
        """Preprocess the samples ``indices`` into memory (LoadGen's ``load_samples_to_ram``)."""
        for i in indices:
            if i not in self._loaded:
                batch, _ = self._preprocess([self.paths[i]])
                self._loaded[i] = np.ascontiguousarray(batch, dtype=np.float32)

    def unload(self, indices: Sequence[int]) -> None:
        """Drop the samples ``indices`` from memory (LoadGen's ``unload_samples_from_ram``)."""
        for i in indices:
            self._loaded.pop(i, None)

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """The loaded samples ``indices`` as one (n, 3, H, W) float32 batch (no copy for n == 1)."""
        missing = [i for i in indices if i not in self._loaded]
        if missing:
            raise ValueError(f"samples {missing[:5]} were not loaded by LoadGen before being queried")
        if len(indices) == 1:
            return self._loaded[indices[0]]
        return np.concatenate([self._loaded[i] for i in indices], axis=0)


@dataclass(frozen=True)
class LoadGenSettings:
    """The LoadGen test settings this harness sets (the rest keep LoadGen's defaults).

    ``scenario``: one of :data:`SCENARIOS`. ``min_duration_ms`` / ``min_query_count``: LoadGen's
    minimums (``None`` keeps LoadGen's defaults, 10,000 ms and 100 queries).
    ``offline_expected_qps``: Offline only; LoadGen issues about ``expected_qps * min_duration * 1.1``
    samples (at least ``min_query_count``). ``performance_count``: how many samples LoadGen keeps
    loaded (``None``: min(total, 64)). ``batch_size``: samples per inference in Offline.
    """

    scenario: str = "SingleStream"
    min_duration_ms: int | None = None
    min_query_count: int | None = None
    offline_expected_qps: float = 1.0
    performance_count: int | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        for name in ("min_duration_ms", "min_query_count", "performance_count"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "min_duration_ms" else 1)):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'min_duration_ms' else 'positive'} int or None, got {v!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        qps = self.offline_expected_qps
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not (0 < qps < float("inf")):
            raise ValueError(f"offline_expected_qps must be a positive number, got {self.offline_expected_qps!r}")


@dataclass(frozen=True)
class LoadGenResult:
    """What LoadGen reported: ``summary`` is the text of ``mlperf_log_summary.txt``.

    ``valid``: LoadGen's "Result is : VALID" verdict (short runs are INVALID: too few queries
    for MLPerf's minimums). ``samples_per_second``: Offline's result line, else None.
    ``latency_ns``: SingleStream's percentile latencies by percentile ("50.00", "90.00", ...).
    ``samples_completed``: responses the SUT sent.
    """

    scenario: str
    summary: str
    log_dir: Path
    valid: bool
    samples_completed: int
    samples_per_second: float | None = None
    latency_ns: dict[str, int] = field(default_factory=dict)


class _DetectionSUT:
    """Issue-queries / flush-queries callbacks; runs synchronously in LoadGen's issue thread."""

    def __init__(self, library: ImageSampleLibrary, infer: Callable[[np.ndarray], list[Detections]], batch_size: int):
        self.library = library
        self.infer = infer
        self.batch_size = batch_size
        self.completed = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def issue_queries(self, query_samples: list) -> None:
        lg = _loadgen()
        for start in range(0, len(query_samples), self.batch_size):
            chunk = query_samples[start : start + self.batch_size]
            indices = [q.index for q in chunk]
            results: list[np.ndarray]
            if self.error is None:
                try:
                    detections = self.infer(self.library.batch(indices))
                    if len(detections) != len(indices):
                        raise ValueError(f"inference returned {len(detections)} results for {len(indices)} samples")
                    results = [encode_response(i, d) for i, d in zip(indices, detections)]
                except BaseException as e:  # never let an exception unwind into LoadGen's C++ thread
                    self.error = e
            if self.error is not None:
                results = [np.empty((0, RESPONSE_WIDTH), np.float32) for _ in indices]
            buffers = [array.array("B", r.tobytes()) for r in results]  # alive until QuerySamplesComplete returns
            responses = []
            for q, buf in zip(chunk, buffers):
                address, length = buf.buffer_info()
                responses.append(lg.QuerySampleResponse(q.id, address, length * buf.itemsize))
            lg.QuerySamplesComplete(responses)
            with self._lock:
                self.completed += len(chunk)

    def flush_queries(self) -> None:
        pass


_RESULT_RE = re.compile(r"^Result is\s*:\s*(\S+)", re.M)
_SPS_RE = re.compile(r"^Samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_PCT_RE = re.compile(r"^([0-9.]+) percentile latency \(ns\)\s*:\s*(\d+)", re.M)


def parse_summary(scenario: str, text: str, log_dir: Path, completed: int) -> LoadGenResult:
    """A :class:`LoadGenResult` from the text of ``mlperf_log_summary.txt``."""
    verdict = _RESULT_RE.search(text)
    sps = _SPS_RE.search(text)
    return LoadGenResult(
        scenario=scenario,
        summary=text,
        log_dir=log_dir,
        valid=bool(verdict) and verdict.group(1) == "VALID",
        samples_completed=completed,
        samples_per_second=float(sps.group(1)) if sps else None,
        latency_ns={p: int(v) for p, v in _PCT_RE.findall(text)},
    )


def run_loadgen(
    library: ImageSampleLibrary,
    infer: Callable[[np.ndarray], list[Detections]],
    settings: LoadGenSettings,
    out_dir: str | Path,
) -> LoadGenResult:
    """Run one LoadGen PerformanceOnly test and return its summary.

    ``library``: the samples (QSL total = ``len(library)``). ``infer``: maps a (n, 3, 1200, 1200)
    float32 batch to n detections (boxes (K, 4) normalized ltrb, labels (K,) 1..80, scores (K,)),
    e.g. ``lambda x: postprocessor.decode(session.run(x))``. ``out_dir``: LoadGen's log directory
    (created). Re-raises the first exception ``infer`` raised (the queries it failed are answered
    empty so LoadGen finishes). Raises ``RuntimeError`` when LoadGen wrote no summary.
    """
    lg = _loadgen()
    log_dir = Path(out_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    summary_path = log_dir / "mlperf_log_summary.txt"
    summary_path.unlink(missing_ok=True)

    total = len(library)
    perf_count = min(total, settings.performance_count or 64)
    test = lg.TestSettings()
    test.scenario = getattr(lg.TestScenario, settings.scenario)
    test.mode = lg.TestMode.PerformanceOnly
    if settings.min_duration_ms is not None:
        test.min_duration_ms = settings.min_duration_ms
    if settings.min_query_count is not None:
        test.min_query_count = settings.min_query_count
    if settings.scenario == "Offline":
        test.offline_expected_qps = float(settings.offline_expected_qps)

    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = output
    log.enable_trace = False

    sut_impl = _DetectionSUT(library, infer, settings.batch_size if settings.scenario == "Offline" else 1)

    def load_samples(indices: list) -> None:
        if sut_impl.error is None:
            try:
                library.load(indices)
            except BaseException as e:  # never let an exception unwind into LoadGen
                sut_impl.error = e

    sut = lg.ConstructSUT(sut_impl.issue_queries, sut_impl.flush_queries)
    qsl = lg.ConstructQSL(total, perf_count, load_samples, library.unload)
    try:
        lg.StartTestWithLogSettings(sut, qsl, test, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        library.unload(list(range(total)))
    if sut_impl.error is not None:
        raise sut_impl.error
    if not summary_path.is_file():
        raise RuntimeError(f"LoadGen wrote no summary to {summary_path}")
    return parse_summary(settings.scenario, summary_path.read_text(encoding="utf-8"), log_dir, sut_impl.completed)
