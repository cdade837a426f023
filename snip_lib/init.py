"""Weight initialisation schemes compared in the SNIP paper and its official code.

SNIP scores connections *at initialisation*, so the initialisation decides the mask.
The paper (§4.2) advocates variance scaling, "such that the variance remains the same
throughout the network", and Table 3 compares four choices for the scoring network:
RN and TN (plain random / truncated normal, *without* variance scaling), VS-X
(Glorot) and VS-H (He). The official TensorFlow code uses ``vs``, i.e.
``tf.variance_scaling_initializer()`` with its defaults (LeCun-style truncated normal).

Schemes (``fan_in``/``fan_out`` computed as in PyTorch, see :func:`fan_in_fan_out`):

===========================  ===============================================================
``standard``                 U(-1/√fan_in, 1/√fan_in): the "common heuristic" criticised by
                             Glorot & Bengio (2010); std = 1/√(3·fan_in)
``glorot_uniform`` (VS-X)    U(-a, a), a = √(6/(fan_in+fan_out)); std = √(2/(fan_in+fan_out))
``glorot_normal``            N(0, 2/(fan_in+fan_out))
``he_normal`` (VS-H)         N(0, 2/fan_in)  (fan-in mode, gain √2; untruncated, while TF1's
                             ``he_normal`` is truncated at ±2σ: the same std, other tails)
``he_uniform``               U(-a, a), a = √(6/fan_in); std = √(2/fan_in)
``lecun_truncated_normal``   TF1 ``tf.variance_scaling_initializer`` defaults (the official
                             code's ``vs``): normal with σ = √(1/fan_in)/0.8796…, cut at ±2σ,
                             so that the *resulting* std is √(1/fan_in)
``random_normal`` (RN)       TF1 ``tf.random_normal_initializer`` defaults: N(0, 1); ``std=``
                             overrides the 1.0
``truncated_normal`` (TN)    TF1 ``tf.truncated_normal_initializer`` defaults: normal with
                             σ = 1.0 (or ``std=``) cut at ±2σ; resulting std 0.8796·σ
===========================  ===============================================================

RN and TN deliberately use TensorFlow's default stddev of 1.0: the paper labels them
"without variance scaling", which is what makes GRUs fail to train in Table 3. Pass
``std=`` to study other values.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import nn

__all__ = [
    "SCHEMES", "ALIASES", "BIAS_OPTIONS", "TRUNCATED_NORMAL_STD_FACTOR",
    "canonical_scheme", "fan_in_fan_out", "init_std", "apply", "check_seed",
]

#: The initialisation schemes :func:`apply` knows, by their canonical names (see :data:`ALIASES`).
SCHEMES: tuple[str, ...] = (
    "standard",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_truncated_normal",
    "random_normal",
    "truncated_normal",
)

#: Short names used in the paper / official code, and PyTorch's names, mapped to SCHEMES.
ALIASES: dict[str, str] = {
    "vs-x": "glorot_uniform",
    "vs-h": "he_normal",
    "rn": "random_normal",
    "tn": "truncated_normal",
    "vs": "lecun_truncated_normal",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
}

#: How :func:`apply` sets biases: zeros (the official code's trained network), PyTorch's default
#: rule, or drawn from the weight scheme as TensorFlow draws a 1-D variable (the scored network of
#: the official code as first published, ``initializer_b_bp='vs'``; zeros since June 2019).
BIAS_OPTIONS: tuple[str, ...] = ("zeros", "default", "scheme")

#: Std of a standard normal truncated to [-2, 2]; TF divides by it so the result has std 1.
TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978

# Schemes whose scale is a free parameter (TF default 1.0) rather than derived from the fans.
_FREE_STD_SCHEMES = ("random_normal", "truncated_normal")
# Every convolution (Conv1d/2d/3d, ConvTranspose1d/2d/3d) is a _ConvNd.
_WEIGHT_MODULES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
_NORM_MODULES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def canonical_scheme(scheme: str) -> str:
    """Return the name in :data:`SCHEMES` for ``scheme`` or one of its :data:`ALIASES`."""
    if isinstance(scheme, str):
        name = scheme.strip().lower()
        name = ALIASES.get(name, name)
        if name in SCHEMES:
            return name
    raise ValueError(
        f"unknown initialisation scheme {scheme!r}; allowed: {', '.join(SCHEMES)} "
        f"(aliases: {', '.join(f'{a}={s}' for a, s in ALIASES.items())})"
    )


def fan_in_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear/Conv weight, with PyTorch's convention.

    For a weight of shape ``(out, in, *kernel)``: fan_in = in·prod(kernel), fan_out = out·prod(kernel).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"fan_in_fan_out expects a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 2:
        raise ValueError(
            f"fan in/out need a weight with at least 2 dimensions, got shape {tuple(tensor.shape)}"
        )
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _module_fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a layer's weight: :func:`fan_in_fan_out`, except for transposed convolutions.

    A transposed convolution stores its weight as ``(in, out/groups, *kernel)``, the layout of the
    convolution it is the gradient of, so reading the fans off the shape (as
    ``torch.nn.init._calculate_fan_in_and_fan_out`` does) swaps them. Here they keep the meaning
    they have for a convolution: fan_in = (in/groups)·prod(kernel), fan_out = out·prod(kernel).
    That is the number of inputs each output sums at stride 1; with stride s an output sums only
    about 1/s^d of them, so variance scaling by fan_in shrinks the output variance by about s^d
    (an upsampling layer of stride 2 and a 4x4 kernel: a quarter). (A Bilinear weight (out, in1, in2) gets fan_in = in1·in2, the
    number of products each output sums, and fan_out = out·in2.)
    """
    weight = module.weight
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        receptive = math.prod(weight.shape[2:])
        return weight.shape[0] // module.groups * receptive, weight.shape[1] * module.groups * receptive
    return fan_in_fan_out(weight)


def _check_std(scheme: str, std: float | None) -> float | None:
    if std is None:
        return None
    if scheme not in _FREE_STD_SCHEMES:
        raise ValueError(
            f"std={std!r} only applies to the schemes without variance scaling "
            f"({', '.join(_FREE_STD_SCHEMES)}), not to {scheme!r}"
        )
    if isinstance(std, bool) or not isinstance(std, numbers.Real):
        raise TypeError(f"std must be a positive number, got {std!r} ({type(std).__name__})")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be a positive finite number, got {std!r}")
    return float(std)


def _sampling_scale(scheme: str, fan_in: int, fan_out: int, std: float | None) -> float:
    """The scheme's own parameter: the uniform bound, or the normal's σ before truncation."""
    if scheme == "standard":
        return 1.0 / math.sqrt(fan_in)
    if scheme == "glorot_uniform":
        return math.sqrt(6.0 / (fan_in + fan_out))
    if scheme == "glorot_normal":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he_normal":
        return math.sqrt(2.0 / fan_in)
    if scheme == "he_uniform":
        return math.sqrt(6.0 / fan_in)
    if scheme == "lecun_truncated_normal":
        return math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD_FACTOR
    return 1.0 if std is None else std  # random_normal, truncated_normal


def init_std(scheme: str, fan_in: int, fan_out: int, *, std: float | None = None) -> float:
    """Expected standard deviation of the weights drawn by ``scheme`` for these fans.

    This is the std of the values actually produced (after truncation for the
    truncated schemes), so it can be compared with a measured ``weight.std()``.

    Example: Glorot's std for the first layer of LeNet-300-100, sqrt(2 / (784 + 300)).

    >>> from snip_lib import init
    >>> round(init.init_std("glorot_normal", 784, 300), 5)
    0.04295
    >>> round((2 / (784 + 300)) ** 0.5, 5)
    0.04295
    """
    name = canonical_scheme(scheme)
    std = _check_std(name, std)
    for label, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
        if isinstance(fan, bool) or not isinstance(fan, numbers.Integral) or fan <= 0:
            raise ValueError(f"{label} must be a positive integer, got {fan!r}")
    scale = _sampling_scale(name, int(fan_in), int(fan_out), std)
    if name in ("standard", "glorot_uniform", "he_uniform"):
        return scale / math.sqrt(3.0)  # std of U(-a, a)
    if name in ("lecun_truncated_normal", "truncated_normal"):
        return scale * TRUNCATED_NORMAL_STD_FACTOR
    return scale


def _draw(shape: torch.Size, dtype: torch.dtype, scheme: str, scale: float,
          generator: torch.Generator | None) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same numbers whatever the model's device.
    out = torch.empty(shape, dtype=dtype)
    if scheme in ("standard", "glorot_uniform", "he_uniform"):
        return nn.init.uniform_(out, -scale, scale, generator=generator)
    if scheme in ("lecun_truncated_normal", "truncated_normal"):
        return nn.init.trunc_normal_(out, 0.0, scale, -2.0 * scale, 2.0 * scale, generator=generator)
    return nn.init.normal_(out, 0.0, scale, generator=generator)


def _check_drawable(name: str, module: nn.Module) -> None:
    """A clear error for a layer whose weight :func:`apply` could not draw into (nothing changed yet)."""
    from torch.nn.utils import parametrize

    kind = type(module).__name__
    if "weight_orig" in module._parameters:
        raise ValueError(f"layer {name!r} ({kind}) is pruned with torch.nn.utils.prune: its weight is recomputed "
                         "from weight_orig at every forward, so a drawn weight would be lost; convert it first "
                         "with snip_lib.masking.from_torch_prune(model), or initialise before pruning")
    if parametrize.is_parametrized(module, "weight"):
        raise ValueError(f"layer {name!r} ({kind}) has a torch.nn.utils.parametrize parametrisation of its weight, "
                         "which is recomputed at every read, so a drawn weight would be lost; initialise before "
                         "parametrising, or write into module.parametrizations.weight.original yourself")
    weight = module._parameters.get("weight")
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(f"layer {name!r} ({kind}) is lazy and has not run yet, so its weight has no shape; "
                         "run one forward pass first")
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"layer {name!r} ({kind}) has no weight tensor to initialise")


def _fill(param: torch.Tensor, values: torch.Tensor) -> None:
    with torch.no_grad():
        param.copy_(values.to(device=param.device, dtype=param.dtype))



def check_seed(seed: int | None, *, allow_none: bool = True) -> int | None:
    """``seed`` as a plain ``int`` (or ``None`` where allowed), else a clear error.

    One check for every seeded function of the library, so a bad seed gets the same message
    everywhere: ``TypeError`` for a non-integer (``bool`` included, since ``True`` is almost
    always a mistake for ``seed=1``), ``ValueError`` for a negative one.
    """
    allowed = "a non-negative int or None" if allow_none else "a non-negative int"
    if seed is None:
        if allow_none:
            return None
        raise TypeError(f"seed must be {allowed}, got None")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be {allowed}, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be {allowed}, got {seed!r}")
    return int(seed)

def apply(model: nn.Module, scheme: str, seed: int | None = None, *,
          bias: str = "zeros", std: float | None = None) -> nn.Module:
    """Initialise ``model`` in place with ``scheme`` and return it.

    - Weights of ``nn.Linear``, ``nn.Bilinear``, ``nn.Conv1d/2d/3d`` and ``nn.ConvTranspose1d/2d/3d``
      are drawn from ``scheme``. A transposed convolution stores its weight as
      ``(in, out/groups, *kernel)``, so its fans are not read off that shape but are those of the layer, as for a
      convolution: fan_in = (in/groups)·prod(kernel), fan_out = out·prod(kernel). That is exact at
      stride 1; at stride s an output sums only about 1/s^d of those inputs, so variance scaling
      shrinks the output variance by about s^d.
    - Their biases are set to zero (``bias="zeros"``, the official code's default for the
      trained network), drawn from U(-1/√fan_in, 1/√fan_in) with the layer's fan_in as above
      (``bias="default"``: PyTorch's default rule for Linear and Conv; PyTorch's own bound differs
      for ConvTranspose and Bilinear layers), or drawn from ``scheme`` itself with TensorFlow's fans of a 1-D
      variable, fan_in = fan_out = its length (``bias="scheme"``: the official code as first
      published initialised the biases of the network it *scores* with ``vs`` too, e.g. std
      1/√300 for a 300-unit layer; zeros since June 2019).
    - BatchNorm/InstanceNorm/LayerNorm/GroupNorm get weight 1 and bias 0, and BatchNorm
      running statistics are reset: a freshly initialised network has fresh statistics.
    - Other modules (embeddings, ...) are left as they are; ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``
      too, with a warning naming them (the book's recurrent networks are built from Linear layers).
    - A weight that is computed rather than stored cannot be drawn into: a layer pruned with
      ``torch.nn.utils.prune`` (convert it with :func:`snip_lib.masking.from_torch_prune`), one
      with a ``torch.nn.utils.parametrize`` parametrisation, or a lazy layer that has not run yet.
      Such a layer is refused with a ``ValueError`` naming it, before any layer is changed.
    - A model masked with :func:`snip_lib.masking.apply_masks` keeps its masks: after the draw its
      pruned entries are set back to 0 (:func:`snip_lib.masking.enforce_masks`), so the model
      stays as sparse as its masks say. The draw itself is that of the unmasked model.

    ``seed`` draws every number from a local ``torch.Generator`` (module order, weight then
    bias), so the result is deterministic and the global RNG is untouched; ``seed=None``
    uses the global RNG. ``std`` overrides the TF default of 1.0 for ``random_normal`` and
    ``truncated_normal`` only.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = canonical_scheme(scheme)
    std = _check_std(name, std)
    if bias not in BIAS_OPTIONS:
        raise ValueError(f"unknown bias option {bias!r}; allowed: {', '.join(BIAS_OPTIONS)}")
    seed = check_seed(seed)
    generator = None if seed is None else torch.Generator().manual_seed(seed)

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHT_MODULES)]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear, nn.Bilinear or convolution layer to initialise"
        )
    for layer_name, module in layers:  # every layer checked before any is changed
        _check_drawable(layer_name or type(model).__name__, module)
    skipped = [n or type(model).__name__ for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if skipped:
        warnings.warn(f"init.apply leaves {', '.join(skipped)} as they are (nn.RNN/LSTM/GRU keep PyTorch's own "
                      "initialisation); build recurrent cells from nn.Linear to initialise them with a scheme",
                      stacklevel=2)
    for module in model.modules():
        if isinstance(module, _WEIGHT_MODULES):
            weight = module.weight
            dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
            fan_in, fan_out = _module_fans(module)
            scale = _sampling_scale(name, fan_in, fan_out, std)
            _fill(weight, _draw(weight.shape, dtype, name, scale, generator))
            if module.bias is not None:
                if bias == "zeros":
                    _fill(module.bias, torch.zeros(module.bias.shape))
                elif bias == "scheme":
                    n = module.bias.numel()
                    scale = _sampling_scale(name, n, n, std)
                    _fill(module.bias, _draw(module.bias.shape, dtype, name, scale, generator))
                else:
                    bound = 1.0 / math.sqrt(fan_in)
                    _fill(module.bias, _draw(module.bias.shape, dtype, "standard", bound, generator))
        elif isinstance(module, _NORM_MODULES):
            if getattr(module, "weight", None) is not None:
                _fill(module.weight, torch.ones(module.weight.shape))
            if getattr(module, "bias", None) is not None:
                _fill(module.bias, torch.zeros(module.bias.shape))
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                module.reset_running_stats()
    from snip_lib import masking  # local: masking pulls in pandas

    masking.enforce_masks(model)  # a masked model stays pruned: its pruned entries go back to 0
    return model
