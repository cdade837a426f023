"""The one recipe behind every SNIP run of the book: initialise, score, prune, train, report.

:func:`prune_and_train` is what the command line (``python -m snip_lib run``) and the
notebooks call, so a number in the book and a number from the terminal come from the same
code. Quick mode (``SNIP_QUICK=1``) shrinks only sizes (epochs, training subset) through
:func:`snip_lib.config.pick`; the code path is identical.

Default settings per architecture family (every one can be overridden by an argument):

===============  ================  =====  ========  ===========  ============  =================================
family           dataset           batch  saliency  full epochs  quick         schedule (SGD, lr 0.1, m 0.9,
                                          batch                  (train lim.)  wd 5e-4)
===============  ================  =====  ========  ===========  ============  =================================
LeNets           MNIST             100    100       50           1 (5,000)     paper: x0.1 every 25k iterations
RNNs (LSTM/GRU)  sequential MNIST  100    100       50           1 (5,000)     paper: x0.1 every 25k iterations
AlexNet/VGG/WRN  CIFAR-10 (aug.)   128    128       200          1 (5,000)     README: x0.2 at 20/40/60/80 %
===============  ================  =====  ========  ===========  ============  =================================

Why these numbers. The paper gives the batch sizes, the optimiser and the decay steps but not
the length of training. For MNIST, 50 epochs of 540 iterations (27k) cover the paper's first
decay at 25k, so the last ~3.7 epochs run at lr 0.01 and the final error is not the noisy
value of a constant lr 0.1; it is also cheap on a CPU (see the book for timings). The
official code's MNIST default is 10k iterations at a constant lr 0.1 (about 18.5 epochs).
For CIFAR-10, the official README trains VGG-D for 150k iterations (about 427 epochs at
batch 128); 200 epochs with the same x0.2 steps placed at the same fractions of the run is a
cheaper version of that recipe, for a GPU. Measured cost of one full-MNIST epoch (54k examples, batch 100, plus the
validation and test evaluation) through :func:`snip_lib.train.fit` on the book's 2-core CPU
machine while other jobs shared it, one torch thread: LeNet-300-100 about 3.5 s dense and
4.7 s pruned (the gradient-mask hooks cost a little), LeNet-5-Caffe about 85 s; so a full
LeNet-300-100 run takes minutes and a full LeNet-5-Caffe run roughly an hour on such a CPU.
The validation split (10 % of the training set,
as in the paper) is evaluated every epoch, so both error protocols are available (see
:mod:`snip_lib.train`).

Initialisation. The default ``init="lecun_truncated_normal"`` is the official code's ``vs``
(``tf.variance_scaling_initializer()`` with its defaults); the paper's text cites Glorot
(``"vs-x"``) and Table 3 trains with VS-X. ``scoring_init=None`` scores the weights that are
then trained (what most PyTorch ports do); ``scoring_init="<scheme>"`` is the official code's
two-initialisation variant (an independent copy, seeded with ``seed + SCORING_SEED_OFFSET``,
is scored), and ``scoring_bias="scheme"`` gives that copy the official code's ``vs`` biases.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snip_lib import config as _config

__all__ = [
    "DEFAULT_INIT",
    "FAMILY_DEFAULTS",
    "BN_MODES",
    "CUSTOM_LOSS_PREFIX",
    "SCORING_SEED_OFFSET",
    "SMOKE_MESSAGE",
    "SUITES",
    "Suite",
    "TRAIN_OPTIONS",
    "check_existing",
    "defaults_for",
    "family_of",
    "file_differences",
    "planned_config",
    "prune_and_train",
    "recorded_differences",
    "requested_settings",
    "register_suite",
    "result_name",
    "run_suite",
    "shortened_decay_every",
    "suite_epochs",
]

#: Initialisation of the trained network unless a run says otherwise: the official code's "vs" default.
DEFAULT_INIT = "lecun_truncated_normal"
#: Added to a run's seed to seed the independently initialised copy that is scored (``scoring_init``).
SCORING_SEED_OFFSET = 1_000_000
#: The label every smoke run (FakeData standing in for a dataset that cannot be had) prints and records.
SMOKE_MESSAGE = "SMOKE RUN on FakeData: not a result"
#: How a result file records a custom pruning loss (``method_options["loss_fn"]``): by name, after
#: this prefix. A function cannot be stored, so such a run cannot be replayed.
CUSTOM_LOSS_PREFIX = "custom, not recorded: "
_EVAL_BATCH = 1000
_QUICK_LIMIT_TRAIN = 5000
_SMOKE_SIZES = {"train": 512, "val": 128, "test": 256}
#: How BatchNorm runs while scoring (the same values as :data:`snip_lib.snip.BN_MODES`).
BN_MODES = ("eval", "train")

#: Per model family: batch sizes, epochs in full and quick mode, the schedule and its decay point.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet": {
        "batch_size": 100, "saliency_batch": 100, "full_epochs": 50, "quick_epochs": 1,
        "schedule": "step", "decay_every": 25_000,
    },
    "rnn": {
        "batch_size": 100, "saliency_batch": 100, "full_epochs": 50, "quick_epochs": 1,
        "schedule": "step", "decay_every": 25_000,
    },
    "cifar": {
        "batch_size": 128, "saliency_batch": 128, "full_epochs": 200, "quick_epochs": 1,
        "schedule": "official", "decay_every": 30_000,
    },
}


def shortened_decay_every(epochs: int, iterations_per_epoch: int = 540) -> int:
    """The x0.1 decay point of a shortened MNIST run: 25k/27k of its iterations, as in the 50-epoch LeNet recipe.

    Why: a run cut to a few epochs never reaches the paper's decay at 25k iterations; moving the
    decay to the same fraction of the run keeps a stretch at the low learning rate at the end.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(iterations_per_epoch, bool) or not isinstance(iterations_per_epoch, int) or iterations_per_epoch < 1:
        raise ValueError(f"iterations_per_epoch must be a positive int, got {iterations_per_epoch!r}")
    return round(25_000 / 27_000 * epochs * iterations_per_epoch)


def family_of(arch: str) -> str:
    """``"lenet"``, ``"rnn"`` or ``"cifar"``: which row of the defaults table applies."""
    from snip_lib import models

    if len(models.input_shape(arch)) == 2:
        return "rnn"
    return "lenet" if models.dataset_for(arch) == "mnist" else "cifar"


def defaults_for(arch: str) -> dict[str, Any]:
    """The defaults of ``arch``'s family, with ``epochs`` resolved for the current mode."""
    d = dict(FAMILY_DEFAULTS[family_of(arch)])
    d["epochs"] = _config.pick(d["full_epochs"], d["quick_epochs"])
    return d


def _check_sparsity(sparsity: Any) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (fraction pruned; 0 = dense reference), got {sparsity!r}")
    return float(sparsity)


def _check_positive_int(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


def _recorded_options(options: dict[str, Any]) -> dict[str, Any]:
    """Method options as the result file records them: a custom loss function by its name, marked
    so that a replay refuses the run instead of re-running it with the default loss."""
    recorded = dict(options)
    if "loss_fn" in recorded:
        fn = recorded["loss_fn"]
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        recorded["loss_fn"] = f"{CUSTOM_LOSS_PREFIX}{getattr(fn, '__module__', '?')}.{name}"
    return recorded


def _datasets(name: str, family: str, limit_train: int | None, smoke_ok: bool, seed: int):
    """(train, val, test, smoke) in-memory datasets; FakeData where CIFAR-10 is missing and allowed."""
    from snip_lib import data

    sequential = family == "rnn"
    augment = name == "cifar10"
    if name == "cifar10" and not data.available("cifar10"):
        if not smoke_ok:
            data.load_dataset("cifar10", "test")  # raises DatasetUnavailableError with instructions
        n_train = limit_train or _SMOKE_SIZES["train"]
        train = data.fake_cifar10(n_train, seed=seed, augment=True)
        val = data.fake_cifar10(_SMOKE_SIZES["val"], seed=seed + 1)
        test = data.fake_cifar10(_SMOKE_SIZES["test"], seed=seed + 2)
        return train, val, test, True
    train = data.load_dataset(name, "train", augment=augment, sequential=sequential, limit=limit_train)
    val = data.load_dataset(name, "val", sequential=sequential)
    test = data.load_dataset(name, "test", sequential=sequential)
    return train, val, test, bool(getattr(train, "is_smoke", False))


def _saliency_batch(name: str, n: int, seed: int, family: str, smoke: bool, train_ds) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clean (unaugmented) training examples drawn with ``seed``: the paper's D^b."""
    from snip_lib import data

    if smoke:
        if n > len(train_ds):
            raise ValueError(f"saliency_batch={n} exceeds the {len(train_ds)} smoke training examples")
        order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(seed))[:n]
        was = train_ds.augment
        train_ds.augment = False
        try:
            return train_ds.get_batch(order)
        finally:
            train_ds.augment = was
    return data.first_batch(name, n, split="train", seed=seed, sequential=family == "rnn")


#: The ``train_options`` keys of :func:`prune_and_train`: TrainConfig fields that have no argument of their own.
TRAIN_OPTIONS = ("decay_every", "boundaries", "decay_factor", "momentum", "weight_decay", "warmup_iterations",
                 "clip_grad_norm")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _model_options(arch: str, options: Any) -> dict[str, Any]:
    """Every option of ``arch``'s model, defaults filled in and checked, as :func:`snip_lib.models.build` records
    them (``model.snip_options``), without building the model."""
    from snip_lib import models

    if options is not None and not isinstance(options, dict):
        raise TypeError(f"model_options must be a dict or None, got {type(options).__name__} {options!r}")
    name = models._canonical(arch)
    spec = models._REGISTRY[name]
    unknown = sorted(set(options or {}) - set(spec.defaults))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for {name!r}; "
                        f"allowed: {', '.join(sorted(spec.defaults))}")
    return {key: spec.checks[key]((options or {}).get(key, default)) for key, default in spec.defaults.items()}


def _resolve_settings(
    arch: str, sparsity: Any, *, dataset: str | None, epochs: int | None, saliency_batch: int | None, init: str,
    scoring_init: str | None, scoring_bias: str, include_bias: bool, bn_mode: str, method: str,
    method_options: dict[str, Any] | None, shuffle: bool, limit_train: int | None, optimizer: str,
    lr: float | None, schedule: str | None, batch_size: int | None, amp: bool, channels_last: bool,
    model_options: dict[str, Any] | None, train_options: dict[str, Any] | None, cuda: bool,
) -> dict[str, Any]:
    """Every setting of a :func:`prune_and_train` run, checked and with the defaults of the current mode resolved.

    Why one function: the run records these settings and a suite compares a recorded file with
    them (:func:`requested_settings`); computed twice, the two could drift apart. Raises on bad
    input before any work.
    """
    from snip_lib import data, models, pruners, snip
    from snip_lib import init as init_mod
    from snip_lib.train import TrainConfig

    sparsity = _check_sparsity(sparsity)
    family = family_of(arch)  # also rejects an unknown architecture
    fam = defaults_for(arch)
    for name, value in (("epochs", epochs), ("saliency_batch", saliency_batch), ("limit_train", limit_train),
                        ("batch_size", batch_size)):
        _check_positive_int(name, value)
    for name, value in (("include_bias", include_bias), ("shuffle", shuffle), ("amp", amp),
                        ("channels_last", channels_last)):
        _check_bool(name, value)
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode={bn_mode!r} is not supported; allowed: {', '.join(BN_MODES)}")
    init_mod.canonical_scheme(init)  # reject a bad scheme before any work
    snip.check_scoring(scoring_init, scoring_bias)
    if method_options is not None and not isinstance(method_options, dict):
        raise TypeError(f"method_options must be a dict or None, got {type(method_options).__name__}")
    method_options = dict(method_options or {})
    method = pruners.check_method(method, method_options)  # reject a bad method/option before any work
    for key in ("scoring_init", "scoring_bias"):
        if key in method_options:
            raise ValueError(f"pass {key} as the argument of prune_and_train, not in method_options")
    if scoring_init is not None and method != "snip":
        raise ValueError(f"scoring_init applies to method='snip' only, got method={method!r}")
    resolved_model_options = _model_options(arch, model_options)
    # canonical ("CIFAR-10" -> "cifar10"): augmentation and the smoke fallback key on it, and so does a replay
    dataset_name = data._canonical_name(dataset) if dataset is not None else models.dataset_for(arch)
    if train_options is not None and not isinstance(train_options, dict):
        raise TypeError(f"train_options must be a dict or None, got {type(train_options).__name__} {train_options!r}")
    train_kwargs: dict[str, Any] = dict(
        epochs=epochs if epochs is not None else fam["epochs"],
        batch_size=batch_size if batch_size is not None else fam["batch_size"], optimizer=optimizer, lr=lr,
        schedule=schedule if schedule is not None else fam["schedule"], decay_every=fam["decay_every"], amp=amp,
        channels_last=channels_last,
    )
    extra = dict(train_options or {})
    clash = sorted(set(extra) & (set(train_kwargs) - {"decay_every"}))
    if clash:
        raise ValueError(f"train_options {clash} duplicate arguments of prune_and_train; pass them directly")
    unknown = sorted(set(extra) - set(TRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown train_options {unknown}; allowed: {', '.join(sorted(TRAIN_OPTIONS))}")
    train_kwargs.update(extra)
    dropped = not cuda and (amp or channels_last)
    if dropped:
        train_kwargs.update(amp=False, channels_last=False)
    return {
        "arch": models._canonical(arch), "family": family, "dataset": dataset_name, "sparsity": sparsity,
        "init": init, "scoring_init": scoring_init, "scoring_bias": scoring_bias, "include_bias": include_bias,
        "bn_mode": bn_mode, "method": method, "method_options": method_options, "shuffle": shuffle,
        "saliency_n": saliency_batch if saliency_batch is not None else fam["saliency_batch"],
        "limit": limit_train if limit_train is not None else _config.pick(None, _QUICK_LIMIT_TRAIN),
        "model_options": resolved_model_options, "train_config": TrainConfig(**train_kwargs),
        "cuda_only_dropped": dropped,
    }


def _planned_config(plan: dict[str, Any], seed: int, device: Any, train_examples: int | None = None) -> dict[str, Any]:
    """The ``config`` a run of ``plan`` (:func:`_resolve_settings`) records, in the result file's layout and order."""
    cfg: dict[str, Any] = {
        "arch": plan["arch"],
        "dataset": plan["dataset"],
        "sparsity": plan["sparsity"],
        "seed": seed,
        "init": plan["init"],
        "scoring_init": plan["scoring_init"],
        "scoring_bias": plan["scoring_bias"],
        "include_bias": plan["include_bias"],
        "bn_mode": plan["bn_mode"],
        "method": plan["method"],
        "method_options": _recorded_options(plan["method_options"]),
        "shuffle": plan["shuffle"],
        "saliency_batch": plan["saliency_n"] if plan["sparsity"] > 0 else None,  # a dense run scores nothing
        "limit_train": plan["limit"],
        "train_examples": train_examples,
        "model_options": dict(plan["model_options"]),
        "device": str(device),
        "mode": _config.mode_name(),
        "train": plan["train_config"].to_dict(),
    }
    if train_examples is None:  # known only once the data is loaded
        del cfg["train_examples"]
    return cfg


def planned_config(arch: str, sparsity: float, *, seed: int = 0, device: str | torch.device | None = None,
                   **settings: Any) -> dict[str, Any]:
    """The ``config`` that :func:`prune_and_train` with these arguments records, without running it.

    Every default resolved for the current mode, as the run resolves it; ``train_examples`` (known
    once the data is loaded) is left out, and ``dataset`` is the real dataset even where a smoke
    run would fall back to FakeData. ``settings`` are the other setting arguments of
    :func:`prune_and_train` (``epochs``, ``init``, ``train_options``, ...). Bad input raises as the run would.
    """
    from snip_lib.init import check_seed
    from snip_lib.train import resolve_device

    allowed = _SETTING_ARGS - {"arch", "sparsity"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown} of prune_and_train; allowed: {', '.join(sorted(allowed))}")
    seed = check_seed(seed, allow_none=False)
    dev = resolve_device(device)
    kwargs = {name: settings.get(name, _SETTING_DEFAULT_ARGS[name]) for name in allowed}
    plan = _resolve_settings(arch, sparsity, cuda=dev.type == "cuda", **kwargs)
    return _planned_config(plan, seed, dev)


def prune_and_train(
    arch: str,
    sparsity: float,
    *,
    seed: int = 0,
    dataset: str | None = None,
    epochs: int | None = None,
    saliency_batch: int | None = None,
    init: str = DEFAULT_INIT,
    scoring_init: str | None = None,
    scoring_bias: str = "zeros",
    include_bias: bool = False,
    bn_mode: str = "eval",
    method: str = "snip",
    method_options: dict[str, Any] | None = None,
    shuffle: bool = False,
    limit_train: int | None = None,
    optimizer: str = "sgd",
    lr: float | None = None,
    schedule: str | None = None,
    batch_size: int | None = None,
    amp: bool = False,
    channels_last: bool = False,
    model_options: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log_every: int | None = None,
    smoke_ok: bool = False,
    return_model: bool = False,
) -> dict[str, Any]:
    """Initialise ``arch``, prune it with SNIP (or ``method``) at ``sparsity`` on one batch, train it, report.

    ``sparsity`` is the fraction of prunable parameters removed (0.98 keeps 2 %); ``0`` trains
    the dense reference without pruning. Prunable parameters are the weights of the
    conv/linear layers (plus their biases with ``include_bias``, as in the official code).
    ``None`` arguments take the defaults of the module docstring's table; ``limit_train`` is
    ``None`` (all 54k/45k training examples) in full mode and 5,000 in quick mode.
    ``optimizer="adam"`` gives the Table 3 setting (lr 1e-3, no weight decay).
    ``train_options`` passes further :class:`~snip_lib.train.TrainConfig` fields
    (``decay_every``, ``boundaries``, ``decay_factor``, ``momentum``, ``weight_decay``,
    ``warmup_iterations``, ``clip_grad_norm``).

    ``method`` picks the pruning-at-initialisation method of :func:`snip_lib.pruners.prune_masks`
    (default ``"snip"``; also random, magnitude, GraSP, SynFlow, iterative SNIP, FORCE) and
    ``method_options`` its options; ``scoring_init`` and ``scoring_bias`` (the biases of the
    re-initialised scored copy, see :func:`snip_lib.snip.snip_masks`) apply to SNIP only.
    ``shuffle`` permutes the mask within each layer after pruning (seeded with ``seed``; Frankle et
    al.'s sanity check).

    Returns ``{"kind", "seed", "config", "metrics", "wall_time"}`` (JSON-ready; plus
    ``"model"``, the trained network, with ``return_model=True``). ``metrics`` holds the final,
    best-checkpoint and best-validation test errors (percent), the kept and prunable parameter
    counts, per-layer density, collapsed layers, timings and the per-epoch history. Where
    CIFAR-10 is unavailable and ``smoke_ok``, the run uses random FakeData, prints
    ``"SMOKE RUN on FakeData: not a result"`` and sets ``metrics["smoke"] = True``.

    The result records what the run did: the dataset's canonical name (``"CIFAR-10"`` is
    ``"cifar10"``, with its augmentation), ``amp`` and ``channels_last`` as False off CUDA (with a
    warning), and a custom pruning loss by name (:data:`CUSTOM_LOSS_PREFIX`; such a run cannot be
    replayed).
    """
    from snip_lib import data, masking, models, pruners, snip
    from snip_lib import init as init_mod
    from snip_lib.train import fit, resolve_device, seed_everything

    start = time.perf_counter()
    _check_positive_int("log_every", log_every)
    dev = resolve_device(device)
    plan = _resolve_settings(
        arch, sparsity, dataset=dataset, epochs=epochs, saliency_batch=saliency_batch, init=init,
        scoring_init=scoring_init, scoring_bias=scoring_bias, include_bias=include_bias, bn_mode=bn_mode,
        method=method, method_options=method_options, shuffle=shuffle, limit_train=limit_train, optimizer=optimizer,
        lr=lr, schedule=schedule, batch_size=batch_size, amp=amp, channels_last=channels_last,
        model_options=model_options, train_options=train_options, cuda=dev.type == "cuda")
    if plan["cuda_only_dropped"]:  # record what the run does, not what was asked
        warnings.warn(f"amp and channels_last only take effect on CUDA; training in float32 on {dev}, "
                      "recorded as amp=False, channels_last=False", stacklevel=2)
    sparsity, family, dataset_name, method = plan["sparsity"], plan["family"], plan["dataset"], plan["method"]
    method_options, train_config = plan["method_options"], plan["train_config"]
    epochs, batch_size = train_config.epochs, train_config.batch_size
    saliency_n, limit = plan["saliency_n"], plan["limit"]

    seed_everything(seed)
    model = models.build(arch, **(model_options or {}))
    arch = getattr(model, "snip_arch", arch)  # canonical name
    init_mod.apply(model, init, seed=seed)
    train_ds, val_ds, test_ds, smoke = _datasets(dataset_name, family, limit, smoke_ok, seed)
    if smoke:
        print(f"*** {SMOKE_MESSAGE} ({arch}: CIFAR-10 is not available here) ***", flush=True)
    model.to(dev)
    prunable = snip.prunable_parameters(model, include_bias=include_bias)
    n_prunable = sum(p.numel() for p in prunable.values())

    t_prune = time.perf_counter()
    if sparsity > 0:
        x, y = _saliency_batch(dataset_name, saliency_n, seed, family, smoke, train_ds)
        options = dict(method_options, **({"scoring_init": scoring_init, "scoring_bias": scoring_bias}
                                          if scoring_init is not None else {}))
        masks = pruners.prune_masks(
            method, model, x.to(dev), y.to(dev), sparsity, include_bias=include_bias, bn_mode=bn_mode,
            seed=seed + SCORING_SEED_OFFSET if scoring_init is not None else seed, **options,
        )
        if shuffle:
            masks = pruners.shuffle_within_layers(masks, seed=seed)
        masking.apply_masks(model, masks)
        kept = snip.kept_count(masks)
        density = snip.layerwise_density(masks)
        collapsed = masking.layer_collapse(masks)
    else:
        kept = n_prunable
        density = {name: 1.0 for name in prunable}
        collapsed = []
    prune_time = time.perf_counter() - t_prune
    if progress:
        print(
            f"{arch} on {dataset_name}{' (SMOKE)' if smoke else ''}, seed {seed}: sparsity {sparsity:.4g}, "
            f"keeping {kept:,} of {n_prunable:,} prunable parameters; training {epochs} epoch(s) on {dev}",
            flush=True,
        )
    if collapsed:
        print(f"warning: layer collapse in {arch}, {method}{' (shuffled)' if shuffle else ''} at sparsity "
              f"{sparsity:.4g}, seed {seed}: no connection kept in {', '.join(collapsed)}", flush=True)

    loader_device = dev if dev.type != "cpu" else None
    train_loader = data.make_loader(train_ds, batch_size, shuffle=True, seed=seed, device=loader_device)
    val_loader = data.make_loader(val_ds, _EVAL_BATCH, shuffle=False, device=loader_device)
    test_loader = data.make_loader(test_ds, _EVAL_BATCH, shuffle=False, device=loader_device)
    history = fit(model, train_loader, test_loader, train_config, val_loader=val_loader, device=dev,
                  progress=progress, log_every=log_every)
    wall_time = time.perf_counter() - start

    hist = history.to_dict()
    metrics: dict[str, Any] = {
        "final_test_error": history.final_test_error,
        "best_test_error": history.best_test_error,
        "best_epoch": history.best_epoch,
        "test_error_at_best_val": history.test_error_at_best_val,
        "best_val_epoch": history.best_val_epoch,
        "final_val_error": history.val_error[-1] if history.val_error else None,
        "final_train_loss": history.train_loss[-1],
        "final_train_error": history.train_error[-1],
        "prunable_parameters": n_prunable,
        "kept_parameters": kept,
        "achieved_sparsity": 1.0 - kept / n_prunable,
        "total_parameters": models.count_parameters(model),
        "per_layer_density": density,
        "collapsed_layers": collapsed,
        "iterations": history.iterations,
        "prune_time": prune_time,
        "train_time": history.wall_time,
        "epoch_time_mean": sum(history.epoch_times) / len(history.epoch_times),
        "history": {k: hist[k] for k in ("train_loss", "train_error", "val_error", "test_error", "lr", "epoch_times")},
        "smoke": smoke,
    }
    cfg = _planned_config(plan, seed, dev, train_examples=len(train_ds))
    cfg.update(arch=arch, model_options=dict(getattr(model, "snip_options", cfg["model_options"])))
    if smoke:
        cfg["dataset"] = f"{dataset_name}-fake"
        print(f"*** {SMOKE_MESSAGE} ***", flush=True)
    out: dict[str, Any] = {"kind": "prune_and_train", "seed": seed, "config": cfg, "metrics": metrics,
                           "wall_time": wall_time}
    if return_model:
        out["model"] = model
    return out


#: The arguments of :func:`prune_and_train` that are settings of the run (recorded in its config), and their defaults.
_SETTING_DEFAULT_ARGS: dict[str, Any] = {
    name: param.default for name, param in inspect.signature(prune_and_train).parameters.items()
    if name not in ("arch", "sparsity", "seed", "device", "progress", "log_every", "smoke_ok", "return_model")
}
_SETTING_ARGS = frozenset(_SETTING_DEFAULT_ARGS) | {"arch", "sparsity"}


# --------------------------------------------------------------------------- suites (skeleton)


@dataclass(frozen=True)
class Suite:
    """A named set of :func:`prune_and_train` runs that reproduces one table or figure.

    ``runs`` are keyword dicts for :func:`prune_and_train` (``arch`` and ``sparsity`` at
    least); every run is repeated for each seed, or for the run's own ``"seeds"`` where it has
    that key (more seeds where a comparison needs them; ``seeds_of``). ``folder`` is where
    its recorded files live, relative to the repository's ``results/`` (default: the suite's name).
    """

    name: str
    description: str
    runs: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...] = field(default=(0,))
    folder: str | None = None

    @property
    def results_folder(self) -> str:
        """``folder``, or the suite's name: the suite's place under ``results/``."""
        return self.folder or self.name


def seeds_of(suite: Suite, run: dict[str, Any]) -> tuple[int, ...]:
    """The seeds ``run`` of ``suite`` is repeated for: its own ``"seeds"``, else the suite's."""
    return tuple(run.get("seeds", suite.seeds))


def planned_runs(suite: Suite, runs: Sequence[dict[str, Any]] | None = None,
                 seeds: Sequence[int] | None = None) -> list[tuple[dict[str, Any], int]]:
    """(run, seed) pairs of ``suite`` (or of its ``runs`` given), seeds outermost.

    ``seeds`` replaces every run's seeds (a command's ``--seeds``); otherwise each run gets
    ``seeds_of``, and a seed only its runs.
    """
    runs = suite.runs if runs is None else runs
    if seeds is not None:
        return [(run, seed) for seed in seeds for run in runs]
    every = sorted({seed for run in runs for seed in seeds_of(suite, run)})
    return [(run, seed) for seed in every for run in runs if seed in seeds_of(suite, run)]


def suite_epochs(run: dict[str, Any], epochs: int | None = None) -> int:
    """The epochs a suite's ``run`` trains for: ``epochs`` if given (a command's ``--epochs``), else
    the run's own ``"epochs"`` or its family's default, in full mode. Quick mode trains the family's
    quick epochs whatever the run pins (a smoke run of the code path: ``--epochs`` still wins)."""
    if epochs is not None:
        return epochs
    fam = FAMILY_DEFAULTS[family_of(run["arch"])]
    return _config.pick(run.get("epochs", fam["full_epochs"]), fam["quick_epochs"])


def _run_kwargs(run: dict[str, Any]) -> dict[str, Any]:
    """A suite run as :func:`prune_and_train` keywords (without the suite-level ``seeds`` key)."""
    return {k: v for k, v in run.items() if k != "seeds"}


#: Every registered suite by name (filled by :func:`register_suite`; ``python -m snip_lib reproduce --list``).
SUITES: dict[str, Suite] = {}
#: Named groups of suites (:class:`SuiteGroup`); a name is either a suite or a group, never both.
GROUPS: dict[str, SuiteGroup] = {}

# Short tags of run keys that can tell two runs of one (arch, sparsity) apart, in file-name order.
_NAME_TAGS = {"saliency_batch": "sb", "scoring_init": "si", "scoring_bias": "sbias", "init": "init", "labels": "lab",
              "optimizer": "opt", "method": "m", "shuffle": "shuf", "include_bias": "bias", "bn_mode": "bn",
              "epochs": "ep", "lr": "lr"}


def _tag_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def result_name(suite: Suite, run: dict[str, Any], seed: int) -> str:
    """File name of one run of ``suite``: ``{arch}-sp{sparsity}[-{tag}{value}...]-seed{seed}.json``.

    The tags name only what tells this run apart from the suite's other runs at the same
    architecture and sparsity (the saliency batch of Figure 3, the scoring initialisation of
    Table 3, ...) and that this run sets, so plain suites keep the short
    ``lenet300-sp0.95-seed0.json`` and no two runs of a suite ever share a file. A suite whose runs differ only in keys without a tag is refused.
    """
    twins = [r for r in suite.runs if r["arch"] == run["arch"] and abs(r["sparsity"] - run["sparsity"]) < 1e-12]
    parts = [str(run["arch"]), f"sp{run['sparsity']:g}"]
    if len(twins) > 1:
        varying = [k for k in _NAME_TAGS if len({repr(r.get(k)) for r in twins}) > 1]
        if len({tuple(repr(r.get(k)) for k in varying) for r in twins}) < len(twins):
            raise ValueError(f"suite {suite.name!r}: runs of {run['arch']} at sparsity {run['sparsity']:g} differ only "
                             f"in keys that file names do not show; vary one of {', '.join(_NAME_TAGS)}")
        parts += [f"{_NAME_TAGS[k]}{_tag_value(run[k])}" for k in varying if k in run]
    parts.append(f"seed{seed}")
    return "-".join(parts) + ".json"


def _has_sparsity(run: dict[str, Any], sparsities: Sequence[float]) -> bool:
    return any(abs(run["sparsity"] - s) < 1e-9 for s in sparsities)


def _same(a: Any, b: Any) -> bool:
    """Equal as recorded settings: numbers within rounding, tuples as the lists JSON stores, dicts key by key."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _arch_name(name: Any) -> Any:
    """The canonical architecture name where there is one (a config records ``build``'s canonical name)."""
    from snip_lib import models

    try:
        return models._canonical(name)
    except (TypeError, ValueError):
        return name


#: Stands for a setting that a recorded file lacks without a documented default (and for an option that only one
#: side has) while comparing.
_MISSING: Any = object()


def recorded_differences(config: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """The settings in ``requested`` that a recorded ``config`` does not have, as ``'key: recorded R, now N'``.

    ``requested`` holds run keywords (``epochs``, ``lr``, ``init``, ``train_options``, ``mode``, ...;
    :func:`requested_settings` gives every one a run records); each is looked up at the top of
    the config, then in its ``train`` part. A dict the config records whole (``method_options``,
    ``model_options``) is compared whole, key by key, so an option only one side has differs;
    ``train_options`` key by key in ``train``. ``arch`` is compared by canonical name. A setting
    the config lacks counts as the value runs had before it was recorded
    (:func:`snip_lib.results.with_setting_defaults`: ``method`` "snip", no warm-up, ...), and one
    without such a default differs ("not recorded"): a file that cannot show it ran the
    requested setting must not be taken for that run.
    """
    from snip_lib import results

    config = results.with_setting_defaults(config)
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    diffs: list[str] = []

    def compare(label: str, recorded: Any, value: Any) -> None:
        if recorded is not _MISSING and value is not _MISSING and _same(recorded, value):
            return
        was = results.NOT_RECORDED if recorded is _MISSING else f"recorded {recorded!r}"
        diffs.append(f"{label}: {was}, now {'not set' if value is _MISSING else repr(value)}")

    for key, value in requested.items():
        if key == "arch":
            compare(key, _arch_name(config["arch"]) if "arch" in config else _MISSING, _arch_name(value))
            continue
        if isinstance(value, dict):
            if isinstance(config.get(key), dict):               # recorded whole: every key on either side counts
                recorded = config[key]
                for sub in sorted(set(recorded) | set(value), key=str):
                    compare(f"{key}[{sub!r}]", recorded.get(sub, _MISSING), value.get(sub, _MISSING))
            elif key == "train_options":                        # recorded one by one in train
                for sub, sub_value in value.items():
                    compare(f"{key}[{sub!r}]", train.get(sub, _MISSING), sub_value)
            else:
                compare(key, config.get(key, _MISSING), value)
            continue
        compare(key, config[key] if key in config else train.get(key, _MISSING), value)
    return diffs


def file_differences(path: str | Path, requested: dict[str, Any]) -> list[str]:
    """Why the result file at ``path`` is not the run ``requested`` describes; ``[]`` if it is that run.

    An unreadable file and a smoke run on FakeData (:func:`snip_lib.results.is_smoke`: not a
    result) never are; otherwise :func:`recorded_differences`, with the mode compared too: the
    file's (``config.mode``, else ``provenance.mode``) against ``requested["mode"]``, by default
    the current mode, which is the one a run made now records.
    """
    from snip_lib import results

    try:
        obj = results.read_result(path)
    except (ValueError, OSError) as err:
        return [f"cannot be read ({err})"]
    if results.is_smoke(obj):
        return [f"a smoke run on FakeData (metrics.smoke {obj['metrics'].get('smoke')!r}, dataset "
                f"{obj['config'].get('dataset')!r}), not a result, so it cannot stand for this run"]
    config = dict(obj["config"])
    config.setdefault("mode", obj["provenance"]["mode"])
    return recorded_differences(config, {"mode": _config.mode_name(), **requested})


def check_existing(paths_and_settings: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    """Refuse to skip result files that are not the runs now requested (:func:`file_differences`).

    A suite skips files that exist so that it resumes; that must not let a one-epoch file, a
    file of another initialisation, method or mode, or a FakeData smoke run stand in for the
    run (or the other way round). Raises ``ValueError`` naming every such file and why, before
    anything runs.
    """
    problems = []
    for path, requested in paths_and_settings:
        if not Path(path).exists():
            continue
        diffs = file_differences(path, requested)
        if diffs:
            problems.append(f"{path}: {'; '.join(diffs)}")
    if problems:
        raise ValueError("result files exist with other settings than this command's (or are no results), so they "
                         "cannot be skipped (pass --overwrite to replace them, or --out for another folder):\n  "
                         + "\n  ".join(problems))


def requested_settings(run: dict[str, Any], *, epochs: int | None = None, limit_train: int | None = None,
                       device: str | torch.device | None = None) -> dict[str, Any]:
    """Every setting one :func:`prune_and_train` run of a suite will record, mode included, as run keywords.

    The run's own keys, the command's ``epochs``/``limit_train`` overrides, and every default
    resolved as the run resolves it (:func:`planned_config`: the family's epochs, batch sizes,
    schedule and decay point, the training-set limit of the mode, the initialisation, method,
    optimiser settings, model options, ...). ``device`` decides only whether ``amp`` and
    ``channels_last`` take effect (CUDA). Why every one: a recorded file made with another
    setting, even one left at a default that has since changed, must not be skipped as if it
    were a run of this recipe. ``train_options`` holds every :data:`TRAIN_OPTIONS` key.
    """
    kwargs = _run_kwargs(run)
    unknown = sorted(set(kwargs) - _SETTING_ARGS - {"seed", "device", "progress", "log_every", "smoke_ok"})
    if unknown:
        raise ValueError(f"run {run!r} has key(s) {unknown} that are no arguments of prune_and_train; "
                         f"allowed: {', '.join(sorted(_SETTING_ARGS))}")
    settings = {k: v for k, v in kwargs.items() if k in _SETTING_ARGS - {"arch", "sparsity"}}
    settings["epochs"] = suite_epochs(run, epochs)
    if limit_train is not None:
        settings["limit_train"] = limit_train
    cfg = planned_config(run["arch"], run["sparsity"], device=device if device is not None else run.get("device"),
                         **settings)
    train = cfg["train"]
    out = {key: cfg[key] for key in ("arch", "sparsity", "dataset", "init", "scoring_init", "scoring_bias",
                                     "include_bias", "bn_mode", "method", "method_options", "shuffle",
                                     "saliency_batch", "limit_train", "model_options", "mode")}
    out.update({key: train[key] for key in ("epochs", "batch_size", "optimizer", "lr", "schedule", "amp",
                                            "channels_last")})
    out["train_options"] = {key: train[key] for key in TRAIN_OPTIONS}
    return out


def _check_out_folder(folder: str | Path, what: str = "out") -> Path:
    """Refuse a results folder that cannot hold files, before any run: found after the first run's
    training (hours, maybe), it would lose that run. Missing folders are fine (made when a file is
    written) if the nearest existing path above them is a writable folder."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(folder).__name__} {folder!r}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what}={str(folder)!r}: {folder} is a file, not a folder for the suite's results")
    blocked = _blocked_at(folder)
    if blocked is not None and blocked[1] == "file":
        raise ValueError(f"{what}={str(folder)!r}: {blocked[0]} is a file, so no folder {folder} can be made; "
                         "give a path under a folder")
    if blocked is not None:
        raise ValueError(f"{what}={str(folder)!r}: the folder {blocked[0]} is not writable, so the results cannot be "
                         "written there")
    return folder


def _blocked_at(start: Path) -> tuple[Path, str] | None:
    """Why nothing can be written at or below ``start``: ``(the nearest existing path at or above it,
    "file" or "unwritable")``, or None when that path is a writable folder (the missing folders
    between are made when a file is written). Shared with the command line's output checks."""
    existing = start
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return existing, "file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return existing, "unwritable"
    return None


def run_suite(
    name: str,
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    archs: Sequence[str] | None = None,
    sparsities: Sequence[float] | None = None,
    epochs: int | None = None,
    limit_train: int | None = None,
    device: str = "auto",
    progress: bool = True,
    smoke_ok: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Run every run of suite ``name`` (only ``archs``/``sparsities`` if given) for each seed; one file each.

    Seeds are the outer loop, so a stopped suite has whole seeds done. Files that exist are
    skipped unless ``overwrite``: an interrupted suite resumes by running the same command.
    A file that is not the run now requested (another mode, ``epochs`` or ``limit_train``, any
    setting of a changed suite or default, or a FakeData smoke run) is not skipped:
    ``ValueError`` names it before anything runs (``check_existing``), as it does an ``out``
    that cannot hold the files (a file, or a read-only folder). Each file records the git state
    taken when its run started (:func:`snip_lib.results.git_state`). Returns the paths of the
    suite's files (written or found).
    """
    from snip_lib import results

    _check_out_folder(out)
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; available: {', '.join(SUITES)}")
    suite = SUITES[name]
    runs = [r for r in suite.runs if archs is None or r["arch"] in archs]
    if not runs:
        raise ValueError(f"suite {name!r} has no run for architectures {list(archs or [])}; "
                         f"it has {sorted({r['arch'] for r in suite.runs})}")
    runs = [r for r in runs if sparsities is None or _has_sparsity(r, sparsities)]
    if not runs:
        raise ValueError(f"suite {name!r} has no run at sparsities {list(sparsities or [])}"
                         f"{' for ' + str(list(archs)) if archs else ''}; it has "
                         f"{sorted({r['sparsity'] for r in suite.runs})}")
    planned = [(Path(out) / result_name(suite, run, seed), run, seed)
               for run, seed in planned_runs(suite, runs, seeds)]
    if not overwrite:
        check_existing([(path, dict(requested_settings(run, epochs=epochs, limit_train=limit_train, device=device),
                                    seed=seed))
                        for path, run, seed in planned])
    paths = []
    for path, run, seed in planned:
        paths.append(path)
        if path.exists() and not overwrite:
            log(f"{path} exists, skipped")
            continue
        kwargs = dict(_run_kwargs(run), seed=seed, device=device, progress=progress, smoke_ok=smoke_ok)
        kwargs["epochs"] = suite_epochs(run, epochs)  # (the same as the check above: quick mode shortens)
        if limit_train is not None:
            kwargs["limit_train"] = limit_train
        started = results.git_state()  # the code this run starts with, not the code when its file is written
        res = prune_and_train(**kwargs)
        results.write_result(path, kind=res["kind"], config=res["config"], metrics=res["metrics"],
                             seed=res["seed"], wall_time=res["wall_time"], device=res["config"]["device"],
                             extra={"suite": name}, started=started)
        m = res["metrics"]
        smoke = f"  [{SMOKE_MESSAGE}]" if m["smoke"] else ""
        log(f"[{name}] {path.stem}: final test error {m['final_test_error']:.2f}%, at best val "
            f"{m['test_error_at_best_val']:.2f}%; kept {m['kept_parameters']:,}/{m['prunable_parameters']:,}; "
            f"{res['wall_time']:.0f} s -> {path}{smoke}")
    return paths


def register_suite(suite: Suite) -> Suite:
    """Add ``suite`` to :data:`SUITES` (names are unique)."""
    if suite.name in SUITES or suite.name in GROUPS:
        raise ValueError(f"suite or group {suite.name!r} is already registered")
    for run in suite.runs:
        missing = {"arch", "sparsity"} - set(run)
        if missing:
            raise ValueError(f"suite {suite.name!r}: run {run!r} lacks {sorted(missing)}")
    SUITES[suite.name] = suite
    return suite


@dataclass(frozen=True)
class SuiteGroup:
    """Several suites that together make one table of the paper, so that one command redoes it.

    Each member suite writes into its own folder (:attr:`Suite.results_folder`) under a common
    root, the same files its own ``reproduce`` command writes, so running the group resumes or
    completes them. ``report(root, mode)`` renders the table from the files under ``root``.
    """

    name: str
    description: str
    members: tuple[str, ...]
    report: Callable[[Path, str], str] | None = None



def register_group(group: SuiteGroup) -> SuiteGroup:
    """Add ``group`` to :data:`GROUPS`; its name must be new and its members registered suites."""
    if group.name in SUITES or group.name in GROUPS:
        raise ValueError(f"suite or group {group.name!r} is already registered")
    if not group.members:
        raise ValueError(f"group {group.name!r} has no member suites")
    unknown = [m for m in group.members if m not in SUITES]
    if unknown:
        raise ValueError(f"group {group.name!r}: unknown member suites {unknown}; available: {', '.join(SUITES)}")
    GROUPS[group.name] = group
    return group


def run_group(
    name: str,
    root: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    archs: Sequence[str] | None = None,
    sparsities: Sequence[float] | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> list[Path]:
    """Run every member suite of group ``name`` into ``root/<its folder>``, as :func:`run_suite` would.

    ``seeds`` overrides every member's seeds; ``archs`` and ``sparsities`` keep only the members
    (and runs) of those architectures and sparsities. The other keyword arguments go to
    :func:`run_suite`. Every member's folder is checked before the first run (a later member's
    folder that cannot be written would otherwise be found after the earlier members trained).
    Returns the paths of all the members' files (written or found).
    """
    if name not in GROUPS:
        raise ValueError(f"unknown group {name!r}; available: {', '.join(GROUPS) or 'none'}")
    _check_out_folder(root, "root")

    def wanted(run: dict[str, Any]) -> bool:
        return (archs is None or run["arch"] in archs) and (sparsities is None or _has_sparsity(run, sparsities))

    members = [SUITES[m] for m in GROUPS[name].members if any(wanted(r) for r in SUITES[m].runs)]
    if not members:
        raise ValueError(f"group {name!r} has no run for architectures {list(archs or []) or 'any'} at "
                         f"sparsities {list(sparsities or []) or 'any'}")
    for suite in members:
        _check_out_folder(Path(root) / suite.results_folder, f"root (suite {suite.name})")
    paths: list[Path] = []
    for suite in members:
        log(f"[{name}] suite {suite.name} -> {Path(root) / suite.results_folder}")
        paths += run_suite(suite.name, Path(root) / suite.results_folder, seeds=seeds, archs=archs,
                           sparsities=sparsities, log=log, **options)
    return paths


# The LeNet guards (not in the paper; see snip_lib.suites_lenet and chapter 5): a 500-iteration
# linear lr warm-up for every LeNet run, and lr 0.01 for the LeNet-5-Caffe rows compared with its
# dense reference, which diverges at lr 0.1 (warm-up and clipping do not save it).
#: Linear lr warm-up (iterations) of every LeNet run of the book (suites_lenet.WARMUP_ITERATIONS).
LENET_WARMUP_ITERATIONS = 500


# Suites registered by their own modules (kept out of this file to avoid edit conflicts).
from snip_lib import suites_lenet as _suites_lenet  # noqa: E402,F401  (registers table1-lenet300, table1-lenet5-short)
from snip_lib import suites_keeps as _suites_keeps  # noqa: E402,F401  (figure3, table3)
from snip_lib import suites_modern as _suites_modern  # noqa: E402,F401  (table2-rnn, table3-rnn, table2-cifar)
from snip_lib import suites_beyond as _suites_beyond  # noqa: E402,F401  (beyond-lenet300, beyond-lenet5-short)
