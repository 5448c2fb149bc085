"""``ssd-resnet34 eval``: COCO mAP of the pipeline on a folder of COCO images.

Runs preprocess -> onnxruntime session -> postprocessor over the images of the annotation
file found in ``--images`` (sorted by image id, ``--limit`` the first N), maps model labels to
COCO category ids, writes ``OUT/coco_results.json`` and ``OUT/coco_eval.json``, and prints the
COCO summary (12 AP/AR lines) for exactly those images and ``mAP=...`` (AP@[.5:.95]), as
MLCommons' ``tools/accuracy-coco.py`` (mlcommons/inference, ``vision/classification_and_detection``).

``--oracle`` replaces the model by :func:`ssd_resnet34.oracle.encode_ground_truth`: head outputs
encoded from each image's ground truth, decoded by the postprocessor. This checks the chain
(postprocess, label mapping, pixel boxes, evaluator) end to end without the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from . import CommandError, add_model_arguments, load_model, positive_int

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
    parser.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="images per inference (default 1)")
    parser.add_argument(
        "--out", default="coco-eval", metavar="DIR", help="output folder for coco_results.json (default ./coco-eval)"
    )
    parser.add_argument(
        "--evaluator",
        choices=("pycocotools", "faster-coco-eval"),
        default="pycocotools",
        help="COCO evaluator (default pycocotools; faster-coco-eval, if installed, gives the same numbers)",
    )
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def _model_batches(args: argparse.Namespace, images: list) -> Iterator[tuple[list, list]]:
    """(images, per-image ObjectDetectionResult lists) for each batch, from the model."""
    from .. import session as session_module

    model = load_model(args)
    with session_module.create(model, device=args.device) as sess:
        for start in range(0, len(images), args.batch_size):
            chunk = images[start : start + args.batch_size]
            batch, contexts = model.preprocess([str(im.path) for im in chunk])
            yield chunk, model.postprocessor(sess.run(batch), contexts)


def _oracle_batches(args: argparse.Namespace, images: list, dataset: dict) -> Iterator[tuple[list, list]]:
    """The same from :func:`ssd_resnet34.oracle.encode_ground_truth` (seed = --seed + image id);
    ``dataset``: the annotation file as already loaded for the evaluator."""
    import numpy as np

    from ..oracle import encode_ground_truth, load_coco_ground_truth

    if args.python_postprocess:
        from ..reference import PythonPostProcessor as PostProcessor
    else:
        from ..postprocess import NativePostProcessor as PostProcessor
    postprocessor = PostProcessor()
    truth = load_coco_ground_truth(dataset, [im.image_id for im in images])
    for start in range(0, len(images), args.batch_size):
        chunk = images[start : start + args.batch_size]
        gts = truth[start : start + args.batch_size]
        per_image = [encode_ground_truth(gt.boxes, gt.labels, seed=args.seed + gt.image_id) for gt in gts]
        heads = [np.concatenate(parts, axis=0) for parts in zip(*per_image)]
        contexts = [{"width": gt.width, "height": gt.height} for gt in gts]
        yield chunk, postprocessor(heads, contexts)


def run(args: argparse.Namespace) -> int:
    """Run ``eval``; returns the exit status (0 ok, 1 a reported failure)."""
    try:
        return _run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ..coco_results import to_coco_results, write_coco_results
    from ..evaluation import available_evaluators, evaluate, list_images, load_ground_truth

    if args.oracle and (args.synthetic or args.model):
        raise CommandError("--oracle replaces the model: do not combine it with --model or --synthetic")
    if args.evaluator not in available_evaluators():
        raise CommandError(f"evaluator {args.evaluator!r} is not installed (pip install {args.evaluator})")
    gt = load_ground_truth(args.annotations)
    images = list_images(gt, args.images, args.limit)
    if not images:
        raise CommandError(f"none of the {len(gt.imgs)} images of {args.annotations} is in {args.images}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    source = "oracle" if args.oracle else "synthetic" if args.synthetic else "model"
    batches = _oracle_batches(args, images, gt.dataset) if args.oracle else _model_batches(args, images)
    records: list[dict] = []
    with _progress(len(images), f"eval ({source})") as bar:
        for chunk, detections in batches:
            for image, dets in zip(chunk, detections):
                records.extend(to_coco_results(dets, image.image_id))
            bar.update(len(chunk))
    results_path = write_coco_results(out / "coco_results.json", records)

    result = evaluate(gt, records, [im.image_id for im in images], evaluator=args.evaluator)
    (out / "coco_eval.json").write_text(
        json.dumps(
            {
                "source": source,
                "evaluator": result.evaluator,
                "images": len(result.image_ids),
                "detections": result.num_detections,
                "metrics": result.as_dict(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(images)} images, {len(records)} detections -> {results_path}")
    print(result.summary)
    print(f"mAP={result.map:.4f}")
    return 0
