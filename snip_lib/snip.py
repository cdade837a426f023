"""Connection sensitivity and SNIP masks (Lee, Ajanthan & Torr, ICLR 2019).

SNIP prunes a network once, at initialisation, before any training.

1. Give every prunable weight w_j a multiplicative indicator c_j, so the network computes
   with c ⊙ w. Removing connection j means setting c_j = 0, and its effect on the loss is
   ΔL_j = L(1 ⊙ w) − L((1 − e_j) ⊙ w).
2. Computing ΔL_j for every j would need m forward passes, so the paper relaxes the binary
   c_j and uses the derivative g_j = ∂L(c ⊙ w)/∂c_j at c = 1 (Eq. 5). One forward/backward
   pass on a mini-batch gives all of them. At c = 1 the chain rule gives g_j = w_j ∂L/∂w_j:
   this is *not* the weight gradient ∂L/∂w_j itself.
3. The connection sensitivity is the normalised magnitude ``s_j = |g_j| / Σ_k |g_k|`` (Eq. 6).
4. The mask keeps the κ connections with the largest s_j, **globally** across all layers
   (Eq. 7), where κ = round((1 − sparsity)·m) of the m prunable entries.

:func:`connection_sensitivity` differentiates with respect to c itself (``torch.func``),
so any module that reads its weights through attribute access is handled, and the model's
parameters, ``.grad`` fields, BatchNorm statistics and train/eval flags are left unchanged.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from snip_lib.masking import _torch_pruned_modules

__all__ = [
    "BN_MODES", "prunable_parameters", "indicator_gradients", "connection_sensitivity", "masks_from_scores",
    "snip_masks", "layerwise_density", "kept_count", "kept_for", "unprunable_weights",
]

#: How BatchNorm layers run during the scoring pass: "eval" uses the running statistics
#: (the official code, ``is_train=False``); "train" uses the statistics of the batch
#: (mil-ad, ShrinkBench, Frankle et al.).
BN_MODES: tuple[str, ...] = ("eval", "train")

# Every convolution (Conv1d/2d/3d, ConvTranspose1d/2d/3d, their lazy forms) is a _ConvNd.
_PRUNABLE_MODULES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
# nn.MultiheadAttention keeps its input projections as its own parameters (its out_proj is a Linear).
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_ATTENTION_BIASES = ("in_proj_bias", "bias_k", "bias_v")
# Layers whose weights are lookup tables or per-feature scales, never pruned and never worth a warning.
_NEVER_PRUNED = (nn.Embedding, nn.EmbeddingBag, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = torch.Tensor | Sequence[torch.Tensor]


def _prunable_names_in(module: nn.Module, include_bias: bool) -> list[str]:
    """Names (local to ``module``) of its own prunable parameters."""
    own = [name for name, p in module._parameters.items() if p is not None]
    if isinstance(module, _PRUNABLE_MODULES):
        return [n for n in own if n == "weight" or (include_bias and n == "bias")]
    if isinstance(module, nn.RNNBase):
        return [n for n in own if n.startswith("weight_") or (include_bias and n.startswith("bias_"))]
    if isinstance(module, nn.MultiheadAttention):
        # bias_k/bias_v (add_bias_kv=True) are biases too: appended to the keys and values
        return [n for n in own if n in _ATTENTION_WEIGHTS or (include_bias and n in _ATTENTION_BIASES)]
    return []


def unprunable_weights(model: nn.Module) -> list[str]:
    """Trainable weight matrices of ``model`` that SNIP does not score: parameters with two or more
    dimensions outside the layers :func:`prunable_parameters` knows (custom layers, for instance).

    Embeddings and normalisation layers are left out on purpose and not listed. The scoring
    functions warn with this list, so a model is never left partly dense without a word.
    """
    prunable = {id(m._parameters[n]) for m in model.modules() for n in _prunable_names_in(m, True)}
    return [f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules() if not isinstance(module, _NEVER_PRUNED)
            for name, p in module._parameters.items()
            if p is not None and p.requires_grad and p.dim() >= 2 and id(p) not in prunable]


def _warn_unprunable(model: nn.Module, stacklevel: int = 3) -> None:
    """Warn about :func:`unprunable_weights`; the default ``stacklevel`` points at the caller's caller."""
    left = unprunable_weights(model)
    if left:
        warnings.warn(
            f"{len(left)} weight tensor(s) of {type(model).__name__} are not prunable by snip_lib and stay dense: "
            f"{', '.join(left[:8])}{', ...' if len(left) > 8 else ''}; the sparsity counts only the prunable "
            "weights (Linear, Bilinear, Conv/ConvTranspose, RNN/LSTM/GRU, MultiheadAttention)",
            UserWarning, stacklevel=stacklevel,
        )


def _check_and_warn(model: nn.Module, include_bias: bool, stacklevel: int = 3) -> None:
    """What the public scoring functions check first, then their one warning about weights left dense.

    ``stacklevel`` counts from here, as for ``warnings.warn``: the default points at the user's call
    of the public function that calls this.
    """
    _refuse_unscorable(model)
    prunable_parameters(model, include_bias=include_bias)  # refuses non-modules and torch-pruned models
    _warn_unprunable(model, stacklevel=stacklevel + 1)


def _refuse_unscorable(model: nn.Module) -> None:
    """Clear errors for the two set-ups in which the functional scoring pass cannot run."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        raise TypeError(
            f"got a {type(model).__name__}; score and mask the model inside it, "
            "snip_masks(model.module, ...) and apply_masks(model.module, masks), then train the wrapper "
            "(for several processes see snip_lib.distributed)"
        )
    if torch.is_inference_mode_enabled():
        raise RuntimeError("pruning scores are computed with autograd (SNIP's are gradients): "
                           "call it outside torch.inference_mode()")


def prunable_parameters(model: nn.Module, *, include_bias: bool = False) -> dict[str, nn.Parameter]:
    """The parameters SNIP scores and prunes, keyed and ordered as in ``model.named_parameters()``.

    These are the weights of ``nn.Linear``, ``nn.Bilinear``, every convolution
    (``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``), the ``weight_*`` matrices of torch
    recurrent modules (``nn.RNN/LSTM/GRU``) and the input projections of ``nn.MultiheadAttention``
    (its output projection is a Linear), plus their biases when ``include_bias`` (the official
    code also prunes biases; most PyTorch ports do not). Normalisation layers and embeddings are
    never pruned; other weights (custom layers) are listed by :func:`unprunable_weights`, and
    the scoring functions warn about them. A weight shared by several layers appears once. A
    model pruned with ``torch.nn.utils.prune`` is refused (its weights hide in ``<name>_orig``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(include_bias, bool):
        raise TypeError(f"include_bias must be True or False, got {include_bias!r}")
    pruned_by_torch = _torch_pruned_modules(model)
    if pruned_by_torch:
        # its weights live in '<name>_orig', which would silently drop out of the ranking (and of κ)
        raise ValueError(
            f"modules {pruned_by_torch} carry torch.nn.utils.prune pruning; convert the model first with "
            "snip_lib.masking.from_torch_prune(model), or remove it with torch.nn.utils.prune.remove"
        )
    wanted = {
        id(module._parameters[name])
        for module in model.modules()
        for name in _prunable_names_in(module, include_bias)
    }
    params = {name: p for name, p in model.named_parameters() if id(p) in wanted}
    if not params:
        raise ValueError(
            f"model ({type(model).__name__}) has no prunable parameters; SNIP prunes weights of "
            "Linear, Conv and recurrent layers"
        )
    return params


# ----------------------------------------------------------------------------- input checks

def _as_batches(inputs: Batches, targets: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pair up inputs and targets as a list of batches, rejecting anything ambiguous."""
    single_x, single_y = isinstance(inputs, torch.Tensor), isinstance(targets, torch.Tensor)
    if single_x and single_y:
        pairs = [(inputs, targets)]
    elif single_x or single_y:
        raise TypeError(
            "inputs and targets must both be Tensors (one batch) or both be lists/tuples of "
            f"Tensors (several batches), got {type(inputs).__name__} and {type(targets).__name__}"
        )
    elif isinstance(inputs, (list, tuple)) and isinstance(targets, (list, tuple)):
        if len(inputs) != len(targets):
            raise ValueError(
                f"got {len(inputs)} input batches but {len(targets)} target batches; "
                "they must pair up one to one"
            )
        if not inputs:
            raise ValueError("inputs and targets are empty lists; give at least one batch")
        pairs = list(zip(inputs, targets))
    else:
        raise TypeError(
            "inputs and targets must be Tensors or lists/tuples of Tensors, got "
            f"{type(inputs).__name__} and {type(targets).__name__}"
        )
    for i, (x, y) in enumerate(pairs):
        for label, t in (("inputs", x), ("targets", y)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{label} batch {i} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() == 0:
                raise ValueError(f"{label} batch {i} is a 0-d tensor; expected a batch dimension first")
        if x.shape[0] == 0:
            raise ValueError(f"inputs batch {i} is empty (shape {tuple(x.shape)}); SNIP needs examples")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"batch {i} has {x.shape[0]} inputs but {y.shape[0]} targets; they must match (the first "
                "dimension is the batch: one target per example, and sequences batch-first, as with "
                "batch_first=True)"
            )
    return pairs


def _check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; allowed: {', '.join(BN_MODES)}")


def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(
            f"sparsity must be a number in [0, 1), got {sparsity!r} ({type(sparsity).__name__})"
        )
    value = float(sparsity)
    if not (0.0 <= value < 1.0):  # also rejects NaN
        raise ValueError(f"sparsity must be in [0, 1) (fraction of connections removed), got {sparsity!r}")
    return value


def _check_loss_fn(loss_fn: Any) -> LossFn:
    if loss_fn is None:
        return F.cross_entropy
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")
    return loss_fn


def _scalar_loss(loss: Any, batch: int) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (the mean loss over the batch), got {shape}")
    if not torch.isfinite(loss.detach()).item():
        raise ValueError(f"loss is {loss.item()} on batch {batch}; check the inputs/initialisation")
    return loss.reshape(())


# ----------------------------------------------------------------------------- scoring

class _ScoringMode:
    """Put the model in eval mode (BatchNorm optionally in train mode) and restore every flag."""

    def __init__(self, model: nn.Module, bn_mode: str) -> None:
        self.model, self.bn_mode = model, bn_mode
        self.flags = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        self.model.eval()  # no dropout: the scores are a deterministic function of the batch
        if self.bn_mode == "train":
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def _functional_loss(model: nn.Module, weights: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     loss_fn: LossFn, batch: int, temperature: float = 1.0) -> torch.Tensor:
    """The batch loss with ``weights`` in place of the model's prunable parameters (nothing mutated)."""
    dtype = next(iter(weights.values())).dtype
    if torch.is_floating_point(x) and x.dtype != dtype:
        raise ValueError(f"batch {batch}: the inputs are {x.dtype} but the model's weights are {dtype}; "
                         f"convert one of them (e.g. inputs.to({dtype}))")
    # Clones of the buffers absorb any running-statistics update of BatchNorm in train mode.
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    outputs = functional_call(model, ({**weights}, buffers), (x,))
    if loss_fn is F.cross_entropy and not isinstance(outputs, torch.Tensor):
        raise TypeError(
            f"the model returned a {type(outputs).__name__}, not a Tensor of logits, so the default loss "
            "(cross-entropy) cannot use it; pass loss_fn=lambda outputs, targets: ... that picks the logits"
        )
    if temperature != 1.0:
        outputs = outputs / temperature
    return _scalar_loss(loss_fn(outputs, y), batch)


def indicator_gradients(
    model: nn.Module,
    inputs: Batches,
    targets: Batches,
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    bn_mode: str = "eval",
) -> dict[str, torch.Tensor]:
    """The signed indicator gradient ∂L(c ⊙ w)/∂c at c = 1, one tensor per prunable parameter.

    SNIP's scores are its magnitudes (:func:`connection_sensitivity`). The sign is kept here
    because sums of gradients, unlike sums of magnitudes, are again gradients: the distributed
    version (:mod:`snip_lib.distributed`) adds the ranks' gradients before taking ``|.|``.
    ``L`` is the mean loss over all examples: with several batches, their gradients are
    weighted by batch size. Arguments as for :func:`connection_sensitivity`; the model's
    parameters, ``.grad``, buffers and train/eval flags are unchanged afterwards.
    """
    _check_and_warn(model, include_bias)
    return _indicator_gradients(model, inputs, targets, loss_fn, include_bias=include_bias, bn_mode=bn_mode)


def _indicator_gradients(model: nn.Module, inputs: Batches, targets: Batches, loss_fn: LossFn | None, *,
                         include_bias: bool, bn_mode: str) -> dict[str, torch.Tensor]:
    """:func:`indicator_gradients` without the warning about unprunable weights (its callers warn once)."""
    _refuse_unscorable(model)
    params = prunable_parameters(model, include_bias=include_bias)
    pairs = _as_batches(inputs, targets)
    _check_bn_mode(bn_mode)
    loss_fn = _check_loss_fn(loss_fn)

    device = next(iter(params.values())).device
    weights = {name: p.detach() for name, p in params.items()}
    total_examples = sum(x.shape[0] for x, _ in pairs)
    grad_sums = {name: torch.zeros_like(w) for name, w in weights.items()}

    with _ScoringMode(model, bn_mode), torch.enable_grad():
        for i, (x, y) in enumerate(pairs):
            c = {name: torch.ones_like(w, requires_grad=True) for name, w in weights.items()}
            masked = {name: weights[name] * c[name] for name in weights}
            loss = _functional_loss(model, masked, x.to(device), y.to(device), loss_fn, i)
            grads = torch.autograd.grad(loss, list(c.values()), allow_unused=True)
            weight = x.shape[0] / total_examples
            for name, g in zip(c, grads):
                if g is not None:
                    grad_sums[name].add_(g, alpha=weight)
    return grad_sums


def connection_sensitivity(
    model: nn.Module,
    inputs: Batches,
    targets: Batches,
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    bn_mode: str = "eval",
    normalize: bool = True,
) -> dict[str, torch.Tensor]:
    """SNIP's connection sensitivity ``|∂L(c ⊙ w)/∂c|`` at c = 1, one tensor per prunable parameter.

    ``loss_fn(outputs, targets)`` must return the *mean* loss over the batch as a scalar
    (default: ``F.cross_entropy``). ``inputs``/``targets`` are one batch each, or equal-length
    lists/tuples of batches: the indicator gradients are accumulated weighted by batch size
    before taking the magnitude, which equals one pass on the concatenated batch (exactly so
    when BatchNorm uses running statistics, ``bn_mode="eval"``). Batches are moved to the
    parameters' device.

    ``bn_mode`` picks how BatchNorm runs (see :data:`BN_MODES`); every other module runs in
    eval mode (no dropout). The model's parameters, ``.grad``, buffers and train/eval flags are
    unchanged afterwards. With ``normalize`` the scores are divided by their global sum, so
    they add up to 1 across all layers (this does not change the ranking; for a half-precision
    model they are returned in float32, where the small normalised values do not underflow).
    Floating-point inputs must have the weights' dtype (``ValueError`` otherwise).

    Example:

    >>> import torch
    >>> from snip_lib import init, models, snip
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    >>> scores = snip.connection_sensitivity(net, x, y)
    >>> {name: tuple(s.shape) for name, s in scores.items()}
    {'fc1.weight': (300, 784), 'fc2.weight': (100, 300), 'fc3.weight': (10, 100)}
    >>> round(sum(float(s.sum()) for s in scores.values()), 6)   # normalised
    1.0
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    _check_and_warn(model, include_bias)
    return _connection_sensitivity(model, inputs, targets, loss_fn, include_bias=include_bias, bn_mode=bn_mode,
                                   normalize=normalize)


def _connection_sensitivity(model: nn.Module, inputs: Batches, targets: Batches, loss_fn: LossFn | None, *,
                            include_bias: bool, bn_mode: str, normalize: bool) -> dict[str, torch.Tensor]:
    """:func:`connection_sensitivity` without the warning about unprunable weights."""
    grads = _indicator_gradients(model, inputs, targets, loss_fn, include_bias=include_bias, bn_mode=bn_mode)
    scores = {name: g.abs() for name, g in grads.items()}
    if not all(torch.isfinite(s).all().item() for s in scores.values()):
        raise ValueError("connection sensitivity is not finite (inf/nan gradients); "
                         "check the inputs/initialisation")
    if normalize:
        total = _total_or_raise(scores, "cannot normalise; pass normalize=False to get the raw zeros")
        # half-precision scores divided by a large sum underflow to 0, which would reorder them
        scores = {name: (s.float() if s.dtype in (torch.float16, torch.bfloat16) else s) / total
                  for name, s in scores.items()}
    return scores


def _total_or_raise(scores: dict[str, torch.Tensor], consequence: str) -> float:
    total = sum(s.sum(dtype=torch.float64).item() for s in scores.values())
    if total == 0.0:
        raise ValueError(
            "all connection sensitivities are zero (e.g. all-zero weights or a loss that does not "
            f"depend on them); {consequence}"
        )
    return total


# ----------------------------------------------------------------------------- masks

def kept_for(sparsity: float, m: int) -> int:
    """κ, the number of connections kept at ``sparsity`` out of ``m``: ``round((1 - sparsity) * m)``.

    Raises ``ValueError`` when that is 0: such a sparsity would leave no connection at all, so it
    is refused (by the scoring functions, and up front by the command line).
    """
    sparsity = _check_sparsity(sparsity)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int (the number of prunable entries), got {m!r}")
    kappa = int(round((1.0 - sparsity) * m))
    if kappa == 0:
        raise ValueError(
            f"sparsity {sparsity!r} leaves no connection: round((1 - {sparsity!r}) * {m}) = 0 of "
            f"m = {m} prunable entries"
        )
    return kappa


def masks_from_scores(scores: dict[str, torch.Tensor], sparsity: float, *,
                      warn_zero_ties: bool = True) -> dict[str, torch.Tensor]:
    """Keep the κ = round((1 − sparsity)·m) highest scores globally; one bool mask per key.

    m is the total number of entries of all tensors in ``scores``. ``round`` is Python's
    (halves go to the even integer), exactly as the official code's
    ``int(round(num_params * (1 - target_sparsity)))`` under Python 3.

    Ties are broken deterministically: entries are numbered by concatenating the flattened
    tensors in the dict's order, and among equal scores the lower number is kept (as a stable
    sort by descending score would do). Masks have each tensor's shape and device.

    When non-negative scores (SNIP's, magnitudes) run out before κ, the rest of the mask is chosen
    among zero scores by that numbering alone, which says nothing about those connections; a
    ``UserWarning`` then says how many (``warn_zero_ties=False`` silences it: :mod:`snip_lib.pruners`
    does so after the first round of iterative SNIP and SynFlow, which rank the connections pruned
    in earlier rounds below all others, so ties there say nothing new).
    """
    sparsity = _check_sparsity(sparsity)
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"scores must be a non-empty dict of name -> Tensor, got {scores!r:.80}")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"scores[{name!r}] must be a torch.Tensor, got {type(s).__name__}")
        if s.dtype == torch.bool or s.is_complex():
            raise TypeError(f"scores[{name!r}] has dtype {s.dtype}; scores must be real numbers "
                            "(a floating-point or integer tensor) to be ranked")
    device = next(iter(scores.values())).device
    flat = torch.cat([s.detach().reshape(-1).to(device) for s in scores.values()])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.to(torch.float64)  # exact for half precision; kthvalue needs a full float type
    if torch.isnan(flat).any():
        raise ValueError("scores contain NaN; cannot rank connections")
    m = flat.numel()
    kappa = kept_for(sparsity, m)
    if kappa >= m:
        keep = torch.ones(m, dtype=torch.bool, device=device)
    else:
        # κ-th largest value: everything above it is kept, and ties at it go to lower indices.
        threshold = torch.kthvalue(flat, m - kappa + 1).values
        keep = flat > threshold
        missing = kappa - int(keep.sum().item())
        tied = torch.nonzero(flat == threshold).reshape(-1)
        if warn_zero_ties and threshold.item() == 0 and tied.numel() > missing and flat.min().item() >= 0:
            warnings.warn(
                f"only {kappa - missing:,} of the κ = {kappa:,} connections to keep have a non-zero score; the "
                f"other {missing:,} are picked among {tied.numel():,} zero scores by position (layer order), "
                "which says nothing about them. Zero scores come from weights the loss does not depend on at "
                "this point (zero-initialised layers, dead units, an unused branch); a lower sparsity, another "
                "batch or another initialisation gives a meaningful ranking",
                UserWarning, stacklevel=2,
            )
        keep[tied[:missing]] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].reshape(s.shape).to(s.device)
        start += s.numel()
    return masks


def check_scoring(scoring_init: str | None, scoring_bias: str = "zeros") -> None:
    """Reject a bad ``scoring_init``/``scoring_bias`` pair of :func:`snip_masks` before any work.

    ``scoring_init`` must be a scheme of :mod:`snip_lib.init` (or ``None``), ``scoring_bias`` one of
    ``init.BIAS_OPTIONS``, and a ``scoring_bias`` other than ``"zeros"`` needs ``scoring_init``.
    """
    from snip_lib import init  # local import: only the two-initialisation variant needs it

    if scoring_init is not None:
        init.canonical_scheme(scoring_init)
    if scoring_bias not in init.BIAS_OPTIONS:
        raise ValueError(f"unknown scoring_bias {scoring_bias!r}; allowed: {', '.join(init.BIAS_OPTIONS)}")
    if scoring_bias != "zeros" and scoring_init is None:
        raise ValueError(
            f"scoring_bias={scoring_bias!r} sets the biases of the re-initialised scored copy, so it needs "
            "scoring_init; with scoring_init=None the model's own biases are scored"
        )


def snip_masks(
    model: nn.Module,
    inputs: Batches,
    targets: Batches,
    sparsity: float,
    *,
    loss_fn: LossFn | None = None,
    include_bias: bool = False,
    bn_mode: str = "eval",
    scoring_init: str | None = None,
    scoring_bias: str = "zeros",
    seed: int | None = None,
) -> dict[str, torch.Tensor]:
    """SNIP in one call: score the connections on a batch and keep the top (1 − sparsity).

    ``scoring_init=None`` scores ``model``'s own weights (what most PyTorch ports do).
    ``scoring_init="<scheme>"`` is the official code's two-initialisation variant: a deep copy of
    ``model`` is re-initialised with ``snip_lib.init.apply(copy, scoring_init, seed=seed,
    bias=scoring_bias)`` and scored, while ``model`` itself, the network to train, is left
    untouched. ``scoring_bias="scheme"`` draws the copy's biases from the scheme as the official
    code did until June 2019 (they then compete for the kept budget with ``include_bias``); it needs
    ``scoring_init``. ``seed`` seeds that re-initialisation and is only accepted with
    ``scoring_init`` (``ValueError`` otherwise). ``loss_fn``, ``include_bias`` and ``bn_mode`` are as
    in :func:`connection_sensitivity`. The masks' keys are the names of
    ``prunable_parameters(model, include_bias=include_bias)``.

    Example (random inputs stand in for an MNIST batch; the budget is exact whatever the data):

    >>> import torch
    >>> from snip_lib import init, models, snip
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    >>> masks = snip.snip_masks(net, x, y, sparsity=0.98)
    >>> sorted(masks), masks["fc1.weight"].dtype
    (['fc1.weight', 'fc2.weight', 'fc3.weight'], torch.bool)
    >>> snip.kept_count(masks) == snip.kept_for(0.98, 266_200) == 5324
    True
    """
    return _snip_masks(model, inputs, targets, sparsity, loss_fn=loss_fn, include_bias=include_bias,
                       bn_mode=bn_mode, scoring_init=scoring_init, scoring_bias=scoring_bias, seed=seed)


def _snip_masks(model: nn.Module, inputs: Batches, targets: Batches, sparsity: float, *, loss_fn: LossFn | None,
                include_bias: bool, bn_mode: str, scoring_init: str | None, scoring_bias: str,
                seed: int | None) -> dict[str, torch.Tensor]:
    """:func:`snip_masks`, for it and ``pruners.prune_masks``: its warning points at their caller."""
    sparsity = _check_sparsity(sparsity)
    check_scoring(scoring_init, scoring_bias)  # reject a bad name before copying anything
    if isinstance(model, nn.Module):
        _check_and_warn(model, include_bias, stacklevel=4)  # the user's call of snip_masks / prune_masks
    scored = model
    if scoring_init is not None:
        from snip_lib import init

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        scored = init.apply(copy.deepcopy(model), scoring_init, seed=seed, bias=scoring_bias)
    elif seed is not None:
        raise ValueError(
            f"seed={seed!r} is only used with scoring_init (to re-initialise the scored copy); "
            "with scoring_init=None the model's own weights are scored"
        )
    scores = _connection_sensitivity(  # the warning about unprunable weights was given above
        scored, inputs, targets, loss_fn, include_bias=include_bias, bn_mode=bn_mode, normalize=False
    )
    # Normalising would not change the ranking, but all-zero scores would make the mask arbitrary.
    _total_or_raise(scores, "the ranking, and so the mask, would be arbitrary")
    return masks_from_scores(scores, sparsity)


# ----------------------------------------------------------------------------- summaries

def _check_masks(masks: dict[str, torch.Tensor]) -> None:
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict of name -> bool Tensor, got {type(masks).__name__}")
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"masks[{name!r}] must be a bool Tensor, got {kind}")


def layerwise_density(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of connections kept in each masked tensor (spot layer collapse: a 0.0 entry)."""
    _check_masks(masks)
    return {name: mask.float().mean().item() if mask.numel() else math.nan for name, mask in masks.items()}


def kept_count(masks: dict[str, torch.Tensor]) -> int:
    """Total number of connections kept across all masks."""
    _check_masks(masks)
    return sum(int(mask.sum().item()) for mask in masks.values())
