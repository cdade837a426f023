"""Sphinx extension: a short per-cell execution timeout when the book is built in quick mode.

Why: ``execute.timeout`` in _config.yml has to fit full mode, where one cell trains for many
minutes. In quick mode (``SNIP_QUICK=1``: `make book`, CI) the slowest cell takes about a minute
on a loaded 2-core machine. A kernel that hangs would then hold the build for the whole full-mode
timeout, which has already happened once. In quick mode this extension lowers the timeout to
``quick_cell_timeout`` (seconds; set in _config.yml under ``sphinx.config``). A hung cell then fails
the build within minutes, and nbclient's message "A cell timed out while it was being executed,
after N seconds" names the cell. `make test` gives nbval the same limit (``NBVAL_TIMEOUT`` in the
Makefile).
"""

from __future__ import annotations

from typing import Any

DEFAULT_QUICK_CELL_TIMEOUT = 300


def cell_timeout(full_timeout: int | None, quick_timeout: int, quick: bool) -> int | None:
    """The per-cell timeout to use: ``quick_timeout`` in quick mode, unless the full one is shorter.

    ``None`` or a negative number means no limit (nbclient's convention).
    """
    if isinstance(quick_timeout, bool) or not isinstance(quick_timeout, int) or quick_timeout <= 0:
        raise ValueError(f"quick_cell_timeout must be a positive number of seconds, not {quick_timeout!r}")
    if not quick:
        return full_timeout
    if full_timeout is None or full_timeout < 0:
        return quick_timeout
    return min(full_timeout, quick_timeout)


def apply_quick_timeout(app: Any, config: Any) -> None:
    """``config-inited`` handler: runs before MyST-NB reads ``nb_execution_timeout`` (builder-inited)."""
    from sphinx.util import logging

    from snip_lib.config import mode_name, quick_mode

    timeout = cell_timeout(config.nb_execution_timeout, config.quick_cell_timeout, quick_mode())
    if timeout != config.nb_execution_timeout:
        config.nb_execution_timeout = timeout
    logging.getLogger(__name__).info(f"quick_cell_timeout: {mode_name()} mode, {timeout} s per notebook cell")


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("quick_cell_timeout", DEFAULT_QUICK_CELL_TIMEOUT, "", [int])
    app.connect("config-inited", apply_quick_timeout)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
