"""The examples in snip_lib's docstrings run as written and print what they say.

They are what an engineer copies from the book's Library reference page (book/api.md) or from
``help()``; doctest runs each module's examples in a fresh namespace.
"""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

import snip_lib

MODULES = sorted(snip_lib._SUBMODULES)

#: The entry points an engineer starts from: each shows a runnable example.
WITH_EXAMPLES = {
    "snip.snip_masks", "snip.connection_sensitivity", "masking.apply_masks", "pruners.prune_masks",
    "baselines.magnitude_masks", "sparse.to_sparse", "train.lr_at", "models.build", "init.init_std",
    "results.mean_ci",
}


def examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(f"snip_lib.{name}")
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name: str):
    tests = examples(name)
    if not tests:
        return  # this module has no example; the next test says which ones must
    torch.manual_seed(0)  # the examples draw random batches; what they print does not depend on them
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0, "".join(report)


def test_the_main_entry_points_show_an_example():
    found = {t.name.removeprefix("snip_lib.") for name in MODULES for t in examples(name)}
    assert WITH_EXAMPLES <= found, f"no example in the docstring of {sorted(WITH_EXAMPLES - found)}"


def test_a_wrong_example_fails():
    """The runner above really compares: an example whose printed value differs is a failure."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner()
    runner.run(test, out=lambda _: None)
    assert runner.summarize(verbose=False).failed == 1
