"""Notebook display helpers that work in the book build, in Jupyter and on Colab alike."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MISSING", "mean_std", "glue"]

#: What a table shows where there is no number.
MISSING = "–"


def mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``"1.99 ± 0.11"`` for a table cell: the mean alone when the std is missing or NaN (one seed),
    :data:`MISSING` when the mean is."""
    if mean is None or math.isnan(mean):
        return MISSING
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def glue(name: str, value: Any, display: bool = True) -> None:
    """Store ``value`` under ``name`` for the book's prose (``{glue:}`name```), then show it.

    In the Jupyter Book build this is ``myst_nb.glue``, so a sentence that quotes a measured
    figure always shows the figure this run produced. Where MyST-NB is not installed (Colab,
    a plain Jupyter), the value is simply displayed. A NumPy scalar is stored as the Python number
    it holds, because MyST-NB formats a glued value from its ``repr`` (``np.float64(4.8)`` would
    not take a format such as ``:.1f``).
    """
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _glue(name, value, display=display)
