"""The package itself: every submodule is reachable as ``snip_lib.<name>``, and public functions are typed."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import typing

import pandas as pd
import pytest

import snip_lib


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
