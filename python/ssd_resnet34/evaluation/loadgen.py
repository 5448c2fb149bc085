"""MLPerf LoadGen harness: a real SUT and QSL over image files, in MLPerf's four scenarios and
both modes (PerformanceOnly, AccuracyOnly).

It follows the structure of MLCommons' reference harness
(``vision/classification_and_detection/python/main.py`` in mlcommons/inference):

- the QSL (query sample library, :class:`ImageSampleLibrary`) preprocesses the images LoadGen
  asks for into memory before the timed run;
- the SUT (system under test) runs inference + postprocess on the samples of each query and
  answers ``lg.QuerySamplesComplete`` with the detections encoded as the reference does for
  SSD-ResNet34 (``PostProcessCocoPt``): per detection 7 float32 values
  ``[qsl_index, top, left, bottom, right, score, label]``, box corners normalized to the image
  and ``label`` the model label 1..80 (``accuracy-coco.py --use-inv-map`` maps it to the COCO
  category id).

How each scenario is served:

- SingleStream, MultiStream, Offline: the query's samples go through the detector's pipeline
  (:func:`ssd_resnet34.pipeline.run_pipeline`: batches of ``batch_size`` with the engine's
  requests in flight, the postprocess as each batch arrives), answered sample by sample;
- Server: queries arrive one sample at a time on LoadGen's schedule; a batcher thread groups
  them dynamically (up to ``max_batch`` samples, waiting at most ``batch_timeout_ms`` after the
  first) and submits each batch to the engine without waiting, so requests overlap.

Settings: LoadGen's built-in ``mlperf.conf`` (loaded by LoadGen itself), then this model's own
entries from the last MLPerf round that had SSD-ResNet34 (v2.0, :data:`MODEL_CONF`), then the
user's ``user.conf``, then explicit overrides; everything but the built-in file is written to
``<out>/user.conf`` and given to LoadGen as one user configuration, so the logs folder records the
exact settings. AccuracyOnly writes ``mlperf_log_accuracy.json``, which :func:`score_accuracy_log`
scores as MLCommons' ``tools/accuracy-coco.py`` does.

Requires ``mlcommons-loadgen`` (``import mlperf_loadgen``; extra ``ssd-resnet34[eval]``).
"""

from __future__ import annotations

import array
import json
import queue
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..detections import Detections
from ..pipeline import ImageResult, Prepared, run_pipeline

__all__ = [
    "MODEL",
    "MODEL_CONF",
    "MODES",
    "SCENARIOS",
    "Detections",
    "ImageSampleLibrary",
    "LoadGenResult",
    "LoadGenSettings",
    "decode_response",
    "encode_response",
    "run_loadgen",
    "score_accuracy_log",
]

#: The scenarios and modes :func:`run_loadgen` supports.
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("PerformanceOnly", "AccuracyOnly")
#: The model's name in MLPerf's configuration files.
MODEL = "ssd-resnet34"
#: This model's own entries of ``mlperf.conf`` in MLPerf Inference v2.0, the last round with
#: SSD-ResNet34 (mlcommons/inference, tag v2.0, ``mlperf.conf``); today's built-in file no
#: longer lists the model, so only its wildcard entries would apply without these.
MODEL_CONF = """\
# ssd-resnet34's entries of mlperf.conf in MLPerf Inference v2.0 (mlcommons/inference tag v2.0)
ssd-resnet34.*.performance_sample_count_override = 64
ssd-resnet34.MultiStream.target_latency = 528
ssd-resnet34.Server.target_latency = 100
"""


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
    ``ssd_resnet34.image.preprocess``. Each loaded sample takes 3*1200*1200*4 bytes (17.3 MB),
    so keep ``performance_count`` moderate (MLPerf's is 64 for this model).
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


def _positive(name: str, value: Any, *, integer: bool, zero: bool = False) -> None:
    if value is None:
        return
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not (value >= 0 if zero else value > 0) or value != value \
            or value == float("inf"):
        kind = "int" if integer else "number"
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} {kind} or None, got {value!r}")


@dataclass(frozen=True)
class LoadGenSettings:
    """The test settings this harness sets on top of LoadGen's ``mlperf.conf`` and :data:`MODEL_CONF`.

    ``scenario``: one of :data:`SCENARIOS`; ``mode``: one of :data:`MODES`. ``user_conf``: a
    LoadGen ``user.conf`` (``model.scenario.key = value`` lines) applied after the model's entries.
    ``target_qps`` (Server: the arrival rate; Offline: the expected throughput),
    ``target_latency_ms`` (SingleStream / MultiStream: the expected latency; Server: the latency
    bound), ``samples_per_query`` (MultiStream), ``min_duration_ms``, ``min_query_count``,
    ``performance_count`` (samples kept in memory): explicit overrides (None: as configured).
    ``batch_size``: images per inference for SingleStream, MultiStream and Offline;
    ``max_batch`` / ``batch_timeout_ms``: the Server's dynamic batching.
    """

    scenario: str = "SingleStream"
    mode: str = "PerformanceOnly"
    user_conf: Optional[str] = None
    target_qps: Optional[float] = None
    target_latency_ms: Optional[float] = None
    samples_per_query: Optional[int] = None
    min_duration_ms: Optional[int] = None
    min_query_count: Optional[int] = None
    performance_count: Optional[int] = None
    batch_size: int = 1
    max_batch: int = 4
    batch_timeout_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.user_conf is not None and not Path(self.user_conf).is_file():
            raise ValueError(f"user_conf {self.user_conf} is not a file")
        _positive("target_qps", self.target_qps, integer=False)
        _positive("target_latency_ms", self.target_latency_ms, integer=False)
        _positive("batch_timeout_ms", self.batch_timeout_ms, integer=False, zero=True)
        _positive("min_duration_ms", self.min_duration_ms, integer=True, zero=True)
        for name in ("samples_per_query", "min_query_count", "performance_count"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("batch_size", "max_batch"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} must be a positive int, got None")
            _positive(name, getattr(self, name), integer=True)

    def user_conf_text(self) -> str:
        """The configuration given to LoadGen on top of its built-in ``mlperf.conf``:
        :data:`MODEL_CONF`, the user's file, then the explicit overrides (later lines win)."""
        parts = [MODEL_CONF]
        if self.user_conf is not None:
            parts.append(f"# from {self.user_conf}\n" + Path(self.user_conf).read_text(encoding="utf-8"))
        s = f"{MODEL}.{self.scenario}"
        overrides = []
        if self.target_qps is not None and self.scenario in ("Server", "Offline"):
            overrides.append(f"{s}.target_qps = {self.target_qps!r}")
        if self.target_latency_ms is not None and self.scenario != "Offline":
            overrides.append(f"{s}.target_latency = {self.target_latency_ms!r}")
        if self.samples_per_query is not None and self.scenario == "MultiStream":
            overrides.append(f"{s}.samples_per_query = {self.samples_per_query}")
        if self.min_duration_ms is not None:
            overrides.append(f"{s}.min_duration = {self.min_duration_ms}")
        if self.min_query_count is not None:
            overrides.append(f"{s}.min_query_count = {self.min_query_count}")
        if self.performance_count is not None:
            overrides.append(f"{s}.performance_sample_count_override = {self.performance_count}")
        if overrides:
            parts.append("# explicit overrides\n" + "\n".join(overrides) + "\n")
        return "\n".join(parts)

    @property
    def is_short(self) -> bool:
        """True when a minimum was lowered: the run cannot be an MLPerf-compliant result."""
        return self.min_duration_ms is not None or self.min_query_count is not None


@dataclass(frozen=True)
class LoadGenResult:
    """What LoadGen reported: ``summary`` is the text of ``mlperf_log_summary.txt``.

    ``valid``: LoadGen's "Result is : VALID" verdict; ``invalid_reasons``: the summary's
    checks that failed (e.g. ``Min duration satisfied``). ``samples_per_second``: Offline's
    result line (``completed_samples_per_second`` and ``scheduled_samples_per_second`` for the
    Server); ``latency_ns``: the percentile latencies by percentile ("50.00", "90.00", ...).
    ``samples_completed``: responses the SUT sent. ``accuracy_log``: ``mlperf_log_accuracy.json``.
    """

    scenario: str
    mode: str
    summary: str
    log_dir: Path
    valid: bool
    samples_completed: int
    invalid_reasons: Tuple[str, ...] = ()
    samples_per_second: Optional[float] = None
    completed_samples_per_second: Optional[float] = None
    scheduled_samples_per_second: Optional[float] = None
    latency_ns: Dict[str, int] = field(default_factory=dict)

    @property
    def accuracy_log(self) -> Path:
        return self.log_dir / "mlperf_log_accuracy.json"


_RESULT_RE = re.compile(r"^Result is\s*:\s*(\S+)", re.M)
_SPS_RE = re.compile(r"^Samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_COMPLETED_RE = re.compile(r"^Completed samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_SCHEDULED_RE = re.compile(r"^Scheduled samples per second\s*:\s*([0-9.eE+-]+)", re.M)
_PCT_RE = re.compile(r"^([0-9.]+) percentile latency \(ns\)\s*:\s*(\d+)", re.M)
_FAILED_RE = re.compile(r"^\s*(.+?)\s*:\s*NO\s*$", re.M)


def parse_summary(scenario: str, mode: str, text: str, log_dir: Path, completed: int) -> LoadGenResult:
    """A :class:`LoadGenResult` from the text of ``mlperf_log_summary.txt``."""

    def number(pattern: re.Pattern) -> Optional[float]:
        match = pattern.search(text)
        return float(match.group(1)) if match else None

    verdict = _RESULT_RE.search(text)
    return LoadGenResult(
        scenario=scenario,
        mode=mode,
        summary=text,
        log_dir=log_dir,
        valid=bool(verdict) and verdict.group(1) == "VALID",
        samples_completed=completed,
        invalid_reasons=tuple(m.strip() for m in _FAILED_RE.findall(text)),
        samples_per_second=number(_SPS_RE),
        completed_samples_per_second=number(_COMPLETED_RE),
        scheduled_samples_per_second=number(_SCHEDULED_RE),
        latency_ns={p: int(v) for p, v in _PCT_RE.findall(text)},
    )


class _Responder:
    """Answers LoadGen (``QuerySamplesComplete``) and remembers the first error; thread-safe."""

    def __init__(self, lg: Any) -> None:
        self.lg = lg
        self.completed = 0
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def respond(self, samples: Sequence[Any], detections: Optional[Sequence[Detections]]) -> None:
        """Answer ``samples`` (LoadGen QuerySample objects); with ``detections`` None (an error),
        answer them empty so that LoadGen finishes."""
        if detections is None or self.error is not None:
            results = [np.empty((0, RESPONSE_WIDTH), np.float32) for _ in samples]
        else:
            results = [encode_response(s.index, d) for s, d in zip(samples, detections)]
        buffers = [array.array("B", r.tobytes()) for r in results]  # alive until QuerySamplesComplete returns
        responses = []
        for sample, buf in zip(samples, buffers):
            address, length = buf.buffer_info()
            responses.append(self.lg.QuerySampleResponse(sample.id, address, length * buf.itemsize))
        self.lg.QuerySamplesComplete(responses)
        with self._lock:
            self.completed += len(samples)


class _PipelineSUT:
    """SingleStream, MultiStream, Offline: each query through the pipeline, in LoadGen's issue thread."""

    def __init__(self, library: ImageSampleLibrary, engine: Any, decode: Callable, batch_size: int,
                 responder: _Responder) -> None:
        self.library, self.engine, self.decode, self.batch_size = library, engine, decode, batch_size
        self.responder = responder

    def _prepare(self, chunk: Sequence[Tuple[int, Any]]) -> Prepared:
        samples = [sample for _, sample in chunk]
        batch = self.library.batch([s.index for s in samples])
        results = [ImageResult(position, sample) for position, sample in chunk]
        return Prepared(batch, [{}] * len(samples), results, list(range(len(samples))))

    def issue_queries(self, samples: List[Any]) -> None:
        if self.responder.error is not None:
            self.responder.respond(samples, None)
            return
        answered = 0
        try:
            # One batch (SingleStream, small MultiStream queries): nothing to overlap, so no threads.
            depth = 0 if len(samples) <= self.batch_size else None
            stream = run_pipeline(samples, self.engine, self.decode,
                                  batch_size=self.batch_size, depth=depth, prepare=self._prepare)
            for outcome in stream:
                self.responder.respond([outcome.source], [outcome.detections])
                answered += 1
        except BaseException as error:  # never let an exception unwind into LoadGen's C++ thread
            self.responder.fail(error)
            self.responder.respond(samples[answered:], None)

    def flush_queries(self) -> None:
        pass

    def close(self) -> None:
        pass


_STOP = object()


class _ServerSUT:
    """Server: dynamic batching of single-sample queries, requests overlapping on the engine."""

    def __init__(self, library: ImageSampleLibrary, engine: Any, decode: Callable, max_batch: int,
                 timeout_s: float, responder: _Responder) -> None:
        self.library, self.engine, self.decode = library, engine, decode
        self.max_batch, self.timeout_s, self.responder = max_batch, timeout_s, responder
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending: List[Future] = []
        self._thread = threading.Thread(target=self._batcher, name="ssd-resnet34-server-batcher", daemon=True)
        self._thread.start()

    def issue_queries(self, samples: List[Any]) -> None:
        for sample in samples:
            self._queue.put(sample)

    def flush_queries(self) -> None:
        pass

    def _next_batch(self, first: Any) -> Tuple[List[Any], bool]:
        batch, deadline = [first], time.monotonic() + self.timeout_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                sample = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if sample is _STOP:
                return batch, True
            batch.append(sample)
        return batch, False

    def _batcher(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._next_batch(first)
            if self.responder.error is not None:
                self.responder.respond(batch, None)
                continue
            try:
                images = self.library.batch([s.index for s in batch])
                future = self.engine.submit(images, then=lambda heads, b=batch: self.responder.respond(b, self.decode(heads)))
            except BaseException as error:
                self.responder.fail(error)
                self.responder.respond(batch, None)
                continue
            future.add_done_callback(lambda f, b=batch: self._check(f, b))
            self._pending.append(future)

    def _check(self, future: Future, batch: List[Any]) -> None:
        error = future.exception()
        if error is not None:
            self.responder.fail(error)
            self.responder.respond(batch, None)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        for future in self._pending:
            try:
                future.result()
            except BaseException:  # already answered and recorded by _check
                pass


def run_loadgen(
    library: ImageSampleLibrary,
    engine: Any,
    decode: Callable[[List[np.ndarray]], List[Detections]],
    settings: LoadGenSettings,
    out_dir: str | Path,
) -> LoadGenResult:
    """Run one LoadGen test and return its summary.

    ``library``: the samples (QSL total = ``len(library)``). ``engine``: an open engine
    (:func:`ssd_resnet34.engines.create`). ``decode``: the 12 heads of a batch -> per image
    normalized detections (``postprocessor.decode``). ``out_dir``: LoadGen's log folder
    (created); it also receives the ``user.conf`` given to LoadGen. Re-raises the first error
    of the SUT or the QSL (the queries it failed are answered empty so LoadGen finishes).
    Raises ``RuntimeError`` when LoadGen rejects the configuration or wrote no summary.
    """
    lg = _loadgen()
    log_dir = Path(out_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    summary_path = log_dir / "mlperf_log_summary.txt"
    for stale in ("mlperf_log_summary.txt", "mlperf_log_accuracy.json"):
        (log_dir / stale).unlink(missing_ok=True)

    conf = log_dir / "user.conf"
    conf.write_text(settings.user_conf_text(), encoding="utf-8")
    test = lg.TestSettings()
    status = test.FromConfig(str(conf), MODEL, settings.scenario)
    if status != 0:
        raise RuntimeError(f"LoadGen refused the configuration {conf} (status {status}); see its log in {log_dir}")
    test.scenario = getattr(lg.TestScenario, settings.scenario)
    test.mode = getattr(lg.TestMode, settings.mode)
    performance_count = min(len(library), test.performance_sample_count_override or len(library))

    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = output
    log.enable_trace = False

    responder = _Responder(lg)
    if settings.scenario == "Server":
        sut_impl: Any = _ServerSUT(library, engine, decode, settings.max_batch, settings.batch_timeout_ms / 1e3, responder)
    else:
        sut_impl = _PipelineSUT(library, engine, decode, settings.batch_size, responder)

    def load_samples(indices: list) -> None:
        if responder.error is None:
            try:
                library.load(indices)
            except BaseException as e:  # never let an exception unwind into LoadGen
                responder.fail(e)

    sut = lg.ConstructSUT(sut_impl.issue_queries, sut_impl.flush_queries)
    qsl = lg.ConstructQSL(len(library), performance_count, load_samples, library.unload)
    try:
        lg.StartTestWithLogSettings(sut, qsl, test, log)
    finally:
        sut_impl.close()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        library.unload(list(range(len(library))))
    if responder.error is not None:
        raise responder.error
    if not summary_path.is_file():
        raise RuntimeError(f"LoadGen wrote no summary to {summary_path}")
    return parse_summary(settings.scenario, settings.mode, summary_path.read_text(encoding="utf-8"), log_dir,
                         responder.completed)


def score_accuracy_log(accuracy_log: str | Path, coco_gt: Any, images: Sequence[Any], *,
                       evaluator: str = "pycocotools") -> Any:
    """COCO mAP of a LoadGen ``mlperf_log_accuracy.json``, as MLCommons' ``tools/accuracy-coco.py``.

    ``images``: the QSL's images in sample order (``CocoImage``: ``image_id``, ``width``,
    ``height``), so ``qsl_idx`` i is ``images[i]``; ``coco_gt``: the annotations
    (:func:`ssd_resnet34.evaluation.coco_eval.load_ground_truth`). As the reference script: a
    sample logged twice counts once; each detection ``[idx, top, left, bottom, right, score,
    label]`` is scaled to pixels in float32 (``ymin *= height`` ...), its label mapped through
    ``[0] + coco_gt.getCatIds()`` (``--use-inv-map``); every logged image counts, with or
    without detections. Returns :class:`~ssd_resnet34.evaluation.coco_eval.CocoEvaluation`.

    Raises ``ValueError`` for a malformed log or a sample index outside ``images``.
    """
    from .coco_eval import evaluate

    try:
        entries = json.loads(Path(accuracy_log).read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{accuracy_log} is not LoadGen's accuracy log (JSON): {error}") from None
    inv_map = [0] + list(coco_gt.getCatIds())
    records: List[dict] = []
    seen: set = set()
    image_ids: List[int] = []
    for entry in entries:
        idx = int(entry["qsl_idx"])
        if idx in seen:
            continue
        seen.add(idx)
        if not 0 <= idx < len(images):
            raise ValueError(f"{accuracy_log}: qsl_idx {idx} is outside the {len(images)} images of the QSL")
        image = images[idx]
        image_ids.append(image.image_id)
        for row in decode_response(bytes.fromhex(entry["data"])):
            _, ymin, xmin, ymax, xmax, score, label = row
            height, width = np.float32(image.height), np.float32(image.width)
            ymin, xmin, ymax, xmax = ymin * height, xmin * width, ymax * height, xmax * width
            records.append({
                "image_id": image.image_id,
                "category_id": inv_map[int(label)],
                "bbox": [float(xmin), float(ymin), float(xmax - xmin), float(ymax - ymin)],
                "score": float(score),
            })
    if not image_ids:
        raise ValueError(f"{accuracy_log} holds no sample: was the run in AccuracyOnly mode?")
    return evaluate(coco_gt, records, image_ids, evaluator=evaluator)
