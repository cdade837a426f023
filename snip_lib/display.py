"""Notebook display helpers that work in the book build, in Jupyter and on Colab alike."""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = True) -> None:
    """Store ``value`` under ``name`` for the book's prose (``{glue:}`name```), then show it.

    In the Jupyter Book build this is ``myst_nb.glue``, so a sentence that quotes a measured
    figure always shows the figure this run produced. Where MyST-NB is not installed (Colab,
    a plain Jupyter), the value is simply displayed.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _glue(name, value, display=display)
