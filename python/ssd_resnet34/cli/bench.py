"""``ssd-resnet34 bench``: MLPerf LoadGen runs in the four scenarios and both modes, or a
per-stage breakdown.

Default: a LoadGen test (:mod:`ssd_resnet34.evaluation.performance.loadgen`) of the detector over the images
of ``--images``: the QSL preprocesses them into memory, the SUT runs inference and the postprocess.
Prints LoadGen's own summary (``mlperf_log_summary.txt``) and, when the result is INVALID, why;
LoadGen's logs and the ``user.conf`` it was given stay in ``--out``. AccuracyOnly
(``--annotations``) also scores ``mlperf_log_accuracy.json`` as MLCommons' ``accuracy-coco.py``
and prints ``mAP=``. ``--oracle`` (AccuracyOnly) replaces the model by head outputs encoded
from the ground truth, as ``eval --oracle`` does, so the LoadGen accuracy path is checked with a
meaningful mAP (the same as ``eval --oracle``'s on the same images).

``--stages``: time decode, preprocess, inference, native and Python postprocess, the in-graph
decode + NMS of the untruncated graph, and the whole pipeline serial and pipelined beside the
bare engine (:mod:`ssd_resnet34.evaluation.performance.stages`); prints a markdown table.

Plots (unless ``--no-plots``; :mod:`ssd_resnet34.evaluation.performance.plots`), in ``--out``:
``latency.png`` for a PerformanceOnly LoadGen run (LoadGen's trace is turned on to read each
latency as LoadGen measured it), ``stages.png`` for ``--stages``.

Both show their progress on stderr (:class:`ssd_resnet34.cli._progress.Progress`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..engines import LATENCY, THROUGHPUT
from ..evaluation.performance.loadgen.settings import SCENARIOS, TEST_MODES
from ..serving.settings import API_KEY_ENV
from ._common import (
    CommandError,
    add_model_arguments,
    int_at_least,
    load_model,
    open_engine,
    positive_int,
    positive_number,
)
from ._progress import Progress

__all__ = ["register", "run"]

#: ``--short``: LoadGen minimums for a smoke run of a few queries (not an MLPerf-compliant result).
SHORT_MIN_DURATION_MS = 0
SHORT_MIN_QUERY_COUNT = 2
#: Default number of images for ``--stages`` (each costs seconds of CPU inference per run).
STAGES_DEFAULT_COUNT = 2

_DESCRIPTION = """\
Default: an MLPerf LoadGen test of the detector (images preprocessed into memory by the QSL ->
engine -> postprocessor in the SUT) over the images of --images, in one of MLPerf's four
scenarios and two modes. Settings: LoadGen's built-in mlperf.conf, then ssd-resnet34's own
entries of MLPerf v2.0 (performance sample count 64, MultiStream target latency 528 ms, Server
latency bound 100 ms), then --user-conf, then the explicit options. Prints LoadGen's summary;
its logs and the user.conf it was given stay in --out.

AccuracyOnly needs --annotations (COCO instances JSON): the QSL is then the annotated images found
in --images (sorted by id), and the accuracy log is scored as MLCommons' accuracy-coco.py does.
With --oracle the samples are head outputs encoded from that ground truth instead of a model's
(as eval --oracle): the mAP then equals eval --oracle's on the same images.

Extra: pip install 'ssd-resnet34[eval]' (LoadGen and pycocotools).

--stages: time each stage (decode, preprocess, inference, postprocess, in-graph decode + NMS) and
the whole pipeline, serial and pipelined, beside the bare engine; prints a markdown table.

Plots, in --out (skipped with --no-plots): latency.png (histogram and CDF, p50/p90/p99) of a
PerformanceOnly run, read from LoadGen's trace (mlperf_log_trace.json, on for the plot); stages.png
of --stages."""


def register(subparsers: Any) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="MLPerf LoadGen run (SingleStream, MultiStream, Server, Offline), or --stages: per-stage timings",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images (e.g. COCO val2017)")
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help=f"use the first N images of the folder (default: all for LoadGen, {STAGES_DEFAULT_COUNT} for --stages)",
    )
    lg = parser.add_argument_group("LoadGen")
    lg.add_argument("--scenario", choices=SCENARIOS, default="SingleStream")
    lg.add_argument("--mode", choices=TEST_MODES, default="PerformanceOnly")
    lg.add_argument("--annotations", metavar="JSON", help="AccuracyOnly: COCO instances file of the --images")
    lg.add_argument(
        "--oracle",
        action="store_true",
        help="AccuracyOnly, no model: the samples are head outputs encoded from the ground truth "
        "(as eval --oracle; checks the LoadGen accuracy path with a meaningful mAP)",
    )
    lg.add_argument("--user-conf", metavar="FILE", help="a LoadGen user.conf applied after the model's own entries")
    lg.add_argument("--target-qps", type=positive_number, metavar="F", help="Server: the query rate; Offline: the expected samples/s")
    lg.add_argument("--target-latency-ms", type=positive_number, metavar="MS",
                    help="SingleStream/MultiStream: the expected latency; Server: the latency bound (MLPerf: 100)")
    lg.add_argument("--samples-per-query", type=positive_int, metavar="N", help="MultiStream: samples per query (MLPerf: 8)")
    lg.add_argument("--min-duration-ms", type=int_at_least(0), metavar="MS",
                    help="LoadGen min_duration (mlperf.conf: 600000; --short: 0)")
    lg.add_argument("--min-query-count", type=positive_int, metavar="N", help=f"LoadGen min_query_count (--short: {SHORT_MIN_QUERY_COUNT})")
    lg.add_argument("--performance-count", type=positive_int, metavar="N",
                    help="samples LoadGen keeps preprocessed in memory (MLPerf v2.0: 64; 17 MB each)")
    lg.add_argument("--batch-size", type=positive_int, default=1, metavar="N",
                    help="SingleStream/MultiStream/Offline: images per inference (default 1)")
    lg.add_argument("--max-batch", type=positive_int, default=4, metavar="N", help="Server: most samples per dynamic batch (default 4)")
    lg.add_argument("--batch-timeout-ms", type=float, default=10.0, metavar="MS",
                    help="Server: longest wait for a batch to fill after its first sample (default 10)")
    lg.add_argument(
        "--short",
        action="store_true",
        help=f"smoke run: min_duration 0 ms and {SHORT_MIN_QUERY_COUNT} queries unless given; not an MLPerf-compliant "
        "result even where LoadGen says VALID",
    )
    lg.add_argument("--sut-url", metavar="URL",
                    help="send the queries to the open-inference-protocol server at URL (e.g. http://127.0.0.1:8000, "
                    "ssd-resnet34 serve) instead of running the model here: MLPerf's network division")
    lg.add_argument("--api-key", metavar="TOKEN", help="--sut-url: the server's bearer token (default: "
                    "$SSD_RESNET34_API_KEY)")
    lg.add_argument("--out", default="mlperf-logs", metavar="DIR",
                    help="LoadGen log folder, and where latency.png / stages.png go (default ./mlperf-logs)")
    parser.add_argument("--no-plots", action="store_true",
                        help="skip latency.png / stages.png (and LoadGen's trace, and matplotlib)")
    st = parser.add_argument_group("per-stage breakdown")
    st.add_argument("--stages", action="store_true", help="time each stage separately and print a markdown table")
    st.add_argument("--runs", type=positive_int, default=3, metavar="N", help="--stages: timed runs per image and stage (default 3)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _image_paths(args: argparse.Namespace, default_count: int | None) -> list[str]:
    from ..image.listing import list_images

    folder = args.images
    if not os.path.isdir(folder):
        raise CommandError(f"{folder}: not a folder (--images takes a folder of images)")
    listing = list_images([folder])
    for message in listing.skipped:  # a symbolic link loop, a FIFO ...: the others are measured
        print(f"warning: {message}", file=sys.stderr)
    if listing.errors:
        raise CommandError("; ".join(listing.errors))
    count = args.count or default_count
    return listing.paths[:count] if count else listing.paths


def run(args: argparse.Namespace) -> int:
    """Run ``bench``; returns the exit status (0 ok; failures raise, and the command line reports
    them as one ``error:`` line)."""
    # plots (none for AccuracyOnly): matplotlib checked before the run, so a missing extra costs no measurement
    if not args.no_plots and (args.stages or args.mode == "PerformanceOnly"):
        from ..evaluation._matplotlib import require_matplotlib

        require_matplotlib()
    return _run_stages(args) if args.stages else _run_loadgen(args)


def _forget_plot(out: str, name: str) -> None:
    """Remove an earlier run's ``name`` from ``out``: it must not pass for this run's picture
    (with ``--no-plots`` too, or when this run fails)."""
    try:
        Path(out, name).unlink(missing_ok=True)
    except NotADirectoryError:  # --out is a file: the run itself reports it
        pass


def _plot_latency(result: Any, scenario: str, source: str) -> None:
    """``latency.png`` beside LoadGen's logs, from its trace; p50/p90/p99 from its summary."""
    from ..evaluation.performance.loadgen.trace import TRACE_FILE, percentile, read_latencies
    from ..evaluation.performance.plots import MARKED_PERCENTILES, plot_latency

    latencies = read_latencies(result.log_dir / TRACE_FILE, scenario)
    marks = {f: result.latency_ns.get(f"{f * 100:.2f}", percentile(latencies, f)) for f in MARKED_PERCENTILES}
    unit = "query" if scenario == "MultiStream" else "sample"
    verdict = "VALID" if result.valid else "INVALID"
    path = plot_latency(latencies, result.log_dir / "latency.png", marks_ns=marks, unit_label=unit,
                        title=f"LoadGen {scenario} PerformanceOnly ({source}): {len(latencies)} {unit} latencies, "
                        f"result {verdict}")
    print(f"plot: {path}")


def _settings(args: argparse.Namespace) -> Any:
    from ..evaluation.performance.loadgen import LoadGenSettings

    min_duration, min_queries = args.min_duration_ms, args.min_query_count
    if args.short:
        min_duration = SHORT_MIN_DURATION_MS if min_duration is None else min_duration
        min_queries = SHORT_MIN_QUERY_COUNT if min_queries is None else min_queries
    if args.batch_timeout_ms < 0:
        raise CommandError(f"--batch-timeout-ms must be >= 0, got {args.batch_timeout_ms}")
    if args.user_conf is not None and not os.path.isfile(args.user_conf):
        raise CommandError(f"--user-conf {args.user_conf}: no such file")
    return LoadGenSettings(
        scenario=args.scenario,
        mode=args.mode,
        user_conf=args.user_conf,
        target_qps=args.target_qps,
        target_latency_ms=args.target_latency_ms,
        samples_per_query=args.samples_per_query,
        min_duration_ms=min_duration,
        min_query_count=min_queries,
        performance_count=args.performance_count,
        batch_size=args.batch_size,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
    )


def _run_loadgen(args: argparse.Namespace) -> int:
    from ..evaluation.performance.loadgen import (
        ImageSampleLibrary,
        OracleEngine,
        OracleSampleLibrary,
        run_loadgen,
        score_accuracy_log,
    )
    from ..image import preprocess

    accuracy = args.mode == "AccuracyOnly"
    if accuracy and not args.annotations:
        raise CommandError("--mode AccuracyOnly needs --annotations (the COCO instances file of the --images)")
    if args.oracle and not accuracy:
        raise CommandError("--oracle checks accuracy and runs no model: use it with --mode AccuracyOnly")
    if args.oracle and (args.synthetic or args.model):
        raise CommandError("--oracle replaces the model: do not combine it with --model or --synthetic")
    if args.sut_url and (args.oracle or args.synthetic or args.model):
        raise CommandError("--sut-url runs the model on the server: do not combine it with --model, --synthetic or "
                           "--oracle")
    settings = _settings(args)
    coco_gt = images = None
    if args.annotations:
        from ..evaluation.accuracy.coco_eval import load_ground_truth
        from ..evaluation.accuracy.ground_truth import list_images

        coco_gt = load_ground_truth(args.annotations)
        skipped: list = []
        images = list_images(coco_gt, args.images, args.count, skipped=skipped)
        for message in skipped:  # as eval: a symbolic link loop, a FIFO ... is reported, the others measured
            print(f"warning: {message}", file=sys.stderr)
        if not images:
            raise CommandError(f"none of the {len(coco_gt.imgs)} images of {args.annotations} is in {args.images}")
        paths = [str(image.path) for image in images]
    else:
        paths = _image_paths(args, None)
    if args.sut_url:
        import contextlib

        library = ImageSampleLibrary(paths, preprocess)
        engine, decode = contextlib.nullcontext(), None
    elif args.oracle:
        from .. import postprocess

        library: Any = OracleSampleLibrary(images, seed=args.seed)
        engine: Any = OracleEngine()
        decode = postprocess.create(not args.python_postprocess).decode
    else:
        model = load_model(args)
        library = ImageSampleLibrary(paths, preprocess)
        mode = LATENCY if args.scenario == "SingleStream" else THROUGHPUT
        engine = open_engine(args, model, mode=mode)
        decode = model.postprocessor.decode
    source = "oracle" if args.oracle else "synthetic" if args.synthetic else args.sut_url if args.sut_url else "model"
    _forget_plot(args.out, "latency.png")
    with engine, Progress(len(paths) if accuracy else None, f"bench {args.scenario} {args.mode} ({source})",
                          "samples") as bar:
        result = run_loadgen(library, engine, decode, settings, args.out, progress=bar.update,
                             trace=not (args.no_plots or accuracy), sut_url=args.sut_url,
                             api_key=args.api_key or os.environ.get(API_KEY_ENV) or None)
    print(result.summary.rstrip())
    if not result.valid and result.invalid_reasons:
        print("INVALID because: " + "; ".join(f"{reason}: NO" for reason in result.invalid_reasons))
    if settings.is_short:
        print(
            f"note: LoadGen minimums lowered here (min_duration={settings.min_duration_ms} ms, "
            f"min_query_count={settings.min_query_count}): a short run, not an MLPerf-compliant result",
            file=sys.stderr,
        )
    print(f"LoadGen logs: {result.log_dir} ({result.samples_completed} samples, {len(paths)} images in the QSL)")
    if not (args.no_plots or accuracy):
        _plot_latency(result, args.scenario, source)
    if accuracy:
        evaluation = score_accuracy_log(result.accuracy_log, coco_gt, images)
        print(evaluation.summary)
        print(f"mAP={evaluation.map:.4f}")
    return 0


def _run_stages(args: argparse.Namespace) -> int:
    import warnings

    from ..detector import SSDResNet34
    from ..evaluation.performance.stages import STAGES, format_table, measure_stages

    paths = _image_paths(args, STAGES_DEFAULT_COUNT)
    _forget_plot(args.out, "stages.png")
    if args.synthetic:
        # the full graph (with its decode + NMS tail), so the in-graph postprocess can be timed too
        print(f"warning: --synthetic: random weights (seed {args.seed}); timings only", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = SSDResNet34.synthetic(args.seed, use_native=False, full_graph=True, device=args.device)
    else:  # measure_stages makes both postprocessors itself: the model needs no native one
        model = load_model(argparse.Namespace(**{**vars(args), "python_postprocess": True}))
    with Progress(len(STAGES), "bench --stages", "stages") as bar:
        started: list = []

        def stage(name: str) -> None:  # a stage starts: the one before it is done
            if started:
                bar.update(1)
            started.append(name)
            bar.describe(f"bench --stages: {name}")

        rows = measure_stages(
            paths,
            model,
            runs=args.runs,
            device=args.device,
            threads=args.threads,
            seed=args.seed,
            progress=stage,
            open_engine=lambda mode: open_engine(args, model, mode=mode),
        )
        bar.update(1)
    kind = f"synthetic seed {args.seed}" if args.synthetic else str(model.source_path)
    title = f"Per-stage time per image: median over {args.runs} run(s) x {len(paths)} image(s), batch 1, model: {kind}"
    print(format_table(rows, title=title))
    if not args.no_plots:
        from ..evaluation.performance.plots import plot_stages

        os.makedirs(args.out, exist_ok=True)
        path = plot_stages(rows, os.path.join(args.out, "stages.png"), title=title)
        print(f"plot: {path}")
    return 0
