"""``ssd-resnet34 detect IMAGES...``: detect objects in image files, write COCO results and drawings.

Writes ``OUT/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` xywh in
pixels, ``score``); the image id is taken from COCO file names (``000000397133.jpg``), other
images get running numbers from 1 (skipping ids COCO names use) and then ``OUT/image_ids.json``
maps each id to its file. Unless ``--no-draw``, one copy of each image with labelled boxes,
``OUT/<stem><ext>``. Exit status 0 when every image was processed, 1 when an input was bad (one
``error: ...`` line each on stderr, the good ones are still processed and written) or the model
cannot be loaded, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from . import CommandError, add_model_arguments, load_model, positive_int, probability

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
        default=0.05,
        metavar="F",
        help="the postprocessor's score threshold: keep (anchor, class) candidates scoring above F (default 0.05, as MLPerf)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="images per inference (default 1)")
    parser.add_argument("--no-draw", action="store_true", help="do not write the images with boxes drawn")
    parser.set_defaults(func=run)


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


def _assign_image_ids(paths: List[str]) -> Tuple[Dict[str, int], bool]:
    """COCO ids from COCO file names, running numbers from 1 (skipping COCO ids) for the rest."""
    from ..coco_results import image_id_from_file_name

    ids: Dict[str, int] = {}
    taken = set()
    for path in paths:
        image_id = image_id_from_file_name(path)
        if image_id is not None and image_id not in taken:
            ids[path] = image_id
            taken.add(image_id)
    running = 0
    for path in paths:
        if path not in ids:
            running += 1
            while running in taken:
                running += 1
            ids[path] = running
    return ids, running > 0


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


def run(args: argparse.Namespace) -> int:
    """Run ``detect`` with parsed ``args``; returns the exit status (0, or 1 after a bad input)."""
    from tqdm import tqdm

    from .. import session as sessions
    from ..coco_results import to_coco_results, write_coco_results
    from ..draw import draw_detections
    from ..preprocessing import ImageError, preprocess, read_image

    paths, errors = collect_images(args.images)
    for message in errors:
        print(f"error: {message}", file=sys.stderr)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create the output folder {out_dir}: {error}", file=sys.stderr)
        return 1
    ok = not errors
    outputs = _output_paths(paths, out_dir)
    processed: List[Tuple[str, list]] = []  # (path, detections) of each image that went through

    if paths:
        try:
            model = load_model(args, score_threshold=args.score_threshold)
        except CommandError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        pending: List[Tuple[str, np.ndarray]] = []

        def flush(sess) -> None:
            nonlocal ok
            batch, contexts = preprocess([image for _, image in pending])
            results = model.postprocessor(sess.run(batch), contexts)
            for (path, image), detections in zip(pending, results):
                processed.append((path, detections))
                if not args.no_draw:
                    drawn = draw_detections(image, detections)
                    target = outputs[path]
                    try:
                        encoded_ok, encoded = cv2.imencode(target.suffix, drawn)
                        if not encoded_ok:
                            raise OSError(f"OpenCV could not encode {target.suffix}")
                        target.write_bytes(encoded.tobytes())
                    except (OSError, cv2.error) as error:
                        ok = False
                        tqdm.write(f"error: {target}: cannot write the drawing: {error}", file=sys.stderr)
                tqdm.write(_summary(path, detections), file=sys.stdout)
                bar.update(1)
            pending.clear()

        try:
            opened = sessions.create(model, device=model.device)
        except (ValueError, RuntimeError) as error:  # unknown device, or its provider is missing
            print(f"error: {error}", file=sys.stderr)
            return 1
        bar = tqdm(total=len(paths), unit="image", file=sys.stderr, disable=len(paths) <= 1)
        with bar, opened as sess:
            for path in paths:
                try:
                    pending.append((path, read_image(path)))
                except ImageError as error:
                    ok = False
                    tqdm.write(f"error: {error}", file=sys.stderr)
                    bar.update(1)
                    continue
                if len(pending) == args.batch_size:
                    flush(sess)
            if pending:
                flush(sess)

    # Ids once the good images are known, so running numbers count only those.
    image_ids, running_numbers = _assign_image_ids([path for path, _ in processed])
    records = [record for path, found in processed for record in to_coco_results(found, image_ids[path])]
    write_coco_results(out_dir / "detections.json", records)
    written = [f"{out_dir / 'detections.json'} ({len(records)} detections, {len(processed)} images)"]
    if running_numbers:
        mapping = {str(image_ids[path]): path for path, _ in processed}
        (out_dir / "image_ids.json").write_text(json.dumps(mapping, indent=1) + "\n", encoding="utf-8")
        written.append(str(out_dir / "image_ids.json"))
    print("wrote " + ", ".join(written), file=sys.stderr)
    return 0 if ok else 1
