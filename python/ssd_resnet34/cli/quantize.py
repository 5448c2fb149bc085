"""``ssd-resnet34 quantize``: calibrate int8 models on real photos (post-training quantization).

Runs :func:`ssd_resnet34.engines.quantize` on the model ``--model``/``--synthetic`` names, for
the ``--engine`` and ``--device`` it names (the engine registry's int8 targets: OpenVINO (NNCF),
onnxruntime (static QDQ, per channel), onnxruntime on TensorRT (symmetric QDQ)), and prints one
line per target: where the int8 model is and how long the calibration took.
``--precision int8`` (``session.create(model, precision="int8")``) then uses it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..engines import AUTO, DEVICES, ENGINES
from ..model.quantize import DEFAULT_COUNT
from ._common import CommandError, add_model_source_arguments, load_model, positive_int

__all__ = ["register", "run"]

_DESCRIPTION = """\
Calibrate int8 versions of the model on real photos (post-training quantization): NNCF for
OpenVINO, onnxruntime's static QDQ quantization (per channel) for onnxruntime and (symmetric) for
onnxruntime on --device tensorrt. Each photo is inferred once in fp32, so 300 photos take several
minutes. The result is cached under a key of the model's hash, the backend and device, the
calibration files and the tool versions; --precision int8 (detect, eval, bench) and
session.create(model, precision="int8") use the latest one."""


def register(subparsers: Any) -> None:
    """Add the ``quantize`` sub-command."""
    parser = subparsers.add_parser(
        "quantize",
        help="calibrate int8 models on real photos (for --precision int8)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder of calibration photos (e.g. COCO val2017 or train2017 images)")
    parser.add_argument("--count", type=positive_int, default=DEFAULT_COUNT, metavar="N",
                        help=f"calibrate on the first N image files by name (default {DEFAULT_COUNT})")
    parser.add_argument("--engine", type=str.lower, default=AUTO, choices=(*ENGINES, "all"),
                        help="which engine's int8 model to make (default auto: the engine --engine auto picks "
                        "here; all: every engine's and device's)")
    parser.add_argument("--device", type=str.lower, default=AUTO, choices=DEVICES,
                        help="the device it is for (default auto: the engine's own; tensorrt has its own "
                        "symmetric model); the device need not be on this machine")
    add_model_source_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engines import quantize

    model = load_model(args)
    print(f"calibrating on the first {args.count} image(s) of {args.images} ...", file=sys.stderr)
    try:
        results = quantize(model, args.images, args.count, engine=args.engine, device=args.device)
    except (OSError, ValueError) as error:  # missing folder or files, no images, a bad image
        raise CommandError(str(error)) from None
    for result in results:
        how = "already calibrated (cached)" if result.reused else f"calibrated in {result.seconds:.0f} s"
        print(f"{result.target}: int8 model {result.path} ({how} on {len(result.images)} image(s); {result.tool})")
    return 0
