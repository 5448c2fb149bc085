"""Sub-commands of the ``ssd-resnet34`` command line (see :mod:`ssd_resnet34.cli`).

Each module here (``detect``, ``eval``, ``bench``) exposes ``register(subparsers)``: it adds its
sub-parser and sets ``func`` (``func(args) -> int``, the exit status). What several commands share
is here: the model options (:func:`add_model_arguments`) and loading the model they name
(:func:`load_model`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

__all__ = ["CommandError", "add_model_arguments", "load_model", "positive_int", "probability"]


class CommandError(Exception):
    """A failure a command reports as one ``error: ...`` line and exit status 1 (no traceback)."""


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model PATH | --synthetic``, ``--seed``, ``--device``, ``--python-postprocess``."""
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        metavar="PATH",
        help="the official resnet34-ssd1200.onnx (default: $SSD_RESNET34_MODEL, then the cache, "
        "then download)",
    )
    source.add_argument(
        "--synthetic",
        action="store_true",
        help="use the synthetic model: the exact topology with RANDOM weights (boxes are noise; "
        "for trying the pipeline without the official file)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the --synthetic weights (default 0)")
    group.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "tensorrt", "auto"),  # ssd_resnet34.session.DEVICES
        help="onnxruntime device (default cpu; cuda/tensorrt need onnxruntime-gpu)",
    )
    group.add_argument(
        "--python-postprocess",
        action="store_true",
        help="use the numpy reference postprocessor instead of the native (Rust) one",
    )


def load_model(args: argparse.Namespace, *, score_threshold: float = 0.05) -> Any:
    """The ``SSDResNet34`` the model options in ``args`` name.

    With ``--synthetic`` prints a warning line on stderr (random weights: the boxes are noise).
    Raises :class:`CommandError` with the clear message from :mod:`ssd_resnet34.weights` when the
    official weights cannot be found, downloaded or verified.
    """
    from ..model import SSDResNet34
    from ..weights import ChecksumError, DownloadError

    use_native = not args.python_postprocess
    if args.synthetic:
        print(
            f"warning: --synthetic: the weights are random (seed {args.seed}), "
            "so the boxes and labels are noise; use the official model for real detections",
            file=sys.stderr,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # said once above
            return SSDResNet34.synthetic(
                args.seed, use_native=use_native, device=args.device, score_threshold=score_threshold
            )
    try:
        return SSDResNet34.load(
            args.model, use_native=use_native, device=args.device, score_threshold=score_threshold
        )
    except (FileNotFoundError, DownloadError, ChecksumError) as error:
        raise CommandError(str(error)) from None
