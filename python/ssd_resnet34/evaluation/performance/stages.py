"""Per-stage timings of the detection pipeline: where the time per image goes.

Stages, each timed as wall-clock milliseconds per call with ``time.perf_counter`` and reported
as the median over all calls (batch size 1, so per call = per image):

1. ``decode``: ``cv2.imdecode`` of the file's bytes (read beforehand) to BGR uint8.
2. ``preprocess``: :func:`ssd_resnet34.image.preprocess` (fast path) of the decoded image
   to the (1, 3, 1200, 1200) float32 NCHW input.
3. ``inference``: the onnxruntime session of the 12-head model (after one untimed warm-up).
4. ``postprocess``: the native (Rust) and the numpy reference postprocessors on the heads the
   inference produced; also on random heads (``oracle.random_head_outputs``: hundreds of
   candidates per class, the worst case for NMS).
5. ``in-graph decode + NMS``: the decode/NMS tail of the untruncated graph, extracted with
   ``onnx.utils.Extractor`` (inputs: the 12 head tensors found by
   ``truncate.find_head_outputs``; outputs: the graph's ``bboxes``/``labels``/``scores``) and
   run alone in onnxruntime on the same heads. This is what MLCommons' ``ssd-resnet34-onnxruntime``
   profile runs after the heads (``vision/classification_and_detection/python/main.py``).
6. the whole pipeline over the image files (read, preprocess, inference, native postprocess),
   per image = wall time / images: ``SSDResNet34.iter_detect`` serial (``depth=0``, a latency
   engine) and pipelined (a throughput engine), beside the bare engine in throughput mode
   (the preprocessed images submitted with its requests in flight, nothing else).

Speed is only reported here, never asserted.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...engines import AUTO

__all__ = [
    "STAGES",
    "StageTiming",
    "extract_tail",
    "format_table",
    "machine_description",
    "measure_stages",
    "time_calls",
]


#: The steps :func:`measure_stages` announces to its ``progress`` callback, in order.
STAGES = ("decode", "preprocess", "inference", "postprocess native (Rust)", "postprocess Python reference",
          "in-graph decode + NMS", "whole pipeline")


@dataclass(frozen=True)
class StageTiming:
    """One row of the breakdown: ``median_ms`` per image over ``calls`` timed calls."""

    stage: str
    median_ms: float
    calls: int
    note: str = ""


def time_calls(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Call ``fn()`` ``repeats`` times; the wall-clock milliseconds of each call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def machine_description() -> str:
    """``nproc=N, <machine>, onnxruntime <version>, load average L``: what the timings were
    taken on (the 1-minute load average shows whether other work shared the CPU)."""
    try:
        import onnxruntime

        ort = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort = "onnxruntime not installed"
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"nproc={nproc}, {platform.machine()}, {ort}{load}"


def extract_tail(full_model_path: str | Path) -> Any:
    """The decode + NMS tail of an untruncated SSD-ResNet34 graph as its own ``onnx.ModelProto``.

    Inputs: the 12 head tensors (``truncate.find_head_outputs``, model card order); outputs: the
    graph's outputs (``bboxes``, ``labels``, ``scores``). Raises ``ValueError`` when the graph has
    no such tail (e.g. it is already a 12-head model) or when the tail needs more than the heads.
    """
    import onnx
    import onnx.utils

    from ...model.truncate import find_head_outputs, is_heads_model

    model = onnx.load(str(full_model_path))
    if is_heads_model(model):
        raise ValueError(f"{full_model_path} is a 12-head model: it has no in-graph decode + NMS")
    heads = find_head_outputs(model)
    outputs = [o.name for o in model.graph.output]
    model = onnx.shape_inference.infer_shapes(model)
    tail = onnx.utils.Extractor(model).extract_model(heads, outputs)
    needed = {name for node in tail.graph.node for name in node.input}
    produced = {name for node in tail.graph.node for name in node.output}
    known = produced | set(heads) | {t.name for t in tail.graph.initializer} | {""}
    missing = sorted(needed - known)
    if missing:
        raise ValueError(f"the tail of {full_model_path} needs tensors other than the 12 heads: {missing[:5]}")
    return tail


def _median_row(stage: str, times: Sequence[float], note: str = "") -> StageTiming:
    return StageTiming(stage, statistics.median(times), len(times), note)


def measure_stages(
    image_paths: Sequence[str | Path],
    model: Any,
    *,
    runs: int = 3,
    device: str = AUTO,
    threads: int | None = None,
    seed: int = 0,
    warmup: bool = True,
    progress: Callable[[str], None] | None = None,
    open_engine: Callable[[str], Any] | None = None,
) -> list[StageTiming]:
    """Time every stage on ``image_paths`` with ``model`` (an ``SSDResNet34``).

    ``runs``: timed calls per image and stage. ``warmup``: one untimed call of the inference and
    of the in-graph tail before timing them (first calls pay onnxruntime's allocations). The in-graph tail row needs ``model.source_path`` to be the untruncated
    graph (``SSDResNet34.load(path)`` of the official file, or ``SSDResNet34.synthetic(
    full_graph=True)``); otherwise the row says why it is missing. ``progress``: called with the
    name of each stage as it starts. ``open_engine(mode)``: opens the engine for ``"latency"`` or
    ``"throughput"`` (default: ``engines.create(model, device=device, threads=threads, mode=mode)``);
    ``device`` and ``threads`` also run the in-graph tail. Returns the rows in pipeline order.
    """
    import cv2

    from ... import engines
    from ...image import preprocess
    from ...postprocess import NativePostProcessor, PythonPostProcessor
    from ..accuracy.oracle import random_head_outputs

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an int >= 1, got {runs!r}")
    if not image_paths:
        raise ValueError("image_paths is empty: at least one image is needed")
    say = progress or (lambda _name: None)
    n = len(image_paths)
    rows: list[StageTiming] = []

    say("decode")
    blobs = [Path(p).read_bytes() for p in image_paths]
    decoded, times = [], []
    for blob in blobs:
        buf = np.frombuffer(blob, np.uint8)
        times += time_calls(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR), runs)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("OpenCV could not decode one of the images")
        decoded.append(image)
    sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in decoded})
    rows.append(_median_row("decode (cv2.imdecode)", times, f"JPEG -> BGR uint8; {n} images, e.g. {sizes[0]}"))

    say("preprocess")
    inputs, times = [], []
    for image in decoded:
        times += time_calls(lambda: preprocess(image), runs)
        inputs.append(preprocess(image)[0])
    rows.append(_median_row("preprocess (fast path)", times, "resize to 1200x1200, normalize, HWC->NCHW float32"))

    opener = open_engine or (lambda mode: engines.create(model, device=device, threads=threads, mode=mode))
    say("inference")
    heads_per_image, times = [], []
    with opener("latency") as sess:
        if warmup:
            sess.run(inputs[0])
        for x in inputs:
            outputs: list = []
            times += time_calls(lambda: outputs.append(sess.run(x)), runs)
            heads_per_image.append(outputs[-1])
        engine_name = f"{sess.name}, {sess.device}, {sess.precision}"
    kind = "synthetic weights" if getattr(model, "is_synthetic", False) else "official weights"
    rows.append(_median_row(f"inference ({engine_name}, latency, 12 heads)", times,
                            f"{Path(model.model_path).name} ({kind})"))

    random_heads = random_head_outputs(1, seed=seed)
    for name, make in (("native (Rust)", NativePostProcessor), ("Python reference", PythonPostProcessor)):
        say(f"postprocess {name}")
        try:
            pp = make()
        except ImportError as error:
            rows.append(StageTiming(f"postprocess, {name}", float("nan"), 0, f"not measured: {error}"))
            continue
        times, counts = [], []
        for heads in heads_per_image:
            decoded: list = []
            times += time_calls(lambda: decoded.append(pp.decode(heads)), runs)
            counts.append(len(decoded[-1][0]))
        rows.append(_median_row(f"postprocess, {name}", times, f"model heads; median {int(np.median(counts))} detections/image"))
        times = time_calls(lambda: pp.decode(random_heads), runs)
        rows.append(_median_row(f"postprocess, {name}, random heads", times, "worst case: N(0,1) logits, hundreds of candidates per class (top 200 kept)"))

    say("in-graph decode + NMS")
    rows.append(_tail_row(model, heads_per_image, runs, device, threads, warmup))

    say("whole pipeline")
    rows.extend(_pipeline_rows(model, image_paths, inputs, runs, opener))
    return rows


def _per_image(stage: str, seconds: Sequence[float], images: int, note: str) -> StageTiming:
    ms = statistics.median(seconds) * 1e3 / images
    return StageTiming(stage, ms, len(seconds), f"{1e3 / ms:.2f} images/s; {note}")


def _pipeline_rows(model: Any, paths: Sequence[str | Path], inputs: list, runs: int,
                   opener: Callable[[str], Any]) -> list[StageTiming]:
    """The whole pipeline per image, serial and pipelined, beside the bare engine's throughput."""
    from ...postprocess import NativePostProcessor

    files = [str(p) for p in paths]
    postprocessor = NativePostProcessor()
    model_pp, model.postprocessor = model.postprocessor, postprocessor
    n = len(files)
    try:
        with opener("latency") as engine:
            list(model.iter_detect(files[:1], engine, depth=0))  # warm-up
            serial = [_wall(lambda: list(model.iter_detect(files, engine, depth=0))) for _ in range(runs)]
        with opener("throughput") as engine:
            batch = np.concatenate(inputs)
            engine.run(batch[:1])  # warm-up
            requests = engine.requests

            def bare() -> None:
                futures = [engine.submit(batch[i : i + 1]) for i in range(n)]
                for future in futures:
                    future.result()

            bare_times = [_wall(bare) for _ in range(runs)]
            pipelined = [_wall(lambda: list(model.iter_detect(files, engine))) for _ in range(runs)]
    finally:
        model.postprocessor = model_pp
    return [
        _per_image("whole pipeline, serial (iter_detect depth=0, latency engine)", serial, n,
                   "read, preprocess, inference, native postprocess one after the other"),
        _per_image("whole pipeline, pipelined (iter_detect, throughput engine)", pipelined, n,
                   f"stages overlapped, {requests} request(s) in flight"),
        _per_image("bare engine, throughput mode (preprocessed images)", bare_times, n,
                   f"{requests} request(s) in flight; the pipeline's ceiling"),
    ]


def _wall(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


_TAIL = "in-graph decode + NMS (onnxruntime)"


def _tail_row(model: Any, heads_per_image: list, runs: int, device: str, threads: int | None, warmup: bool) -> StageTiming:
    import onnxruntime as ort

    source = Path(getattr(model, "source_path", model.model_path))
    try:
        tail = extract_tail(source)
    except ValueError as error:
        return StageTiming(_TAIL, float("nan"), 0, f"not measured: {error}")
    from ...engines.onnxruntime import providers_for

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(tail.SerializeToString(), options, providers=providers_for(device))
    except Exception as error:  # onnxruntime's own exception types (Fail, InvalidGraph, ...)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return StageTiming(_TAIL, float("nan"), 0, f"not measured: onnxruntime cannot run the tail of {source.name}: {first}")
    names = [i.name for i in sess.get_inputs()]
    feeds = [dict(zip(names, heads)) for heads in heads_per_image]
    if warmup:
        sess.run(None, feeds[0])
    times, counts = [], []
    for feed in feeds:
        outputs: list = []
        times += time_calls(lambda: outputs.append(sess.run(None, feed)), runs)
        counts.append(outputs[-1][2].size)
    return _median_row(
        _TAIL,
        times,
        f"tail of {source.name} extracted with onnx.utils.Extractor, same heads; median {int(np.median(counts))} detections/image",
    )


def format_table(rows: Sequence[StageTiming], *, title: str = "", machine: str | None = None) -> str:
    """The rows as a markdown table (stage, median ms/image, timed calls, notes), with a header
    line naming the machine (:func:`machine_description`)."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"Machine: {machine or machine_description()}")
    lines.append("")
    lines.append("| stage | median ms / image | timed calls | notes |")
    lines.append("|---|---:|---:|---|")
    for r in rows:
        value = "n/a" if r.median_ms != r.median_ms else f"{r.median_ms:.2f}"
        lines.append(f"| {r.stage} | {value} | {r.calls} | {r.note} |")
    return "\n".join(lines)
