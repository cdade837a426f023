"""Shared pytest set-up."""

import os
import re
from pathlib import Path

import pytest
import torch

# Two xdist workers on a 2-core machine: one intra-op thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny nets (extra threads only add contention on 2 busy cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def make_reproduce_suites() -> list[str]:
    """The suites `make reproduce` runs: the Makefile's MNIST_SUITES, in order (one parser for all tests)."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    listed = re.search(r"^MNIST_SUITES\s*:=((?:.*\\\n)*.*)$", makefile, re.M)
    assert listed, "Makefile has no MNIST_SUITES := ... line"
    names = listed.group(1).replace("\\", " ").split()
    assert names, "Makefile's MNIST_SUITES is empty"
    return names
