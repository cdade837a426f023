"""Run-time settings: quick mode and the data folder.

This module is the *only* place that reads the ``SNIP_QUICK`` and ``SNIP_DATA``
environment variables, so that quick (CI) mode and full (paper) mode run exactly
the same code and differ only in sizes: epochs, subset sizes, number of seeds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

__all__ = ["quick_mode", "pick", "mode_name", "data_root"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode() -> bool:
    """Whether ``SNIP_QUICK`` asks for the small, fast version of every experiment.

    Accepted values: 1/true/yes/on (quick) and 0/false/no/off or unset (full).
    Anything else is rejected, so a typo never silently launches a multi-hour run.
    """
    raw = os.environ.get("SNIP_QUICK", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"SNIP_QUICK={os.environ['SNIP_QUICK']!r} is not understood; "
        f"use one of {sorted(_TRUE)} for quick mode or {sorted(_FALSE - {''})} (or unset) for full mode"
    )


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise.

    Experiments call this for every size they use (``epochs = pick(60, 1)``), which keeps
    the code path identical in both modes.
    """
    return quick if quick_mode() else full


def mode_name() -> str:
    """``"quick"`` or ``"full"``, for labelling outputs and result files."""
    return "quick" if quick_mode() else "full"


def data_root() -> Path:
    """Folder holding the datasets (torchvision layout).

    ``SNIP_DATA`` if set, else ``$XDG_CACHE_HOME/snip_lib/data`` (``~/.cache/snip_lib/data``).
    """
    env = os.environ.get("SNIP_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "snip_lib" / "data"
