"""The optional extras of ``ssd-resnet34`` and the one error raised when one is missing.

Every command or function that needs an optional package imports it with :func:`require`, so
the message always names the same fix: ``pip install 'ssd-resnet34[<extra>]'`` (the extras of
``pyproject.toml``; README names them where ``eval``, ``bench``, ``quantize`` and ``--ray``
appear).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "install_hint", "require"]

#: The extras and the commands they serve.
EXTRAS = {
    "eval": "COCO mAP and MLPerf LoadGen (ssd-resnet34 eval, ssd-resnet34 bench)",
    "int8": "int8 calibration for OpenVINO (ssd-resnet34 quantize)",
    "plots": "the plots of ssd-resnet34 eval and bench (matplotlib; part of the eval extra)",
    "ray": "detection on a Ray cluster (--ray, ssd_resnet34.distributed)",
    "video": "H.264 annotated videos through PyAV (ssd-resnet34 detect clip.mp4; mp4v without it)",
    "track": "ByteTrack ids on video detections (ssd-resnet34 detect clip.mp4 --track)",
    "serve": "the HTTP detection service (ssd-resnet34 serve, ssd_resnet34.serving)",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    """``pip install 'ssd-resnet34[<extra>]'``. Raises ``ValueError`` for an unknown extra."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {sorted(EXTRAS)}")
    return f"pip install 'ssd-resnet34[{extra}]'"


def require(module: str, extra: str, purpose: str, *, package: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"mlperf_loadgen"``), the optional package ``purpose`` needs.

    ``package``: its name on PyPI (default ``module``), for the message. Raises
    :class:`MissingExtraError` (an ``ImportError``): "``purpose`` needs ``package``, which is not
    installed: pip install 'ssd-resnet34[extra]'". An ``ImportError`` from inside an installed
    package (a broken install) is raised as it is.
    """
    hint = install_hint(extra)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or module.split(".")[0] != error.name.split(".")[0]:
            raise
        raise MissingExtraError(
            f"{purpose} needs {package or module.split('.')[0]}, which is not installed: {hint}"
        ) from None
