"""``ssd-resnet34 detect IMAGES...``: detect objects in image files, write COCO results and drawings.

Writes ``OUT/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` xywh in
pixels, ``score``); the image id is taken from COCO file names (``000000397133.jpg``), other
images get running numbers from 1 (skipping ids COCO names use) and then ``OUT/image_ids.json``
maps each id to its file. Unless ``--no-draw``, one copy of each image with labelled boxes,
``OUT/<stem><ext>``. ``OUT/run.json`` lists the files of the run.

The files are written as one set when the run ends: they replace the previous run's set (whose
files not rewritten are removed), so OUT never mixes two runs. A run that processed no image
leaves OUT as it was. After Ctrl-C, the images finished so far are written as a set.

Exit status 0 when every image was processed, 1 when an input was bad (one ``error: ...`` line
each on stderr, the good ones are still processed and written) or the model cannot be loaded,
2 for usage errors, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from ..distributed.cli import add_ray_arguments, detect_command
from ..pipeline import MAX_BATCH_SIZE, check_batch_size
from ..postprocess.defaults import SCORE_THRESHOLD
from ._common import (
    CommandError,
    add_classes_argument,
    add_model_arguments,
    graceful_interrupt,
    load_model,
    open_engine,
    positive_int,
    probability,
)

__all__ = ["IMAGE_SUFFIXES", "register", "run", "collect_images"]

#: File suffixes taken from a folder (files named on the command line are taken whatever their name).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
# Suffixes OpenCV writes; a drawing of any other image is written as PNG.
_WRITABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect objects in images: COCO results JSON and images with labelled boxes",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders (their image files, sorted)")
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
    add_ray_arguments(parser)  # --ray [ADDRESS]: distributed/cli.py
    parser.set_defaults(func=run)


def batch_size(text: str) -> int:
    """argparse type of ``--batch-size``: an int in 1..MAX_BATCH_SIZE (what a batch costs is in
    the message, :func:`ssd_resnet34.pipeline.check_batch_size`)."""
    value = positive_int(text)
    try:
        return check_batch_size(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("batch_size", "--batch-size", 1)) from None


def collect_images(inputs: List[str]) -> Tuple[List[str], List[str]]:
    """Expand IMAGES: files as given, folders to their image files (by ``IMAGE_SUFFIXES``, sorted,
    hidden files skipped; not recursive).

    Returns ``(paths, errors)``: the paths (each file once) and one message per bad input (missing
    path, folder without images).
    """
    paths: List[str] = []
    errors: List[str] = []
    seen = set()

    def add(path: str) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                entry.path
                for entry in os.scandir(item)
                if entry.is_file()
                and not entry.name.startswith(".")
                and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
            )
            if not found:
                errors.append(f"{item}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for path in found:
                add(path)
        elif os.path.lexists(item):
            add(item)
        else:
            errors.append(f"{item}: no such file or folder")
    return paths, errors


def _output_paths(paths: List[str], out_dir: Path) -> Dict[str, Path]:
    """``OUT/<stem><ext>`` per image, unique, never one of the input files."""
    inputs = {os.path.realpath(p) for p in paths}
    used = set()
    outputs: Dict[str, Path] = {}
    for path in paths:
        stem, suffix = os.path.splitext(os.path.basename(path))
        suffix = suffix.lower() if suffix.lower() in _WRITABLE_SUFFIXES else ".png"
        candidate, k = out_dir / f"{stem}{suffix}", 1
        while candidate.name.lower() in used or os.path.realpath(candidate) in inputs:
            k += 1
            candidate = out_dir / f"{stem}-{k}{suffix}"
        used.add(candidate.name.lower())
        outputs[path] = candidate
    return outputs


def _summary(path: str, detections) -> str:
    if not detections:
        return f"{path}: 0 detections"
    top = max(detections, key=lambda d: d.score)
    plural = "" if len(detections) == 1 else "s"
    return f"{path}: {len(detections)} detection{plural}, top: {top.label} {top.score:.2f}"


def _encode_drawing(image: np.ndarray, detections, suffix: str) -> bytes:
    from ..output.draw import draw_detections

    encoded_ok, encoded = cv2.imencode(suffix, draw_detections(image, detections))
    if not encoded_ok:
        raise OSError(f"OpenCV could not encode {suffix}")
    return encoded.tobytes()


def run(args: argparse.Namespace) -> int:
    """Run ``detect`` with parsed ``args``; returns the exit status (0; 1 after a bad input or when
    nothing could be processed; 130 when interrupted)."""
    from tqdm import tqdm

    from ..output.coco_results import assign_image_ids, to_coco_results, write_coco_results
    from ..output.run_folder import RunFolder

    if args.ray is not None:  # --ray [ADDRESS]: the same detection on a Ray cluster
        return detect_command(args)
    paths, errors = collect_images(args.images)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    if args.limit is not None:
        paths = paths[: args.limit]
    out_dir = Path(args.out)
    if not paths:
        raise CommandError(f"no image to process; {out_dir} is left as it was")
    model = load_model(args, score_threshold=args.score_threshold)
    if args.classes is not None:
        model.configure_postprocessor(score_threshold=args.score_threshold, classes=args.classes)
    engine = open_engine(args, model)
    try:
        folder = RunFolder(out_dir, "detect")
    except OSError as error:
        engine.close()
        raise CommandError(f"cannot use the output folder {out_dir}: {error}") from None
    ok = not errors
    targets = _output_paths(paths, out_dir)
    processed: List[Tuple[str, list]] = []  # (path, detections) of each image that went through
    keep: List[str] = []  # the output files of those images
    interrupted = False
    bar = tqdm(total=len(paths), unit="image", file=sys.stderr, disable=len(paths) <= 1)
    with folder, bar, engine, graceful_interrupt() as stop:
        try:
            for outcome in model.iter_detect(paths, engine, args.batch_size, keep_images=not args.no_draw,
                                             exact=args.exact):
                bar.update(1)
                if outcome.error is not None:
                    ok = False
                    tqdm.write(f"error: {outcome.error}", file=sys.stderr)
                else:
                    path = outcome.source
                    if not args.no_draw:
                        name = targets[path].name
                        try:
                            folder.path(name).write_bytes(_encode_drawing(outcome.image, outcome.results, targets[path].suffix))
                            keep.append(name)
                        except (OSError, cv2.error) as error:
                            ok = False
                            tqdm.write(f"error: {out_dir / name}: cannot write the drawing: {error}", file=sys.stderr)
                    processed.append((path, outcome.results))
                    tqdm.write(_summary(path, outcome.results), file=sys.stdout)
                if stop.requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:  # a second Ctrl-C: keep what is consistent so far
            interrupted = True
            keep = [targets[path].name for path, _ in processed if targets[path].name in keep]
        if not processed:
            raise CommandError(f"no image could be processed; {out_dir} is left as it was")
        # Ids once the good images are known, so running numbers count only those.
        image_ids, running_numbers = assign_image_ids([path for path, _ in processed])
        records = [record for path, found in processed for record in to_coco_results(found, image_ids[path])]
        write_coco_results(folder.path("detections.json"), records)
        keep.append("detections.json")
        if running_numbers:
            folder.write_json("image_ids.json", {str(image_ids[path]): path for path, _ in processed}, indent=1)
            keep.append("image_ids.json")
        folder.commit({"images": len(processed), "detections": len(records), "interrupted": interrupted}, only=keep)
    print(f"wrote {out_dir / 'detections.json'} ({len(records)} detections, {len(processed)} image{'s' if len(processed) != 1 else ''})"
          + (f", {out_dir / 'image_ids.json'}" if running_numbers else ""), file=sys.stderr)
    if interrupted:
        print(f"interrupted: {out_dir} holds the {len(processed)} image(s) finished before Ctrl-C", file=sys.stderr)
        return 130
    return 0 if ok else 1
