"""The long runs of chapter 5 ("LeNet results on MNIST"): the paper's Table 1 rows for SNIP.

Importing this module registers the Table 1 suites in :data:`snip_lib.experiments.SUITES` and
the group ``table1`` that runs all of them, so one command redoes the chapter's whole table
(skipping the runs whose files exist) and prints it next to the paper's numbers::

    python -m snip_lib reproduce table1 --threads 1

Its members write where the chapter reads (:data:`TABLE1_FOLDERS` under ``results/``):

- ``table1-lenet300`` and ``table1-lenet5-short`` -> ``results/lenet``: the dense references and
  SNIP rows, same recipe for dense and pruned;
- ``table1-lenet5-short-lr0.1``, ``table1-lenet5-lr0.1``, ``table1-lenet5-lr0.1-100ep``: the pruned
  LeNet-5-Caffe rows at the paper's lr 0.1, with 10, 50 and 100 epochs.

``python -m snip_lib reproduce SUITE --sparsity S --seeds N`` runs part of a suite or of the group
(one LeNet-5-Caffe run per process, say, to use two cores), writing the same files; existing
files are skipped unless ``--overwrite``.

The recipe is the book's LeNet recipe (:data:`snip_lib.experiments.FAMILY_DEFAULTS`: SGD,
lr 0.1, momentum 0.9, weight decay 5e-4, batch 100, x0.1 after 25k iterations, 50 epochs) plus
one addition that is **not in the paper**: a linear learning-rate warm-up over the first
:data:`WARMUP_ITERATIONS` iterations, for every LeNet run, dense and pruned alike. Without it
the dense LeNet-5-Caffe (no ReLU after its convolutions) diverges to NaN within ~20 iterations
at lr 0.1, with or without momentum, with the official ``vs`` initialisation and with Glorot.
The warm-up alone only postpones the divergence to the end of the warm-up (lr ~0.085), and
warm-up plus gradient-norm clipping at 5 let the dense network train for one epoch and then
collapse to chance level (all ReLUs dead) in the second epoch at lr 0.1 (the recorded attempt is
``results/lenet_attempts/``). The LeNet-5-Caffe runs compared with that dense reference, dense
and pruned alike, therefore use lr :data:`LENET5_LR` (Caffe's own LeNet example solver starts at
0.01), with the warm-up; the pruned nets also train at the paper's lr 0.1 (the ``*lr0.1*``
suites). LeNet-300-100 keeps lr 0.1.

``table1-lenet5-short`` is a **shortened budget**: one full LeNet-5-Caffe epoch costs about a
minute on a 2-core CPU, so it trains :data:`LENET5_SHORT_EPOCHS` epochs (5,400 iterations) with
the x0.1 decay moved to the same fraction of the run as 25k of the 27k iterations of the full
recipe (:data:`LENET5_SHORT_DECAY_EVERY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from snip_lib import experiments

__all__ = [
    "ARCH_LABELS",
    "table1_frame",
    "LENET5_LONG_EPOCHS",
    "LENET5_LR",
    "LENET5_SHORT_DECAY_EVERY",
    "LENET5_SHORT_EPOCHS",
    "PAPER_TABLE1",
    "DIAGNOSIS_VARIANTS",
    "diagnosis_table",
    "FIGURE1_FOLDERS",
    "FIGURE1_LENET5_SPARSITIES",
    "FIGURE1_SPARSITIES",
    "SUITE_NAMES",
    "WARMUP_ITERATIONS",
    "expected_run",
    "figure1_results",
    "history_frame",
    "probe_stability",
    "recorded_results",
    "result_name",
    "results_dir",
    "summarize",
    "sweep_frame",
    "table1_report",
    "table1_results",
    "TABLE1_FOLDERS",
    "TABLE1_SUITES",
    "LENET5_PAPER_LR",
    "OFFICIAL_DEFAULT_EPOCHS",
]

#: Linear warm-up of the learning rate (iterations) used by every LeNet run of the book.
WARMUP_ITERATIONS = experiments.LENET_WARMUP_ITERATIONS
#: Shortened LeNet-5-Caffe budget: 10 epochs of 540 iterations = 5,400 iterations.
LENET5_SHORT_EPOCHS = 10
#: Learning rate of the LeNet-5-Caffe runs (dense and pruned), see the module docstring.
LENET5_LR = 0.01
#: 25k/27k of the full run (50 epochs x 540 iterations), applied to the 5,400 iterations of the short run.
LENET5_SHORT_DECAY_EVERY = round(25_000 / 27_000 * LENET5_SHORT_EPOCHS * 540)
#: Where recorded result files live, relative to the repository's ``results/`` folder.
RESULTS_SUBDIR = "lenet"
#: Recorded runs that document a recipe that failed (kept as evidence, not Table 1 results).
ATTEMPTS_SUBDIR = "lenet_attempts"

#: Test errors (%) of Table 1 of the paper: (arch, sparsity) -> error; sparsity 0 = "Ref.".
PAPER_TABLE1: dict[tuple[str, float], float] = {
    ("lenet300", 0.0): 1.7, ("lenet300", 0.95): 1.6, ("lenet300", 0.98): 2.4,
    ("lenet5", 0.0): 0.9, ("lenet5", 0.98): 0.8, ("lenet5", 0.99): 1.1,
}

_WARMUP = {"warmup_iterations": WARMUP_ITERATIONS}

_SUITES = (
    experiments.Suite(
        name="table1-lenet300",
        description="Table 1, LeNet-300-100 on MNIST: dense reference, SNIP 95 % and 98 %; "
                    f"book LeNet recipe (50 epochs) with a {WARMUP_ITERATIONS}-iteration lr warm-up",
        runs=tuple({"arch": "lenet300", "sparsity": s, "train_options": dict(_WARMUP)} for s in (0.0, 0.95, 0.98)),
        seeds=tuple(range(10)),  # ten: enough for a confidence interval of each row's mean (the paper has 20)
        folder=RESULTS_SUBDIR,
    ),
    experiments.Suite(
        name="table1-lenet5-short",
        description="Table 1, LeNet-5-Caffe on MNIST: dense reference, SNIP 98 % and 99 %; SHORTENED BUDGET "
                    f"({LENET5_SHORT_EPOCHS} epochs, x0.1 at iteration {LENET5_SHORT_DECAY_EVERY}) with a "
                    f"{WARMUP_ITERATIONS}-iteration lr warm-up and lr {LENET5_LR:g} (the dense net diverges at 0.1)",
        runs=tuple(
            {"arch": "lenet5", "sparsity": s, "epochs": LENET5_SHORT_EPOCHS, "lr": LENET5_LR,
             "train_options": {"decay_every": LENET5_SHORT_DECAY_EVERY, **_WARMUP}}
            for s in (0.0, 0.98, 0.99)
        ),
        seeds=(0, 1, 2),
        folder=RESULTS_SUBDIR,
    ),
)
#: Epochs of ``table1-lenet5-lr0.1-100ep``: 54,000 iterations, so the x0.1-every-25k rule decays twice
#: and 29,000 iterations (54 epochs) follow the first decay, against 2,000 in the 50-epoch recipe.
LENET5_LONG_EPOCHS = 100

#: Learning rate of the pruned LeNet-5-Caffe rows of the ``table1-lenet5-*lr0.1*`` suites: the paper's 0.1.
LENET5_PAPER_LR = 0.1


def _pruned_lenet5_at_paper_lr(name: str, description: str, epochs: int | None = None,
                               train_options: dict[str, Any] | None = None,
                               seeds: tuple[int, ...] = (0, 1)) -> experiments.Suite:
    """A suite of the pruned LeNet-5-Caffe Table 1 rows (98 and 99 %) at lr 0.1, one budget."""
    budget = {} if epochs is None else {"epochs": epochs}
    return experiments.Suite(
        name=name,
        description=description,
        runs=tuple({"arch": "lenet5", "sparsity": s, **budget, "lr": LENET5_PAPER_LR,
                    "train_options": {**(train_options or {}), **_WARMUP}}
                   for s in (0.98, 0.99)),
        seeds=seeds,
    )


_SUITES += (
    _pruned_lenet5_at_paper_lr(
        "table1-lenet5-short-lr0.1",
        "Table 1, LeNet-5-Caffe on MNIST: SNIP 98 % and 99 % at the PAPER'S lr 0.1 (momentum 0.9, "
        "the dense net diverges there, the pruned nets do not); SHORTENED BUDGET as "
        f"table1-lenet5-short ({LENET5_SHORT_EPOCHS} epochs, x0.1 at iteration "
        f"{LENET5_SHORT_DECAY_EVERY}, {WARMUP_ITERATIONS}-iteration lr warm-up)",
        epochs=LENET5_SHORT_EPOCHS, train_options={"decay_every": LENET5_SHORT_DECAY_EVERY}),
    _pruned_lenet5_at_paper_lr(
        "table1-lenet5-lr0.1",
        "Table 1, LeNet-5-Caffe on MNIST: SNIP 98 % and 99 % with the FULL book recipe (50 epochs, "
        f"x0.1 at 25k iterations, {WARMUP_ITERATIONS}-iteration lr warm-up) at the PAPER'S lr 0.1, "
        "momentum 0.9 (the pruned nets train there; the dense reference stays at lr 0.01)"),
    _pruned_lenet5_at_paper_lr(
        "table1-lenet5-lr0.1-100ep",
        "Table 1, LeNet-5-Caffe on MNIST: SNIP 98 % and 99 % at lr 0.1 as table1-lenet5-lr0.1 but "
        f"{LENET5_LONG_EPOCHS} epochs, so the paper's 'x0.1 every 25k iterations' decays twice "
        "(25k and 50k of 54k iterations) and the pruned nets get a long tail at lr 0.01",
        epochs=LENET5_LONG_EPOCHS, seeds=(0, 1, 2)),  # a third seed: the closest rows to the paper
)
#: Sparsities of the Figure 1 sweep beyond those of Table 1 (the figure joins both suites).
FIGURE1_SPARSITIES: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
#: LeNet-5-Caffe sweep points (shortened budget, like table1-lenet5-short).
FIGURE1_LENET5_SPARSITIES: tuple[float, ...] = (0.5, 0.9, 0.995)

_SUITES += (
    experiments.Suite(
        name="figure1-lenet300",
        description="Fig. 1, LeNet-300-100: SNIP across sparsities (Table 1's recipe; the figure adds table1-lenet300); "
                    "two seeds per level, ten at 90 %",
        runs=tuple({"arch": "lenet300", "sparsity": s, "train_options": dict(_WARMUP),
                    **({"seeds": tuple(range(10))} if s == 0.9 else {})} for s in FIGURE1_SPARSITIES),
        seeds=(0, 1),  # ten at 90 %: chapter 5 compares that level with the paper's Figure 3
    ),
    experiments.Suite(
        name="figure1-lenet5-short",
        description="Fig. 1, LeNet-5-Caffe: SNIP across sparsities, SHORTENED BUDGET as table1-lenet5-short "
                    "(the figure adds that suite)",
        runs=tuple(
            {"arch": "lenet5", "sparsity": s, "epochs": LENET5_SHORT_EPOCHS, "lr": LENET5_LR,
             "train_options": {"decay_every": LENET5_SHORT_DECAY_EVERY, **_WARMUP}}
            for s in FIGURE1_LENET5_SPARSITIES
        ),
        seeds=(0, 1, 2),
    ),
)
#: Epochs closest to the 10,000 iterations of the official code's default MNIST run (540 per epoch).
OFFICIAL_DEFAULT_EPOCHS = 19

#: One change at a time to the 98 % LeNet-300-100 run, to see which of the paper's unstated choices
#: moves our SNIP rows towards the paper's (chapter 5); the last but one makes the official code's
#: three scoring choices together. The plain runs of the same seeds are in results/lenet.
DIAGNOSIS_VARIANTS: dict[str, dict[str, Any]] = {
    "Glorot initialisation": {"init": "glorot_uniform"},
    "two initialisations (official code)": {"scoring_init": "lecun_truncated_normal"},
    "biases prunable (official code)": {"include_bias": True},
    "100 epochs (two lr decays)": {"epochs": 100},
    # snip/model.py + network.py as first published (before commit f028496, June 2019, so probably what
    # produced Table 1): the scored copy is a second 'vs' initialisation, its biases 'vs' too, and the
    # biases are ranked with the weights (a pruned bias stays zero; the trained biases start at 0).
    "the first official code's scoring (two initialisations, 'vs' biases, biases prunable)": {
        "scoring_init": "lecun_truncated_normal", "scoring_bias": "scheme", "include_bias": True},
    # main.py's MNIST defaults: --optimizer sgd (no momentum), --lr_decay_type constant, 10k iterations;
    # 19 epochs of 540 iterations = 10,260. No warm-up (the code has none).
    "official code's defaults (plain SGD, constant lr, ~10k iterations)": {
        "epochs": OFFICIAL_DEFAULT_EPOCHS, "schedule": "constant", "train_options": {"momentum": 0.0}},
}

_SUITES += (
    experiments.Suite(
        name="table1-lenet300-diagnosis",
        description="Why our LeNet-300-100 SNIP rows trail the paper: the 98 % run with one change at a time "
                    "(Glorot init, two initialisations, prunable biases, 100 epochs, the official code's "
                    "scoring, the official code's default optimiser and length)",
        runs=tuple({"arch": "lenet300", "sparsity": 0.98, "train_options": dict(_WARMUP), **change}
                   for change in DIAGNOSIS_VARIANTS.values()),
        seeds=(0, 1, 2),  # three: one seed cannot tell a change of 0.1 points from seed noise
    ),
)
#: The suites this module registers with :data:`snip_lib.experiments.SUITES`.
SUITE_NAMES: tuple[str, ...] = tuple(s.name for s in _SUITES)

for _suite in _SUITES:
    if _suite.name not in experiments.SUITES:  # importing twice (reload) must not fail
        experiments.register_suite(_suite)


def result_name(arch: str, sparsity: float, seed: int) -> str:
    """File name of a run of a suite with one run per (arch, sparsity), as the Table 1 suites are.

    It is what ``python -m snip_lib reproduce`` writes for such a suite; a suite with several
    runs at one (arch, sparsity) (the diagnosis suite) tags its names to tell them apart: use
    :func:`snip_lib.experiments.result_name` there.
    """
    return f"{arch}-sp{sparsity:g}-seed{seed}.json"


def expected_run(suite: str, arch: str, sparsity: float) -> dict[str, Any]:
    """The run dict of ``suite`` for (``arch``, ``sparsity``).

    ``KeyError`` if the suite has none, ``ValueError`` if it has several (the diagnosis suite runs
    one (arch, sparsity) several ways): the first of them would silently stand for all.
    """
    if suite not in experiments.SUITES:
        raise KeyError(f"unknown suite {suite!r}; registered: {', '.join(experiments.SUITES)}")
    found = [run for run in experiments.SUITES[suite].runs
             if run["arch"] == arch and abs(run["sparsity"] - sparsity) < 1e-12]
    if not found:
        raise KeyError(f"suite {suite!r} has no run for arch={arch!r}, sparsity={sparsity!r}")
    if len(found) > 1:
        raise ValueError(f"suite {suite!r} has {len(found)} runs for arch={arch!r}, sparsity={sparsity!r}; "
                         "pick one from experiments.SUITES[suite].runs")
    return found[0]


# ----------------------------------------------------------------------------- recorded results


def results_dir() -> Path:
    """The repository's ``results/`` folder (see :func:`snip_lib.results.results_dir`)."""
    from snip_lib import results

    return results.results_dir()


def recorded_results(mode: str | None = "full", subdir: str = RESULTS_SUBDIR):
    """The recorded Table 1 runs, ``results/lenet/*.json``, as a DataFrame (one row per run).

    ``subdir=ATTEMPTS_SUBDIR`` loads the recorded failed attempts instead.

    Columns as in :func:`snip_lib.results.load_results`. ``mode`` keeps only runs made in that
    mode (default ``"full"``: a quick run is not a result); ``None`` keeps all. Raises
    ``FileNotFoundError`` explaining how to get the files when there are none (on Colab: clone
    the repository, or run the suites).
    """
    from snip_lib import results

    if subdir not in (RESULTS_SUBDIR, ATTEMPTS_SUBDIR):
        raise ValueError(f"subdir must be {RESULTS_SUBDIR!r} or {ATTEMPTS_SUBDIR!r}, got {subdir!r}")
    how = ("clone the book's repository (the files are in results/lenet/) and run the notebook there, or produce "
           "them with `python -m snip_lib reproduce table1 --threads 1` from the repository root")
    return results.load_recorded(results_dir() / subdir, label="LeNet results", how=how, mode=mode,
                                 noun="LeNet results")


#: Folders (under results/) whose runs make up chapter 5's Table 1: the book's rows (results/lenet) and
#: the pruned LeNet-5-Caffe rows at the paper's lr 0.1 (shortened budget, full budget, and 100 epochs).
TABLE1_FOLDERS: tuple[str, ...] = (RESULTS_SUBDIR, "table1-lenet5-short-lr0.1", "table1-lenet5-lr0.1",
                                   "table1-lenet5-lr0.1-100ep")
#: The suites that write those folders: the members of the group ``table1`` (one command for the table).
TABLE1_SUITES: tuple[str, ...] = ("table1-lenet300", "table1-lenet5-short", "table1-lenet5-short-lr0.1",
                                  "table1-lenet5-lr0.1", "table1-lenet5-lr0.1-100ep")


def table1_results(mode: str | None = "full", root: str | Path | None = None):
    """Every recorded Table 1 run (:data:`TABLE1_FOLDERS`), with a ``source`` column naming the folder.

    A DataFrame as :func:`recorded_results`, read from ``root`` (default: the repository's
    ``results/``). The folders differ in learning rate and budget, so :func:`summarize` keeps
    them apart. Folders without runs are left out; ``FileNotFoundError`` (saying how to produce
    them) only when none has a run.
    """
    return _joined_folders(TABLE1_FOLDERS, "Table 1 runs", mode, root=root, how=(
        "produce them with `python -m snip_lib reproduce table1 --threads 1` from the repository root"))


def _joined_folders(folders: Sequence[str], label: str, mode: str | None, how: str,
                    root: str | Path | None = None):
    import pandas as pd

    from snip_lib import results

    base = results_dir() if root is None else Path(root)
    frames = []
    for folder in folders:
        try:
            frame = results.load_recorded(base / folder, label=label, how="", mode=mode)
        except FileNotFoundError:
            continue
        frames.append(frame.assign(source=folder))
    if not frames:
        raise FileNotFoundError(f"no recorded {mode + ' ' if mode else ''}{label} in "
                                f"{base}/{{{','.join(folders)}}}; {how}")
    return pd.concat(frames, ignore_index=True)


#: Folders (under results/) whose runs make up Figure 1: Table 1's runs and the extra sweep points.
FIGURE1_FOLDERS: tuple[str, ...] = (RESULTS_SUBDIR, "figure1-lenet300", "figure1-lenet5-short")


def figure1_results(mode: str | None = "full"):
    """Every recorded LeNet run of the Figure 1 sweep (Table 1's runs plus the ``figure1-*`` suites).

    A DataFrame as :func:`recorded_results`, with a ``source`` column naming the folder. Folders
    that do not exist yet are left out; ``FileNotFoundError`` only when none has a run.
    """
    return _joined_folders(FIGURE1_FOLDERS, "Figure 1 runs", mode, how=(
        "produce them with `python -m snip_lib reproduce figure1-lenet300 --out results/figure1-lenet300 --threads 1` "
        "(and table1-lenet300, table1-lenet5-short, figure1-lenet5-short) from the repository root"))


def sweep_frame(frame):
    """Tidy (arch, sparsity %, seed, epochs, final / at-best-val test error %) rows of a results frame, for plots."""
    import pandas as pd

    return pd.DataFrame({
        "arch": frame["config.arch"].to_numpy(),
        "sparsity": (100 * frame["config.sparsity"]).round(2).to_numpy(),
        "seed": frame["seed"].to_numpy(),
        "epochs": [t["epochs"] for t in frame["config.train"]],
        "final": frame["metrics.final_test_error"].to_numpy(),
        "at_best_val": frame["metrics.test_error_at_best_val"].to_numpy(),
    })


def diagnosis_table(mode: str | None = "full"):
    """The ``table1-lenet300-diagnosis`` runs next to the plain 98 % LeNet-300-100 runs of Table 1.

    One row per recorded variant (``"plain (Table 1 recipe)"`` first, from ``results/lenet``) with
    the mean final and at-best-val test error (%), the seeds, the epochs, and ``change``, the mean
    over seeds of (variant − plain run of the same seed), with ``change_sd``, the sample standard
    deviation of those differences (NaN for one seed, and for the plain row itself). The plain
    row averages the seeds the variants ran (0-2), not all ten of Table 1, so that every mean in
    the ``final`` column is over the same seeds. A file is a variant's by its name
    (:func:`snip_lib.experiments.result_name`). A row whose runs are not one recipe (or hold a
    seed twice) is refused with a ``ValueError`` naming it (:func:`snip_lib.results.check_one_recipe`):
    its mean would be no result. ``FileNotFoundError`` (saying how to produce them) when the
    diagnosis runs are not recorded.
    """
    import numpy as np
    import pandas as pd

    from snip_lib import results
    from snip_lib.results import check_one_recipe

    how = ("produce them with `python -m snip_lib reproduce table1-lenet300-diagnosis --threads 1` from the "
           "repository root")
    runs = results.load_recorded(results_dir() / "table1-lenet300-diagnosis", label="diagnosis runs", how=how,
                                 mode=mode)
    plain = recorded_results(mode)
    plain = plain[(plain["config.arch"] == "lenet300") & ((plain["config.sparsity"] - 0.98).abs() < 1e-9)]
    plain_by_seed = dict(zip(plain["seed"], plain["metrics.final_test_error"]))
    rows = []
    variant_seeds: set[int] = set()
    suite = experiments.SUITES["table1-lenet300-diagnosis"]
    file_names = runs["path"].map(lambda p: Path(p).name)
    for label, run in zip(DIAGNOSIS_VARIANTS, suite.runs):  # the suite's runs are the variants, in order
        # A run is a variant by its file name (several variants share a key, e.g. scoring_init).
        match = runs[file_names.isin({experiments.result_name(suite, run, s) for s in experiments.seeds_of(suite, run)})]
        if match.empty:
            continue
        check_one_recipe(match, f"the diagnosis row {label!r}")
        variant_seeds.update(int(s) for s in match["seed"])
        deltas = [e - plain_by_seed[s] for s, e in zip(match["seed"], match["metrics.final_test_error"])
                  if s in plain_by_seed]
        rows.append({"variant": label, "final": float(match["metrics.final_test_error"].mean()),
                     "at_best_val": float(match["metrics.test_error_at_best_val"].mean()), "seeds": len(match),
                     "epochs": int(match["config.train"].iloc[0]["epochs"]),
                     "change": float(np.mean(deltas)) if deltas else float("nan"),
                     "change_sd": float(np.std(deltas, ddof=1)) if len(deltas) > 1 else float("nan")})
    same = plain[plain["seed"].isin(variant_seeds)] if variant_seeds else plain
    if len(same):
        check_one_recipe(same, "the diagnosis row 'plain (Table 1 recipe)'")
    rows.insert(0, {"variant": "plain (Table 1 recipe)", "final": float(same["metrics.final_test_error"].mean()),
                    "at_best_val": float(same["metrics.test_error_at_best_val"].mean()), "seeds": len(same),
                    "epochs": int(same["config.train"].iloc[0]["epochs"]) if len(same) else None, "change": 0.0,
                    "change_sd": float("nan")})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- tables and probes

_PROTOCOLS = {
    "final": "metrics.final_test_error",
    "best_test": "metrics.best_test_error",
    "at_best_val": "metrics.test_error_at_best_val",
}


def summarize(frame, *, include_smoke: bool = False):
    """One row per (arch, sparsity, lr, epochs) of a results frame: paper error and ours over seeds.

    ``frame`` is a :func:`recorded_results` or :func:`table1_results` (or
    :func:`snip_lib.results.load_results`) frame of ``prune_and_train`` runs; runs with another
    learning rate or budget get their own row, never a shared mean, and so do runs from another
    folder where the frame has :func:`table1_results`'s ``source`` column (then a ``source``
    column says which; in quick mode two suites' runs can share lr and epochs). A row whose runs
    differ in any other recorded setting (training set, schedule, initialisation, mode, ...), or
    that holds a seed twice, is refused with a ``ValueError`` naming it
    (:func:`snip_lib.results.check_one_recipe`). Smoke runs on FakeData are left out unless
    ``include_smoke`` (:func:`snip_lib.results.drop_smoke`). Columns: ``arch``,
    ``sparsity`` (%), ``lr``, ``epochs``, ``paper``, ``n`` (seeds), ``final_mean``/``final_std``, ``best_test_mean``/``best_test_std`` (official
    ``test.py``, optimistic: the minimum over all epochs, where ``test.py`` sees the last five
    checkpoints), ``at_best_val_mean``/``at_best_val_std`` (honest),
    ``wall_time_mean`` (s), ``device`` and ``commit`` (:func:`snip_lib.results.commit_label`: first 8
    hex digits, ``+dirty`` for uncommitted changes, ``none`` outside git), ``seed_ids`` ("0-9"), ``recorded`` (UTC date or date
    range) and ``machine`` (the kernel build of each recording machine, which tells apart machines
    with the same CPU name). The std is the sample std (NaN for one seed).
    """
    import pandas as pd

    from snip_lib.results import _date_range, _machine_names, check_one_recipe, commit_label, drop_smoke
    from snip_lib.results import _id_ranges as _results_id_ranges

    if frame is None or len(frame) == 0:
        raise ValueError("summarize needs a non-empty results frame")
    missing = {"config.arch", "config.sparsity", "config.train", *_PROTOCOLS.values()} - set(frame.columns)
    if missing:
        raise ValueError(f"results frame lacks columns {sorted(missing)}; load prune_and_train results")
    frame = drop_smoke(frame, include_smoke, what="the results frame")
    keyed = frame.assign(_lr=[float(t["lr"]) for t in frame["config.train"]],
                         _epochs=[int(t["epochs"]) for t in frame["config.train"]])
    by_source = "source" in keyed.columns
    keys = ["config.arch", "config.sparsity", "_lr", "_epochs"] + (["source"] if by_source else [])
    rows = []
    for key, g in keyed.groupby(keys, sort=True):
        arch, sparsity, lr, epochs = key[:4]
        where = f" in {key[4]}" if by_source else ""
        check_one_recipe(g, f"{arch} at {100 * sparsity:g} %, lr {lr:g}, {epochs} epochs{where}")
        row = {"arch": arch, "sparsity": round(100 * sparsity, 2), "lr": lr, "epochs": epochs,
               "paper": PAPER_TABLE1.get((arch, round(sparsity, 4))), "n": len(g)}
        if by_source:
            row["source"] = key[4]
        for name, col in _PROTOCOLS.items():
            row[f"{name}_mean"] = float(g[col].mean())
            row[f"{name}_std"] = float(g[col].std(ddof=1)) if len(g) > 1 else float("nan")
        row["wall_time_mean"] = float(g["wall_time"].mean())
        row["device"] = ", ".join(sorted(set(g.get("provenance.device_name", g.get("config.device", ["?"])))))
        row["commit"] = ", ".join(sorted({commit_label(c, d) for c, d in zip(
            g.get("provenance.git_commit", [None] * len(g)), g.get("provenance.git_dirty", [None] * len(g)))}))
        row["seed_ids"] = _results_id_ranges(sorted(int(v) for v in g["seed"])) if "seed" in g else "?"
        row["recorded"] = _date_range(g.get("provenance.timestamp_utc", []))
        row["machine"] = ", ".join(_machine_names(g.get("provenance.platform", ["?"])))
        rows.append(row)
    return pd.DataFrame(rows)



#: Display names of the LeNets, as the paper writes them.
ARCH_LABELS: dict[str, str] = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}


def table1_frame(table, provenance: bool = True):
    """:func:`summarize`'s rows as the book shows them: ours next to the paper, one row per recipe.

    Columns: network, sparsity %, lr, epochs, seeds, paper, ours for the three protocols
    (mean ± std), final mean minus paper, minutes per run and, with ``provenance``, seed ids,
    device, machine, recording date and commit. The paper's number is :data:`snip_lib.display.MISSING` where Table 1 has none.
    """
    import pandas as pd

    from snip_lib.display import MISSING, mean_std

    def missing(value) -> bool:
        return value is None or value != value

    frame = pd.DataFrame({
        "network": table["arch"].map(lambda a: ARCH_LABELS.get(a, a)),
        "sparsity %": table["sparsity"].map(lambda v: f"{v:g}" if v else "0 (dense)"),
        "lr": table["lr"].map(lambda v: f"{v:g}"),
        "epochs": table["epochs"],
        "seeds": table["n"],
        "paper": table["paper"].map(lambda p: MISSING if missing(p) else f"{p:.1f}"),
        "ours, final": [mean_std(m, s) for m, s in zip(table["final_mean"], table["final_std"])],
        "at best val": [mean_std(m, s) for m, s in zip(table["at_best_val_mean"], table["at_best_val_std"])],
        "best test (≈ test.py, optimistic)": [mean_std(m, s) for m, s in
                                            zip(table["best_test_mean"], table["best_test_std"])],
        "final - paper": [MISSING if missing(p) else f"{m - p:+.2f}"
                          for m, p in zip(table["final_mean"], table["paper"])],
        "minutes per run": table["wall_time_mean"].map(lambda t: f"{t / 60:.0f}"),
    })
    if provenance:
        frame["seed ids"] = table["seed_ids"].to_numpy()
        frame["device"] = table["device"].to_numpy()
        frame["machine"] = table["machine"].to_numpy()
        frame["recorded (UTC)"] = table["recorded"].to_numpy()
        frame["commit"] = table["commit"].to_numpy()
    return frame


def table1_report(root: str | Path | None = None, mode: str = "full") -> str:
    """Chapter 5's Table 1 as text: every recorded row under ``root`` next to the paper's number.

    The rows of :func:`table1_frame` without provenance columns, and a footer with the number of
    runs, their total wall time, the devices and the commits. ``root`` defaults to the
    repository's ``results/``; ``mode="quick"`` shows quick runs, labelled as not results.
    Raises ``FileNotFoundError`` when there is no run at all.
    """
    if mode not in ("full", "quick"):
        raise ValueError(f"mode must be 'full' or 'quick', got {mode!r}")
    frame = table1_results(mode, root=root)
    table = summarize(frame)
    hours = float(frame["wall_time"].sum()) / 3600
    commits = sorted({c for cs in table["commit"] for c in cs.split(", ")})
    head = "Table 1 (MNIST), test error in %: the paper's and ours, mean ± std over the seeds"
    if mode == "quick":
        head = "QUICK-MODE runs (shortened, NOT results): " + head
    return "\n".join([
        head,
        table1_frame(table, provenance=False).to_string(index=False),
        f"{len(frame)} runs; their wall times add up to {hours:.1f} h; "
        f"device {', '.join(sorted(set(table['device'])))}; commits {', '.join(commits)}",
    ])


if "table1" not in experiments.GROUPS:  # importing twice (reload) must not fail
    experiments.register_group(experiments.SuiteGroup(
        name="table1",
        description="Table 1 of chapter 5, every row: runs the suites "
                    + ", ".join(TABLE1_SUITES) + " (each into its own results/ folder), then prints the table",
        members=TABLE1_SUITES,
        report=lambda root, mode: table1_report(root, mode),
    ))


def history_frame(frame, extra: dict[str, Any] | None = None):
    """Per-epoch test and validation error of every run in ``frame``, in long form for seaborn.

    Columns: ``arch``, ``sparsity`` (%), the ``extra`` columns, ``seed``, ``epoch`` (1-based),
    ``split`` ("test"/"val") and ``error`` (%). ``extra`` maps a column name to a function of the
    run's row (how chapter 6 adds the scoring initialisation of Table 3).
    """
    import pandas as pd

    extra = dict(extra or {})
    rows = []
    for _, r in frame.iterrows():
        hist = r["metrics.history"]
        per_run = {"arch": r["config.arch"], "sparsity": round(100 * r["config.sparsity"], 2),
                   **{name: fn(r) for name, fn in extra.items()}, "seed": r["seed"]}
        for split in ("test", "val"):
            for epoch, err in enumerate(hist.get(f"{split}_error") or [], start=1):
                rows.append({**per_run, "epoch": epoch, "split": split, "error": err})
    return pd.DataFrame(rows, columns=["arch", "sparsity", *extra, "seed", "epoch", "split", "error"])


def probe_stability(
    arch: str = "lenet5",
    *,
    iterations: int = 40,
    sparsity: float = 0.0,
    seed: int = 0,
    init: str = experiments.DEFAULT_INIT,
    warmup_iterations: int = 0,
    clip_grad_norm: float | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
):
    """Train ``arch`` for a few iterations of the paper's SGD and record loss and gradient norm.

    Why: the dense LeNet-5-Caffe diverges within a few dozen iterations at lr 0.1; this shows
    it, and shows what the book's guards (warm-up, clipping) change, in seconds rather than a
    full run. ``sparsity > 0`` prunes with SNIP first (one batch of 100, as the suites do).
    Stops early at the first non-finite loss. Returns a DataFrame with ``iteration`` (1-based),
    ``lr``, ``loss`` and ``grad_norm`` (L2 norm of the loss gradient before clipping).
    """
    import math

    import pandas as pd
    import torch
    import torch.nn.functional as F

    from snip_lib import data, masking, models, snip
    from snip_lib import init as init_mod
    from snip_lib.train import TrainConfig, lr_at, make_optimizer, seed_everything

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    cfg = TrainConfig(epochs=1, lr=lr, momentum=momentum, warmup_iterations=warmup_iterations,
                      clip_grad_norm=clip_grad_norm, schedule="constant")
    seed_everything(seed)
    model = init_mod.apply(models.build(arch), init, seed=seed)
    if sparsity:
        x, y = data.first_batch(models.dataset_for(arch), 100, split="train", seed=seed)
        masking.apply_masks(model, snip.snip_masks(model, x, y, sparsity))
    enforce = masking.enforce_masks if masking.is_masked(model) else None
    train = data.load_dataset(models.dataset_for(arch), "train", limit=iterations * 100)
    loader = data.make_loader(train, 100, shuffle=True, seed=seed)
    opt = make_optimizer(model, cfg)
    rows = []
    model.train()
    for i, (xb, yb) in enumerate(loader):
        if i >= iterations:
            break
        rate = lr_at(cfg, i, iterations)
        for group in opt.param_groups:
            group["lr"] = rate
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        rows.append({"iteration": i + 1, "lr": rate, "loss": float(loss.detach()), "grad_norm": norm})
        if not math.isfinite(rows[-1]["loss"]) or not math.isfinite(norm):
            break
        opt.step()
        if enforce is not None:
            enforce(model)
    return pd.DataFrame(rows)
