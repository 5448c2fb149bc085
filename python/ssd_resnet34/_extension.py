"""Loading the compiled Rust extension ``ssd_resnet34._native`` with an error that says how to build it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["load_native"]


def load_native() -> ModuleType:
    """Import and return the compiled extension ``ssd_resnet34._native``.

    Raises ``ImportError`` with the build command when the extension is not built.
    """
    try:
        return importlib.import_module(f"{__package__}._native")
    except ImportError as error:
        raise ImportError(
            "ssd_resnet34._native (the Rust extension) is not built or failed to load: "
            f"{error}. Build it with `pip install -e .` (or `maturin develop --release`) "
            "from the repository root; PythonPostProcessor works without it."
        ) from error
