"""Training loop, devices, seeds and the learning-rate schedules of the paper and its code.

One loop trains every model of the book, dense or pruned. It evaluates the test (and
validation) error after every epoch so that both error protocols can be reported:

- ``History.best_test_error``: the lowest test error over the epoch-end evaluations. This is
  the official ``test.py``'s protocol (it prints ``(1 - max(acc)) * 100`` over its retained
  checkpoints, the last five of one per 1,000 iterations; ``History.best_test_error_last``
  keeps such a window). Choosing a checkpoint on the test set is **optimistic**: it is a
  selection on the very data used to report the result.
- ``History.test_error_at_best_val``: the test error at the epoch with the lowest validation
  error. This is the honest protocol (the paper holds out 10% of the training set for
  validation), and the one the book prefers.
- ``History.final_test_error``: the test error of the last epoch, with no selection at all.

All errors are in percent.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import masking
from snip_lib.optim import MaskedSGD

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "History",
    "TrainConfig",
    "default_device",
    "evaluate",
    "fit",
    "fraction_boundaries",
    "lr_at",
    "make_optimizer",
    "resolve_device",
    "seed_everything",
]

#: Values of :attr:`TrainConfig.optimizer`.
OPTIMIZERS = ("sgd", "adam")
#: Values of :attr:`TrainConfig.schedule` (:func:`lr_at` gives each one's rate).
SCHEDULES = ("step", "official", "constant", "cosine")

# The paper's settings (SGD) and its Table 3 setting (Adam).
_OPTIMIZER_DEFAULTS = {
    "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    "adam": {"lr": 1e-3, "momentum": None, "weight_decay": 0.0},
}
_DEFAULT_DECAY_FACTOR = {"step": 0.1, "official": 0.2}
# README of the official code: boundaries 30k, 60k, 90k, 120k of 150k iterations.
_OFFICIAL_BOUNDARIES = (0.2, 0.4, 0.6, 0.8)
# On CUDA a NaN check needs a device sync; do it this often instead of every iteration.
_CUDA_NAN_CHECK_EVERY = 50


# --------------------------------------------------------------------------- seeds, devices


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device).

    Two runs with the same seed, data order and device then train identically on CPU; CUDA
    kernels may still differ in the last bits unless deterministic algorithms are enforced.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_device() -> torch.device:
    """The fastest available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> :func:`default_device`; anything else -> ``torch.device``.

    Asking for a device that is not there (``"cuda"`` on a CPU machine) is an error rather
    than a silent fallback, so a result file never claims a device it did not use.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r} requested but Apple MPS is not available here; use 'cpu' or 'auto'")
    return dev


# --------------------------------------------------------------------------- configuration


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass
class TrainConfig:
    """How to train: optimiser, learning-rate schedule and a few speed switches.

    ``lr``, ``momentum``, ``weight_decay`` and ``decay_factor`` left at ``None`` take the
    defaults of the chosen optimiser / schedule when the config is created, so the stored
    config always shows the values that were actually used:

    - ``optimizer="sgd"``: lr 0.1, momentum 0.9, weight decay 5e-4 (the paper, §5).
    - ``optimizer="adam"``: lr 1e-3, no weight decay (the paper's Table 3 setting).

    Schedules (``lr_at`` gives the value at any iteration):

    - ``"step"``: the paper, ``lr * decay_factor ** (iteration // decay_every)`` with
      ``decay_factor=0.1`` and ``decay_every`` iterations (paper: 25k MNIST, 30k CIFAR).
    - ``"official"``: the README of the official code, piecewise constant with values
      ``lr * decay_factor ** k`` (``decay_factor=0.2``: 0.1, 0.02, 0.004, 0.0008, 0.00016)
      changing after ``boundaries``. Boundaries are either all fractions of the total number
      of iterations (floats in (0, 1); default 0.2, 0.4, 0.6, 0.8, i.e. 30k/60k/90k/120k of
      the README's 150k) or all explicit iteration counts (ints >= 1). As in the official code
      (``tf.train.piecewise_constant`` keeps a value while the step is ``<=`` its boundary), the
      zero-based iteration ``b`` itself still runs at the old rate; ``b + 1`` at the new one.
    - ``"constant"``: ``lr`` throughout (the official code's default ``--lr_decay_type``).
    - ``"cosine"``: half-cosine from ``lr`` to 0 over the whole run (not in the paper).

    ``warmup_iterations=k`` (default 0, off) multiplies the schedule by ``(i + 1) / k`` for
    the first ``k`` iterations (a linear warm-up, not in the paper). The book uses it for the
    LeNets: the dense LeNet-5-Caffe, which has no ReLU after its convolutions, diverges to NaN
    within ~20 iterations at lr 0.1 from the first step on.

    ``clip_grad_norm=c`` (default None, off) rescales the loss gradient of all parameters to a
    global L2 norm of at most ``c`` before each step (``torch.nn.utils.clip_grad_norm_``;
    weight decay is added by the optimiser afterwards). Not in the paper; a guard against the
    rare exploding step that momentum SGD at lr 0.1 takes on the dense LeNet-5-Caffe.

    Weight decay is an L2 penalty on the weights and biases of the layers, not on
    normalisation (BN) parameters, as in the official code (``0.00025 * sum(w**2)`` over
    the masked tensors, whose gradient is ``5e-4 * w``).

    ``amp`` (bfloat16/float16 autocast) and ``channels_last`` only take effect on CUDA;
    elsewhere :func:`fit` warns and trains in float32. ``batch_size`` documents the
    batch size the loaders were built with (100 MNIST, 128 CIFAR in the paper); the loaders
    passed to :func:`fit` decide the actual batches.
    """

    epochs: int
    batch_size: int = 100
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str = "step"
    decay_every: int = 25_000
    decay_factor: float | None = None
    boundaries: tuple[float, ...] | None = None
    warmup_iterations: int = 0
    clip_grad_norm: float | None = None
    amp: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _is_int(self.epochs) or self.epochs < 1:
            problems.append(f"epochs must be an int >= 1, got {self.epochs!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            problems.append(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        opt = self.optimizer.lower() if isinstance(self.optimizer, str) else self.optimizer
        if opt not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not supported; allowed: {', '.join(OPTIMIZERS)}")
        self.optimizer = opt
        sched = self.schedule.lower() if isinstance(self.schedule, str) else self.schedule
        if sched not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not supported; allowed: {', '.join(SCHEDULES)}")
        self.schedule = sched

        defaults = _OPTIMIZER_DEFAULTS[opt]
        if self.lr is None:
            self.lr = defaults["lr"]
        if self.weight_decay is None:
            self.weight_decay = defaults["weight_decay"]
        if self.momentum is None:
            self.momentum = defaults["momentum"]
        elif opt == "adam":
            problems.append(f"momentum={self.momentum!r} is an SGD setting; leave it None with optimizer='adam'")
        if self.decay_factor is None:
            self.decay_factor = _DEFAULT_DECAY_FACTOR.get(sched, 1.0)
        elif sched in ("constant", "cosine") and self.decay_factor != 1.0:
            problems.append(f"decay_factor={self.decay_factor!r} does nothing with schedule={sched!r} "
                            "(it applies to 'step' and 'official'); leave it None")

        if not _is_number(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            problems.append(f"lr must be a finite number > 0, got {self.lr!r}")
        if opt == "sgd" and (not _is_number(self.momentum) or not 0 <= self.momentum < 1):
            problems.append(f"momentum must be a number in [0, 1), got {self.momentum!r}")
        if not _is_number(self.weight_decay) or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            problems.append(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not _is_int(self.decay_every) or self.decay_every < 1:
            problems.append(f"decay_every must be an int >= 1 (iterations), got {self.decay_every!r}")
        if not _is_int(self.warmup_iterations) or self.warmup_iterations < 0:
            problems.append(f"warmup_iterations must be an int >= 0 (0 = no warm-up), got {self.warmup_iterations!r}")
        if self.clip_grad_norm is not None and (
            not _is_number(self.clip_grad_norm) or not math.isfinite(self.clip_grad_norm) or self.clip_grad_norm <= 0
        ):
            problems.append(f"clip_grad_norm must be None (off) or a finite number > 0, got {self.clip_grad_norm!r}")
        if not _is_number(self.decay_factor) or not 0 < self.decay_factor <= 1:
            problems.append(f"decay_factor must be a number in (0, 1], got {self.decay_factor!r}")
        if self.boundaries is not None:
            if sched != "official":
                problems.append(f"boundaries={self.boundaries!r} only apply to schedule='official', not {sched!r}")
            else:
                problems.extend(_check_boundaries(self.boundaries))
                if not problems:
                    self.boundaries = tuple(self.boundaries)
        elif sched == "official":
            self.boundaries = _OFFICIAL_BOUNDARIES
        for name in ("amp", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be True or False, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (boundaries as a list)."""
        d = asdict(self)
        if d["boundaries"] is not None:
            d["boundaries"] = list(d["boundaries"])
        return d


def _check_boundaries(boundaries: Any) -> list[str]:
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence) or len(boundaries) == 0:
        return [f"boundaries must be a non-empty sequence of numbers, got {boundaries!r}"]
    if not all(_is_number(b) for b in boundaries):
        return [f"boundaries must all be numbers, got {boundaries!r}"]
    fractions = all(isinstance(b, (float, np.floating)) and 0 < b < 1 for b in boundaries)
    iterations = all(_is_int(b) and b >= 1 for b in boundaries)
    if not (fractions or iterations):
        return [
            f"boundaries={list(boundaries)!r} must be either all fractions of the run (floats in (0, 1)) "
            "or all iteration counts (ints >= 1)"
        ]
    if any(not a < b for a, b in zip(boundaries, list(boundaries)[1:])):
        return [f"boundaries must be strictly increasing, got {list(boundaries)!r}"]
    return []


def lr_at(config: TrainConfig, iteration: int, total_iterations: int) -> float:
    """Learning rate for the (0-based) ``iteration`` of a run of ``total_iterations``.

    Example: the paper's MNIST schedule, x0.1 after 25k iterations, in a run of 27k.

    >>> from snip_lib import train
    >>> config = train.TrainConfig(epochs=50)
    >>> [round(train.lr_at(config, i, 27_000), 6) for i in (0, 24_999, 25_000)]
    [0.1, 0.1, 0.01]
    """
    if not _is_int(iteration) or iteration < 0:
        raise ValueError(f"iteration must be an int >= 0, got {iteration!r}")
    if not _is_int(total_iterations) or total_iterations < 1:
        raise ValueError(f"total_iterations must be an int >= 1, got {total_iterations!r}")
    warmup = getattr(config, "warmup_iterations", 0)
    if warmup and iteration < warmup:
        return _scheduled_lr(config, iteration, total_iterations) * (iteration + 1) / warmup
    return _scheduled_lr(config, iteration, total_iterations)


def fraction_boundaries(fractions: Sequence[float], total_iterations: int) -> list[int]:
    """Boundaries given as fractions of a run, as iterations: ``round(f * total)``, at least 1.

    At least 1, so that the first two iterations always run at the initial learning rate, however
    short the run (on a 4-iteration run a 0.1 boundary would otherwise be 0).
    """
    return [max(1, round(f * total_iterations)) for f in fractions]


def _scheduled_lr(config: TrainConfig, iteration: int, total_iterations: int) -> float:
    base = float(config.lr)
    if config.schedule == "constant":
        return base
    if config.schedule == "step":
        return base * config.decay_factor ** (iteration // config.decay_every)
    if config.schedule == "official":
        bounds = config.boundaries or _OFFICIAL_BOUNDARIES
        if isinstance(bounds[0], (float, np.floating)):
            bounds = fraction_boundaries(bounds, total_iterations)
        k = sum(1 for b in bounds if iteration > b)  # TF's piecewise_constant: x <= boundary keeps a value
        return base * config.decay_factor**k
    if config.schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(iteration, total_iterations) / total_iterations))
    raise ValueError(f"schedule={config.schedule!r} is not supported; allowed: {', '.join(SCHEDULES)}")


# nn.RMSNorm exists from torch 2.4 on
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, not Nesterov) or Adam, with weight decay off for normalisation layers.

    SGD on a masked model (:func:`snip_lib.masking.is_masked`) is :class:`snip_lib.optim.MaskedSGD`,
    which computes what ``torch.optim.SGD`` does on masked gradients (bit for bit on the CPU) and
    keeps the pruned weights at zero by itself; otherwise ``torch.optim.SGD`` or ``torch.optim.Adam``.
    """
    norm_ids = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if id(p) not in norm_ids]
    no_decay = [p for p in params if id(p) in norm_ids]
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config.optimizer == "sgd":
        if masking.is_masked(model):
            return MaskedSGD(groups, model, lr=config.lr, momentum=config.momentum)
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.Adam(groups, lr=config.lr)


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """Per-epoch record of one training run. Errors in percent.

    ``best_test_error`` (minimum test error over epochs) is the official ``test.py``'s
    protocol over the whole run (``test.py`` sees only the last checkpoints:
    ``best_test_error_last``) and is optimistic, since the checkpoint is chosen on the test set;
    ``test_error_at_best_val`` (test error at the epoch of lowest validation error, earliest
    on ties) is the honest one; ``final_test_error`` applies no selection.
    """

    train_loss: list[float] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    val_error: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    wall_time: float = 0.0
    iterations: int = 0

    @property
    def epochs(self) -> int:
        return len(self.test_error)

    @property
    def final_test_error(self) -> float | None:
        return self.test_error[-1] if self.test_error else None

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of the lowest test error (earliest on ties)."""
        return int(np.argmin(self.test_error)) + 1 if self.test_error else None

    @property
    def best_test_error(self) -> float | None:
        return min(self.test_error) if self.test_error else None

    @property
    def best_val_epoch(self) -> int | None:
        """1-based epoch of the lowest validation error (earliest on ties); None without validation."""
        return int(np.argmin(self.val_error)) + 1 if self.val_error else None

    @property
    def test_error_at_best_val(self) -> float | None:
        e = self.best_val_epoch
        return self.test_error[e - 1] if e is not None else None

    def best_test_error_last(self, n: int) -> float | None:
        """Best test error among the last ``n`` epoch-end checkpoints.

        Closer to the official code, whose ``tf.train.Saver`` keeps only the 5 most recent
        checkpoints (saved every 1000 iterations) for ``test.py`` to choose from.
        """
        if not _is_int(n) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        return min(self.test_error[-n:]) if self.test_error else None

    def to_dict(self) -> dict[str, Any]:
        """All per-epoch lists plus the summary numbers, ready for JSON."""
        d = asdict(self)
        d.update(
            epochs=self.epochs,
            final_test_error=self.final_test_error,
            best_test_error=self.best_test_error,
            best_epoch=self.best_epoch,
            best_val_epoch=self.best_val_epoch,
            test_error_at_best_val=self.test_error_at_best_val,
        )
        return d


# --------------------------------------------------------------------------- loops


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _check_loader(loader: Any, name: str) -> None:
    if loader is None or not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of (inputs, targets) batches, got {type(loader).__name__}")
    try:
        n = len(loader)
    except TypeError as exc:
        raise TypeError(f"{name} must have a len() (number of batches); got {type(loader).__name__}") from exc
    if n == 0:
        raise ValueError(f"{name} is empty (0 batches)")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: str | torch.device | None = None,
    *,
    amp: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and error (percent) of ``model`` on ``loader``.

    Runs in eval mode without gradients, then gives every submodule back its own previous
    train/eval flag (a BatchNorm frozen in eval mode inside a training model stays frozen).
    ``device=None`` uses the device the model is on; any other device moves the model there,
    and it stays there (as in :func:`fit`).
    """
    _check_loader(loader, "loader")
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    use_amp = amp and dev.type == "cuda"
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    wrong = torch.zeros((), dtype=torch.int64, device=dev)
    count = 0
    try:
        for x, y in loader:
            x = _to_device(x, dev, channels_last and dev.type == "cuda")
            y = y.to(dev, non_blocking=True)
            with _autocast(dev, use_amp):
                out = model(x)
            out = out.float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double()
            wrong += (out.argmax(dim=1) != y).sum()
            count += y.numel()
    finally:
        for module, training in modes:
            module.training = training
    if count == 0:
        raise ValueError("loader yielded no examples")
    return float(loss_sum) / count, 100.0 * float(wrong) / count


def _check_pruning(model: nn.Module, when: str) -> None:
    """Raise if a masked model has a pruned weight that is not zero (``when`` says at which point).

    The gradient hooks of :func:`snip_lib.masking.apply_masks` keep pruned weights exactly zero
    under fit's own (fresh, element-wise) optimizers, so a failure here means something outside
    fit changed the weights or removed the hooks: the run's numbers would not be those of the
    pruned network, so it stops rather than re-zeroing silently.
    """
    moved = masking.pruned_nonzero(model)
    if moved:
        listed = ", ".join(f"{name} ({count})" for name, count in moved.items())
        raise RuntimeError(
            f"pruned weights are not zero {when}: {listed} non-zero pruned entries; "
            "call snip_lib.masking.enforce_masks(model) before training, and do not change the weights "
            "or remove the masks' hooks while fit runs"
        )


def fit(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    config: TrainConfig,
    *,
    val_loader: Iterable | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log_every: int | None = None,
) -> History:
    """Train ``model`` with cross-entropy and evaluate it after every epoch.

    Loaders are iterables of ``(inputs, targets)`` batches with a ``len()`` (a
    ``torch.utils.data.DataLoader`` or :func:`snip_lib.data.make_loader`). The learning rate
    is set every iteration from :func:`lr_at`. When the model is masked
    (:func:`snip_lib.masking.is_masked`), its pruned weights stay exactly zero (momentum and weight
    decay included): with SGD, :class:`snip_lib.optim.MaskedSGD` applies the masks inside its
    update and the masks' gradient hooks are paused while fit runs (unless gradients are clipped
    or scaled for mixed precision, which must see masked gradients); with Adam the hooks mask the
    gradients. Both give the same weights, bit for bit on the CPU. Fit checks before training and
    after every epoch and raises ``RuntimeError`` naming the parameters if a pruned weight is not zero.
    A non-finite training loss stops training with ``FloatingPointError`` naming the epoch and
    iteration. ``log_every=k`` writes a line every ``k`` iterations and after every epoch.
    The model is trained in place and moved to ``device``, where it stays; ``device=None`` (or
    ``"auto"``) means :func:`default_device` (CUDA, then MPS, then the CPU), so a CPU model
    trains on a GPU when there is one. The return value is the history.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.__post_init__()  # checked again: a field may have been changed since (cfg.epochs = 0)
    _check_loader(train_loader, "train_loader")
    _check_loader(test_loader, "test_loader")
    if val_loader is not None:
        _check_loader(val_loader, "val_loader")
    if log_every is not None and (not _is_int(log_every) or log_every < 1):
        raise ValueError(f"log_every must be None or an int >= 1, got {log_every!r}")

    dev = resolve_device(device)
    use_amp = config.amp and dev.type == "cuda"
    use_cl = config.channels_last and dev.type == "cuda"
    if config.amp and not use_amp:
        warnings.warn(f"amp=True only takes effect on CUDA; training in float32 on {dev}", stacklevel=2)
    if config.channels_last and not use_cl:
        warnings.warn(f"channels_last=True only takes effect on CUDA; ignored on {dev}", stacklevel=2)

    model.to(dev)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    masked = masking.is_masked(model)
    if masked:
        _check_pruning(model, "before training")
    optimizer = make_optimizer(model, config)
    use_scaler = use_amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    # MaskedSGD masks in its update; the hooks' extra pass is then redundant unless something
    # reads the gradients (clipping, the scaler's unscale) before the step
    pause = (isinstance(optimizer, MaskedSGD) and config.clip_grad_norm is None and not use_scaler)
    with masking.gradient_hooks_paused(model) if pause else nullcontext():
        return _train_epochs(model, optimizer, scaler, train_loader, test_loader, val_loader, config, dev,
                             use_amp=use_amp, use_cl=use_cl, masked=masked, progress=progress,
                             log_every=log_every)


def _train_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  train_loader: Iterable, test_loader: Iterable, val_loader: Iterable | None,
                  config: TrainConfig, dev: torch.device, *, use_amp: bool, use_cl: bool, masked: bool,
                  progress: bool, log_every: int | None) -> History:
    """fit's loop over epochs, once the model, optimizer and scaler are set up."""
    from tqdm.auto import tqdm

    n_batches = len(train_loader)
    total = config.epochs * n_batches
    history = History()
    iteration = 0
    start = time.perf_counter()
    check_every = _CUDA_NAN_CHECK_EVERY if dev.type == "cuda" else 1

    epoch_bar = tqdm(range(1, config.epochs + 1), desc="epochs", leave=False, disable=not progress)
    for epoch in epoch_bar:
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        wrong = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        lr = lr_at(config, iteration, total)
        batch_bar = tqdm(train_loader, desc=f"epoch {epoch}", total=n_batches, leave=False, disable=not progress)
        for step, (x, y) in enumerate(batch_bar, start=1):
            lr = lr_at(config, iteration, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = _to_device(x, dev, use_cl)
            y = y.to(dev, non_blocking=True)
            with _autocast(dev, use_amp):
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            n = y.numel()
            seen += n
            loss_sum += loss.detach().double() * n
            wrong += (out.detach().argmax(dim=1) != y).sum()
            if iteration % check_every == 0 or step == n_batches:
                running = float(loss_sum) / seen
                if not math.isfinite(running):
                    where = (
                        f"iteration {iteration}"
                        if check_every == 1
                        else f"iterations {max(iteration - check_every + 1, 1)}-{iteration} (checked every {check_every})"
                    )
                    raise FloatingPointError(
                        f"training loss became {running} at epoch {epoch}, {where} (lr={lr:g}); "
                        "try a smaller learning rate or check the inputs"
                    )
            if log_every is not None and iteration % log_every == 0:
                running = float(loss_sum) / seen
                batch_bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.3g}")
                tqdm.write(f"epoch {epoch} iteration {iteration}/{total}: train loss {running:.4f}, lr {lr:.4g}")
        batch_bar.close()
        if seen == 0:
            raise ValueError(f"train_loader yielded no batch in epoch {epoch} although its len() is {n_batches}")
        if masked:
            _check_pruning(model, f"after epoch {epoch}")

        history.train_loss.append(float(loss_sum) / seen)
        history.train_error.append(100.0 * float(wrong) / seen)
        history.lr.append(lr)
        if val_loader is not None:
            vl, ve = evaluate(model, val_loader, dev, amp=use_amp, channels_last=use_cl)
            history.val_loss.append(vl)
            history.val_error.append(ve)
        tl, te = evaluate(model, test_loader, dev, amp=use_amp, channels_last=use_cl)
        history.test_loss.append(tl)
        history.test_error.append(te)
        history.epoch_times.append(time.perf_counter() - t0)
        history.iterations = iteration
        summary = {"loss": f"{history.train_loss[-1]:.4f}", "test_err": f"{te:.2f}%"}
        if val_loader is not None:
            summary["val_err"] = f"{history.val_error[-1]:.2f}%"
        epoch_bar.set_postfix(summary)
        if log_every is not None:
            tqdm.write(
                f"epoch {epoch}/{config.epochs}: train loss {history.train_loss[-1]:.4f}, "
                f"train error {history.train_error[-1]:.2f}%, "
                + (f"val error {history.val_error[-1]:.2f}%, " if val_loader is not None else "")
                + f"test error {te:.2f}% ({history.epoch_times[-1]:.1f} s)"
            )
    epoch_bar.close()
    history.wall_time = time.perf_counter() - start
    return history
