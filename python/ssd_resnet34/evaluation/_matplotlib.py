"""matplotlib for the plots of ``eval`` and ``bench``, imported only when a plot is drawn.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas and saved with
``Figure.savefig``: pyplot (and its process-wide backend and figure registry) is never imported,
so plotting neither opens a window nor changes the backend of a program that imports this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._extras import require

__all__ = ["DPI", "new_figure", "require_matplotlib", "save_figure"]

#: Resolution of every saved PNG (pixels per inch); a figure of W x H inches is W*DPI x H*DPI pixels.
DPI = 100


def require_matplotlib() -> Any:
    """The ``matplotlib.figure`` module (with the Agg backend module loaded). Raises
    :class:`ssd_resnet34._extras.MissingExtraError` (an ``ImportError``) naming the ``plots`` extra
    without matplotlib; commands call it before their run, so a missing extra costs no work."""
    figure = require("matplotlib.figure", "plots", "the plots (--no-plots skips them)", package="matplotlib")
    require("matplotlib.backends.backend_agg", "plots", "the plots (--no-plots skips them)", package="matplotlib")
    return figure


def new_figure(width_in: float, height_in: float, *, layout: str | None = "constrained") -> Any:
    """A ``matplotlib.figure.Figure`` of ``width_in`` x ``height_in`` inches, saved at ``DPI`` by
    :func:`save_figure`. ``layout``: matplotlib's layout engine (None: place the axes yourself,
    much faster for figures with hundreds of tick labels). Raises as :func:`require_matplotlib`."""
    return require_matplotlib().Figure(figsize=(width_in, height_in), dpi=DPI, layout=layout)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (``DPI`` pixels per inch) with the Agg canvas; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(str(path), format="png", dpi=DPI)
    return Path(path)
