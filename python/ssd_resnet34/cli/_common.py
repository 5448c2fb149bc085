"""What the sub-commands of ``ssd-resnet34`` share: argument types, the model and engine
options (:func:`add_model_arguments`), loading the model they name (:func:`load_model`) and
opening its engine (:func:`open_engine`), and :class:`CommandError`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..engines import AUTO, DEVICES, ENGINES, PRECISIONS, THROUGHPUT

__all__ = [
    "CommandError",
    "GRACEFUL_SIGNALS",
    "Interrupt",
    "Terminated",
    "add_classes_argument",
    "add_engine_arguments",
    "add_model_arguments",
    "add_model_source_arguments",
    "graceful_interrupt",
    "int_at_least",
    "load_model",
    "open_engine",
    "open_run",
    "positive_int",
    "probability",
    "sigterm_unwinds",
]


class CommandError(Exception):
    """A failure a command reports as one ``error: ...`` line and exit status 1 (no traceback)."""


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


#: argparse type: an int >= 1.
positive_int = int_at_least(1)


def _finite_number(text: str, positive: bool) -> float:
    bound = "> 0" if positive else ">= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}") from None
    if not (value > 0 if positive else value >= 0) or value == float("inf"):  # NaN fails both
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite float > 0 (a rate, a duration, a size)."""
    return _finite_number(text, positive=True)


def non_negative_number(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _finite_number(text, positive=False)


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
    """Add ``--model PATH | --synthetic``, ``--no-verify``, ``--seed`` (the model), ``--engine``,
    ``--device``, ``--precision``, ``--threads`` (the engine) and ``--python-postprocess``."""
    add_model_source_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument(
        "--python-postprocess",
        action="store_true",
        help="use the numpy reference postprocessor instead of the native (Rust) one",
    )


def add_model_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--model PATH | --synthetic``, ``--no-verify``, ``--seed``."""
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
    group.add_argument(
        "--no-verify",
        action="store_true",
        help="use --model even if its size and sha256 are not the official file's (another export "
        "of the same network)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the --synthetic weights (default 0)")


def _lower(text: str) -> str:
    return text.lower()


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--device``, ``--precision``, ``--threads`` (see
    :func:`ssd_resnet34.engines.create`). The engine's mode (latency or throughput) is the
    command's choice (:func:`open_engine`), not an option: ``bench`` uses ``--mode`` for LoadGen's."""
    group = parser.add_argument_group("inference engine")
    group.add_argument(
        "--engine",
        default="auto",
        type=_lower,
        choices=ENGINES,
        help="inference runtime (default auto: OpenVINO on CPUs and Intel GPUs/NPUs, onnxruntime for "
        "cuda/tensorrt)",
    )
    group.add_argument(
        "--device",
        default="auto",
        type=_lower,
        choices=DEVICES,
        help="inference device (default auto: CUDA when onnxruntime has it, else an Intel GPU, else the "
        "CPU; cuda/tensorrt need onnxruntime-gpu)",
    )
    group.add_argument(
        "--precision",
        default="auto",
        type=_lower,
        choices=PRECISIONS,
        help="compute precision (default auto: bf16 on CPUs with AMX/AVX512_BF16, fp16 on GPUs, else "
        "fp32; fp32 is the faithful one; int8 needs `ssd-resnet34 quantize` first)",
    )
    group.add_argument("--threads", type=positive_int, metavar="N", help="inference threads (default: the runtime's own)")


def _class_list(text: str) -> list:
    """``person,car,3`` -> ``["person", "car", 3]`` (checked by the postprocessor)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected labels 1..80 or COCO class names, comma-separated")
    return [int(item) if item.isdigit() else item for item in items]


def add_classes_argument(parser: argparse.ArgumentParser) -> None:
    """``--classes person,car``: the postprocess ``classes`` option (docs/postprocess.md)."""
    parser.add_argument(
        "--classes", type=_class_list, metavar="LIST",
        help="detect only these classes: COCO names or labels 1..80, comma-separated (default: all 80)",
    )


def load_model(args: argparse.Namespace, *, score_threshold: float = 0.05) -> Any:
    """The ``SSDResNet34`` the model options in ``args`` name.

    With ``--synthetic`` prints a warning line on stderr (random weights: the boxes are noise).
    Raises :class:`CommandError` with the clear message from :mod:`ssd_resnet34.model.weights` when the
    official weights cannot be found, downloaded or verified.
    """
    from ..detector import SSDResNet34

    use_native = not getattr(args, "python_postprocess", False)
    device = getattr(args, "device", "auto")
    if args.synthetic:
        print(
            f"warning: --synthetic: the weights are random (seed {args.seed}), "
            "so the boxes and labels are noise; use the official model for real detections",
            file=sys.stderr,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # said once above
            return SSDResNet34.synthetic(
                args.seed, use_native=use_native, device=device, score_threshold=score_threshold
            )
    if args.model is not None and not args.model.strip():
        raise CommandError("--model is empty: give the path of resnet34-ssd1200.onnx")
    try:
        return SSDResNet34.load(
            args.model, use_native=use_native, device=device, score_threshold=score_threshold,
            verify=not args.no_verify,
        )
    except (OSError, ValueError) as error:  # missing, a folder, download, checksum, not ONNX
        raise CommandError(str(error)) from None


def open_engine(args: argparse.Namespace, model: Any, **options: Any) -> Any:
    """The engine the options in ``args`` name, for ``model``: ``--engine``, ``--device``,
    ``--precision``, ``--threads``; ``options`` go to :func:`ssd_resnet34.engines.create`, with
    ``mode`` ``"throughput"`` unless given (detect and eval stream images; a LoadGen
    SingleStream run passes ``mode="latency"``). Raises :class:`CommandError` for a device this
    machine lacks, a missing int8 model (naming ``ssd-resnet34 quantize``) or a runtime that fails
    to start."""
    from .. import engines

    mode = options.pop("mode", THROUGHPUT)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", RuntimeWarning)  # e.g. --threads capped at the cores
            engine = engines.create(model, device=args.device, engine=getattr(args, "engine", AUTO),
                                    precision=getattr(args, "precision", AUTO), threads=args.threads, mode=mode,
                                    **options)
    except (OSError, ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    for warning in said:
        print(f"warning: {warning.message}", file=sys.stderr)
    return engine


def open_run(args: argparse.Namespace, out: Any, command: str, formats: Any, **engine_options: Any) -> Any:
    """``(model, engine, writer)`` of a ``detect`` run: the model ``args`` name with its
    ``--score-threshold`` / ``--classes`` (:func:`load_model`), its engine (:func:`open_engine`)
    (``engine_options`` go to it, e.g. ``mode``) and the
    :class:`~ssd_resnet34.output.run_writer.RunWriter` of the output folder ``out`` with the
    output ``formats`` (the engine is closed and :class:`CommandError` raised when the folder
    cannot be used)."""
    from ..output.run_writer import RunWriter

    model = load_model(args, score_threshold=args.score_threshold)
    if args.classes is not None:
        model.configure_postprocessor(score_threshold=args.score_threshold, classes=args.classes)
    engine = open_engine(args, model, **engine_options)
    try:
        writer = RunWriter(out, command, formats)
    except OSError as error:
        engine.close()
        raise CommandError(f"cannot use the output folder {out}: {error}") from None
    return model, engine, writer


class Interrupt:
    """Set by :func:`graceful_interrupt` when Ctrl-C (or SIGTERM) came once: ``requested``, and
    ``signum`` the signal (``signal.SIGINT`` or ``signal.SIGTERM``)."""

    requested = False
    signum: "int | None" = None


#: The signals a run stops on gracefully: Ctrl-C, and SIGTERM (``kill``, ``docker stop``, systemd).
GRACEFUL_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def graceful_interrupt(message: str = "stopping after the images in flight (Ctrl-C again to abort)") -> Iterator[Interrupt]:
    """Within the block, a first Ctrl-C (SIGINT) or SIGTERM only sets ``requested`` (and prints
    ``message``), so a loop can finish the item at hand, stop and write a consistent result; a
    second one raises ``KeyboardInterrupt`` as usual. Outside the main thread it changes nothing."""
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state.requested:
            raise KeyboardInterrupt
        state.requested, state.signum = True, signum
        from ._progress import say

        say(message, sys.stderr)

    previous = {signum: signal.signal(signum, handler) for signum in GRACEFUL_SIGNALS}
    try:
        yield state
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a graceful block: unwinds like Ctrl-C (output folders discard what they
    staged, engines close), and the command exits with status 143."""


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` instead of killing the process at once
    (so ``eval`` and ``bench`` clean up as after Ctrl-C). Outside the main thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
