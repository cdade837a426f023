"""snip_lib: SNIP (Lee, Ajanthan & Torr, ICLR 2019), single-shot network pruning at initialisation.

The library behind the SNIP book. Submodules, each with one job:

- ``snip_lib.config``   quick/full mode (``SNIP_QUICK``) and the data folder (``SNIP_DATA``)
- ``snip_lib.models``   every architecture of the paper, ``build(name, **options)``
- ``snip_lib.init``     the initialisation schemes the book compares, ``apply(model, scheme, seed=...)``
- ``snip_lib.snip``     connection sensitivity and SNIP masks
- ``snip_lib.pruners``  SNIP and the pruning-at-initialisation methods after it, behind one interface
- ``snip_lib.masking``  keeping pruned weights at exactly zero, reports, save/load, torch.nn.utils.prune interop
- ``snip_lib.optim``    ``MaskedSGD``: SGD that applies the masks inside its update (what ``fit`` trains with)
- ``snip_lib.data``     MNIST (offline fallback), Fashion-MNIST, CIFAR-10, sequential MNIST
- ``snip_lib.train``    training loop, devices, seeds, the paper's schedules
- ``snip_lib.results``  result files with provenance
- ``snip_lib.replay``   rerun a recorded result from its own config and compare it, epoch by epoch
- ``snip_lib.keeps``    what SNIP keeps: the measurements behind chapter 7
- ``snip_lib.sparse``   export a pruned model to torch.sparse for inference; storage in bytes
- ``snip_lib.distributed``  SNIP under torch.distributed (one mask for all ranks); ``snip_lib.ddp_train``
- ``snip_lib.benchmarking``  interleaved timing and the recorded benchmarks (``benchmarks/``)
- ``snip_lib.suites_lenet``, ``suites_modern``, ``suites_beyond``, ``suites_keeps``  the recorded suites of
  the chapters (LeNets; RNNs and CIFAR; beyond the paper; what SNIP keeps) and their loaders

The command line is ``snip_lib.cli`` (``python -m snip_lib``), imported by name.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "config", "models", "init", "snip", "masking", "optim", "data", "train", "results", "replay", "experiments", "baselines",
    "analysis", "propagation", "viz", "display", "sparse", "distributed", "benchmarking", "pruners", "keeps", "ddp_train",
    "suites_lenet", "suites_modern", "suites_beyond", "suites_keeps",
)


def __getattr__(name: str) -> Any:
    # Submodules load on first use, so ``import snip_lib`` stays fast and light.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'snip_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
