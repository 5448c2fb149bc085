"""``ssd-resnet34 bench``: MLPerf LoadGen SingleStream / Offline runs, or a per-stage breakdown.

Default: a LoadGen PerformanceOnly test (:mod:`ssd_resnet34.evaluation.loadgen`) of the pipeline
(preprocessed images in memory -> onnxruntime -> postprocessor) over the images of ``--images``;
prints LoadGen's own summary (``mlperf_log_summary.txt``: latency percentiles for SingleStream,
samples per second for Offline) and leaves LoadGen's logs in ``--out``.

``--stages``: time decode, preprocess, inference, native and Python postprocess and the in-graph
decode + NMS of the untruncated graph separately (:mod:`ssd_resnet34.evaluation.stages`) and print a
markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ._common import CommandError, add_model_arguments, load_model, open_engine, positive_int

__all__ = ["register", "run"]

#: ``--short``: LoadGen minimums for a smoke run of a few queries (results are INVALID for MLPerf).
SHORT_MIN_DURATION_MS = 0
SHORT_MIN_QUERY_COUNT = 2
SHORT_OFFLINE_EXPECTED_QPS = 0.1
#: Default number of images for ``--stages`` (each costs seconds of CPU inference per run).
STAGES_DEFAULT_COUNT = 2


_DESCRIPTION = """\
Default: an MLPerf LoadGen PerformanceOnly test (SingleStream or Offline) of the pipeline
(images preprocessed into memory by the QSL -> onnxruntime -> postprocessor in the SUT) over the
images of --images. Prints LoadGen's own summary (mlperf_log_summary.txt: latency percentiles for
SingleStream, samples per second for Offline); LoadGen's logs stay in --out.

--stages: time decode, preprocess, inference, the native and the Python postprocess and the
in-graph decode + NMS of the untruncated graph separately; prints a markdown table."""


def register(subparsers: Any) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="MLPerf LoadGen SingleStream/Offline run, or --stages: per-stage timings",
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
    lg.add_argument("--scenario", choices=("SingleStream", "Offline"), default="SingleStream", help="default SingleStream")
    lg.add_argument(
        "--min-duration-ms", type=positive_int, metavar="MS", help="LoadGen min_duration_ms (default 10000; --short: 0)"
    )
    lg.add_argument("--min-query-count", type=positive_int, metavar="N", help="LoadGen min_query_count (default 100)")
    lg.add_argument(
        "--expected-qps", type=float, metavar="F", help="Offline: LoadGen offline_expected_qps, > 0 (default 1.0)"
    )
    lg.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="Offline: images per inference (default 1)")
    lg.add_argument(
        "--performance-count", type=positive_int, metavar="N", help="samples LoadGen keeps preprocessed in memory (default min(images, 64); 17 MB each)"
    )
    lg.add_argument(
        "--short",
        action="store_true",
        help=f"smoke run: min_duration 0 ms, {SHORT_MIN_QUERY_COUNT} queries (Offline: expected qps "
        f"{SHORT_OFFLINE_EXPECTED_QPS}) unless given; not an MLPerf-compliant result even where LoadGen says VALID",
    )
    lg.add_argument("--out", default="mlperf-logs", metavar="DIR", help="LoadGen log folder (default ./mlperf-logs)")
    st = parser.add_argument_group("per-stage breakdown")
    st.add_argument("--stages", action="store_true", help="time each stage separately and print a markdown table")
    st.add_argument("--runs", type=positive_int, default=3, metavar="N", help="--stages: timed runs per image and stage (default 3)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _image_paths(args: argparse.Namespace, default_count: int | None) -> list[str]:
    from .detect import collect_images

    folder = args.images
    if not os.path.isdir(folder):
        raise CommandError(f"{folder}: not a folder (--images takes a folder of images)")
    paths, errors = collect_images([folder])
    if errors:
        raise CommandError("; ".join(errors))
    count = args.count or default_count
    return paths[:count] if count else paths


def run(args: argparse.Namespace) -> int:
    """Run ``bench``; returns the exit status (0 ok; failures raise, and the command line reports
    them as one ``error:`` line)."""
    return _run_stages(args) if args.stages else _run_loadgen(args)


def _run_loadgen(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation.loadgen import ImageSampleLibrary, LoadGenSettings, run_loadgen

    paths = _image_paths(args, None)
    min_duration = args.min_duration_ms
    min_queries = args.min_query_count
    qps = args.expected_qps
    if args.short:
        min_duration = SHORT_MIN_DURATION_MS if min_duration is None else min_duration
        min_queries = SHORT_MIN_QUERY_COUNT if min_queries is None else min_queries
        qps = SHORT_OFFLINE_EXPECTED_QPS if qps is None else qps
    settings = LoadGenSettings(
        scenario=args.scenario,
        min_duration_ms=min_duration,
        min_query_count=min_queries,
        offline_expected_qps=1.0 if qps is None else qps,
        performance_count=args.performance_count,
        batch_size=args.batch_size,
    )
    model = load_model(args)
    library = ImageSampleLibrary(paths, model.preprocess)
    with open_engine(args, model) as sess:
        bar = tqdm(desc=f"LoadGen {args.scenario}", unit="sample", file=sys.stderr, dynamic_ncols=True)

        def infer(batch: Any) -> list:
            detections = model.postprocessor.decode(sess.run(batch))
            bar.update(len(detections))
            return detections

        with bar:
            result = run_loadgen(library, infer, settings, args.out)
    print(result.summary.rstrip())
    if min_duration is not None or min_queries is not None:
        print(
            f"note: LoadGen minimums set here (min_duration_ms={min_duration}, min_query_count={min_queries}): "
            "a short run, not an MLPerf-compliant result",
            file=sys.stderr,
        )
    print(f"LoadGen logs: {result.log_dir} ({result.samples_completed} samples, {len(paths)} images in the QSL)")
    return 0


def _run_stages(args: argparse.Namespace) -> int:
    import warnings

    from ..detector import SSDResNet34
    from ..evaluation.stages import format_table, measure_stages

    paths = _image_paths(args, STAGES_DEFAULT_COUNT)
    if args.synthetic:
        # the full graph (with its decode + NMS tail), so the in-graph postprocess can be timed too
        print(f"warning: --synthetic: random weights (seed {args.seed}); timings only", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = SSDResNet34.synthetic(args.seed, use_native=False, full_graph=True, device=args.device)
    else:
        args.python_postprocess = True  # measure_stages makes both postprocessors itself
        model = load_model(args)
    rows = measure_stages(
        paths,
        model,
        runs=args.runs,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        progress=lambda name: print(f"timing {name} ...", file=sys.stderr),
    )
    kind = f"synthetic seed {args.seed}" if args.synthetic else str(model.source_path)
    title = f"Per-stage time per image: median over {args.runs} run(s) x {len(paths)} image(s), batch 1, model: {kind}"
    print(format_table(rows, title=title))
    return 0
