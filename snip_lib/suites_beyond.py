"""The runs of chapter 8 ("Beyond the paper"): SNIP against the pruning-at-initialisation methods
that came after it, on real MNIST, and Frankle et al.'s layer-wise shuffle sanity check.

Importing this module registers two suites in :data:`snip_lib.experiments.SUITES`; they run from
the ordinary command line and write into ``results/<suite>/``::

    python -m snip_lib reproduce beyond-lenet300 --out results/beyond-lenet300 --threads 1 --no-progress
    python -m snip_lib reproduce beyond-lenet5-short --out results/beyond-lenet5-short --threads 1 --no-progress

Recipes (both are **shortened budgets**, one seed; the chapter says so next to every number):

- ``beyond-lenet300``: LeNet-300-100, every method of :data:`snip_lib.pruners.METHODS` at
  :data:`LENET300_SPARSITIES`, plus shuffled masks (:func:`snip_lib.pruners.shuffle_within_layers`)
  of SNIP, GraSP and SynFlow at :data:`SHUFFLE_SPARSITIES`, and a dense reference. The book's LeNet
  recipe (SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 100, 500-iteration warm-up) for
  :data:`LENET300_EPOCHS` epochs with the x0.1 decay moved to 25/27 of the run
  (:func:`snip_lib.experiments.shortened_decay_every`). About 35 runs of ~50 s on one core.
- ``beyond-lenet5-short``: LeNet-5-Caffe, every method at :data:`LENET5_SPARSITIES`,
  :data:`LENET5_EPOCHS` epochs at lr 0.01 (the LeNet-5 recipe of :mod:`snip_lib.suites_lenet`),
  warm-up and decay as above. About 14 runs of ~2 min on one core.

Methods run with their defaults (SynFlow: 100 rounds; iterative SNIP and FORCE: 60 rounds; GraSP:
temperature 200; all exponential schedules; BatchNorm is absent from the LeNets).
"""

from __future__ import annotations

from typing import Any

from snip_lib import experiments
from snip_lib.pruners import METHODS

decay_for = experiments.shortened_decay_every

__all__ = [
    "LENET300_EPOCHS",
    "LENET300_SPARSITIES",
    "LENET5_EPOCHS",
    "LENET5_LR",
    "LENET5_SPARSITIES",
    "METHOD_LABELS",
    "SHUFFLE_METHODS",
    "SHUFFLE_SPARSITIES",
    "SUITE_NAMES",
    "SYNFLOW_COMPRESSIONS",
    "SYNFLOW_DATA",
    "collapse_table",
    "expected_files",
    "frame_of",
    "missing_runs",
    "recorded_results",
    "synflow_frame",
    "tidy",
]

WARMUP_ITERATIONS = 500
#: Epochs of each ``beyond-lenet300`` run (a shortened budget).
LENET300_EPOCHS = 10
#: Sparsities at which ``beyond-lenet300`` runs every method.
LENET300_SPARSITIES: tuple[float, ...] = (0.9, 0.98, 0.995, 0.999)
#: Methods whose masks are also shuffled within each layer (Frankle et al.'s sanity check).
SHUFFLE_METHODS: tuple[str, ...] = ("snip", "grasp", "synflow")
#: Sparsities of the shuffled-mask runs.
SHUFFLE_SPARSITIES: tuple[float, ...] = (0.98, 0.995)
#: Epochs of each ``beyond-lenet5-short`` run (a shortened budget).
LENET5_EPOCHS = 2
#: Learning rate of the LeNet-5-Caffe runs (that of :mod:`snip_lib.suites_lenet`).
LENET5_LR = 0.01
#: Sparsities at which ``beyond-lenet5-short`` runs every method.
LENET5_SPARSITIES: tuple[float, ...] = (0.99, 0.999)

#: How the chapter names each method.
METHOD_LABELS: dict[str, str] = {
    "snip": "SNIP", "random": "Random", "magnitude": "Magnitude", "grasp": "GraSP", "synflow": "SynFlow",
    "iterative-snip": "Iter. SNIP", "force": "FORCE", "dense": "Dense",
}


def _train_options(epochs: int) -> dict[str, Any]:
    return {"decay_every": decay_for(epochs), "warmup_iterations": WARMUP_ITERATIONS}


def _lenet300_runs() -> tuple[dict[str, Any], ...]:
    base = {"arch": "lenet300", "epochs": LENET300_EPOCHS, "train_options": _train_options(LENET300_EPOCHS)}
    runs = [dict(base, sparsity=0.0)]
    for sparsity in LENET300_SPARSITIES:
        runs += [dict(base, sparsity=sparsity, method=m, shuffle=False) for m in METHODS]
        if sparsity in SHUFFLE_SPARSITIES:
            runs += [dict(base, sparsity=sparsity, method=m, shuffle=True) for m in SHUFFLE_METHODS]
    return tuple(runs)


def _lenet5_runs() -> tuple[dict[str, Any], ...]:
    base = {"arch": "lenet5", "epochs": LENET5_EPOCHS, "lr": LENET5_LR, "train_options": _train_options(LENET5_EPOCHS)}
    return tuple(dict(base, sparsity=s, method=m, shuffle=False) for s in LENET5_SPARSITIES for m in METHODS)


_SUITES = (
    experiments.Suite(
        name="beyond-lenet300",
        description=f"Chapter 8, LeNet-300-100: {', '.join(METHODS)} at "
                    f"{', '.join(f'{100 * s:g} %' for s in LENET300_SPARSITIES)}, shuffled SNIP/GraSP/SynFlow masks at "
                    f"{', '.join(f'{100 * s:g} %' for s in SHUFFLE_SPARSITIES)}, dense reference; SHORTENED BUDGET "
                    f"({LENET300_EPOCHS} epochs, x0.1 at iteration {decay_for(LENET300_EPOCHS)}, "
                    f"{WARMUP_ITERATIONS}-iteration warm-up)",
        runs=_lenet300_runs(),
        seeds=(0,),
    ),
    experiments.Suite(
        name="beyond-lenet5-short",
        description=f"Chapter 8, LeNet-5-Caffe: {', '.join(METHODS)} at "
                    f"{', '.join(f'{100 * s:g} %' for s in LENET5_SPARSITIES)}; SHORTENED BUDGET ({LENET5_EPOCHS} "
                    f"epochs, lr {LENET5_LR:g}, x0.1 at iteration {decay_for(LENET5_EPOCHS)}, "
                    f"{WARMUP_ITERATIONS}-iteration warm-up)",
        runs=_lenet5_runs(),
        seeds=(0,),
    ),
)
#: The suites this module registers with :data:`snip_lib.experiments.SUITES`.
SUITE_NAMES: tuple[str, ...] = tuple(s.name for s in _SUITES)

for _suite in _SUITES:
    if _suite.name not in experiments.SUITES:  # importing twice (reload) must not fail
        experiments.register_suite(_suite)


# ----------------------------------------------------------------------------- recorded results

def _check_suite(suite: str) -> experiments.Suite:
    if suite not in SUITE_NAMES:
        raise ValueError(f"unknown suite {suite!r}; allowed: {', '.join(SUITE_NAMES)}")
    return experiments.SUITES[suite]


def expected_files(suite: str) -> list[str]:
    """File names (in ``results/<suite>/``) of every run of ``suite``, in the suite's order."""
    s = _check_suite(suite)
    return [experiments.result_name(s, run, seed) for run, seed in experiments.planned_runs(s)]


def missing_runs(suite: str, folder=None) -> list[str]:
    """The files of ``suite`` not (yet) in ``folder`` (default ``results/<suite>/``)."""
    from pathlib import Path

    from snip_lib import results

    folder = Path(folder) if folder is not None else results.results_dir() / suite
    return [name for name in expected_files(suite) if not (folder / name).is_file()]


def recorded_results(suite: str, mode: str | None = "full"):
    """The recorded runs of ``suite`` (``results/<suite>/*.json``) as a DataFrame, one row per run.

    Raises ``FileNotFoundError`` saying how to produce them when there are none (see
    :func:`snip_lib.results.load_recorded`); ``mode="full"`` (default) drops quick runs.
    """
    from snip_lib import results

    _check_suite(suite)
    how = (f"produce them with `python -m snip_lib reproduce {suite} --out results/{suite} --threads 1` from the "
           "repository root (or clone the repository, where they are recorded)")
    return results.load_recorded(results.results_dir() / suite, label=f"{suite} runs", how=how, mode=mode,
                                 kind="prune_and_train", noun=f"{suite} runs")


def tidy(frame):
    """One row per run of a :func:`recorded_results` (or :func:`snip_lib.results.load_results`) frame.

    Columns: ``arch``, ``method`` ("dense" for sparsity 0; runs recorded before methods existed are
    SNIP), ``label`` (``METHOD_LABELS``, "+ shuffled" for shuffled masks), ``shuffle``,
    ``sparsity`` (%), ``seed``, ``epochs``, ``final_error`` and ``error_at_best_val`` (test error %,
    final epoch / epoch of lowest validation error), ``kept``, ``collapsed`` (number of layers with
    no connection kept), ``collapsed_layers``, ``min_density`` (lowest layer density),
    ``prune_time`` and ``wall_time`` (s), ``mode``, ``device`` and ``commit`` ("this run" for a
    :func:`frame_of` frame of runs made in the session).
    """
    import pandas as pd

    from snip_lib.results import commit_label

    rows = []
    for _, r in frame.iterrows():
        sparsity = float(r["config.sparsity"])
        method = "dense" if sparsity == 0 else (r.get("config.method") if isinstance(r.get("config.method"), str)
                                                 else "snip")
        shuffle = bool(r.get("config.shuffle")) if isinstance(r.get("config.shuffle"), (bool, int)) else False
        density = r["metrics.per_layer_density"] or {}
        commit = r.get("provenance.git_commit")
        device = r.get("provenance.device_name")
        rows.append({
            "arch": r["config.arch"], "method": method,
            "label": METHOD_LABELS.get(method, method) + (" + shuffled" if shuffle else ""),
            "shuffle": shuffle, "sparsity": round(100 * sparsity, 3), "seed": int(r["seed"]),
            "epochs": r["config.train"]["epochs"],
            "final_error": r["metrics.final_test_error"], "error_at_best_val": r["metrics.test_error_at_best_val"],
            "kept": int(r["metrics.kept_parameters"]), "collapsed": len(r["metrics.collapsed_layers"] or []),
            "collapsed_layers": ", ".join(r["metrics.collapsed_layers"] or []) or "-",
            "min_density": min(density.values()) if density else float("nan"),
            "prune_time": r["metrics.prune_time"], "wall_time": r["wall_time"],
            "mode": r.get("provenance.mode", r["config.mode"]),
            "device": device if isinstance(device, str) else r["config.device"],
            "commit": ("this run" if "provenance.git_commit" not in r
                       else commit_label(commit, r.get("provenance.git_dirty"))),
        })
    columns = ["arch", "method", "label", "shuffle", "sparsity", "seed", "epochs", "final_error", "error_at_best_val",
               "kept", "collapsed", "collapsed_layers", "min_density", "prune_time", "wall_time", "mode", "device",
               "commit"]
    out = pd.DataFrame(rows, columns=columns)
    order = {m: i for i, m in enumerate(("dense", *METHODS))}
    return out.sort_values(["arch", "sparsity", "shuffle", "method"], key=lambda c: c.map(order) if c.name == "method"
                           else c).reset_index(drop=True)


def frame_of(runs: list[dict[str, Any]]):
    """Results of :func:`snip_lib.experiments.prune_and_train` made in this session, as a frame laid
    out like :func:`snip_lib.results.load_results` (``config.*``, ``metrics.*``; no provenance), so
    :func:`tidy` reads live and recorded runs alike."""
    import pandas as pd

    if not runs:
        raise ValueError("frame_of needs at least one prune_and_train result")
    rows = []
    for res in runs:
        if not isinstance(res, dict) or res.get("kind") != "prune_and_train":
            raise ValueError(f"expected prune_and_train results, got {type(res).__name__}")
        row = {"kind": res["kind"], "seed": res["seed"], "wall_time": res["wall_time"]}
        row.update({f"config.{k}": v for k, v in res["config"].items()})
        row.update({f"metrics.{k}": v for k, v in res["metrics"].items()})
        rows.append(row)
    return pd.DataFrame(rows)


def collapse_table(masks_by_method: dict[str, dict[str, Any]]):
    """Layer density of each method's masks, long form: ``method``, ``layer``, ``density``, ``collapsed``.

    ``masks_by_method`` maps a method name to its masks (bool tensors by parameter name), e.g. the
    output of :func:`snip_lib.pruners.prune_masks` for each method. A layer is collapsed when it
    keeps no connection at all: the network's output no longer depends on its input.
    """
    import pandas as pd

    from snip_lib import snip

    rows = []
    for method, masks in masks_by_method.items():
        for layer, density in snip.layerwise_density(masks).items():
            rows.append({"method": method, "layer": layer, "density": density,
                         "kept": int(masks[layer].sum()), "collapsed": int(masks[layer].sum()) == 0})
    return pd.DataFrame(rows, columns=["method", "layer", "density", "kept", "collapsed"])


# ----------------------------------------------------------------------------- Synaptic-Flow data

#: Compression ratios (10^0 ... 10^3) of the Synaptic-Flow data and the sparsity (%) each means.
SYNFLOW_COMPRESSIONS: tuple[float, ...] = tuple(10 ** (k / 2) for k in range(7))

#: "Synaptic-Flow data": top-1 test accuracy (%), mean of 3 seeds, of the runs behind Fig. 6 of
#: Tanaka et al. (2020) (random, magnitude, SNIP, GraSP and SynFlow at compression 10^0 ... 10^3,
#: i.e. sparsity 0 ... 99.9 %), as recorded in the Synaptic-Flow repository's data. CIFAR-10/100
#: and Tiny ImageNet: not this book's runs, and not MNIST.
SYNFLOW_DATA: dict[str, dict[str, tuple[float, ...]]] = {
    "cifar10_lottery_vgg16_bn": {
        "Random": (93.53, 93.05, 91.15, 87.52, 79.14, 49.05, 10.00),
        "Magnitude": (93.53, 93.33, 93.12, 91.95, 89.80, 10.03, 10.00),
        "SNIP": (93.51, 93.28, 92.26, 91.08, 89.15, 84.65, 76.25),
        "GraSP": (93.39, 93.09, 91.84, 90.17, 87.49, 82.73, 70.93),
        "SynFlow": (93.46, 93.54, 93.26, 92.12, 90.08, 86.81, 80.39),
    },
    "cifar10_lottery_vgg11_bn": {
        "Random": (92.04, 90.97, 88.68, 83.35, 73.72, 48.37, 12.29),
        "Magnitude": (91.95, 91.84, 90.87, 88.83, 85.25, 13.98, 10.00),
        "SNIP": (92.08, 91.54, 90.20, 88.32, 84.93, 79.18, 65.43),
        "GraSP": (91.95, 91.10, 89.91, 87.56, 84.28, 77.61, 63.79),
        "SynFlow": (92.05, 91.98, 91.04, 89.90, 86.83, 83.03, 76.94),
    },
    "cifar10_tiny_resnet18": {
        "Random": (95.11, 94.42, 92.92, 89.57, 82.98, 58.51, 13.51),
        "Magnitude": (94.94, 94.91, 94.40, 10.00, 10.00, 10.00, 10.00),
        "SNIP": (94.94, 94.82, 94.29, 93.23, 90.80, 85.99, 78.65),
        "GraSP": (95.00, 94.38, 93.78, 92.09, 89.71, 84.59, 71.44),
        "SynFlow": (94.78, 94.78, 94.07, 92.66, 90.36, 86.07, 79.85),
    },
    "cifar100_lottery_vgg16_bn": {
        "Random": (73.06, 72.04, 68.83, 63.43, 52.33, 18.18, 1.00),
        "Magnitude": (73.05, 73.06, 72.23, 68.50, 60.94, 1.00, 1.00),
        "SNIP": (73.09, 72.95, 70.83, 68.39, 61.28, 46.60, 16.11),
        "GraSP": (72.81, 72.82, 70.66, 67.68, 61.14, 43.30, 4.61),
        "SynFlow": (72.90, 73.50, 72.08, 68.97, 63.51, 54.94, 41.38),
    },
    "cifar100_tiny_resnet18": {
        "Random": (78.25, 76.22, 72.59, 66.62, 54.45, 24.13, 4.70),
        "Magnitude": (77.91, 76.86, 75.02, 1.00, 1.00, 1.00, 1.00),
        "SNIP": (78.42, 76.78, 74.47, 66.51, 55.08, 35.38, 15.83),
        "GraSP": (78.37, 76.00, 73.20, 68.93, 54.06, 29.02, 9.29),
        "SynFlow": (78.35, 76.59, 73.84, 68.77, 60.90, 50.17, 33.73),
    },
    "tinyimagenet_vgg16_bn": {
        "Random": (57.98, 57.19, 53.58, 42.40, 0.50, 0.50, 0.50),
        "Magnitude": (58.14, 57.92, 0.51, 0.50, 0.50, 0.50, 0.50),
        "SNIP": (57.95, 57.28, 54.46, 46.02, 28.86, 12.55, 4.32),
        "GraSP": (58.03, 52.43, 12.94, 0.50, 0.50, 0.50, 0.50),
        "SynFlow": (58.05, 57.40, 54.20, 47.31, 32.74, 16.48, 7.05),
    },
    "tinyimagenet_resnet18": {
        "Random": (63.23, 63.13, 60.10, 54.69, 42.56, 21.95, 3.59),
        "Magnitude": (63.59, 63.07, 61.23, 0.50, 0.50, 0.50, 0.50),
        "SNIP": (63.35, 62.01, 57.03, 46.75, 29.56, 12.86, 4.98),
        "GraSP": (63.28, 61.78, 59.02, 51.25, 28.96, 7.26, 2.97),
        "SynFlow": (63.50, 62.64, 58.86, 53.38, 44.48, 30.34, 14.36),
    },
}


def synflow_frame():
    """:data:`SYNFLOW_DATA` in long form: ``model``, ``method``, ``compression``, ``sparsity`` (%), ``accuracy``."""
    import pandas as pd

    rows = [{"model": model, "method": method, "compression": c, "sparsity": round(100 * (1 - 1 / c), 2),
             "accuracy": acc}
            for model, table in SYNFLOW_DATA.items() for method, accs in table.items()
            for c, acc in zip(SYNFLOW_COMPRESSIONS, accs)]
    return pd.DataFrame(rows, columns=["model", "method", "compression", "sparsity", "accuracy"])
