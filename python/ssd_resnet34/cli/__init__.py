"""The ``ssd-resnet34`` command line: ``ssd-resnet34 <command> ...``.

Each command is a module ``ssd_resnet34.cli.<name>`` exposing ``register(subparsers)``, which
adds its sub-parser and sets ``func`` (``func(args) -> int``, the exit status) as a default;
``_common.py`` holds what they share. Exit status: 0 success, 1 a failure the command reports
(bad input, missing weights), 2 a usage error (argparse), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM; ``detect`` writes the images finished, as after Ctrl-C). Every failure is one
``error: ...`` line on stderr, never a traceback (``SSD_RESNET34_DEBUG=1`` re-raises unexpected
exceptions, with their traceback, for debugging).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Optional, Sequence

from ._common import CommandError, Terminated, sigterm_unwinds
from ._progress import say

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command modules, in the order ``--help`` lists them. One that is not installed is skipped.
COMMANDS = ("detect", "eval", "bench", "quantize", "serve")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ssd-resnet34")
    except Exception:  # not installed (e.g. run from a source tree)
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available command registered."""
    parser = argparse.ArgumentParser(
        prog="ssd-resnet34",
        description="MLPerf SSD-ResNet34 (COCO, 1200x1200) object detection: "
        "image files to labelled boxes, COCO mAP and MLPerf LoadGen timings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"ssd_resnet34.cli.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # that command is not part of this installation
            raise
        module.register(subparsers)
    for command in subparsers.choices.values():
        _plain_help(command)
    return parser


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`x`, :mod:`~a.b`
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup (roles, double and single backticks), for --help."""
    text = _ROLE.sub(lambda m: m.group(1), text)
    return _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """--help is plain text: the commands' descriptions often come from their (RST) docstrings."""
    if parser.description:
        parser.description = plain_text(parser.description)
    if parser.epilog:
        parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # usage error (2) or --help/--version (0)
        return exit_.code if isinstance(exit_.code, int) else 2
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print("ssd-resnet34: error: a command is required", file=sys.stderr)
        return 2
    usage_error = getattr(args, "usage_error", None)  # a command's check argparse cannot state
    if usage_error is not None and usage_error(args):
        print(f"ssd-resnet34 {args.command}: error: {usage_error(args)}", file=sys.stderr)
        return 2
    try:
        with sigterm_unwinds():
            return int(args.func(args))
    except Terminated:
        say("terminated (SIGTERM)", sys.stderr)
        return 143
    except KeyboardInterrupt:
        say("interrupted", sys.stderr)
        return 130
    except CommandError as error:
        say(f"error: {error}", sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as error:
        # Expected failures of the libraries underneath (a file that cannot be written, a bad
        # value, a missing optional package, a runtime that cannot start): their message says
        # what is wrong.
        say(f"error: {error}", sys.stderr)
        return 1
    except Exception as error:  # a bug: still one line, unless debugging
        if os.environ.get("SSD_RESNET34_DEBUG"):
            raise
        say(f"error: internal error ({type(error).__name__}: {error}); run with SSD_RESNET34_DEBUG=1 "
            "for the traceback", sys.stderr)
        return 1


if __name__ == "__main__":  # python -m ssd_resnet34.cli
    sys.exit(main())
