"""``ssd-resnet34 eval``: COCO mAP of the pipeline on a folder of COCO images.

Runs the detector's pipeline (``SSDResNet34.iter_detect``) over the images of the annotation
file found in ``--images`` (sorted by image id, ``--limit`` the first N), maps model labels to
COCO category ids, writes ``OUT/coco_results.json`` and ``OUT/coco_eval.json``, and prints the
COCO summary (12 AP/AR lines) for exactly those images and ``mAP=...`` (AP@[.5:.95]), as
MLCommons' ``tools/accuracy-coco.py`` (mlcommons/inference, ``vision/classification_and_detection``).
Beside them (unless ``--no-plots``): ``pr_curves.png``, ``per_class_ap.csv``,
``confusion_matrix.csv`` and ``confusion_matrix.png`` (``--conf-threshold``), by
:func:`ssd_resnet34.evaluation.accuracy.plots.write_eval_plots`.

``--oracle`` replaces the model by :func:`ssd_resnet34.evaluation.accuracy.oracle.encode_ground_truth`:
head outputs encoded from each image's ground truth, decoded by the postprocessor. This checks the chain
(postprocess, label mapping, pixel boxes, evaluator) end to end without the weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator

from .ray import add_ray_arguments, eval_records
from ..evaluation.accuracy.coco_eval import EVALUATORS
from ..evaluation.accuracy.confusion import CONF_THRESHOLD
from ..postprocess.defaults import SCORE_THRESHOLD
from ._common import (
    CommandError,
    add_classes_argument,
    add_model_arguments,
    load_model,
    open_engine,
    positive_int,
    probability,
)
from ._progress import Progress, say

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``eval`` sub-command."""
    parser = subparsers.add_parser(
        "eval",
        help="COCO mAP on a folder of COCO images (pycocotools)",
        description="Detect on the COCO images of --annotations found in --images, write "
        "OUT/coco_results.json and print the COCO bbox summary and mAP for exactly those images.",
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder with the COCO images (e.g. val2017)")
    parser.add_argument(
        "--annotations", required=True, metavar="JSON", help="COCO instances file (e.g. instances_val2017.json)"
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="no model: decode head outputs encoded from the ground truth (checks postprocess, "
        "label mapping and evaluation end to end; not a model's accuracy)",
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate only the first N images (by id)")
    parser.add_argument(
        "--score-threshold", type=probability, default=SCORE_THRESHOLD, metavar="F",
        help=f"the postprocessor's score threshold (default {SCORE_THRESHOLD}, as MLPerf)",
    )
    add_classes_argument(parser)
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="images per inference (default 1)")
    parser.add_argument(
        "--out", default="coco-eval", metavar="DIR", help="output folder for coco_results.json (default ./coco-eval)"
    )
    parser.add_argument(
        "--evaluator",
        choices=EVALUATORS,
        default="pycocotools",
        help="COCO evaluator (default pycocotools; faster-coco-eval, if installed, gives the same numbers)",
    )
    parser.add_argument(
        "--conf-threshold", type=probability, default=CONF_THRESHOLD, metavar="F",
        help=f"confusion matrix: keep detections with score >= F (default {CONF_THRESHOLD})",
    )
    parser.add_argument(
        "--no-plots", action="store_true",
        help="skip pr_curves.png, per_class_ap.csv and confusion_matrix.csv/.png (and matplotlib)",
    )
    add_model_arguments(parser)
    add_ray_arguments(parser)  # --ray [ADDRESS]: cli/ray.py
    parser.set_defaults(func=run)


def _postprocess_options(args: argparse.Namespace) -> dict:
    """The postprocess options of ``--score-threshold`` and ``--classes``."""
    return {"score_threshold": args.score_threshold, "classes": args.classes}


def _model_detections(args: argparse.Namespace, images: list) -> Iterator[tuple[Any, list]]:
    """(image, its ObjectDetectionResult list) per image, in order, from the model's pipeline.
    A COCO image that cannot be read is an error of the whole evaluation (its mAP would be wrong)."""
    model = load_model(args)
    model.configure_postprocessor(**_postprocess_options(args))
    with open_engine(args, model) as engine:
        for image, outcome in zip(images, model.iter_detect([str(im.path) for im in images], engine, args.batch_size)):
            if outcome.error is not None:
                raise CommandError(str(outcome.error))
            yield image, outcome.results


def _oracle_detections(args: argparse.Namespace, images: list) -> Iterator[tuple[Any, list]]:
    """The same from :func:`ssd_resnet34.evaluation.accuracy.oracle.encode_coco_image` of each
    image's ground truth (``CocoImage.boxes``/``labels``; seed = --seed + image id)."""
    import numpy as np

    from .. import postprocess
    from ..evaluation.accuracy.oracle import encode_coco_image

    postprocessor = postprocess.create(not args.python_postprocess, **_postprocess_options(args))
    for start in range(0, len(images), args.batch_size):
        chunk = images[start : start + args.batch_size]
        per_image = [encode_coco_image(im, seed=args.seed) for im in chunk]
        heads = [np.concatenate(parts, axis=0) for parts in zip(*per_image)]
        contexts = [{"width": im.width, "height": im.height} for im in chunk]
        yield from zip(chunk, postprocessor(heads, contexts))


def run(args: argparse.Namespace) -> int:
    """Run ``eval``; returns the exit status (0 ok; failures raise :class:`CommandError` and
    the errors of the libraries underneath, which the command line reports)."""
    from .._extras import install_hint
    from ..evaluation.accuracy.coco_eval import (
        available_evaluators,
        evaluate,
        load_ground_truth,
    )
    from ..evaluation.accuracy.ground_truth import list_images
    from ..output.coco_results import to_coco_results, write_coco_results
    from ..output.run_folder import RunFolder

    if args.oracle and (args.synthetic or args.model):
        raise CommandError("--oracle replaces the model: do not combine it with --model or --synthetic")
    if args.evaluator not in available_evaluators():
        fix = install_hint("eval") if args.evaluator == "pycocotools" else f"pip install {args.evaluator}"
        raise CommandError(f"evaluator {args.evaluator!r} is not installed: {fix}")
    if not args.no_plots:  # before the run: a missing extra costs no detection
        from ..evaluation._matplotlib import require_matplotlib

        require_matplotlib()
    gt = load_ground_truth(args.annotations)
    skipped: list = []
    images = list_images(gt, args.images, args.limit, skipped=skipped)
    for message in skipped:  # a symbolic link loop, a FIFO ... at an annotated name: the others are evaluated
        say(f"warning: {message}", sys.stderr)
    if not images:
        raise CommandError(f"none of the {len(gt.imgs)} images of {args.annotations} is in {args.images}")
    out = Path(args.out)

    source = "oracle" if args.oracle else "synthetic" if args.synthetic else "model"
    if args.ray is not None:  # --ray [ADDRESS]: the same detection on a Ray cluster
        records = eval_records(args, images)
    else:
        detections = _oracle_detections(args, images) if args.oracle else _model_detections(args, images)
        records = []
        with Progress(len(images), f"eval ({source})") as bar:
            for image, found in detections:
                records.extend(to_coco_results(found, image.image_id))
                bar.update(1)

    result = evaluate(gt, records, [im.image_id for im in images], evaluator=args.evaluator)
    with RunFolder(out, "eval") as folder:
        write_coco_results(folder.path("coco_results.json"), records)
        folder.write_json(
            "coco_eval.json",
            {
                "source": source,
                "evaluator": result.evaluator,
                "images": len(result.image_ids),
                "detections": result.num_detections,
                "metrics": result.as_dict(),
            },
            indent=2,
        )
        summary = {"images": len(images), "detections": len(records), "mAP": result.map}
        if not args.no_plots:
            from ..evaluation.accuracy.plots import write_eval_plots

            summary["confusion"] = write_eval_plots(folder.path, gt, result, records,
                                                    conf_threshold=args.conf_threshold, source=source)
        folder.commit(summary)
    say(f"{len(images)} images, {len(records)} detections -> {out / 'coco_results.json'}")
    if not args.no_plots:  # before the summary: mAP= stays the last line, as accuracy-coco.py prints it
        say(f"plots: {', '.join(str(out / name) for name in ('pr_curves.png', 'confusion_matrix.png'))}")
    say(result.summary)
    say(f"mAP={result.map:.4f}")
    return 0
