"""``ssd-resnet34 quantize``: calibrate int8 models on real photos (post-training quantization).

Runs :func:`ssd_resnet34.model.quantize.quantize` on the model ``--model``/``--synthetic`` names,
for OpenVINO (NNCF), onnxruntime (static QDQ, per channel) and/or TensorRT (symmetric QDQ), and
prints one line per engine: where the int8 model is and how long the calibration took.
``--precision int8`` (``session.create(model, precision="int8")``) then uses it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import CommandError, add_model_source_arguments, load_model, positive_int

__all__ = ["register", "run"]

_DESCRIPTION = """\
Calibrate int8 versions of the model on real photos (post-training quantization): NNCF for
OpenVINO, onnxruntime's static QDQ quantization (per channel) for onnxruntime and (symmetric) for
TensorRT. Each photo is inferred once in fp32, so 300 photos take several minutes. The result is cached under a
key of the model's hash, the calibration files and the tool versions; --precision int8 (detect,
eval, bench) and session.create(model, precision="int8") use the latest one."""


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
    parser.add_argument("--count", type=positive_int, default=300, metavar="N",
                        help="calibrate on the first N image files by name (default 300)")
    parser.add_argument("--engine", type=str.lower, default="auto",
                        choices=("auto", "openvino", "onnxruntime", "tensorrt", "all"),
                        help="which int8 model to make (default auto: for the engine --engine auto picks here; "
                        "tensorrt: symmetric QDQ for --device tensorrt)")
    add_model_source_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..model.quantize import quantize

    model = load_model(args)
    print(f"calibrating on the first {args.count} image(s) of {args.images} ...", file=sys.stderr)
    try:
        results = quantize(model, args.images, args.count, engine=args.engine)
    except (OSError, ValueError) as error:  # missing folder or files, no images, a bad image
        raise CommandError(str(error)) from None
    for result in results:
        how = "already calibrated (cached)" if result.reused else f"calibrated in {result.seconds:.0f} s"
        print(f"{result.engine}: int8 model {result.path} ({how} on {len(result.images)} image(s); {result.tool})")
    return 0
