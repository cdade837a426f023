"""The long runs of chapter 7 ("What SNIP keeps"): the paper's Figure 3, Figure 4 and Table 3.

Importing this module registers ``figure3`` and ``table3`` in
:data:`snip_lib.experiments.SUITES`: they are ordinary :func:`~snip_lib.experiments.prune_and_train`
runs. ``figure4`` (training on shuffled labels) is not a ``prune_and_train`` run, so it lives in
:data:`KEEPS_SUITES` only. All three run from the command line::

    python -m snip_lib.suites_keeps --list
    python -m snip_lib.suites_keeps figure3 --threads 1          # -> results/keeps/figure3/*.json
    python -m snip_lib.suites_keeps table3 --seeds 0 1 2 --threads 1
    SNIP_QUICK=1 python -m snip_lib.suites_keeps figure3         # quick mode: a smoke test of the suite

Each run writes one result file (:mod:`snip_lib.results`, with provenance) whose name says
what varies (``lenet300-sp0.9-sb100-seed0.json``), so runs of one suite never overwrite each
other. Existing files are skipped unless ``--overwrite`` is given, so an interrupted suite can
simply be restarted.

Protocols:

- ``figure3``: LeNet-300-100 at 90 % sparsity, saliency batch ``|D^b|`` in {1, 10, 100, 1000, 10000},
  everything else the book's LeNet recipe of chapter 5: :data:`snip_lib.experiments.FAMILY_DEFAULTS`
  (read when the run starts: SGD, lr 0.1, the family's schedule and epochs) plus the learning-rate
  warm-up of :data:`snip_lib.suites_lenet.WARMUP_ITERATIONS`.
- ``table3``: LeNet-300-100 and LeNet-5-Caffe at 90 %; the *scoring* initialisation is RN, TN,
  VS-X or VS-H while the trained network always starts from VS-X (``scoring_init``); Adam,
  lr 1e-3, no weight decay (the paper's setting), constant learning rate (the paper names no
  schedule for this study), :data:`TABLE3_EPOCHS` epochs (20 for LeNet-300-100, 4 for LeNet-5-Caffe:
  a shortened budget, said wherever the numbers are shown).
- ``figure4``: LeNet-5-Caffe dense and SNIP at 99 %, true or shuffled training labels (the
  scoring batch always has true labels), 5,000 training examples, 40 epochs, Adam lr 1e-3,
  constant (:func:`snip_lib.keeps.label_fitting_run`). Its sizes are explicit, so quick mode
  swaps in the notebook's quick version (:func:`figure4_sizes`: LeNet-300-100, 2,000 examples,
  30 epochs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snip_lib import experiments, suites_lenet

__all__ = [
    "FIGURE3_BATCH_SIZES",
    "FIGURE4_SETTINGS",
    "KEEPS_SUITES",
    "PAPER_FIGURE3",
    "PAPER_TABLE3",
    "TABLE3_EPOCHS",
    "TABLE3_SCHEMES",
    "KeepsSuite",
    "figure4_sizes",
    "main",
    "plan_suite",
    "result_name",
    "run_suite",
]

#: The saliency batch sizes ``|D^b|`` of the paper's Fig. 3.
FIGURE3_BATCH_SIZES: tuple[int, ...] = (1, 10, 100, 1000, 10000)
#: The paper's Fig. 3: test error (%) of LeNet-300-100 at 90 % for each saliency batch size.
PAPER_FIGURE3: dict[int, float] = {1: 1.94, 10: 1.72, 100: 1.64, 1000: 1.56, 10000: 1.40}

#: Scoring initialisations of Table 3 (paper label -> snip_lib scheme).
TABLE3_SCHEMES: dict[str, str] = {
    "RN": "random_normal", "TN": "truncated_normal", "VS-X": "glorot_uniform", "VS-H": "he_normal",
}
#: The paper's Table 3, LeNet columns at 90 % sparsity: (mean, std over 20 runs) test error (%)
#: per scoring initialisation.
PAPER_TABLE3: dict[str, dict[str, tuple[float, float]]] = {
    "lenet300": {"RN": (1.90, 0.09), "TN": (1.96, 0.11), "VS-X": (1.91, 0.10), "VS-H": (1.88, 0.10)},
    "lenet5": {"RN": (0.89, 0.04), "TN": (0.87, 0.05), "VS-X": (0.88, 0.07), "VS-H": (0.85, 0.05)},
}

#: Table 3's training budget per LeNet (shortened: Adam converges fast, LeNet-5-Caffe costs ~1 min/epoch).
TABLE3_EPOCHS: dict[str, int] = {"lenet300": 20, "lenet5": 4}

#: The full-mode size of Figure 4 (quick mode shrinks it, see :func:`figure4_sizes`).
FIGURE4_SETTINGS: dict[str, Any] = {"arch": "lenet5", "sparsity": 0.99, "n_train": 5000, "epochs": 40}


def figure4_sizes() -> dict[str, Any]:
    """Figure 4's architecture and sizes for the current mode (quick: LeNet-300-100, 2k examples)."""
    from snip_lib.config import pick

    return pick(dict(FIGURE4_SETTINGS), {"arch": "lenet300", "sparsity": 0.99, "n_train": 2000, "epochs": 30})


@dataclass(frozen=True)
class KeepsSuite:
    """A named list of runs and the function that performs one run (returns a result dict)."""

    name: str
    description: str
    runs: Sequence[dict[str, Any]]
    runner: Callable[..., dict[str, Any]]
    seeds: tuple[int, ...] = field(default=(0,))


def _prune_and_train(**kwargs: Any) -> dict[str, Any]:
    return experiments.prune_and_train(**kwargs)


def _label_fitting(**kwargs: Any) -> dict[str, Any]:
    from snip_lib import keeps

    return keeps.label_fitting_run(**kwargs)


class _RunsOfTheMode(Sequence):
    """A suite's runs, recomputed at each use so that the current ``SNIP_QUICK`` decides.

    Building them when the module is imported would freeze the mode of that moment and make
    a bad ``SNIP_QUICK`` value break every import (even ``--help``).
    """

    def __init__(self, make: Callable[[], tuple[dict[str, Any], ...]]) -> None:
        self._make = make

    def __getitem__(self, index):  # type: ignore[override]
        return self._make()[index]

    def __len__(self) -> int:
        return len(self._make())

    def __repr__(self) -> str:
        return f"<runs of {self._make.__name__}() in the current mode>"


def _figure4_runs() -> tuple[dict[str, Any], ...]:
    s = figure4_sizes()  # quick mode (SNIP_QUICK=1 when the suite is used): the small version
    return tuple(
        {"arch": s["arch"], "sparsity": sparsity, "labels": labels, "n_train": s["n_train"], "epochs": s["epochs"]}
        for labels in ("true", "shuffled") for sparsity in (0.0, s["sparsity"])
    )


#: The runs of chapter 7 by name (``python -m snip_lib.suites_keeps NAME``).
KEEPS_SUITES: dict[str, KeepsSuite] = {
    "figure3": KeepsSuite(
        name="figure3",
        description="Fig. 3: LeNet-300-100 at 90 %, test error vs saliency batch size |D^b| (book's LeNet recipe)",
        runs=tuple({"arch": "lenet300", "sparsity": 0.9, "saliency_batch": b,
                    "train_options": {"warmup_iterations": experiments.LENET_WARMUP_ITERATIONS}}
                   for b in FIGURE3_BATCH_SIZES),
        runner=_prune_and_train,
    ),
    "table3": KeepsSuite(
        name="table3",
        description="Table 3 (LeNets): error at 90 % by scoring initialisation; trained from VS-X with Adam lr 1e-3",
        runs=tuple(
            {"arch": arch, "sparsity": 0.9, "init": "glorot_uniform", "scoring_init": scheme,
             "optimizer": "adam", "schedule": "constant", "epochs": TABLE3_EPOCHS[arch]}
            for arch in ("lenet300", "lenet5") for scheme in TABLE3_SCHEMES.values()
        ),
        runner=_prune_and_train,
        seeds=(0, 1),  # as recorded: two seeds against the paper's 20 (chapter 7 says so)
    ),
    "figure4": KeepsSuite(
        name="figure4",
        description="Fig. 4: LeNet-5-Caffe dense vs SNIP 99 % on true vs shuffled labels (5k examples, 40 epochs, "
                    "Adam; quick mode: LeNet-300-100, 2k examples)",
        runs=_RunsOfTheMode(_figure4_runs),
        runner=_label_fitting,
    ),
}

# figure3 and table3 are plain prune_and_train suites: make them known to snip_lib.experiments too.
for _name in ("figure3", "table3"):
    if _name not in experiments.SUITES:
        _s = KEEPS_SUITES[_name]
        experiments.register_suite(experiments.Suite(name=_s.name, description=_s.description, runs=_s.runs,
                                                     seeds=_s.seeds, folder=f"keeps/{_s.name}"))


# --------------------------------------------------------------------------- running


_SHORT = {"saliency_batch": "sb", "scoring_init": "si", "labels": "lab", "optimizer": "opt"}


def result_name(run: dict[str, Any], seed: int) -> str:
    """File name of one run: architecture, sparsity, whatever else the suite varies, seed."""
    parts = [str(run["arch"]), f"sp{run['sparsity']:g}"]
    for key in ("saliency_batch", "scoring_init", "labels"):
        if key in run:
            parts.append(f"{_SHORT[key]}{run[key]}")
    parts.append(f"seed{seed}")
    return "-".join(parts) + ".json"


def _requested(suite: KeepsSuite, run: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """The settings a run will record (for ``snip_lib.experiments.check_existing``)."""
    if suite.runner is _prune_and_train:
        return experiments.requested_settings(run, epochs=epochs)
    return dict(run, **({"epochs": epochs} if epochs is not None else {}))


def run_suite(
    name: str,
    *,
    out: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    device: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Run every run of suite ``name`` for every seed, one result file each; returns the paths.

    ``out`` defaults to ``results/keeps/<name>`` in the repository. Files already present are
    skipped (unless ``overwrite``), so a stopped suite resumes where it was; one recorded with
    other settings (mode, epochs) is refused before anything runs
    (``snip_lib.experiments.check_existing``), as is any bad input (:func:`plan_suite`).
    """
    planned = plan_suite(name, out=out, seeds=seeds, epochs=epochs, device=device, overwrite=overwrite)
    return _run_planned(name, planned, epochs=epochs, device=device, progress=progress, overwrite=overwrite)


def _run_planned(name: str, planned: list[tuple[Path, dict[str, Any], int]], *, epochs: int | None,
                 device: str, progress: bool, overwrite: bool) -> list[Path]:
    """Run the runs :func:`plan_suite` planned (and checked), one result file each; returns the paths."""
    from snip_lib import results

    suite = KEEPS_SUITES[name]
    written = []
    for path, run, seed in planned:  # the runs checked above, not a second (possibly other-mode) listing
        if path.exists() and not overwrite:
            print(f"{path} exists, skipped", flush=True)
            written.append(path)
            continue
        kwargs = dict(run, seed=seed, device=device, progress=progress)
        if suite.runner is _prune_and_train:  # quick mode shortens a pinned budget, as reproduce does
            kwargs["epochs"] = experiments.suite_epochs(run, epochs)
        elif epochs is not None:
            kwargs["epochs"] = epochs
        started = results.git_state()  # the code this run starts with, not the code when its file is written
        res = suite.runner(**kwargs)
        results.write_result(path, kind=res["kind"], config=res["config"], metrics=res["metrics"],
                             seed=res["seed"], wall_time=res["wall_time"], device=res["config"]["device"],
                             extra={"suite": name}, started=started)
        m = res["metrics"]
        summary = (f"final test error {m['final_test_error']:.2f}%"
                   + (f", final train loss {m['final_train_loss']:.3f}" if "final_train_loss" in m else ""))
        print(f"[{name}] {path.stem}: {summary}; {res['wall_time']:.0f} s -> {path}", flush=True)
        written.append(path)
    return written


def plan_suite(
    name: str,
    *,
    out: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> list[tuple[Path, dict[str, Any], int]]:
    """The runs :func:`run_suite` would make, as ``(path, run, seed)``, after checking every input.

    Raises ``ValueError``/``TypeError`` naming a bad suite, seed (negative, not an int, repeated,
    or none at all), epoch count or device, and ``ValueError`` for a result file already recorded
    with other settings (unless ``overwrite``), all before anything runs.
    """
    from snip_lib import keeps
    from snip_lib.init import check_seed
    from snip_lib.train import resolve_device

    if name not in KEEPS_SUITES:
        raise ValueError(f"unknown suite {name!r}; available: {', '.join(KEEPS_SUITES)}")
    suite = KEEPS_SUITES[name]
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise ValueError(f"seeds must be a non-empty sequence of ints (or None for the suite's own), got {seeds!r}")
        seeds = [check_seed(seed, allow_none=False) for seed in seeds]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must differ (two runs would write one file), got {list(seeds)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int (or None for the suite's own), got {epochs!r}")
    resolve_device(device)
    folder = Path(out) if out is not None else keeps.results_dir() / keeps.RESULTS_SUBDIR / name
    runs = tuple(suite.runs)  # built once: the mode cannot change between the check and the runs
    planned = [(folder / result_name(run, seed), run, seed)
               for run in runs for seed in (seeds if seeds is not None else suite.seeds)]
    if not overwrite:
        experiments.check_existing([(path, dict(_requested(suite, run, epochs), seed=seed))
                                    for path, run, seed in planned])
    return planned


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m snip_lib.suites_keeps SUITE``; exit status 0 ok, 1 run failed, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m snip_lib.suites_keeps",
                                     description="Run the long experiments of chapter 7 (What SNIP keeps).")
    parser.add_argument("suite", nargs="?", help=f"one of {', '.join(KEEPS_SUITES)}")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")
    parser.add_argument("--out", help="output folder (default results/keeps/SUITE)")
    parser.add_argument("--epochs", type=int, help="override the epochs of every run")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--overwrite", action="store_true", help="rerun runs whose result file exists")
    args = parser.parse_args(argv)
    if args.list or args.suite is None:
        for suite in KEEPS_SUITES.values():
            print(f"{suite.name}: {suite.description} ({len(suite.runs)} runs x seeds {list(suite.seeds)})")
        return 0
    if args.suite not in KEEPS_SUITES:
        parser.error(f"unknown suite {args.suite!r}; available: {', '.join(KEEPS_SUITES)}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    from snip_lib.data import DatasetUnavailableError

    try:  # bad input exits with status 2 and its message before anything runs
        planned = plan_suite(args.suite, out=args.out, seeds=args.seeds, epochs=args.epochs, device=args.device,
                             overwrite=args.overwrite)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:  # the runs planned and checked above, not planned (and their files read) a second time
        _run_planned(args.suite, planned, epochs=args.epochs, device=args.device, progress=not args.no_progress,
                     overwrite=args.overwrite)
    except (DatasetUnavailableError, FloatingPointError) as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
