"""The package itself: every submodule is reachable as ``snip_lib.<name>``, and public functions are typed."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest

import snip_lib

REPO = Path(snip_lib.__file__).resolve().parent.parent
#: Public modules reached by name instead: the command line (documented by its parser, see book/api.md).
NOT_LAZY = {"cli"}


@pytest.mark.parametrize("name", ["pruners", "keeps", "ddp_train"])
def test_submodules_load_on_first_attribute_access(name):
    assert name in dir(snip_lib)
    assert snip_lib.__getattr__(name) is importlib.import_module(f"snip_lib.{name}")


def test_attribute_access_works_in_a_fresh_interpreter():
    code = "import snip_lib; print(snip_lib.pruners.__name__, snip_lib.keeps.__name__, snip_lib.ddp_train.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["snip_lib.pruners", "snip_lib.keeps", "snip_lib.ddp_train"]


def test_unknown_attributes_still_raise():
    with pytest.raises(AttributeError, match="no attribute 'prunerz'"):
        snip_lib.prunerz  # noqa: B018


@pytest.mark.parametrize("qualname", ["results.provenance_line", "replay.audit_summary", "analysis.rank_agreement"])
def test_public_functions_have_resolvable_type_hints(qualname):
    module_name, _, function_name = qualname.partition(".")
    module = importlib.import_module(f"snip_lib.{module_name}")
    function = getattr(module, function_name)
    hints = typing.get_type_hints(function, {**vars(module), "pd": pd})  # pandas is imported for typing only
    parameters = list(inspect.signature(function).parameters)
    assert set(parameters) | {"return"} <= set(hints), f"missing: {set(parameters) | {'return'} - set(hints)}"


def test_every_public_module_is_reachable_from_the_lazy_loader():
    """A chapter may write ``snip_lib.suites_lenet``: every public module answers, listed in dir()."""
    public = sorted(p.stem for p in (REPO / "snip_lib").glob("*.py") if not p.stem.startswith("_"))
    missing = [name for name in public if name not in snip_lib._SUBMODULES and name not in NOT_LAZY]
    assert missing == []
    for name in ("suites_lenet", "suites_modern", "suites_beyond", "suites_keeps"):
        assert name in dir(snip_lib)
        assert snip_lib.__getattr__(name) is importlib.import_module(f"snip_lib.{name}")


def test_the_declared_licence_ships_with_the_package():
    """pyproject.toml says MIT: the licence text is in the repository and listed for the wheel."""
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "2026 the authors of SNIP, step by step" in licence
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'license = "MIT"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
