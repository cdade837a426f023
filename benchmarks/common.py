"""What every benchmark shares: the run's settings, data, and writing a result file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from snip_lib import benchmarking, results

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SCRATCH_DIR = REPO / "benchmarks" / "out"  # quick-mode output, ignored by git


@dataclass
class Settings:
    """One run of the benchmarks: ``mode`` "full" (the recorded settings) or "quick" (a smoke run)."""

    mode: str = "full"
    threads: int = 1
    out: Path = RESULTS_DIR
    note: str | None = None
    notebooks: list[Path] = field(default_factory=list)
    notebook_modes: tuple[str, ...] = ("quick",)
    seed: int = 0

    def pick(self, full: T, quick: T) -> T:
        return quick if self.mode == "quick" else full


def mnist_batch(n: int, split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real MNIST images (offline copy), drawn at random with ``seed``."""
    from snip_lib import data

    return data.first_batch("mnist", n, split=split, seed=seed)


def fake_batch(shape: tuple[int, ...], n: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of a dataset's shape: timing a dense network does not depend on pixel values."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def write(settings: Settings, name: str, *, config: dict[str, Any], metrics: dict[str, Any],
          extra: dict[str, Any], wall_time: float, load_before: dict[str, Any]) -> Path:
    """``<out>/<name>.json`` with provenance, the settings and the machine load before and after."""
    path = Path(settings.out) / f"{name}.json"
    config = {"benchmark": name, "benchmark_mode": settings.mode, "threads": settings.threads, **config}
    extra = {
        "machine_load_before": load_before,
        "machine_load_after": benchmarking.machine_load(),
        "note": settings.note,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        **extra,
    }
    results.write_result(path, kind=f"benchmark.{name}", config=config, metrics=metrics, seed=settings.seed,
                         wall_time=wall_time, extra=extra)
    return path
