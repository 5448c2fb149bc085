"""``--ray [ADDRESS]`` of the ``detect`` and ``eval`` commands: the same detection on a Ray cluster.

``detect IMAGES... --ray`` starts a local Ray instance for the run; ``--ray ADDRESS`` (``auto``,
``HOST:6379``, ``ray://HOST:10001``) connects to a cluster. The model options mean what they mean
without ``--ray``; the driver loads the model first (so a missing file fails at once), then each
actor loads it on its node. Importing this module does not import Ray. The command line imports
:mod:`ssd_resnet34.distributed`, never the reverse.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List

__all__ = ["LOCAL", "add_ray_arguments", "detect_command", "eval_records"]

#: ``--ray`` given without an address: start a local Ray instance.
LOCAL = "local"
#: Engine options of the commands besides ``--threads`` (``--engine``, ``--precision``); those
#: given go to ``engines.create`` on each actor (in throughput mode, as ``open_engine`` opens it).
ENGINE_FLAGS = ("engine", "precision")


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]`` and ``--ray-workers N`` to a command's parser."""
    from ._common import positive_int

    group = parser.add_argument_group("Ray cluster (pip install 'ssd-resnet34[ray]')")
    group.add_argument(
        "--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
        help="run on a Ray cluster with Ray Data: no ADDRESS starts a local Ray instance; 'auto', "
        "HOST:6379 or ray://HOST:10001 connect to a cluster (write it as --ray=ADDRESS, or put --ray "
        "after the images)",
    )
    group.add_argument("--ray-workers", type=positive_int, metavar="N",
                       help="with --ray: at most N actors, one model each (default: the cluster's GPUs, else CPUs)")


def _address(args: argparse.Namespace) -> Any:
    from ._common import CommandError

    if args.ray == LOCAL:
        return None
    if os.path.exists(args.ray):
        raise CommandError(f"--ray took {args.ray!r} as the cluster address; put --ray after the images, or "
                           "write --ray=ADDRESS")
    return args.ray


def _options(args: argparse.Namespace, score_threshold: float = 0.05) -> Dict[str, Any]:
    """detect_dataset's model and engine arguments from the command's options; the model is
    loaded here first (the warning for --synthetic, a clear error for missing weights)."""
    from ._common import load_model

    load_model(args, score_threshold=score_threshold)
    options: Dict[str, Any] = {
        "address": _address(args), "workers": args.ray_workers, "batch_size": args.batch_size,
        "device": args.device, "use_native": not args.python_postprocess, "score_threshold": score_threshold,
    }
    if args.synthetic:
        options.update(synthetic=True, seed=args.seed)
    else:
        options.update(model_path=args.model, verify=not args.no_verify)
    for name in ("threads", *ENGINE_FLAGS):  # as open_engine passes them: unchanged, when given
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    return options


def detect_command(args: argparse.Namespace) -> int:
    """``detect ... --ray``: exit status 0, 1 after a bad input (one ``error:`` line each), 130
    when interrupted; raises ``CommandError`` when nothing could be processed."""
    from ..distributed.dataset import detect_dataset
    from ._common import CommandError
    from ._progress import say

    if not args.no_draw:
        print("note: --ray writes no drawings (detections.json, detections.parquet and image_ids.json only)",
              file=sys.stderr)
    options = _options(args, args.score_threshold)
    try:
        run = detect_dataset(args.images, args.out, limit=args.limit, clip=args.clip, **options)
    except ValueError as error:
        raise CommandError(f"{error}; {args.out} is left as it was") from None
    for message in run.errors:
        say(f"error: {message}", sys.stderr)
    if not run.files:
        raise CommandError(f"no image could be processed; {args.out} is left as it was")
    say(f"wrote {run.description} ({run.workers} Ray worker{'s' if run.workers != 1 else ''}, "
        f"{run.seconds:.1f} s)", sys.stderr)
    if run.interrupted:
        say(f"interrupted: {args.out} holds the {run.processed} image(s) finished before Ctrl-C", sys.stderr)
        return 130
    return 1 if run.errors else 0


def eval_records(args: argparse.Namespace, images: List[Any]) -> List[Dict[str, Any]]:
    """``eval ... --ray``: the COCO results records of ``images`` (``CocoImage``), in order, with
    their annotation ids. A COCO image that cannot be processed is an error of the evaluation."""
    from ._common import CommandError
    from ..distributed.dataset import detect_dataset

    if args.oracle:
        raise CommandError("--oracle runs no model: do not combine it with --ray")
    run = detect_dataset([str(image.path) for image in images], None, **_options(args))
    if run.interrupted:
        raise KeyboardInterrupt
    if run.errors:
        raise CommandError(run.errors[0])
    return [record for image, found in zip(images, run.images) for record in found.coco_records(image.image_id)]
