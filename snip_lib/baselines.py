"""Saliency criteria that came before SNIP: random, weight magnitude and Optimal Brain Damage.

Why this module exists: chapter 1 of the book shows *why* SNIP was needed. The classic
criteria rank connections by a score, exactly as SNIP does, but the score only means
something for a **trained** network:

- **Random** (:func:`random_masks`): the control every pruning criterion must beat.
- **Magnitude** (:func:`magnitude_masks`, Han et al. 2015): ``s_j = |w_j|``. Large trained
  weights matter; at initialisation ``|w_j|`` only reflects the random draw and each layer's
  initialisation scale.
- **Optimal Brain Damage** (:func:`obd_scores`, LeCun et al. 1990): the second-order Taylor
  estimate of the loss increase when w_j is set to zero, s_j = ½ H_jj w_j². It assumes the
  gradient term gᵀδw vanishes, i.e. that the network sits at a minimum (after training).

Every function uses the same conventions as :func:`snip_lib.snip.snip_masks`: the scored
tensors are :func:`snip_lib.snip.prunable_parameters` (weights of Linear/Conv layers, plus
their biases with ``include_bias``), and masks keep exactly κ = round((1 − sparsity)·m)
entries globally via :func:`snip_lib.snip.masks_from_scores`, which also breaks ties, with
``scope="global"`` (the default); ``scope="layer"`` keeps round((1 − sparsity)·m_l) in every
tensor l, so the total can differ from κ by rounding.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

from snip_lib.init import check_seed
from snip_lib.snip import _check_sparsity, masks_from_scores, prunable_parameters

__all__ = [
    "SCOPES",
    "HESSIAN_METHODS",
    "EXACT_HESSIAN_LIMIT",
    "random_scores",
    "random_masks",
    "magnitude_scores",
    "magnitude_masks",
    "hessian_diagonal",
    "obd_scores",
    "obd_masks",
]

#: Where the top-κ selection happens: over all layers at once ("global", as SNIP and the
#: paper's comparison do) or separately in every tensor ("layer", the same sparsity everywhere).
SCOPES: tuple[str, ...] = ("global", "layer")

#: How :func:`hessian_diagonal` obtains diag(H): "exact" (one Hessian-vector product per
#: entry; small models only) or "gauss-newton" (LeCun et al.'s positive approximation; for
#: softmax cross-entropy it equals the diagonal of the Fisher information).
HESSIAN_METHODS: tuple[str, ...] = ("exact", "gauss-newton")

#: Default largest number of entries for ``method="exact"``: it costs one Hessian-vector
#: product per entry, so LeNet-300-100 (266k weights) would take hours on a CPU.
EXACT_HESSIAN_LIMIT = 100_000

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- checks

def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; allowed: {', '.join(SCOPES)}")
    return scope


def _select(scores: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Top-κ masks, globally or tensor by tensor.

    Layer by layer, a tensor with no entries (a zero-width layer) gets an empty mask: it has no
    connection to keep or lose, so it neither counts as emptied nor stops the others being pruned.
    """
    sparsity = _check_sparsity(sparsity)
    if _check_scope(scope) == "global":
        return masks_from_scores(scores, sparsity)
    if all(s.numel() == 0 for s in scores.values()):
        raise ValueError(f"the prunable tensors {list(scores)} have no entries; there is nothing to prune")
    for name, s in scores.items():  # every layer is checked before any is ranked
        if s.numel() and round((1.0 - sparsity) * s.numel()) == 0:
            raise ValueError(
                f"sparsity {sparsity!r} with scope='layer' leaves no connection in {name!r} "
                f"(round((1 - {sparsity!r}) * {s.numel()}) = 0); use a lower sparsity or scope='global'"
            )
    return {name: masks_from_scores({name: s}, sparsity)[name] if s.numel()
            else torch.zeros(s.shape, dtype=torch.bool, device=s.device)
            for name, s in scores.items()}


# ----------------------------------------------------------------------------- random

def random_scores(model: nn.Module, *, seed: int | None = None, include_bias: bool = False) -> dict[str, torch.Tensor]:
    """Independent U(0, 1) scores for every prunable entry.

    ``seed`` draws from a local ``torch.Generator`` (the global RNG is untouched, and the same
    seed gives the same scores for the same architecture); ``seed=None`` uses the global RNG.
    The weights' values play no part.
    """
    params = prunable_parameters(model, include_bias=include_bias)
    seed = check_seed(seed)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(p.shape, generator=generator, dtype=torch.float32).to(p.device)
        for name, p in params.items()
    }


def random_masks(
    model: nn.Module, sparsity: float, *, seed: int | None = None, include_bias: bool = False
) -> dict[str, torch.Tensor]:
    """Keep κ = round((1 − sparsity)·m) connections chosen uniformly at random over all layers.

    Every subset of size κ is equally likely, so each layer keeps about the same fraction
    (1 − sparsity) of its connections: random pruning has no notion of which layer matters.
    """
    _check_sparsity(sparsity)
    return masks_from_scores(random_scores(model, seed=seed, include_bias=include_bias), sparsity)


# ----------------------------------------------------------------------------- magnitude

def magnitude_scores(model: nn.Module, *, include_bias: bool = False) -> dict[str, torch.Tensor]:
    """``|w_j|`` for every prunable entry (Han et al. 2015): detached copies, the model is untouched."""
    params = prunable_parameters(model, include_bias=include_bias)
    return {name: p.detach().abs().clone() for name, p in params.items()}


def magnitude_masks(
    model: nn.Module, sparsity: float, *, include_bias: bool = False, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Keep the connections with the largest ``|w_j|``.

    ``scope="global"`` (default) keeps the κ = round((1 − sparsity)·m) largest magnitudes over
    all layers together, so layers with large weights keep more of them. ``scope="layer"``
    keeps round((1 − sparsity)·m_l) in every tensor l: the same density everywhere
    (layer-wise pruning).

    Example:

    >>> from snip_lib import baselines, init, models, snip
    >>> net = init.apply(models.build("lenet300"), "glorot_uniform", seed=0)
    >>> masks = baselines.magnitude_masks(net, 0.9, scope="layer")
    >>> {name: round(d, 6) for name, d in snip.layerwise_density(masks).items()}
    {'fc1.weight': 0.1, 'fc2.weight': 0.1, 'fc3.weight': 0.1}
    """
    _check_sparsity(sparsity)
    _check_scope(scope)
    return _select(magnitude_scores(model, include_bias=include_bias), sparsity, scope)


# ----------------------------------------------------------------------------- OBD

class _EvalMode:
    """Run the model in eval mode (no dropout, BN running statistics), restoring every flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = [(m, m.training) for m in model.modules()]

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, flag in self.flags:
            m.training = flag


def _refuse_wrapper(model: nn.Module) -> None:
    """A clear error for DataParallel/DDP, whose forward ``torch.func`` cannot call functionally.

    Unlike the pruners' scores (``snip._refuse_unscorable``), inference mode is not refused: the
    ``torch.func`` transforms used here compute the same Hessian diagonal inside it.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        raise TypeError(f"got a {type(model).__name__}; compute OBD on the model inside it, "
                        "e.g. obd_scores(model.module, inputs, targets)")


def _check_batch(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    for label, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor (one batch), got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"{label} is a 0-d tensor; expected a batch dimension first")
    if inputs.shape[0] == 0:
        raise ValueError(f"inputs is empty (shape {tuple(inputs.shape)}); OBD needs examples")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"got {inputs.shape[0]} inputs but {targets.shape[0]} targets; they must match")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _exact_diagonal(
    loss_of: Callable[[torch.Tensor], torch.Tensor], flat: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """diag(∇²f) at ``flat``: Hessian-vector products H e_j, ``chunk_size`` basis vectors at a time.

    Reverse-over-reverse (a vector-Jacobian product of the gradient; H is symmetric, so
    e_jᵀH = (H e_j)ᵀ). The gradient's graph is built once and reused for every chunk.
    """
    m = flat.numel()
    _, hessian_vector = vjp(grad(loss_of), flat)
    diag = torch.empty_like(flat)
    for start in range(0, m, chunk_size):
        idx = torch.arange(start, min(start + chunk_size, m), device=flat.device)
        rows = torch.arange(idx.numel(), device=flat.device)
        basis = torch.zeros(idx.numel(), m, dtype=flat.dtype, device=flat.device)
        basis[rows, idx] = 1.0
        diag[idx] = vmap(hessian_vector)(basis)[0][rows, idx]
    return diag


def _gauss_newton_diagonal(
    logits_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    flat: torch.Tensor,
    inputs: torch.Tensor,
    chunk_size: int,
) -> torch.Tensor:
    """diag(Jᵀ ∇²_z ℓ J) for the mean softmax cross-entropy, averaged over the batch.

    For softmax cross-entropy ∇²_z ℓ = diag(p) − ppᵀ = Σ_c p_c (p − e_c)(p − e_c)ᵀ, and
    Jᵀ(p − e_c) is the gradient of the loss of the example *labelled* c. So the diagonal is
    E_n Σ_c p_nc (∂ℓ(x_n, c)/∂w)², the diagonal of the Fisher information: it needs only
    per-example gradients, one per class, and is never negative.
    """
    def example_loss(params: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        logits = logits_of(params, x.unsqueeze(0))
        return F.cross_entropy(logits, c.reshape(1))

    per_example_grad = vmap(grad(example_loss), in_dims=(None, 0, 0))
    total = torch.zeros_like(flat)
    n = inputs.shape[0]
    with torch.no_grad():
        probs_all = torch.softmax(logits_of(flat, inputs), dim=1)
    num_classes = probs_all.shape[1]
    for start in range(0, n, chunk_size):
        x = inputs[start:start + chunk_size]
        probs = probs_all[start:start + chunk_size]
        for c in range(num_classes):
            labels = torch.full((x.shape[0],), c, dtype=torch.long, device=x.device)
            g = per_example_grad(flat, x, labels)  # (batch, m)
            total += (probs[:, c:c + 1] * g.square()).sum(dim=0)
    return total / n


def hessian_diagonal(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    method: str = "exact",
    chunk_size: int = 256,
    max_entries: int | None = EXACT_HESSIAN_LIMIT,
) -> dict[str, torch.Tensor]:
    """Diagonal of the Hessian of the batch loss with respect to the prunable parameters.

    ``method="exact"``: H_jj = ∂²L/∂w_j², computed with ``torch.func`` as one Hessian-vector
    product per entry, ``chunk_size`` entries at a time. Cost grows like m × (one
    forward/backward pass), so models with more than ``max_entries`` entries are refused
    (``max_entries=None`` lifts the limit). The exact diagonal of a non-convex loss may have
    negative entries.

    ``method="gauss-newton"``: the positive Gauss-Newton (Levenberg-Marquardt) approximation
    that LeCun et al. (1990) use, which drops the term with the second derivative of the
    network's output. Implemented for the default loss only (mean softmax cross-entropy), where
    it equals the Fisher-information diagonal. It scales to LeNet-300-100. For networks whose
    activations are piecewise linear (ReLU, max-pooling, no normalisation) the dropped term has
    no diagonal (the output is piecewise linear in each single weight), so on the diagonal the
    two methods agree exactly; off the diagonal they differ.

    ``loss_fn(outputs, targets)`` must return the *mean* loss as a scalar (default
    ``F.cross_entropy``). The model runs in eval mode and its parameters, ``.grad`` fields and
    train/eval flags are unchanged afterwards; the batch is moved to the parameters' device.
    Floating-point inputs must have the weights' dtype (``ValueError`` otherwise, as for SNIP).
    """
    _refuse_wrapper(model)
    params = prunable_parameters(model, include_bias=include_bias)
    _check_batch(inputs, targets)
    dtype = next(iter(params.values())).dtype
    if inputs.is_floating_point() and inputs.dtype != dtype:
        raise ValueError(f"the inputs are {inputs.dtype} but the model's weights are {dtype}; "
                         f"convert one of them (e.g. inputs.to({dtype}))")
    if method not in HESSIAN_METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(HESSIAN_METHODS)}")
    chunk_size = _positive_int(chunk_size, "chunk_size")
    if max_entries is not None:
        max_entries = _positive_int(max_entries, "max_entries")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")
    if method == "gauss-newton" and loss_fn is not None:
        raise ValueError(
            "method='gauss-newton' is implemented for the default loss (mean softmax cross-entropy) "
            "only; leave loss_fn=None or use method='exact'"
        )
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    m = sum(sizes)
    if method == "exact" and max_entries is not None and m > max_entries:
        raise ValueError(
            f"the model has m = {m} prunable entries, more than max_entries = {max_entries} for the "
            "exact Hessian diagonal (one Hessian-vector product per entry); use "
            "method='gauss-newton', a smaller model, or max_entries=None to wait"
        )

    device = next(iter(params.values())).device
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])
    others = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    x = inputs.to(device)
    y = targets.to(device)
    fn = F.cross_entropy if loss_fn is None else loss_fn

    def logits_of(vector: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        pieces = dict(zip(names, (t.reshape(s) for t, s in zip(torch.split(vector, sizes), shapes))))
        return functional_call(model, ({**others, **pieces}, buffers), (batch,))

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        loss = fn(logits_of(vector, x), y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar (the mean loss over the batch)")
        return loss.reshape(())

    with _EvalMode(model), torch.enable_grad():
        if not torch.isfinite(loss_of(flat).detach()).item():
            raise ValueError("the loss is not finite on this batch; check the inputs and the weights")
        if method == "exact":
            diag = _exact_diagonal(loss_of, flat, chunk_size)
        else:
            diag = _gauss_newton_diagonal(logits_of, flat, x, chunk_size)
    pieces = torch.split(diag.detach(), sizes)
    return {n: t.reshape(s).clone() for n, t, s in zip(names, pieces, shapes)}


def obd_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn | None = None,
    *,
    include_bias: bool = False,
    method: str = "exact",
    chunk_size: int = 256,
    max_entries: int | None = EXACT_HESSIAN_LIMIT,
) -> dict[str, torch.Tensor]:
    """Optimal Brain Damage saliency s_j = ½ H_jj w_j² (LeCun et al. 1990).

    The second-order Taylor expansion δL ≈ gᵀδw + ½ δwᵀHδw with δw = −w_j e_j, keeping only
    the diagonal of H and dropping the gradient term, which is only justified at a minimum of
    the loss, i.e. after training. ``method`` and the other arguments are those of
    :func:`hessian_diagonal` ("exact" by default; "gauss-newton" is LeCun et al.'s own
    approximation and never negative).
    """
    diag = hessian_diagonal(
        model, inputs, targets, loss_fn, include_bias=include_bias, method=method,
        chunk_size=chunk_size, max_entries=max_entries,
    )
    params = prunable_parameters(model, include_bias=include_bias)
    return {name: 0.5 * h * params[name].detach().square() for name, h in diag.items()}


def obd_masks(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sparsity: float,
    *,
    loss_fn: LossFn | None = None,
    include_bias: bool = False,
    method: str = "exact",
    scope: str = "global",
    chunk_size: int = 256,
    max_entries: int | None = EXACT_HESSIAN_LIMIT,
) -> dict[str, torch.Tensor]:
    """Keep the connections whose removal OBD predicts to hurt most (largest ½ H_jj w_j²).

    One-shot: LeCun et al. prune a few connections, retrain, and repeat; this function is
    one such step, at whatever ``sparsity`` is asked for.
    """
    _check_sparsity(sparsity)
    _check_scope(scope)
    scores = obd_scores(
        model, inputs, targets, loss_fn, include_bias=include_bias, method=method,
        chunk_size=chunk_size, max_entries=max_entries,
    )
    if not all(torch.isfinite(s).all().item() for s in scores.values()):
        raise ValueError("OBD scores are not finite; check the inputs and the weights")
    return _select(scores, sparsity, scope)

