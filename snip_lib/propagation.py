"""Signal propagation at initialisation: how the variance of activations and gradients
changes from layer to layer.

Why this module exists: SNIP scores a connection by ``|w ∂L/∂w|``, and ∂L/∂w of a layer is
the product of the signal arriving at the layer (forward) and the gradient arriving from
above (backward). If the initialisation makes either signal shrink or grow layer after
layer, the scores of whole layers move together, and the global top-κ selection can empty
some layers. Glorot & Bengio (2010) derived the variance-scaling rules that keep both
signals steady; this module measures the signals so the book can check the derivation.

- :func:`signal_propagation` measures, for every ``nn.Linear``/``nn.Conv*d`` layer of a
  model, the variance of its input, of its output (pre-activation) and of the loss
  gradients with respect to both, on one batch. The model is left as it was.
- :func:`deep_mlp` builds the deep, constant-width multilayer perceptron of the chapter.
- :func:`expected_variance_ratio` gives the per-layer factors of the derivation,
  n_in·Var(W) (forward) and n_out·Var(W) (backward), for any scheme of
  :mod:`snip_lib.init`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import init as _init

__all__ = [
    "ACTIVATIONS", "COLUMNS", "VarianceRatio", "DeepMLP", "deep_mlp",
    "expected_variance_ratio", "signal_propagation",
]

#: Nonlinearities :func:`deep_mlp` offers; "linear" (identity) gives a deep linear network,
#: where the derivation is exact.
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "linear")

#: Columns of the DataFrame returned by :func:`signal_propagation`, in order.
COLUMNS: tuple[str, ...] = (
    "layer", "depth", "kind", "fan_in", "fan_out", "weight_variance",
    "input_variance", "input_second_moment", "forward_variance", "input_grad_variance",
    "backward_variance", "calls",
)

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- the theory

class VarianceRatio(NamedTuple):
    """Expected per-layer variance factors of a linear layer y = W x (zero-mean W, x).

    ``forward``:  Var(y) / Var(x) = n_in · Var(W)
    ``backward``: Var(∂L/∂x) / Var(∂L/∂y) = n_out · Var(W)
    """

    forward: float
    backward: float


def expected_variance_ratio(scheme: str, n_in: int, n_out: int, *,
                            std: float | None = None) -> VarianceRatio:
    """Per-layer variance factors predicted by the derivation for ``scheme``.

    ``scheme`` is any name (or alias) of :data:`snip_lib.init.SCHEMES`; ``std`` sets the
    standard deviation of ``random_normal``/``truncated_normal`` (TF default 1.0). For
    example "standard" gives 1/3 forward (U(-1/√n_in, 1/√n_in) has Var(W) = 1/(3 n_in)) and
    "glorot_uniform" gives 1 in both directions on a square layer.
    """
    for label, n in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise ValueError(f"{label} must be a positive integer, got {n!r}")
    variance = _init.init_std(scheme, int(n_in), int(n_out), std=std) ** 2
    return VarianceRatio(forward=n_in * variance, backward=n_out * variance)


# ----------------------------------------------------------------------------- the deep MLP

class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units (Linear + activation) and a Linear classifier.

    Layers are named ``hidden.0`` … ``hidden.{depth-1}`` and ``classifier``. The input is
    flattened, so MNIST images of shape (N, 1, 28, 28) work as they are.
    """

    def __init__(self, depth: int, width: int, activation: str = "tanh",
                 in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        for label, value in (("depth", depth), ("width", width),
                             ("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        sizes = [int(in_features)] + [int(width)] * int(depth)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.classifier = nn.Linear(int(width), int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of inputs flattened to (N, in_features)."""
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = layer(x)
            if self.activation == "tanh":
                x = torch.tanh(x)
            elif self.activation == "relu":
                x = F.relu(x)
        return self.classifier(x)


def deep_mlp(depth: int, width: int, activation: str = "tanh", in_features: int = 784,
             num_classes: int = 10) -> DeepMLP:
    """A deep constant-width MLP: ``depth`` hidden layers + a classifier (``depth + 1`` Linear layers).

    It is the network on which Glorot & Bengio (2010) saw signals vanish. Weights start with
    PyTorch's default rule, which for ``nn.Linear`` is exactly the "standard" heuristic
    U(-1/√n_in, 1/√n_in); apply another scheme with :func:`snip_lib.init.apply`.
    """
    return DeepMLP(depth, width, activation, in_features, num_classes)


# ----------------------------------------------------------------------------- measurement

class _Moments:
    """Running sum and sum of squares (float64), pooled over every call of a layer."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, t: torch.Tensor) -> None:
        t = t.detach().to(torch.float64)
        self.count += t.numel()
        self.total += t.sum().item()
        self.total_sq += (t * t).sum().item()

    def variance(self) -> float:
        if self.count == 0:
            return math.nan
        mean = self.total / self.count
        return max(self.total_sq / self.count - mean * mean, 0.0)

    def second_moment(self) -> float:
        return self.total_sq / self.count if self.count else math.nan


def signal_propagation(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                       loss_fn: LossFn | None = None) -> pd.DataFrame:
    """Per-layer variances of the forward signal and of the back-propagated gradient, on one batch.

    One row per ``nn.Linear``/``nn.Conv1d/2d/3d`` layer, in the order the forward pass first
    calls them (``depth`` = 1, 2, …), with the columns of :data:`COLUMNS`:

    - ``input_variance``: Var(x) of the layer input, ``input_second_moment``: E[x²] (what the
      forward rule Var(y) = n_in Var(W) E[x²] needs when x is not zero-mean, e.g. after a ReLU);
    - ``forward_variance``: Var(y) of the layer output y = W x + b, i.e. the pre-activation;
    - ``backward_variance``: Var(∂L/∂y); ``input_grad_variance``: Var(∂L/∂x), the *total*
      gradient at the layer's input. When x also feeds other layers (parallel branches, a
      skip connection) it sums every consumer's contribution, so ``input_grad_variance /
      backward_variance`` is this layer's backward factor n_out·Var(W) only where the layer is
      x's sole consumer, as in a plain chain of layers (e.g. :func:`deep_mlp`);
    - ``weight_variance``: Var(W); ``fan_in``/``fan_out`` as in :func:`snip_lib.init.fan_in_fan_out`;
    - ``calls``: how often the forward pass used the layer (recurrent cells use theirs once
      per time step; the variances pool every call).

    Variances are taken over all entries (batch and units), in float64. ``inputs`` are cast to
    the dtype of the model's parameters (as :mod:`snip_lib.analysis` does), so a float64 model
    takes a float32 batch. ``loss_fn(outputs, targets)`` must return a scalar (default: mean
    cross-entropy). Gradients are needed: calling it under ``torch.inference_mode()`` is an
    error (``torch.no_grad()`` is fine, it is lifted inside). The model runs in its
    current train/eval mode; its parameters, ``.grad`` fields and buffers (BatchNorm running
    statistics) are unchanged afterwards and every hook is removed, even on error.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if torch.is_inference_mode_enabled():
        # enable_grad cannot lift inference mode: the gradients below would fail half-way.
        raise RuntimeError("signal_propagation measures gradients: "
                           "call it outside torch.inference_mode(), gradients are needed")
    for label, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(value).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a non-empty batch, got shape {tuple(inputs.shape)}")
    if targets.dim() == 0 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"targets must hold one entry per example: inputs have batch size {inputs.shape[0]}, "
            f"targets have shape {tuple(targets.shape)}"
        )
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor, got dtype {inputs.dtype}")
    if loss_fn is None:
        loss_fn = F.cross_entropy
    elif not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")

    layers = {name: m for name, m in model.named_modules() if isinstance(m, _LAYERS)}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv1d/2d/3d layer to measure")

    order: list[str] = []                          # first-call order
    stats: dict[str, dict[str, _Moments]] = {}
    calls: dict[str, int] = {}
    seen_in: list[tuple[str, torch.Tensor]] = []   # (layer, input) of every call
    seen_out: list[tuple[str, torch.Tensor]] = []  # (layer, output) of every call

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if name not in order:
                order.append(name)
                stats[name] = {k: _Moments() for k in ("in", "out", "gin", "gout")}
            stats[name]["in"].add(args[0])
            stats[name]["out"].add(output)
            calls[name] = calls.get(name, 0) + 1
            seen_in.append((name, args[0]))
            seen_out.append((name, output))
            # Hand on a copy: an in-place activation (nn.ReLU(inplace=True)) then changes the
            # copy, and the gradient below is still taken with respect to the pre-activation.
            return output.clone()
        return hook

    param = next(model.parameters())
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    handles = [m.register_forward_hook(make_hook(name)) for name, m in layers.items()]
    try:
        with torch.enable_grad():
            # A leaf that requires grad makes every layer's input and output part of the graph,
            # even for frozen parameters; torch.autograd.grad leaves the parameters' .grad alone.
            x = inputs.detach().to(param.device, param.dtype).clone().requires_grad_(True)
            outputs = model(x)
            loss = loss_fn(outputs, targets.to(param.device))
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return a scalar, got {shape}")
            tensors = [t for _, t in seen_in] + [t for _, t in seen_out]
            wanted = [i for i, t in enumerate(tensors) if t.requires_grad]
            found = torch.autograd.grad(loss.reshape(()), [tensors[i] for i in wanted],
                                        allow_unused=True)
            grads: list[torch.Tensor | None] = [None] * len(tensors)
            for i, g in zip(wanted, found):
                grads[i] = g
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])

    n_in = len(seen_in)
    for i, (name, _) in enumerate(seen_in):
        if grads[i] is not None:
            stats[name]["gin"].add(grads[i])
    for i, (name, _) in enumerate(seen_out):
        if grads[n_in + i] is not None:
            stats[name]["gout"].add(grads[n_in + i])

    rows = []
    for depth, name in enumerate(order, start=1):
        weight = layers[name].weight.detach()
        fan_in, fan_out = _init.fan_in_fan_out(weight)
        s = stats[name]
        rows.append({
            "layer": name, "depth": depth, "kind": type(layers[name]).__name__,
            "fan_in": fan_in, "fan_out": fan_out,
            "weight_variance": weight.to(torch.float64).var(unbiased=False).item(),
            "input_variance": s["in"].variance(), "input_second_moment": s["in"].second_moment(),
            "forward_variance": s["out"].variance(),
            "input_grad_variance": s["gin"].variance(), "backward_variance": s["gout"].variance(),
            "calls": calls[name],
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))
