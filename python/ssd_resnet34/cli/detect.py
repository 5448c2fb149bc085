"""``ssd-resnet34 detect IMAGES...``: detect objects in image files, write COCO results and drawings.

Writes ``OUT/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` xywh in
pixels, ``score``); the image id is taken from COCO file names (``000000397133.jpg``), other
images get running numbers from 1 (skipping ids COCO names use) and then ``OUT/image_ids.json``
maps each id to its file. Unless ``--no-draw``, one copy of each image with labelled boxes,
``OUT/<stem><ext>``. ``OUT/run.json`` lists the files of the run.

The files are written as one set when the run ends: they replace the previous run's set (whose
files not rewritten are removed), so OUT never mixes two runs. A run that processed no image
leaves OUT as it was. After Ctrl-C or SIGTERM, the images finished so far are written as a set.
A closed stdout (``detect ... | head -1``) only drops the report lines.

Exit status 0 when every image was processed, 1 when an input was bad (one ``error: ...`` line
each on stderr, the good ones are still processed and written) or the model cannot be loaded,
2 for usage errors, 130 when interrupted by Ctrl-C, 143 by SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .ray import add_ray_arguments, detect_command
from ..image.listing import display_path, list_images
from ..pipeline import MAX_BATCH_SIZE, check_batch_size
from ..postprocess.defaults import SCORE_THRESHOLD
from ._common import (
    CommandError,
    add_classes_argument,
    add_model_arguments,
    graceful_interrupt,
    open_run,
    positive_int,
    probability,
)
from ._progress import Progress, say
from ._video import add_video_arguments, run_video, wants_video

__all__ = ["register", "run"]

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images: COCO results JSON and images with labelled boxes",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="*", metavar="IMAGES",
                        help="image files or folders (their image files, sorted); or video files and stream URLs (see the video options)")
    add_model_arguments(parser)
    parser.add_argument("--out", default="detections", metavar="DIR", help="output folder (default: ./detections)")
    parser.add_argument(
        "--score-threshold",
        type=probability,
        default=SCORE_THRESHOLD,
        metavar="F",
        help=f"the postprocessor's score threshold: keep (anchor, class) candidates scoring above F (default {SCORE_THRESHOLD}, as MLPerf)",
    )
    add_classes_argument(parser)
    parser.add_argument("--batch-size", type=batch_size, default=1, metavar="N",
                        help=f"images per inference, 1..{MAX_BATCH_SIZE} (default 1; about 22 MB of memory per image)")
    parser.add_argument("--exact", action="store_true",
                        help="preprocess with MLPerf's float32 path as written (bit-for-bit; several times slower)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="process only the first N images")
    parser.add_argument("--no-draw", action="store_true", help="do not write the images with boxes drawn")
    parser.add_argument("--clip", action="store_true",
                        help="clip the boxes to the image in detections.json and the drawings (default: not clipped, "
                        "as the MLPerf reference: a box may reach outside the image)")
    add_ray_arguments(parser)  # --ray [ADDRESS]: cli/ray.py
    add_video_arguments(parser)  # --camera, --every, --realtime, --timeout: cli/_video.py
    parser.set_defaults(func=run, usage_error=_usage_error)


def _usage_error(args: argparse.Namespace) -> str:
    """The usage error argparse cannot state (exit 2), or ""."""
    if not args.images and getattr(args, "camera", None) is None:
        return "give image files or folders, video files, stream URLs or --camera N"
    return ""


def batch_size(text: str) -> int:
    """argparse type of ``--batch-size``: an int in 1..MAX_BATCH_SIZE (what a batch costs is in
    the message, :func:`ssd_resnet34.pipeline.check_batch_size`)."""
    value = positive_int(text)
    try:
        return check_batch_size(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("batch_size", "--batch-size", 1)) from None


def _summary(path: str, detections) -> str:
    """``path: N detections, top: <class> <score>``; a name with a newline or a control character
    is quoted (:func:`~ssd_resnet34.image.listing.display_path`), so it cannot forge a line."""
    shown = display_path(path)
    if not detections:
        return f"{shown}: 0 detections"
    top = max(detections, key=lambda d: d.score)
    plural = "" if len(detections) == 1 else "s"
    return f"{shown}: {len(detections)} detection{plural}, top: {top.label} {top.score:.2f}"


def _message(error: BaseException) -> str:
    """An image's error as ``path: reason``, the path quoted as :func:`_summary` does."""
    from ..image import ImageError

    if isinstance(error, ImageError):
        return f"{display_path(error.path)}: {error.reason}"
    return str(error)


def run(args: argparse.Namespace) -> int:
    """Run ``detect`` with parsed ``args``; returns the exit status (0; 1 after a bad input or when
    nothing could be processed; 130 when interrupted by Ctrl-C, 143 by SIGTERM)."""
    from ..output.coco_results import image_records
    from ..output.run_writer import detection_formats

    if wants_video(args):  # video files, stream URLs, --camera: cli/_video.py
        return run_video(args)
    if args.ray is not None:  # --ray [ADDRESS]: the same detection on a Ray cluster
        return detect_command(args)
    listing = list_images(args.images)
    paths, errors = listing.paths, listing.problems
    for message in errors:
        say(f"error: {message}", sys.stderr)
    if args.limit is not None:
        paths = paths[: args.limit]
    out_dir = Path(args.out)
    if not paths:
        raise CommandError(f"no image to process; {out_dir} is left as it was")
    model, engine, writer = open_run(args, out_dir, "detect",
                                     detection_formats(paths, out_dir, drawings=not args.no_draw, table=False))
    ok = not errors
    interrupted = False
    bar = Progress(len(paths), "detect", enabled=len(paths) > 1)
    with writer, bar, engine, graceful_interrupt() as stop:
        try:
            for outcome in model.iter_detect(paths, engine, args.batch_size, keep_images=not args.no_draw,
                                             exact=args.exact):
                bar.update(1)
                if outcome.error is not None:
                    ok = False
                    bar.write(f"error: {_message(outcome.error)}", sys.stderr)
                else:
                    found = outcome.detections.clip() if args.clip else outcome.detections
                    width, height = outcome.context["width"], outcome.context["height"]
                    results = found.to_results(width, height)
                    problems = writer.add(outcome.source, width=width, height=height, records=image_records(results),
                                          image=outcome.image, results=results)
                    for problem in problems:
                        ok = False
                        bar.write(f"error: {problem}", sys.stderr)
                    bar.write(_summary(outcome.source, results), sys.stdout)
                if stop.requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: keep what is consistent so far
            interrupted = True
        if not writer.processed:
            raise CommandError(f"no image could be processed; {out_dir} is left as it was")
        writer.commit({"images": writer.processed, "detections": writer.num_detections, "interrupted": interrupted,
                       "clipped": bool(args.clip)})
    say(f"wrote {writer.describe()}", sys.stderr)
    if interrupted:
        by = "SIGTERM" if stop.signum == signal.SIGTERM else "Ctrl-C"
        say(f"interrupted: {out_dir} holds the {writer.processed} image(s) finished before {by}", sys.stderr)
        return 128 + (stop.signum or signal.SIGINT)
    return 0 if ok else 1
