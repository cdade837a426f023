"""Rerun a recorded result from its own configuration and compare the two, epoch by epoch.

Why: every "ours" number of the book is a JSON file in ``results/``. A file is a claim; replaying
it is the check. A result stores everything its run needs (architecture, sparsity, seed,
initialisation, scoring options, training sizes and the whole :class:`~snip_lib.train.TrainConfig`),
so :func:`verify` rebuilds the call, trains the first ``epochs`` epochs again (all of them by
default) and compares the per-epoch training loss, training / validation / test error and
learning rate, and the mask (kept count and per-layer density), with the recorded ones. A replay
of the whole run also compares the headline numbers the book prints (final test error, test error
at the best validation epoch, best test error) where the file records them. A result that lacks a
curve its kind records, or holds it for fewer or more epochs than it ran, is refused: a curve that
is not there cannot be checked, and a verdict must never be "exact" for want of anything compared.

The schedules of the MNIST runs depend on the iteration only, so the first epochs of a replay
follow the recorded run exactly: ``epochs=1`` checks a 50-epoch result in seconds. (A cosine
schedule depends on the length of the run, so it can only be replayed whole.)

Training is deterministic on one machine: the same code, torch version, CPU and thread count give
the same error counts and learning rates in every epoch and the same kept count and per-layer
densities (:attr:`Verification.exact`). Where the floating-point sums run in
another order (another CPU, another thread count), two runs drift apart slowly, and
:attr:`Verification.agrees` allows ``tolerance`` percentage points on every error. An unstable
run, one close to diverging, can amplify the smallest such difference beyond any tolerance. Only
the sizes recorded in the file are used, so quick mode (``SNIP_QUICK``) does not change a replay.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:  # only for annotations: pandas is imported where a frame is built
    import pandas as pd

__all__ = [
    "DEFAULT_TOLERANCE",
    "DENSITY_TOLERANCE",
    "REPLAYABLE_KINDS",
    "REPORT_KIND",
    "VERDICTS",
    "Verification",
    "AUDIT_GROUPS",
    "audit_summary",
    "count_verdicts",
    "is_replayable",
    "load_reports",
    "replay",
    "replay_arguments",
    "verify",
    "write_report",
]

#: Allowed difference, in percentage points, of any training / validation / test error.
DEFAULT_TOLERANCE = 0.5
#: Allowed difference of a layer's kept fraction (a few weights may change layers on other hardware).
DENSITY_TOLERANCE = 1e-3
#: The result kinds a replay can rebuild: :func:`snip_lib.experiments.prune_and_train` and
#: :func:`snip_lib.keeps.label_fitting_run` (Fig. 4).
REPLAYABLE_KINDS = ("prune_and_train", "label_fitting")
#: The three verdicts of :attr:`Verification.verdict`, best first.
VERDICTS = ("exact", "within tolerance", "DIFFERS")
#: Kind of the result file :func:`write_report` writes (one row per replayed result).
REPORT_KIND = "replay_audit"
_ERRORS = ("train_error", "val_error", "test_error")
_CURVES = ("train_loss", *_ERRORS, "lr")
#: The per-epoch curves each kind records (label fitting has no validation split and a constant rate).
_KIND_CURVES = {"prune_and_train": _CURVES, "label_fitting": ("train_loss", "train_error", "test_error")}
#: The headline test errors (percentage points) each kind records, compared when the whole run is replayed.
_HEADLINES = {"prune_and_train": ("final_test_error", "test_error_at_best_val", "best_test_error"),
              "label_fitting": ("final_test_error",)}
_TRAIN_OPTIONS = ("decay_every", "boundaries", "decay_factor", "momentum", "weight_decay", "warmup_iterations",
                  "clip_grad_norm")


def _load(result: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    from snip_lib import results

    if isinstance(result, Mapping):
        obj = dict(result)
        results.validate_result(obj)
        return obj, "<result>"
    if isinstance(result, (str, os.PathLike)):
        path = Path(result)
        if not path.is_file():
            raise FileNotFoundError(f"no result file {os.fspath(result)!r}")
        return results.read_result(path), os.fspath(path)
    raise TypeError(f"result must be a path to a result file or a result dict, got {type(result).__name__}")


def _recorded_epochs(obj: Mapping[str, Any]) -> int:
    return int(obj["config"]["train"]["epochs"])


#: What a replay reads from a result file, per kind: config keys, config["train"] keys, metrics keys.
_NEEDED: dict[str, dict[str, tuple[str, ...]]] = {
    "prune_and_train": {
        "config": ("arch", "sparsity", "seed", "dataset", "saliency_batch", "init", "include_bias", "bn_mode",
                   "limit_train", "train_examples", "train"),
        "train": ("epochs", "optimizer", "lr", "schedule", "batch_size"),
        "metrics": ("iterations", "kept_parameters", "history"),
    },
    "label_fitting": {
        "config": ("arch", "sparsity", "labels", "n_train", "seed", "init", "saliency_batch", "n_test", "train"),
        "train": ("epochs", "optimizer", "lr", "weight_decay", "batch_size"),
        "metrics": ("kept_parameters",),
    },
}


def _missing_fields(obj: Mapping[str, Any]) -> list[str]:
    needed = _NEEDED[obj["kind"]]
    config, metrics = obj.get("config") or {}, obj.get("metrics") or {}
    train = config.get("train") if isinstance(config.get("train"), Mapping) else {}
    return ([f"config[{k!r}]" for k in needed["config"] if k not in config]
            + [f"config['train'][{k!r}]" for k in needed["train"] if "train" in config and k not in train]
            + [f"metrics[{k!r}]" for k in needed["metrics"] if k not in metrics])


def _curve_source(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where a result kind keeps its per-epoch curves: ``metrics['history']`` or ``metrics`` itself."""
    return obj["metrics"]["history"] if obj["kind"] == "prune_and_train" else obj["metrics"]


def _comparison_problems(obj: Mapping[str, Any]) -> list[str]:
    """What keeps the recording from being compared: each curve needs one number per recorded epoch,
    and a headline test error a number (or None, not computed)."""
    kind, total = obj["kind"], _recorded_epochs(obj)
    m = obj["metrics"]
    source, where = _curve_source(obj), ("metrics['history']" if kind == "prune_and_train" else "metrics")
    if not isinstance(source, Mapping):
        return [f"{where} is a {type(source).__name__}, not a dict of curves"]
    problems = []
    for k in _KIND_CURVES[kind]:
        values = source.get(k)
        if k not in source:
            problems.append(f"{where}[{k!r}] is missing")
        elif not isinstance(values, list):
            problems.append(f"{where}[{k!r}] is a {type(values).__name__}, not a list")
        elif len(values) != total:
            problems.append(f"{where}[{k!r}] has {len(values)} value(s)")
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            problems.append(f"{where}[{k!r}] holds a value that is not a number")
    for k in _HEADLINES[kind]:
        value = m.get(k)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"metrics[{k!r}] is {value!r}, not a number")
    return problems


def _check_replayable(obj: Mapping[str, Any], epochs: Any) -> int:
    """The number of epochs to replay; raises on a result or an ``epochs`` that cannot be replayed."""
    kind = obj["kind"]
    if kind not in REPLAYABLE_KINDS:
        raise ValueError(f"results of kind {kind!r} cannot be replayed; replayable kinds: {', '.join(REPLAYABLE_KINDS)}")
    missing = _missing_fields(obj)
    if missing:
        raise ValueError(f"this {kind} result lacks what a replay needs: {', '.join(missing)}")
    if obj["metrics"].get("smoke") or str(obj["config"].get("dataset", "")).endswith("-fake"):
        raise ValueError("this result is a SMOKE run on FakeData, not a result: there is nothing to verify")
    custom_loss = (obj["config"].get("method_options") or {}).get("loss_fn")
    if custom_loss is not None:
        raise ValueError(f"this result was pruned with a custom loss function ({custom_loss!r}), which a result "
                         "file cannot hold: a replay would score with another loss")
    total = _recorded_epochs(obj)
    problems = _comparison_problems(obj)
    if problems:
        raise ValueError(f"this {kind} result cannot be replayed: {'; '.join(problems)} (a replay compares "
                         f"each curve, {', '.join(_KIND_CURVES[kind])}, over the {total} recorded epoch(s), "
                         "one number per epoch)")
    if epochs is None:
        return total
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= total:
        raise ValueError(f"epochs must be an int from 1 to the {total} recorded epochs, got {epochs!r}")
    schedule = obj["config"]["train"].get("schedule")
    if epochs < total and schedule == "cosine":
        raise ValueError(
            f"a cosine schedule depends on the length of the run, so its first {epochs} of {total} epochs "
            "cannot be replayed alone; omit epochs to replay the whole run"
        )
    return epochs


def _train_options(train: Mapping[str, Any], total_iterations: int, truncated: bool) -> dict[str, Any]:
    from snip_lib.train import fraction_boundaries

    options = {k: train[k] for k in _TRAIN_OPTIONS if train.get(k) is not None}
    bounds = options.get("boundaries")
    if bounds is not None:
        options["boundaries"] = tuple(bounds)
        if truncated and isinstance(bounds[0], float):
            # fractions of the recorded run, as iteration counts, so a shorter replay decays at the same steps
            options["boundaries"] = tuple(fraction_boundaries(bounds, total_iterations))
    return options


def replay_arguments(result: str | os.PathLike | Mapping[str, Any], epochs: int | None = None) -> dict[str, Any]:
    """The keyword arguments that rerun ``result`` (its first ``epochs`` epochs; default all).

    For a ``prune_and_train`` result they are those of :func:`snip_lib.experiments.prune_and_train`,
    for a ``label_fitting`` result those of :func:`snip_lib.keeps.label_fitting_run`. Every size
    is explicit (``limit_train`` is the recorded number of training examples), so the current
    quick/full mode does not change them. ``device`` and ``progress`` are left to the caller.
    """
    obj, _ = _load(result)
    n = _check_replayable(obj, epochs)
    cfg, train = obj["config"], obj["config"]["train"]
    if obj["kind"] == "label_fitting":
        return dict(arch=cfg["arch"], sparsity=cfg["sparsity"], labels=cfg["labels"], n_train=cfg["n_train"],
                    epochs=n, seed=cfg["seed"], init=cfg["init"], optimizer=train["optimizer"], lr=train["lr"],
                    weight_decay=train["weight_decay"], batch_size=train["batch_size"],
                    n_test=cfg["n_test"],
                    # a dense run records no scoring batch (None): the default is then never used
                    **({"saliency_batch": cfg["saliency_batch"]} if cfg["saliency_batch"] is not None else {}))
    options = _train_options(train, int(obj["metrics"]["iterations"]), truncated=n < _recorded_epochs(obj))
    return dict(
        arch=cfg["arch"], sparsity=cfg["sparsity"], seed=cfg["seed"], dataset=cfg["dataset"], epochs=n,
        saliency_batch=cfg["saliency_batch"], init=cfg["init"], scoring_init=cfg.get("scoring_init"),
        scoring_bias=cfg.get("scoring_bias", "zeros"), include_bias=cfg["include_bias"], bn_mode=cfg["bn_mode"],
        method=cfg.get("method", "snip"), method_options=dict(cfg.get("method_options") or {}),
        shuffle=cfg.get("shuffle", False), limit_train=cfg["limit_train"] or cfg["train_examples"],
        optimizer=train["optimizer"], lr=train["lr"], schedule=train["schedule"], batch_size=train["batch_size"],
        amp=train.get("amp", False), channels_last=train.get("channels_last", False),
        model_options=dict(cfg.get("model_options") or {}), train_options=options,
    )


def _runner(kind: str) -> Callable[..., dict[str, Any]]:
    if kind == "label_fitting":
        from snip_lib.keeps import label_fitting_run

        return label_fitting_run
    from snip_lib.experiments import prune_and_train

    return prune_and_train


def replay(
    result: str | os.PathLike | Mapping[str, Any],
    *,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Rerun ``result`` (its first ``epochs`` epochs) on ``device`` and return the new result dict.

    ``device=None`` uses the recorded device when it is available here, else the CPU.
    """
    obj, _ = _load(result)
    kwargs = replay_arguments(obj, epochs)
    kwargs["device"] = _device_for(obj, device)
    kwargs["progress"] = progress
    return _runner(obj["kind"])(**kwargs)


def _device_for(obj: Mapping[str, Any], device: str | torch.device | None) -> torch.device:
    from snip_lib.train import resolve_device

    if device is not None:
        return resolve_device(device)
    try:
        return resolve_device(obj["config"].get("device") or "cpu")
    except ValueError:  # recorded on a GPU that is not here
        return torch.device("cpu")


def _curves(obj: Mapping[str, Any], n: int) -> dict[str, list[float]]:
    """The first ``n`` per-epoch values of each curve a result kind records (those present: a recording
    was checked to hold them all; a replay that lacks one does not agree, see :attr:`Verification.compared`)."""
    source = _curve_source(obj)
    return {k: [float(v) for v in source[k][:n]] for k in _KIND_CURVES[obj["kind"]] if k in source}


def _headline(obj: Mapping[str, Any]) -> dict[str, float | None]:
    """The headline test errors a result records (those the book prints), by name."""
    m = obj["metrics"]
    return {k: m[k] for k in _HEADLINES[obj["kind"]] if k in m}


def _gap(a: float | None, b: float | None) -> float:
    """Absolute difference of two recorded numbers; a number against None (not computed) is infinitely far."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    return abs(float(a) - float(b))


def _number(x: float | None) -> str:
    return "None" if x is None else f"{x:.2f} %"


def _platform(prov: Mapping[str, Any], threads: Any) -> str:
    capability = f" ({prov['cpu_capability']})" if prov.get("cpu_capability") and prov.get("device") == "cpu" else ""
    return (f"torch {prov.get('torch') or '?'} on {prov.get('device_name') or '?'}{capability}, "
            f"{threads if threads is not None else '?'} thread(s)")


@dataclass
class Verification:
    """Recorded and replayed curves of one result, and the verdict.

    ``recorded`` and ``rerun`` map each curve (``train_loss``, ``train_error``, ``val_error``,
    ``test_error``, ``lr``; those the kind records) to its first ``epochs`` per-epoch values.
    ``recorded_headline`` and ``rerun_headline`` hold the headline test errors (``final_test_error``,
    ``test_error_at_best_val``, ``best_test_error``; those the recording holds) when the whole run
    was replayed, and are empty otherwise: a shorter replay has no final or best epoch to compare.
    """

    source: str
    kind: str
    epochs: int
    recorded_epochs: int
    recorded: dict[str, list[float]]
    rerun: dict[str, list[float]]
    kept: tuple[int, int]
    density_difference: float
    tolerance: float
    recorded_platform: str
    platform: str
    wall_time: float
    label: str = ""
    run: dict[str, Any] | None = None
    recorded_commit: str | None = None
    recorded_time: str | None = None
    device: str = "cpu"
    recorded_headline: dict[str, float | None] = field(default_factory=dict)
    rerun_headline: dict[str, float | None] = field(default_factory=dict)

    @property
    def compared(self) -> bool:
        """Whether every recorded curve has a value in each of the ``epochs`` epochs, the replay has the
        same, and the replay has each recorded headline metric. Without it nothing (or only part) was
        compared, and the verdict is DIFFERS: an empty comparison must never pass for an exact one."""
        return (bool(self.recorded) and self.epochs >= 1
                and all(len(v) == self.epochs == len(self.rerun.get(k, ())) for k, v in self.recorded.items())
                and set(self.recorded_headline) <= set(self.rerun_headline))

    @property
    def differences(self) -> dict[str, float]:
        """The largest absolute difference of each curve and each compared headline metric (errors in
        percentage points); ``inf`` where the replay lacks a value to compare."""
        d = {k: max((abs(a - b) for a, b in zip(v, self.rerun.get(k, ()))), default=0.0)
             if len(v) == len(self.rerun.get(k, ())) else math.inf for k, v in self.recorded.items()}
        d.update({k: _gap(v, self.rerun_headline[k]) if k in self.rerun_headline else math.inf
                  for k, v in self.recorded_headline.items()})
        return d

    @property
    def loss_relative_difference(self) -> float:
        """The largest relative difference of the training loss."""
        pairs = zip(self.recorded.get("train_loss", []), self.rerun.get("train_loss", []))
        return max((abs(a - b) / max(abs(a), 1e-12) for a, b in pairs), default=0.0)

    @property
    def exact(self) -> bool:
        """Same kept count and per-layer densities, same learning rates and the same errors in every
        compared epoch, and the same headline test errors after a whole run (the training loss is
        reported in :attr:`differences`, not compared: its last digits follow the order of
        floating-point sums)."""
        d = self.differences
        return (self.compared and self.kept[0] == self.kept[1] and self.density_difference == 0.0
                and all(d[k] == 0.0 for k in d if k != "train_loss"))

    @property
    def agrees(self) -> bool:
        """Same kept count and learning rates; each layer's density, each error and each headline
        test error within tolerance."""
        d = self.differences
        lr_ok = all(math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
                    for a, b in zip(self.recorded.get("lr", []), self.rerun.get("lr", [])))
        return (self.compared and self.kept[0] == self.kept[1] and lr_ok
                and self.density_difference <= DENSITY_TOLERANCE
                and all(d[k] <= self.tolerance for k in (*_ERRORS, *self.recorded_headline) if k in d))

    @property
    def verdict(self) -> str:
        """``"exact"``, ``"within tolerance"`` or ``"DIFFERS"``."""
        return "exact" if self.exact else "within tolerance" if self.agrees else "DIFFERS"

    def frame(self) -> pd.DataFrame:
        """One row per compared epoch: recorded and replayed value of each curve."""
        import pandas as pd

        n = self.epochs
        data: dict[str, Any] = {"epoch": list(range(1, n + 1))}
        for k in self.recorded:  # None where a curve falls short (then the verdict is DIFFERS)
            for column, values in ((f"{k} recorded", self.recorded[k]), (f"{k} replayed", self.rerun.get(k, []))):
                data[column] = list(values[:n]) + [None] * (n - len(values[:n]))
        return pd.DataFrame(data)

    def row(self) -> dict[str, Any]:
        """One flat, JSON-ready row: which run, the verdict, the largest differences, the last test errors."""
        d = self.differences
        return {
            "file": self.label or self.source, "kind": self.kind, **(self.run or {}),
            "epochs": self.epochs, "recorded_epochs": self.recorded_epochs, "verdict": self.verdict,
            **{f"{k}_difference": d.get(k) for k in _ERRORS},
            "headline_difference": max((d[k] for k in self.recorded_headline), default=None),
            "test_error_recorded": self.recorded["test_error"][-1] if self.recorded.get("test_error") else None,
            "test_error_replayed": self.rerun["test_error"][-1] if self.rerun.get("test_error") else None,
            "loss_relative_difference": self.loss_relative_difference if "train_loss" in self.recorded else None,
            "kept_recorded": self.kept[0], "kept_replayed": self.kept[1],
            "density_difference": self.density_difference,
            "recorded_commit": self.recorded_commit, "recorded_time": self.recorded_time,
            "recorded_platform": self.recorded_platform, "replay_platform": self.platform,
            "replay_seconds": self.wall_time,
        }

    def summary(self) -> str:
        """A few lines: what was replayed, where, and how it compares."""
        d = self.differences
        errors = ", ".join(f"{k.replace('_', ' ')} {d[k]:.2g}" for k in _ERRORS if k in d)
        lines = [
            f"{self.label or self.source}: replayed {self.epochs} of {self.recorded_epochs} epoch(s) "
            f"in {self.wall_time:.1f} s -> {self.verdict}",
            f"  recorded with {self.recorded_platform}; replayed with {self.platform}",
            f"  kept {self.kept[0]:,} recorded, {self.kept[1]:,} replayed; largest per-layer density difference "
            f"{self.density_difference:.2g}",
            f"  largest error differences (percentage points, tolerance {self.tolerance:g}): {errors}",
        ]
        if "train_loss" in self.recorded:
            lines.append(f"  largest relative training-loss difference: {self.loss_relative_difference:.2g}")
        last = self.epochs - 1
        if len(self.recorded.get("test_error", ())) > last >= 0 and len(self.rerun.get("test_error", ())) > last:
            lines.append(f"  test error after epoch {self.epochs}: recorded {self.recorded['test_error'][last]:.2f} %, "
                         f"replayed {self.rerun['test_error'][last]:.2f} %")
        if self.recorded_headline:
            lines.append("  headline test errors (whole run), recorded / replayed: " + ", ".join(
                f"{k.replace('_', ' ')} {_number(v)} / "
                f"{_number(self.rerun_headline[k]) if k in self.rerun_headline else 'missing'}"
                for k, v in self.recorded_headline.items()))
        elif self.epochs < self.recorded_epochs:
            lines.append(f"  headline test errors not compared: only a replay of all {self.recorded_epochs} "
                         "epochs has them")
        else:
            lines.append("  headline test errors not compared: the file records none")
        if not self.compared:
            lines.append("  a curve or headline metric of the recording is missing from the replay, or falls "
                         "short of the replayed epochs: nothing complete to compare")
        return "\n".join(lines)


def _check_tolerance(tolerance: Any) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0 (percentage points), got {tolerance!r}")
    return float(tolerance)


def verify(
    result: str | os.PathLike | Mapping[str, Any],
    *,
    epochs: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> Verification:
    """Replay ``result`` (a result file or dict) for its first ``epochs`` epochs and compare.

    ``threads`` sets torch's CPU threads for the replay (default: the recorded count, which a
    bit-for-bit replay needs) and restores them afterwards. Raises ``ValueError`` for a result
    that cannot be replayed (another kind, a smoke run, a missing or short curve) or a bad
    ``epochs``/``tolerance``/``threads``.
    """
    from snip_lib import results

    obj, source = _load(result)
    tolerance = _check_tolerance(tolerance)
    n = _check_replayable(obj, epochs)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None (the recorded count), got {threads!r}")
    prov = obj.get("provenance") or {}
    dev = _device_for(obj, device)
    use_threads = threads if threads is not None else prov.get("num_threads")
    before = torch.get_num_threads()
    start = time.perf_counter()
    try:
        if dev.type == "cpu" and isinstance(use_threads, int) and use_threads >= 1:
            torch.set_num_threads(use_threads)
        threads_used = torch.get_num_threads()
        new = replay(obj, epochs=n, device=dev, progress=progress)
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - start
    now = results.provenance(dev)
    m_old, m_new = obj["metrics"], new["metrics"]
    dens_old = m_old.get("per_layer_density") or {}
    dens_new = m_new.get("per_layer_density") or {}
    names = set(dens_old) | set(dens_new)
    density_diff = max((abs(dens_old.get(k, 0.0) - dens_new.get(k, 0.0)) for k in names), default=0.0)
    total = _recorded_epochs(obj)
    whole = n == total  # only a whole replay has a final and a best epoch to compare
    return Verification(
        source=source, kind=obj["kind"], epochs=n, recorded_epochs=total,
        recorded=_curves(obj, n), rerun=_curves(new, n),
        kept=(int(m_old["kept_parameters"]), int(m_new["kept_parameters"])), density_difference=density_diff,
        tolerance=tolerance,
        recorded_platform=_platform(prov, prov.get("num_threads")),
        platform=_platform(now, threads_used),
        wall_time=wall, label=Path(source).name if source != "<result>" else source,
        run={k: obj["config"].get(k) for k in ("arch", "sparsity", "seed", "method", "labels") if k in obj["config"]},
        recorded_commit=prov.get("git_commit"), recorded_time=prov.get("timestamp_utc"), device=str(dev),
        recorded_headline=_headline(obj) if whole else {}, rerun_headline=_headline(new) if whole else {},
    )


def count_verdicts(verifications: list[Verification]) -> dict[str, int]:
    """How many of ``verifications`` have each verdict (every one of :data:`VERDICTS`, zeros included)."""
    verdicts = [v.verdict for v in verifications]
    return {name: verdicts.count(name) for name in VERDICTS}


def is_replayable(result: str | os.PathLike | Mapping[str, Any]) -> bool:
    """Whether ``result`` is of a kind :func:`verify` can replay (smoke runs, incomplete curves and bad epochs
    aside: :func:`verify` refuses those, naming the problem)."""
    obj, _ = _load(result)
    return obj["kind"] in REPLAYABLE_KINDS


def write_report(verifications: list[Verification], path: str | os.PathLike, *, targets: list[str],
                 epochs: int | None, tolerance: float) -> dict[str, Any]:
    """Write the verdicts of a batch of replays as one result file of kind :data:`REPORT_KIND`.

    Its provenance (commit, torch, CPU and its capability, time) is that of the replays; each row
    (:meth:`Verification.row`) carries the recording's commit, time and platform. Returns the object.
    """
    from snip_lib import results

    if not verifications:
        raise ValueError("no verifications to report")
    counts = count_verdicts(verifications)
    return results.write_result(
        path, kind=REPORT_KIND, seed=None, wall_time=sum(v.wall_time for v in verifications),
        device=verifications[0].device,
        config={"targets": [str(t) for t in targets], "epochs": epochs, "tolerance": tolerance},
        metrics={"counts": counts, "runs": [v.row() for v in verifications]},
    )


def load_reports(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of every replay report under ``folder`` (a DataFrame), each tagged with its report.

    Columns: those of :meth:`Verification.row`, plus ``report`` (file name), ``replay_commit`` and
    ``replay_time`` (from the report's provenance), ``replay_machine`` (the report's ``platform``:
    OS, kernel build, machine) and ``recorded_machine``: the ``platform`` of the replayed file's
    own provenance, read from the file at ``root / file`` (``root``: the repository, by default;
    None where the file is not there), and ``current``: whether that file is still the one that was
    replayed (its provenance time is the row's ``recorded_time``). A file recorded again since the
    report describes another run, so an audit of the files as they are keeps only current rows.
    Raises ``FileNotFoundError`` when there is no report.
    """
    import pandas as pd

    from snip_lib import results

    base = Path(root) if root is not None else results.results_dir().parent
    frame = results.load_results(folder, kind=REPORT_KIND)
    if frame.empty:
        raise FileNotFoundError(f"no replay reports (kind {REPORT_KIND!r}) under {os.fspath(folder)!r}")
    rows = []
    for _, report in frame.iterrows():
        for run in report["metrics.runs"]:
            recorded = base / run["file"]
            prov = results.read_result(recorded)["provenance"] if recorded.is_file() else {}
            rows.append({**run, "report": Path(report["path"]).name, "replay_commit": report["provenance.git_commit"],
                         "replay_time": report["provenance.timestamp_utc"], "recorded_machine": prov.get("platform"),
                         "replay_machine": report["provenance.platform"],
                         "current": bool(prov) and prov.get("timestamp_utc") == run.get("recorded_time")})
    return pd.DataFrame(rows)


#: Values of :func:`audit_summary`'s ``by``.
AUDIT_GROUPS = ("folder", "recorded_machine")


def audit_summary(rows: pd.DataFrame, by: str = "folder") -> pd.DataFrame:
    """Per results folder (or per recording machine): how many replays were exact, within tolerance or differ.

    ``rows`` is :func:`load_reports`'s frame; ``by`` is ``"folder"`` (the folder holding the file)
    or ``"recorded_machine"``. Columns: ``by``, ``runs``, ``exact``, ``within tolerance``,
    ``differ``, ``largest test-error difference`` (percentage points) and ``recorded`` (first and
    last day the group's runs were recorded).
    """
    import pandas as pd

    if by not in AUDIT_GROUPS:
        raise ValueError(f"by={by!r} is not supported; allowed: {', '.join(AUDIT_GROUPS)}")
    frame = rows.assign(folder=[Path(f).parent.name for f in rows["file"]],
                        day=[str(t)[:10] for t in rows["recorded_time"]])
    if by == "recorded_machine":
        frame["recorded_machine"] = frame["recorded_machine"].fillna("unknown")
    out = []
    for key, g in frame.groupby(by, sort=True):
        verdicts = g["verdict"]
        days = sorted(g["day"])
        out.append({
            by: key, "runs": len(g), "exact": int((verdicts == "exact").sum()),
            "within tolerance": int((verdicts == "within tolerance").sum()),
            "differ": int((verdicts == "DIFFERS").sum()),
            "largest test-error difference": float(g["test_error_difference"].max()),
            "recorded": days[0] if days[0] == days[-1] else f"{days[0]} to {days[-1]}",
        })
    return pd.DataFrame(out)
