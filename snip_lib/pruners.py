"""Pruning at initialisation behind one interface: SNIP and the methods that came after it.

Every method answers the same question as SNIP: *before training*, which κ = round((1 − s)·m) of
the m prunable entries should the network keep? They differ only in the score they rank by and
in whether they rank once or progressively:

====================  ============================================================  ========  ======
method                score (keep the largest)                                      data      rounds
====================  ============================================================  ========  ======
``snip``              ``|θ ⊙ ∇L|`` (Lee et al. 2019)                                a batch   1
``random``            U(0, 1)                                                       none      1
``magnitude``         ``|θ|`` (magnitude at initialisation)                         none      1
``grasp``             θ ⊙ Hg (Wang et al. 2020, see :func:`grasp_scores`)           a batch   1
``synflow``           ``|θ ⊙ ∂R/∂θ|``, ``R = 1ᵀ f_|θ|(1)`` (Tanaka et al. 2020)     none      100
``iterative-snip``    SNIP on the pruned network, pruned stay out                   a batch   60
``force``             SNIP on the pruned network, pruned may return                 a batch   60
====================  ============================================================  ========  ======

(de Jorge et al. 2021 for the last two.) Progressive methods shrink the kept fraction
geometrically: round t of T keeps d^(t/T) of the entries, d = 1 − s (:func:`sparsity_schedule`).
Every round and every method selects with :func:`snip_lib.snip.masks_from_scores`, an exact global
top-κ with deterministic ties, so all masks keep exactly κ entries (the one exception is layer-wise
magnitude pruning, ``scope="layer"``, which keeps round((1 − s)·m_l) in each tensor).

Frankle et al. (2021) found that shuffling each layer's mask (:func:`shuffle_within_layers`)
barely changes the accuracy these methods reach: what they really choose is how dense each layer
is. No method here changes the model: scores are computed with ``torch.func.functional_call`` on
detached copies, so parameters, ``.grad``, BatchNorm statistics and train/eval flags are as before.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from snip_lib import baselines, masking
from snip_lib.init import check_seed
from snip_lib.snip import (
    Batches,
    _as_batches,
    _check_bn_mode,
    _check_loss_fn,
    _check_masks,
    _check_sparsity,
    _functional_loss,
    _refuse_unscorable,
    _ScoringMode,
    _snip_masks,
    _total_or_raise,
    _warn_unprunable,
    masks_from_scores,
    prunable_parameters,
)

__all__ = [
    "METHODS",
    "SCHEDULES",
    "METHOD_OPTIONS",
    "DATA_FREE",
    "check_method",
    "grasp_scores",
    "synflow_scores",
    "pruned_sensitivity",
    "sparsity_schedule",
    "prune_masks",
    "shuffle_within_layers",
]

#: Every method :func:`prune_masks` knows, in the order the book compares them.
METHODS: tuple[str, ...] = ("snip", "random", "magnitude", "grasp", "synflow", "iterative-snip", "force")
#: How progressive methods shrink the density from 1 to d = 1 − sparsity over their rounds.
SCHEDULES: tuple[str, ...] = ("exponential", "linear")
#: Options each method accepts through ``prune_masks(..., **options)``.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "snip": ("loss_fn", "scoring_init", "scoring_bias"),
    "random": (),
    "magnitude": ("scope",),
    "grasp": ("loss_fn", "temperature"),
    "synflow": ("iterations", "schedule"),
    "iterative-snip": ("loss_fn", "steps", "schedule"),
    "force": ("loss_fn", "steps", "schedule"),
}
#: The methods that never look at the data (``inputs``/``targets`` may be ``None``; SynFlow reads
#: only the shape of ``inputs``).
DATA_FREE: tuple[str, ...] = ("random", "magnitude", "synflow")

#: Defaults: SynFlow's 100 rounds (Tanaka et al. 2020); 60 rounds as in the FORCE code's README
#: example; the logit temperature 200 of the GraSP code.
SYNFLOW_ITERATIONS = 100
PROGRESSIVE_STEPS = 60
GRASP_TEMPERATURE = 200.0

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- checks

def _canonical_method(method: str) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, one of {', '.join(METHODS)}; got {method!r}")
    key = method.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {', '.join(METHODS)}")
    return key


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_schedule(schedule: Any) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    return schedule


def _check_finite(scores: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if not all(torch.isfinite(s).all().item() for s in scores.values()):
        raise ValueError(f"{what} scores are not finite (inf/nan); check the inputs/initialisation")
    return scores


# ----------------------------------------------------------------------------- schedules

def sparsity_schedule(sparsity: float, steps: int, schedule: str = "exponential") -> list[float]:
    """The sparsity after each of ``steps`` pruning rounds, ending exactly at ``sparsity``.

    ``"exponential"`` keeps d^(t/T) of the entries after round t of T (d = 1 − sparsity): every
    round removes the same *fraction* of what is left, so late rounds, where the network is already
    thin, remove few connections. This is the schedule of SynFlow (Tanaka et al. 2020) and FORCE
    (de Jorge et al. 2021). ``"linear"`` removes the same *number* of entries per round.
    """
    sparsity = _check_sparsity(sparsity)
    steps = _positive_int(steps, "steps")
    _check_schedule(schedule)
    density = 1.0 - sparsity
    if schedule == "exponential":
        out = [1.0 - density ** (t / steps) for t in range(1, steps + 1)]
    else:
        out = [(1.0 - density) * t / steps for t in range(1, steps + 1)]
    out[-1] = sparsity  # no rounding drift: the last round is the requested sparsity
    return out


# ----------------------------------------------------------------------------- GraSP

def grasp_scores(
    model: nn.Module,
    inputs: Batches,
    targets: Batches,
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    bn_mode: str = "eval",
    temperature: float = GRASP_TEMPERATURE,
) -> dict[str, torch.Tensor]:
    """GraSP's keep-score θ ⊙ Hg, one tensor per prunable parameter (Wang, Zhang & Grosse 2020).

    Why this score. GraSP wants pruning to keep the gradient flowing, measured by the squared
    gradient norm ‖g‖². Removing the weights δ = −θ_q e_q changes it, to first order, by
    ΔS(δ) = 2 δᵀHg with H the Hessian of the loss and g its gradient (one Hessian-gradient product
    gives Hg for all weights). The paper scores every weight by S(−θ) = −θ ⊙ Hg and *removes*
    the largest scores: those whose removal reduces the gradient flow least (or even increases
    it). Equivalently it *keeps* the weights with the largest θ ⊙ Hg = −S(−θ), whose removal
    would reduce the gradient flow most; that is what this function returns, so that "keep the
    largest", as for every other method, gives GraSP's mask. The score is signed: unlike SNIP's
    it is not a magnitude, and the GraSP code's ranking agrees with this one.

    ``temperature`` divides the logits before the loss (the GraSP code's ``T = 200``, which keeps
    the softmax soft so that its curvature carries information; 1 is the paper's formula without
    it). Several batches: g is the size-weighted mean gradient over all batches, and H g the
    size-weighted mean of each batch's Hessian times that g (as the GraSP code does). The GraSP code
    also re-initialises the linear layers with Xavier-normal weights before scoring; this function
    scores the model as given.

    A float16 model is scored as a float32 copy (its own weights are not touched) and its scores
    come back in float32: at ``T = 200`` they are of the order of 1e-7, where float16 flushes
    almost all of them to zero and the ranking would be arbitrary.

    The model's output must be a tensor unless ``temperature=1``: a model returning several outputs
    (``(logits, aux)``, with a ``loss_fn`` that picks the logits) is refused with a ``ValueError``
    on the first forward pass, since dividing by T needs the logits themselves.
    """
    _refuse_unscorable(model)
    params = prunable_parameters(model, include_bias=include_bias)
    pairs = _as_batches(inputs, targets)
    _check_bn_mode(bn_mode)
    fn = _check_loss_fn(loss_fn)
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0 \
            or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    temperature = float(temperature)
    fn = _tempered(fn, temperature)
    if any(p.dtype == torch.float16 for p in params.values()):  # after the checks: no copy for a bad call
        model = copy.deepcopy(model).float()
        params = prunable_parameters(model, include_bias=include_bias)
        pairs = [(x.float() if x.is_floating_point() else x, y) for x, y in pairs]
    device = next(iter(params.values())).device
    weights = {name: p.detach() for name, p in params.items()}
    total = sum(x.shape[0] for x, _ in pairs)
    grad = {name: torch.zeros_like(w) for name, w in weights.items()}
    hess_grad = {name: torch.zeros_like(w) for name, w in weights.items()}

    def leaves() -> dict[str, torch.Tensor]:
        return {name: w.clone().requires_grad_(True) for name, w in weights.items()}

    with _ScoringMode(model, bn_mode), torch.enable_grad():
        for i, (x, y) in enumerate(pairs):  # pass 1: g, the mean gradient
            w = leaves()
            loss = _functional_loss(model, w, x.to(device), y.to(device), fn, i)
            for name, g in zip(w, torch.autograd.grad(loss, list(w.values()), allow_unused=True)):
                if g is not None:
                    grad[name].add_(g, alpha=x.shape[0] / total)
        for i, (x, y) in enumerate(pairs):  # pass 2: H g, as the gradient of gᵀ∇L (g held fixed)
            w = leaves()
            loss = _functional_loss(model, w, x.to(device), y.to(device), fn, i)
            grads = torch.autograd.grad(loss, list(w.values()), create_graph=True, allow_unused=True)
            z = sum((g * grad[name]).sum() for name, g in zip(w, grads) if g is not None)
            if not isinstance(z, torch.Tensor) or not z.requires_grad:
                continue  # the loss is linear in the weights on this batch: H g = 0
            for name, hg in zip(w, torch.autograd.grad(z, list(w.values()), allow_unused=True)):
                if hg is not None:
                    hess_grad[name].add_(hg, alpha=x.shape[0] / total)
    return _check_finite({name: (weights[name] * hess_grad[name]).detach() for name in weights}, "GraSP")


def _tempered(loss_fn: LossFn, temperature: float) -> LossFn:
    """``loss_fn`` on the outputs divided by ``temperature``, refusing outputs that are not a tensor.

    The division happens inside the loss, so the check costs nothing: it runs on the first forward
    pass, before any gradient, instead of failing there with Python's ``tuple / float`` TypeError.
    """
    if temperature == 1.0:
        return loss_fn  # nothing to divide: any output loss_fn accepts will do

    def tempered(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, torch.Tensor):
            raise ValueError(
                f"GraSP divides the model's output by temperature={temperature:g}, but the model returned a "
                f"{type(outputs).__name__}, not a Tensor of logits; pass temperature=1 (with a loss_fn that "
                "picks the logits) or a model that returns a tensor"
            )
        return loss_fn(outputs / temperature, targets)

    return tempered


# ----------------------------------------------------------------------------- SynFlow

def synflow_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    include_bias: bool = False,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """Synaptic-flow scores ``|θ ⊙ ∂R/∂θ|`` of the (masked) network, without data (Tanaka et al. 2020).

    Why. Replace every parameter and floating buffer by its absolute value, feed a single all-ones
    input and let R be the sum of the outputs: ``R = 1ᵀ(∏_l |W_l|)1`` for a plain ReLU MLP, the total
    "synaptic flow" through the network, with no loss and no data. A weight's score θ ∂R/∂θ is its
    share of that flow, and the scores of a layer's incoming and outgoing connections balance
    (conservation), so iterating prune-and-rescore never empties a layer before the flow through it
    has to stop (no layer collapse). Only the shape of ``inputs`` (its first example) is used.
    The guarantee is for networks without biases, or with zero biases as every initialisation of
    this book gives: a non-zero bias injects flow that bypasses the layers before it, so those
    layers can be emptied while R stays positive.

    ``masks`` (bool, by parameter name) prunes the linearised weights first, as in the rounds of
    :func:`prune_masks`; pruned entries score 0. All modules run in eval mode (BatchNorm on its
    running statistics, as the SynFlow code does). The computation runs in ``dtype`` (float64 by
    default: the flow is a product over layers and can underflow float32 in deep networks); the
    model's own weights, signs included, are never touched (the SynFlow code flips their signs in
    place and restores them afterwards). Scores come back in ``dtype``.

    The all-ones input replaces the data, so the model must take floating-point inputs (not the
    integer indices of an ``nn.Embedding``) and return one tensor, whose sum is R.
    """
    _refuse_unscorable(model)
    params = prunable_parameters(model, include_bias=include_bias)
    if not isinstance(inputs, torch.Tensor):  # only the type: a batch's values would flood the message
        raise ValueError("synflow needs an example input tensor with a batch dimension (only its shape is used), "
                         f"got a {type(inputs).__name__}")
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("synflow needs an example input tensor with a batch dimension (only its shape is used), "
                         f"got shape {tuple(inputs.shape)}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if masks is not None:
        if not isinstance(masks, Mapping):
            raise TypeError(f"masks must be None or a dict of prunable parameter name -> bool mask, "
                            f"got a {type(masks).__name__}")
        odd = [type(k).__name__ for k in masks if not isinstance(k, str)]
        if odd:
            raise TypeError(f"masks must be keyed by parameter name (str), got keys of type {', '.join(odd)}")
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise ValueError(f"masks name {unknown}, which are not prunable parameters; allowed: {', '.join(params)}")
        masks = _checked_masks(masks, params)
    device = next(iter(params.values())).device
    absolute = {name: p.detach().abs().to(dtype) for name, p in model.named_parameters()
                if p.is_floating_point()}
    scored = {}
    for name in params:
        w = absolute[name]
        if masks is not None and name in masks:
            w = w * masks[name].to(device=device, dtype=dtype)
        scored[name] = w.requires_grad_(True)
        absolute[name] = scored[name]
    buffers = {name: (b.detach().abs().to(dtype) if b.is_floating_point() else b.clone())
               for name, b in model.named_buffers()}
    ones = torch.ones((1, *inputs.shape[1:]), dtype=dtype, device=device)
    with _ScoringMode(model, "eval"), torch.enable_grad():
        try:
            outputs = functional_call(model, (absolute, buffers), (ones,))
        except RuntimeError as err:
            if inputs.is_floating_point():
                raise
            raise TypeError(
                f"synflow feeds the model an all-ones {dtype} input in place of the data, and the model failed on "
                f"it; its example inputs are {inputs.dtype} (indices, e.g. for nn.Embedding?): SynFlow needs a model "
                "that takes floating-point inputs"
            ) from err
        if not isinstance(outputs, torch.Tensor):
            raise TypeError(f"synflow sums the model's output (R = 1ᵀ f(1)), but the model returned a "
                            f"{type(outputs).__name__}, not a Tensor; score a model whose forward returns one tensor")
        flow = outputs.sum()
        grads = torch.autograd.grad(flow, list(scored.values()), allow_unused=True)
    scores = {name: (w.detach() * g).abs() if g is not None else torch.zeros_like(w.detach())
              for (name, w), g in zip(scored.items(), grads)}
    return _check_finite(scores, "SynFlow")


# ----------------------------------------------------------------------------- iterative SNIP / FORCE

def pruned_sensitivity(
    model: nn.Module,
    inputs: Batches,
    targets: Batches,
    masks: Mapping[str, torch.Tensor],
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    bn_mode: str = "eval",
) -> dict[str, torch.Tensor]:
    """FORCE's saliency ``|θ ⊙ ∇L(θ ⊙ m)|``: SNIP's score, measured on the pruned network.

    Why. SNIP scores every weight on the dense network; at 99 % sparsity the network that is
    finally trained looks nothing like it. de Jorge et al. (2021) prune progressively and re-score
    on the network pruned so far: the gradient is taken at θ ⊙ m, and multiplied by the *original*
    weight θ, so a pruned weight (m = 0) still has a score and may come back (FORCE). Iterative
    SNIP multiplies by θ ⊙ m instead, so pruned weights score 0; :func:`prune_masks` keeps them out.
    With all-ones ``masks`` this is exactly SNIP's connection sensitivity (unnormalised).
    Several batches are weighted by their size, as in :func:`snip_lib.snip.connection_sensitivity`.
    """
    _refuse_unscorable(model)
    params = prunable_parameters(model, include_bias=include_bias)
    pairs = _as_batches(inputs, targets)
    _check_bn_mode(bn_mode)
    fn = _check_loss_fn(loss_fn)
    if not isinstance(masks, Mapping) or set(masks) != set(params):
        raise ValueError(f"masks must name exactly the prunable parameters {list(params)}, "
                         f"got {list(masks) if isinstance(masks, Mapping) else type(masks).__name__}")
    masks = _checked_masks(masks, params)
    device = next(iter(params.values())).device
    weights = {name: p.detach() for name, p in params.items()}
    total = sum(x.shape[0] for x, _ in pairs)
    grad = {name: torch.zeros_like(w) for name, w in weights.items()}
    with _ScoringMode(model, bn_mode), torch.enable_grad():
        for i, (x, y) in enumerate(pairs):
            pruned = {name: (w * masks[name].to(device=device, dtype=w.dtype)).requires_grad_(True)
                      for name, w in weights.items()}
            loss = _functional_loss(model, pruned, x.to(device), y.to(device), fn, i)
            for name, g in zip(pruned, torch.autograd.grad(loss, list(pruned.values()), allow_unused=True)):
                if g is not None:
                    grad[name].add_(g, alpha=x.shape[0] / total)
    return _check_finite({name: (weights[name] * grad[name]).abs() for name in weights}, "FORCE")


def _checked_masks(masks: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bool masks of exactly their parameters' shapes (0/1 numeric ones converted), or a clear error."""
    checked = {}
    for name, mask in masks.items():
        mask = masking._as_bool_mask(name, mask)
        if mask.shape != params[name].shape:
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}; it must have the shape of the "
                             f"parameter, {tuple(params[name].shape)}")
        checked[name] = mask
    return checked


def _exclude_pruned(scores: dict[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores with every pruned entry below every kept one (scores are >= 0), so none returns."""
    return {name: torch.where(masks[name], s, torch.full_like(s, -1.0)) for name, s in scores.items()}


def _progressive(
    method: str,
    score: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    params: Mapping[str, torch.Tensor],
    sparsity: float,
    steps: int,
    schedule: str,
    *,
    monotone: bool,
) -> dict[str, torch.Tensor]:
    """Prune in rounds: score the current network, keep the top entries at the round's sparsity.

    Round 1 scores the dense network, as SNIP does, and is refused like SNIP when every score is
    zero (the whole ranking would be by position). Zero-score ties are reported, in one warning for
    the call, where they say something: in round 1, and in every round of FORCE, whose pruned weights
    keep their score |θ ⊙ g| (a zero there is a dead path, not a pruned weight). The monotone methods
    (iterative SNIP, SynFlow) rank their pruned entries below all others from round 2 on, and a
    surviving entry scoring zero there lies on a path earlier rounds cut; their ties are not reported.
    """
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
    ties: list[tuple[int, str]] = []
    for t, round_sparsity in enumerate(sparsity_schedule(sparsity, steps, schedule), start=1):
        scores = score(masks)
        if t == 1:
            _total_or_raise(scores, f"{method!r} has nothing to rank in its first round: the ranking, and so "
                                    "the mask, would be arbitrary")
        if monotone:
            scores = _exclude_pruned(scores, masks)
        with warnings.catch_warnings(record=True) as caught:  # one warning for all rounds, not one per round
            warnings.simplefilter("always")
            masks = masks_from_scores(scores, round_sparsity, warn_zero_ties=t == 1 or not monotone)
        ties += [(t, str(w.message)) for w in caught]
    if ties:
        first, message = ties[0]
        rounds = ", ".join(str(t) for t, _ in ties[:10]) + (", ..." if len(ties) > 10 else "")
        warnings.warn(f"{method}, round {first} of {steps} (zero-score ties in round(s) {rounds}): {message}",
                      UserWarning, stacklevel=3)
    return masks


# ----------------------------------------------------------------------------- the interface

def check_method(method: str, options: Mapping[str, Any] | None = None) -> str:
    """The canonical name of ``method`` (case and ``_``/``-`` forgiven), after checking its option names.

    Raises ``ValueError`` naming an unknown method (listing :data:`METHODS`) or an option the
    method does not take (listing the ones it does); the option *values* are checked when pruning.
    """
    method = _canonical_method(method)
    unknown = sorted(set(options or {}) - set(METHOD_OPTIONS[method]))
    if unknown:
        allowed = ", ".join(METHOD_OPTIONS[method]) or "none"
        raise ValueError(f"method {method!r} does not take option(s) {unknown}; allowed: {allowed}")
    return method


def prune_masks(
    method: str,
    model: nn.Module,
    inputs: Batches | None,
    targets: Batches | None,
    sparsity: float,
    *,
    include_bias: bool = False,
    bn_mode: str = "eval",
    seed: int | None = None,
    **options: Any,
) -> dict[str, torch.Tensor]:
    """Prune ``model`` at initialisation with ``method``: one bool mask per prunable parameter.

    Same contract as :func:`snip_lib.snip.snip_masks`: exactly κ = round((1 − sparsity)·m) entries
    kept globally (except ``magnitude`` with ``scope="layer"``, which keeps round((1 − sparsity)·m_l)
    in each tensor l), keys and order of ``prunable_parameters(model, include_bias=include_bias)``,
    and the model is left as it was (parameters, ``.grad``, buffers, train/eval flags).

    ``method`` is one of :data:`METHODS`. ``inputs``/``targets`` are one batch or lists of batches
    as for SNIP; the data-free methods (:data:`DATA_FREE`) ignore them (``None`` is fine), except
    that SynFlow needs ``inputs`` for the input shape. ``bn_mode`` applies to the methods that use
    a loss (SynFlow always uses eval mode). ``seed`` feeds the methods that draw random numbers
    (``random``; ``snip`` with ``scoring_init``); the others are deterministic and ignore it.
    Options (:data:`METHOD_OPTIONS`):

    - ``snip``: ``loss_fn``, ``scoring_init``, ``scoring_bias`` (see :func:`~snip_lib.snip.snip_masks`);
    - ``magnitude``: ``scope`` ("global" or "layer", see :func:`~snip_lib.baselines.magnitude_masks`);
    - ``grasp``: ``loss_fn``, ``temperature`` (default 200, see :func:`grasp_scores`);
    - ``synflow``: ``iterations`` (default 100), ``schedule`` (default "exponential");
    - ``iterative-snip``, ``force``: ``loss_fn``, ``steps`` (default 60), ``schedule``.

    Example: SynFlow needs no labels (the batch only gives the input shape).

    >>> import torch
    >>> from snip_lib import init, models, pruners, snip
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> x = torch.randn(8, 1, 28, 28)
    >>> masks = pruners.prune_masks("synflow", net, x, None, 0.9, iterations=10)
    >>> snip.kept_count(masks) == snip.kept_for(0.9, 266_200)
    True
    """
    method = check_method(method, options)
    opts = dict(options)
    sparsity = _check_sparsity(sparsity)
    _check_bn_mode(bn_mode)
    seed = check_seed(seed)
    params = prunable_parameters(model, include_bias=include_bias)
    if method != "snip":  # _snip_masks does both itself
        if method not in ("random", "magnitude"):  # the methods that take gradients
            _refuse_unscorable(model)
        _warn_unprunable(model)
    if method not in DATA_FREE and (inputs is None or targets is None):
        raise ValueError(f"method {method!r} scores on data: give inputs and targets (a batch)")

    if method == "snip":
        scoring_init = opts.get("scoring_init")
        return _snip_masks(model, inputs, targets, sparsity, loss_fn=opts.get("loss_fn"),
                           include_bias=include_bias, bn_mode=bn_mode, scoring_init=scoring_init,
                           scoring_bias=opts.get("scoring_bias", "zeros"),
                           seed=seed if scoring_init is not None else None)
    if method == "random":
        return baselines.random_masks(model, sparsity, seed=seed, include_bias=include_bias)
    if method == "magnitude":
        return baselines.magnitude_masks(model, sparsity, include_bias=include_bias,
                                         scope=opts.get("scope", "global"))
    if method == "grasp":
        scores = grasp_scores(model, inputs, targets, opts.get("loss_fn"), include_bias=include_bias,
                              bn_mode=bn_mode, temperature=opts.get("temperature", GRASP_TEMPERATURE))
        return masks_from_scores(scores, sparsity)
    if method == "synflow":
        iterations = _positive_int(opts.get("iterations", SYNFLOW_ITERATIONS), "iterations")
        schedule = _check_schedule(opts.get("schedule", "exponential"))
        example = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
        if not isinstance(example, torch.Tensor):
            raise ValueError("method 'synflow' needs inputs (a batch tensor) for the input shape; "
                             f"got {type(inputs).__name__}")
        return _progressive(
            method, lambda masks: synflow_scores(model, example, masks, include_bias=include_bias),
            params, sparsity, iterations, schedule, monotone=True,
        )
    # iterative-snip / force
    steps = _positive_int(opts.get("steps", PROGRESSIVE_STEPS), "steps")
    schedule = _check_schedule(opts.get("schedule", "exponential"))
    pairs = _as_batches(inputs, targets)  # reject bad batches once, before the rounds
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    return _progressive(
        method, lambda masks: pruned_sensitivity(model, xs, ys, masks, opts.get("loss_fn"),
                                                 include_bias=include_bias, bn_mode=bn_mode),
        params, sparsity, steps, schedule, monotone=method == "iterative-snip",
    )


# ----------------------------------------------------------------------------- sanity check

def shuffle_within_layers(masks: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Each mask with its entries randomly permuted: same kept count per tensor, new positions.

    Why: Frankle et al. (2021) showed that SNIP, GraSP and SynFlow lose (almost) nothing when
    their masks are shuffled like this, so what matters in their masks is the density they give
    each layer, not which connections they pick. ``seed`` seeds a local generator (the global RNG is
    untouched); the tensors are shuffled in the dict's order, each with its own permutation.
    """
    masks = dict(masks)
    _check_masks(masks)
    if not masks:
        raise ValueError("masks is empty; give a dict of name -> bool Tensor")
    generator = torch.Generator().manual_seed(check_seed(seed, allow_none=False))
    out = {}
    for name, mask in masks.items():
        order = torch.randperm(mask.numel(), generator=generator).to(mask.device)
        out[name] = mask.reshape(-1)[order].reshape(mask.shape)
    return out
