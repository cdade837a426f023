"""Every architecture of the SNIP paper, built by name: ``build(name, **options)``.

Why one registry: experiments, the CLI and the book name a network by the string the
paper uses, and a built model carries ``snip_arch`` and ``snip_options`` so that
``build(model.snip_arch, **model.snip_options)`` rebuilds it (e.g. after loading a
checkpoint). Layers use PyTorch's default initialisation; the paper's schemes are
applied afterwards by :mod:`snip_lib.init`.

Parameter counts (weights + biases; batch-norm affine parameters excluded, as in the
paper, whose BN gamma/beta are never in the prunable set):

============  ============  ===========================================================
name          ours          paper (Table 1 / Table 2)
============  ============  ===========================================================
lenet300         266,610    267k
lenet5           431,080    431k
alexnet-s      5,070,218    5.1m   (with the official code's fc widths, see below)
alexnet-b      8,490,378    8.5m
vgg-c         10,526,538    10.5m
vgg-d         15,245,130    15.2m
vgg-like      14,982,474    14.9m
wrn-16-8      10,954,170    10.0m  (almost surely a typo for 11.0m)
wrn-16-10     17,107,642    17.1m
wrn-22-8      17,147,322    17.2m
lstm-s           136,586    137k
lstm-b           535,306    536k
gru-s            103,690    104k
gru-b            403,978    404k
============  ============  ===========================================================

Choices worth knowing (chapters 5 and 6 of the book discuss them):

* **lenet5** is LeNet-5-Caffe, which has *no* ReLU after its two convolutions (the official
  code follows Caffe; ``mil-ad/snip`` adds them). ``conv_relu=True`` adds them.
* **alexnet-s/-b** use the official code's fully-connected widths 1024·k (k = 1, 2), the
  only ones that reproduce Table 2's counts. ``fc_widths="paper"`` gives the widths the
  paper's text states (512 and 1024; 4.15M and 5.07M parameters). Convolutions use stride 2
  with symmetric padding ``k // 2``; this gives TF "SAME"'s output sizes
  (32→16→8→4→2→1) but not its one-pixel asymmetric padding for even totals.
* **vgg-*** follow the official code: conv+bias → BN → ReLU, max-pool after convolutions
  2, 4, 7, 10 and 13, no dropout.
* **wrn-*** follow Zagoruyko & Komodakis (2016): pre-activation basic blocks
  (BN-ReLU-conv3x3-BN-ReLU-conv3x3), bias-free convolutions, a 1x1 projection shortcut
  (taking the pre-activated input) where the shape changes, no dropout. The public SNIP
  code has no WRN, so these are the standard models, not a port.
* **lstm-* / gru-*** read one 28-pixel row per time step. A *linear* 28→h projection
  (with bias, no nonlinearity: the paper is silent, and only a projection of this size
  reproduces Table 2's counts) feeds a hand-written cell built only from ``nn.Linear``
  layers, so "weights of Linear/Conv layers" is the single prunable rule:
  LSTM: one ``nn.Linear(2h, 4h)`` for gates i, f, g, o (``forget_bias`` is added to the
  forget-gate pre-activation; TF's ``BasicLSTMCell`` uses 1.0, default here 0.0);
  GRU: TF ``GRUCell`` layout, ``nn.Linear(2h, 2h)`` for the reset and update gates and
  ``nn.Linear(2h, h)`` for the candidate. The classifier reads the last hidden state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "build",
    "available_models",
    "count_parameters",
    "input_shape",
    "dataset_for",
    "LeNet300",
    "LeNet5Caffe",
    "AlexNetCifar",
    "VGGCifar",
    "WideResNet",
    "LSTMClassifier",
    "GRUClassifier",
]

_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


# --------------------------------------------------------------------------- LeNets


class LeNet300(nn.Module):
    """LeNet-300-100: three fully-connected layers on the flattened 28x28 image."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of MNIST images (N, 1, 28, 28), or of flat inputs (N, 784)."""
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe: conv5x5(20)-pool-conv5x5(50)-pool-fc500-fc10.

    ``conv_relu=False`` (default) matches Caffe and the official SNIP code, which put no
    nonlinearity after the convolutions; ``True`` matches ports that add one.
    """

    def __init__(self, num_classes: int = 10, conv_relu: bool = False) -> None:
        super().__init__()
        self.conv_relu = conv_relu
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc3 = nn.Linear(800, 500)
        self.fc4 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of MNIST images (N, 1, 28, 28); ReLU after the convolutions only if ``conv_relu``."""
        x = self.conv1(x)
        if self.conv_relu:
            x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.conv2(x)
        if self.conv_relu:
            x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc3(x))
        return self.fc4(x)


# --------------------------------------------------------------------------- AlexNet / VGG


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _fc_bn_relu(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True))


class AlexNetCifar(nn.Module):
    """AlexNet for 32x32 inputs: five stride-2 convolutions (no pooling), three fc layers."""

    _CONVS = ((11, 96), (5, 256), (3, 384), (3, 384), (3, 256))

    def __init__(self, fc_width: int, num_classes: int = 10) -> None:
        super().__init__()
        layers, c_in = [], 3
        for kernel, c_out in self._CONVS:
            layers.append(_conv_bn_relu(c_in, c_out, kernel, stride=2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            _fc_bn_relu(256, fc_width),
            _fc_bn_relu(fc_width, fc_width),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of CIFAR-10 images (N, 3, 32, 32): the features end at 1x1."""
        return self.classifier(torch.flatten(self.features(x), 1))


# (out_channels, kernel) per convolution; "M" = 2x2 max-pool.
_VGG_PLANS: dict[str, tuple[Any, ...]] = {
    "C": ((64, 3), (64, 3), "M", (128, 3), (128, 3), "M",
          (256, 3), (256, 3), (256, 1), "M", (512, 3), (512, 3), (512, 1), "M",
          (512, 3), (512, 3), (512, 1), "M"),
    "D": ((64, 3), (64, 3), "M", (128, 3), (128, 3), "M",
          (256, 3), (256, 3), (256, 3), "M", (512, 3), (512, 3), (512, 3), "M",
          (512, 3), (512, 3), (512, 3), "M"),
}


class VGGCifar(nn.Module):
    """VGG for 32x32 inputs with BN after every layer but the logits, and no dropout.

    ``plan`` is "C" or "D"; ``num_hidden_fc`` is 2 for VGG-C/D and 1 for VGG-like.
    """

    def __init__(self, plan: str, num_hidden_fc: int, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for item in _VGG_PLANS[plan]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                c_out, kernel = item
                layers.append(_conv_bn_relu(c_in, c_out, kernel))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            *[_fc_bn_relu(512, 512) for _ in range(num_hidden_fc)],
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of CIFAR-10 images (N, 3, 32, 32): the features end at 1x1."""
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------- Wide ResNets


class _PreActBlock(nn.Module):
    """WRN basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        needs_projection = c_in != c_out or stride != 1
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        # As in the WRN reference code, a projection reads the pre-activated input.
        skip = x if self.shortcut is None else self.shortcut(pre)
        return out + skip


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis, 2016) for 32x32 inputs."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        groups, c_in = [], 16
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_PreActBlock(c_in, width, stride))
                c_in = width
            groups.append(nn.Sequential(*blocks))
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of images (N, 3, H, W), CIFAR-10's 32x32 in the paper (global average pooling)."""
        x = self.conv1(x)
        x = self.group3(self.group2(self.group1(x)))
        x = F.relu(self.bn(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------- recurrent


class LSTMCell(nn.Module):
    """LSTM cell whose four gates (i, f, g, o) are one ``nn.Linear(input + hidden, 4·hidden)``."""

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 0.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.forget_bias = forget_bias
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUCell(nn.Module):
    """GRU cell in TensorFlow's ``GRUCell`` layout, built from two ``nn.Linear`` layers.

    ``gates`` maps [x, h] to the reset and update gates (r, u); ``candidate`` maps
    [x, r*h] to the candidate state; the new state is u*h + (1-u)*candidate.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gates = nn.Linear(input_size + hidden_size, 2 * hidden_size)
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return u * h + (1 - u) * c


def _as_sequence(x: torch.Tensor, row_size: int) -> torch.Tensor:
    """(N, T, row) or (N, 1, T, row) -> (N, T, row), rejecting anything else."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x.squeeze(1)
    if x.dim() != 3 or x.shape[2] != row_size:
        raise ValueError(
            f"recurrent models take (N, T, {row_size}) or (N, 1, T, {row_size}) inputs, got {tuple(x.shape)}"
        )
    return x


class _RecurrentClassifier(nn.Module):
    """Linear 28→h projection per row, a recurrent cell over the rows, fc on the last state."""

    row_size = 28

    def __init__(self, cell: nn.Module, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input_proj = nn.Linear(self.row_size, hidden_size)
        self.cell = cell
        self.classifier = nn.Linear(hidden_size, num_classes)

    def _run_cell(self, steps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.input_proj(_as_sequence(x, self.row_size))
        return self.classifier(self._run_cell(steps))


class LSTMClassifier(_RecurrentClassifier):
    """Sequential-MNIST LSTM classifier (LSTM-s: h=128, LSTM-b: h=256)."""

    def __init__(self, hidden_size: int, num_classes: int = 10, forget_bias: float = 0.0) -> None:
        super().__init__(LSTMCell(hidden_size, hidden_size, forget_bias), hidden_size, num_classes)

    def _run_cell(self, steps: torch.Tensor) -> torch.Tensor:
        h = steps.new_zeros(steps.shape[0], self.hidden_size)
        c = torch.zeros_like(h)
        for t in range(steps.shape[1]):
            h, c = self.cell(steps[:, t], (h, c))
        return h


class GRUClassifier(_RecurrentClassifier):
    """Sequential-MNIST GRU classifier (GRU-s: h=128, GRU-b: h=256)."""

    def __init__(self, hidden_size: int, num_classes: int = 10) -> None:
        super().__init__(GRUCell(hidden_size, hidden_size), hidden_size, num_classes)

    def _run_cell(self, steps: torch.Tensor) -> torch.Tensor:
        h = steps.new_zeros(steps.shape[0], self.hidden_size)
        for t in range(steps.shape[1]):
            h = self.cell(steps[:, t], h)
        return h


# --------------------------------------------------------------------------- option checks


def _check_num_classes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"num_classes must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"num_classes must be >= 1, got {value!r}")
    return value


def _check_bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return value
    return check


def _check_fc_widths(value: Any) -> str:
    if value not in ("code", "paper"):
        raise ValueError(f"fc_widths must be 'code' or 'paper', got {value!r}")
    return value


def _check_real(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    return check


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    factory: Callable[..., nn.Module]
    defaults: dict[str, Any]
    checks: dict[str, Callable[[Any], Any]]
    dataset: str
    input_shape: tuple[int, ...]


_MNIST_IMAGE = (1, 28, 28)
_MNIST_ROWS = (28, 28)
_CIFAR_IMAGE = (3, 32, 32)
_NC = {"num_classes": _check_num_classes}


def _alexnet(k: int) -> Callable[..., nn.Module]:
    def factory(num_classes: int, fc_widths: str) -> nn.Module:
        width = 1024 * k if fc_widths == "code" else 512 * k
        return AlexNetCifar(width, num_classes)
    return factory


def _alexnet_spec(k: int) -> _Spec:
    return _Spec(_alexnet(k), {"num_classes": 10, "fc_widths": "code"},
                 {**_NC, "fc_widths": _check_fc_widths}, "cifar10", _CIFAR_IMAGE)


def _vgg_spec(plan: str, num_hidden_fc: int) -> _Spec:
    return _Spec(lambda num_classes: VGGCifar(plan, num_hidden_fc, num_classes),
                 {"num_classes": 10}, _NC, "cifar10", _CIFAR_IMAGE)


def _wrn_spec(depth: int, k: int) -> _Spec:
    return _Spec(lambda num_classes: WideResNet(depth, k, num_classes),
                 {"num_classes": 10}, _NC, "cifar10", _CIFAR_IMAGE)


def _lstm_spec(hidden: int) -> _Spec:
    return _Spec(lambda num_classes, forget_bias: LSTMClassifier(hidden, num_classes, forget_bias),
                 {"num_classes": 10, "forget_bias": 0.0},
                 {**_NC, "forget_bias": _check_real("forget_bias")}, "mnist", _MNIST_ROWS)


def _gru_spec(hidden: int) -> _Spec:
    return _Spec(lambda num_classes: GRUClassifier(hidden, num_classes),
                 {"num_classes": 10}, _NC, "mnist", _MNIST_ROWS)


_REGISTRY: dict[str, _Spec] = {
    "lenet300": _Spec(LeNet300, {"num_classes": 10}, _NC, "mnist", _MNIST_IMAGE),
    "lenet5": _Spec(LeNet5Caffe, {"num_classes": 10, "conv_relu": False},
                    {**_NC, "conv_relu": _check_bool("conv_relu")}, "mnist", _MNIST_IMAGE),
    "alexnet-s": _alexnet_spec(1),
    "alexnet-b": _alexnet_spec(2),
    "vgg-c": _vgg_spec("C", 2),
    "vgg-d": _vgg_spec("D", 2),
    "vgg-like": _vgg_spec("D", 1),
    "wrn-16-8": _wrn_spec(16, 8),
    "wrn-16-10": _wrn_spec(16, 10),
    "wrn-22-8": _wrn_spec(22, 8),
    "lstm-s": _lstm_spec(128),
    "lstm-b": _lstm_spec(256),
    "gru-s": _gru_spec(128),
    "gru-b": _gru_spec(256),
}


def available_models() -> list[str]:
    """Canonical names accepted by :func:`build`, in the paper's order."""
    return list(_REGISTRY)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(_REGISTRY)}")
    return key


def build(name: str, **options: Any) -> nn.Module:
    """Build architecture ``name`` (case-insensitive, '_' or '-') with PyTorch's default init.

    Options (all keyword): ``num_classes=10`` everywhere; ``conv_relu=False`` (lenet5);
    ``fc_widths="code"|"paper"`` (alexnet-*); ``forget_bias=0.0`` (lstm-*).
    The model gets ``snip_arch`` (canonical name) and ``snip_options`` (every option,
    defaults filled in) so ``build(m.snip_arch, **m.snip_options)`` rebuilds it.

    Example:

    >>> from snip_lib import models
    >>> net = models.build("lenet300")
    >>> models.count_parameters(net), net.snip_arch
    (266610, 'lenet300')
    >>> models.count_parameters(models.build("lenet5"))
    431080
    """
    arch = _canonical(name)
    spec = _REGISTRY[arch]
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {arch!r}; "
            f"allowed: {', '.join(sorted(spec.defaults))}"
        )
    resolved = {key: spec.checks[key](options.get(key, default)) for key, default in spec.defaults.items()}
    model = spec.factory(**resolved)
    model.snip_arch = arch
    model.snip_options = dict(resolved)
    return model


def input_shape(name: str) -> tuple[int, ...]:
    """Per-example input shape: (1, 28, 28) LeNets, (28, 28) recurrent (rows = steps), (3, 32, 32) CIFAR."""
    return _REGISTRY[_canonical(name)].input_shape


def dataset_for(name: str) -> str:
    """The dataset the paper trains ``name`` on: ``"mnist"`` or ``"cifar10"``."""
    return _REGISTRY[_canonical(name)].dataset


def count_parameters(model: nn.Module, *, include_bn: bool = False) -> int:
    """Number of learnable parameters, each shared tensor counted once.

    Normalisation layers (BatchNorm, GroupNorm, LayerNorm, InstanceNorm) are left out
    unless ``include_bn``, which is how the paper counts (their affine parameters are
    never pruned). Everything else counts: conv/linear/recurrent weights and biases.
    """
    norm_params = {
        id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters(recurse=False)
    }
    # model.parameters() already yields a shared tensor only once.
    return sum(p.numel() for p in model.parameters() if include_bn or id(p) not in norm_params)
