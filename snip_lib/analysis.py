"""How good is SNIP's one-pass estimate? Exact removal effects versus the first-order score.

The paper (Lee, Ajanthan & Torr, ICLR 2019, Eqs. 3-5) writes pruning with indicators c:
the network computes with c ⊙ w, and removing connection j changes the loss by

    ΔL_j = L(1 ⊙ w; D) − L((1 − e_j) ⊙ w; D)                                  (Eq. 4)

Measuring ΔL_j for all m connections costs m + 1 forward passes, so SNIP uses the
derivative with respect to the relaxed indicator instead,

    g_j = ∂L(c ⊙ w; D)/∂c_j at c = 1      (= w_j ∂L/∂w_j by the chain rule)      (Eq. 5)

which one forward-backward pass gives for every j. Since L((1 − e_j) ⊙ w) ≈ L(w) − g_j,
first order says ΔL_j ≈ g_j, with the same sign convention.

This module measures both, so the book (chapter 2) can check the approximation on real data:

- :func:`removal_effects`: the exact ΔL_j, one weight removed at a time, vectorised with
  ``torch.func.vmap`` over many single-weight removals;
- :func:`first_order_effects`: the *signed* g_j (``snip.connection_sensitivity`` returns ``|g_j|``);
- :func:`second_order_effects`: g_j − ½ w_j² H_jj, adding the diagonal-Hessian term that
  OBD-style criteria use, to show what the first-order estimate misses (exact derivatives
  along each removal direction, vectorised the same way);
- :func:`rank_agreement`: Spearman's rank correlation and the overlap of the top-κ sets;
- :func:`sample_connections`, :func:`flatten_scores`, :func:`time_forward`: small helpers.

:func:`removal_effects` and :func:`second_order_effects` work on a private float64 copy of the
model by default (``dtype``; :func:`first_order_effects` keeps the model's dtype unless given
``dtype=torch.float64``): ΔL_j is a
difference of two losses of order 1 that agree to 5-7 digits, so float32 round-off would be a
sizeable part of it. BatchNorm runs on its running statistics and dropout is off (eval mode),
as in the official code's scoring pass; the caller's model is never modified.
"""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from snip_lib.snip import prunable_parameters

__all__ = [
    "removal_effects",
    "first_order_effects",
    "second_order_effects",
    "rank_agreement",
    "sample_connections",
    "flatten_scores",
    "time_forward",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Indices = Mapping[str, "torch.Tensor | Sequence[int] | np.ndarray"]
# What rank_agreement compares: a 1-D array/tensor/sequence, or a dict of tensors flattened in key order.
Scores = torch.Tensor | np.ndarray | Sequence[float] | Mapping[str, torch.Tensor]

#: Largest number of float entries one vectorised chunk of removals may hold (2**24 float64 =
#: 128 MiB): per removal, its stacked copy of the parameter (or the fast path's two rank-1
#: factors) plus the forward values computed from the parameter's first use on, as counted on
#: the full-loss pass (see :func:`_probe`). The chunk size shrinks to stay below.
_CHUNK_BUDGET = 2**24


# ----------------------------------------------------------------------------- input checks

def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_batch(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    for label, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor (one batch), got {type(t).__name__}")
        if t.dim() == 0 or t.shape[0] == 0:
            raise ValueError(f"{label} must hold a non-empty batch, got shape {tuple(t.shape)}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"{inputs.shape[0]} inputs but {targets.shape[0]} targets; they must match")


def _check_dtype(dtype: torch.dtype | None) -> None:
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32, torch.float64 or None, got {dtype!r}")


def _is_integer(value: Any) -> bool:
    """Python and NumPy integers count; bool does not (True is not a count or a seed)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _resolve_loss_fn(loss_fn: LossFn | None) -> LossFn:
    """The default (mean cross-entropy) or the caller's callable, checked before any work."""
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets), got {loss_fn!r}")
    return loss_fn


def _check_finite(loss: torch.Tensor) -> None:
    """A nan/inf loss would make every result nan; refuse it as snip.connection_sensitivity does."""
    if not torch.isfinite(loss.detach()).item():
        raise ValueError(f"loss is {loss.item()} on the given batch; check the inputs/initialisation")


def _resolve_names(model: nn.Module, names: Sequence[str] | str | None) -> list[str]:
    """Default: the prunable weights (as SNIP scores them); else checked against named_parameters."""
    if names is None:
        return list(prunable_parameters(model))
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError("names is empty; give at least one parameter name (or None for all weights)")
    known = dict(model.named_parameters())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"names contains duplicates: {names}")
    return names


def _resolve_indices(
    params: Mapping[str, torch.Tensor], names: list[str], indices: Indices | None
) -> dict[str, torch.Tensor]:
    """Flat (row-major) indices per name as int64 tensors; all entries when not given."""
    if indices is None:
        return {n: torch.arange(params[n].numel()) for n in names}
    if not isinstance(indices, Mapping):
        raise TypeError(f"indices must be a dict of name -> flat indices, got {type(indices).__name__}")
    extra = [n for n in indices if n not in names]
    if extra:
        raise ValueError(f"indices given for {extra}, which are not among the chosen names {names}")
    return {
        n: _flat_indices(n, indices[n], params[n].numel()) if n in indices else torch.arange(params[n].numel())
        for n in names
    }


def _flat_indices(name: str, value: Any, size: int) -> torch.Tensor:
    """``value`` as int64 flat indices into ``size`` entries, or a ValueError naming what is wrong.

    Shared by :func:`removal_effects` and :func:`flatten_scores`: a bool mask or float indices
    would otherwise be converted silently (a mask into 0/1 positions, 2.7 into 2).
    """
    idx = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if idx.dim() != 1 or (idx.numel() and (idx.dtype.is_floating_point or idx.dtype.is_complex
                                           or idx.dtype == torch.bool)):
        raise ValueError(f"indices[{name!r}] must be a 1-D sequence of integer flat indices, got {idx!r:.80}")
    idx = idx.to(torch.int64).cpu()
    bad = idx[(idx < 0) | (idx >= size)]
    if bad.numel():
        raise ValueError(
            f"indices[{name!r}] has out-of-range flat index/indices {bad[:5].tolist()}; "
            f"{name!r} has {size} entries (valid: 0..{size - 1})"
        )
    return idx


def _working_copy(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """A private eval-mode copy (optionally cast), so the caller's model is never touched."""
    net = copy.deepcopy(model)
    if dtype is not None:
        net = net.to(dtype)
    return net.eval()


def _prepare_inputs(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
    p = next(net.parameters())
    x = inputs.to(p.device)
    if x.is_floating_point():
        x = x.to(p.dtype)
    return x, targets.to(p.device)


def _loss_of(net: nn.Module, buffers: dict, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn):
    """loss(params) for the network ``net``: a pure function for torch.func transforms."""
    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        out = loss_fn(functional_call(net, (params, buffers), (x,)), y)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"loss_fn must return a scalar (the mean loss over the batch), got {got}")
        return out.reshape(())
    return loss


def _sole_linear_owners(net: nn.Module) -> dict[str, nn.Linear]:
    """Weight name -> its nn.Linear, for weights that no other module shares and whose module has
    no forward hook of the caller's, nor any global one from ``register_module_forward_hook``
    (the fast path's hook must see the layer's own output).

    Candidates only: :func:`_probe` then checks that the forward pass really uses the weight
    through one call of the module and nowhere else.
    """
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for mod_name, module in net.named_modules(remove_duplicate=False):
        for p_name, p in module._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((f"{mod_name}.{p_name}" if mod_name else p_name, module))
    out: dict[str, nn.Linear] = {}
    if getattr(nn.modules.module, "_global_forward_hooks", None):  # runs before a module's own hooks
        return out
    for entries in owners.values():
        if len(entries) == 1:
            name, module = entries[0]
            if type(module) is nn.Linear and name.split(".")[-1] == "weight" and not module._forward_hooks:
                out[name] = module
    return out


class _Watch(TorchFunctionMode):
    """Sees every torch call of one forward pass: sizes of the results and reads of watched tensors."""

    def __init__(self, watched: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.by_id = {id(t): (n, t) for n, t in watched.items()}
        self.sizes: list[int] = []                 # numbers in each call's result, in call order
        self.first_use: dict[str, int] = {}        # name -> index of the first call that read it
        self.reads: dict[str, list[bool]] = {}     # name -> per read: inside its fast-path owner?
        self.inside: set[str] = set()              # names whose owner's forward is running

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for leaf in tree_leaves((args, kwargs)):
            hit = self.by_id.get(id(leaf))
            if hit is not None and hit[1] is leaf:
                self.first_use.setdefault(hit[0], len(self.sizes))
                self.reads.setdefault(hit[0], []).append(hit[0] in self.inside)
        out = func(*args, **kwargs)
        self.sizes.append(sum(t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)))
        return out


def _probe(loss: Callable, base: dict[str, torch.Tensor], chosen: list[str],
           candidates: Mapping[str, nn.Linear]) -> tuple[torch.Tensor, dict[str, nn.Linear], dict[str, int]]:
    """The full loss L(w), computed once while watching how the forward pass uses each parameter.

    Returns the loss, the weights the rank-1 fast path may handle (the owner's forward ran
    exactly once and the weight was read there only, e.g. not also by ``F.linear(x,
    self.fc.weight)`` in the model's ``forward``: the hook would miss that use), and per name
    the numbers one vectorised removal holds (see ``_CHUNK_BUDGET``).
    """
    watch = _Watch({n: base[n] for n in chosen})
    calls = dict.fromkeys(candidates, 0)
    handles = []
    for name, module in candidates.items():
        if name not in chosen:
            continue

        def enter(mod: nn.Module, args: tuple, name: str = name) -> None:
            watch.inside.add(name)

        def leave(mod: nn.Module, args: tuple, output: Any, name: str = name) -> None:
            watch.inside.discard(name)
            calls[name] += 1

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with torch.no_grad(), watch:
            full = loss(base)
    finally:
        for handle in handles:
            handle.remove()
    fast = {n: candidates[n] for n in chosen
            if n in candidates and calls[n] == 1 and watch.reads.get(n) == [True]}
    per_removal = {}
    for n in chosen:
        p = base[n]
        spec = p.shape[0] + p.shape[1] if n in fast else 2 * p.numel()  # rank-1 factors, or delta and w - delta
        later = sum(watch.sizes[watch.first_use[n]:]) if n in watch.first_use else 0
        per_removal[n] = spec + later
    return full, fast, per_removal


class _RemovalPaths:
    """phi_j(t) = L(w − t·w_j e_j) for connections j of one parameter, written for ``vmap``.

    t = 0 is the full network and t = 1 the network without connection j, so
    ΔL_j = phi_j(0) − phi_j(1), g_j = −phi_j'(0) and w_j² H_jj = phi_j''(0).

    * Weight of an ``nn.Linear`` (out x in) used only through one call of its module (checked
      by :func:`_probe`): removing W[i, k] only subtracts t·W[i, k]·x_k from output unit i. A
      forward hook applies that rank-1 change, so the layer (and everything before it) runs
      once per chunk and only the later layers are vectorised over the removals. Per removal
      the spec is (one-hot row i, W[i, k]·one-hot k).
    * Any other parameter (conv weight, bias, ...): the spec is w_j·e_j in the parameter's shape
      and the parameter is replaced by w − t·w_j e_j (a stacked copy per removal).
    """

    def __init__(self, name: str, base: dict, loss: Callable, linear: nn.Linear | None,
                 per_removal: int) -> None:
        self.name, self.base, self.loss, self.linear = name, base, loss, linear
        self.p = base[name]
        self.per_removal = per_removal  # numbers one removal holds, from _probe

    def chunk(self, chunk_size: int) -> int:
        return max(1, min(chunk_size, _CHUNK_BUDGET // max(1, self.per_removal)))

    def specs(self, sel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p, rows = self.p, torch.arange(sel.numel(), device=self.p.device)
        if self.linear is not None:
            n_out, n_in = p.shape
            i, k = sel // n_in, sel % n_in
            return (F.one_hot(i, n_out).to(p.dtype), F.one_hot(k, n_in).to(p.dtype) * p[i, k].unsqueeze(1))
        delta = torch.zeros(sel.numel(), p.numel(), dtype=p.dtype, device=p.device)
        delta[rows, sel] = p.reshape(-1)[sel]
        return (delta.reshape(sel.numel(), *p.shape),)

    def phi(self, t: torch.Tensor, *spec: torch.Tensor) -> torch.Tensor:
        if self.linear is None:
            (delta,) = spec
            return self.loss({**self.base, self.name: self.p - t * delta})
        row, col = spec

        def hook(mod: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            return output - t * (args[0] @ col).unsqueeze(-1) * row

        handle = self.linear.register_forward_hook(hook)
        try:
            return self.loss(self.base)
        finally:
            handle.remove()


def _setup(model, inputs, targets, names, indices, loss_fn, dtype, chunk_size):
    """Shared checks and set-up of the brute-force measures: the full loss and one path per name."""
    _check_model(model)
    _check_batch(inputs, targets)
    _check_dtype(dtype)
    if not _is_integer(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    loss_fn = _resolve_loss_fn(loss_fn)
    net = _working_copy(model, dtype)
    chosen = _resolve_names(net, names)
    base = {n: p.detach() for n, p in net.named_parameters()}
    idx = _resolve_indices(base, chosen, indices)
    buffers = {n: b.detach() for n, b in net.named_buffers()}
    x, y = _prepare_inputs(net, inputs, targets)
    loss = _loss_of(net, buffers, x, y, loss_fn)
    full_loss, fast, per_removal = _probe(loss, base, chosen, _sole_linear_owners(net))
    _check_finite(full_loss)
    paths = {n: _RemovalPaths(n, base, loss, fast.get(n), per_removal[n]) for n in chosen}
    return full_loss, idx, paths


def _per_name(values: torch.Tensor, p: torch.Tensor, name: str, indices: Indices | None) -> torch.Tensor:
    """Parameter-shaped when every entry was probed, else aligned with the given indices."""
    return values if indices is not None and name in indices else values.reshape(p.shape)


def _chunked(path: _RemovalPaths, sel_all: torch.Tensor, chunk_size: int, fn: Callable) -> torch.Tensor:
    """Apply the vectorised ``fn(*specs) -> values`` to the removals ``sel_all``, chunk by chunk."""
    out = torch.empty(sel_all.numel(), dtype=path.p.dtype, device=path.p.device)
    step = path.chunk(int(chunk_size))
    for start in range(0, sel_all.numel(), step):
        sel = sel_all[start:start + step].to(path.p.device)
        out[start:start + sel.numel()] = fn(*path.specs(sel)).detach()
    return out


# ----------------------------------------------------------------------------- the measures

def removal_effects(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str] | str | None = None,
    indices: Indices | None = None,
    loss_fn: LossFn | None = None,
    *,
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Exact ΔL_j = L(w) − L(w with w_j set to 0) on one batch (paper Eq. 4), by brute force.

    ``names``: parameters to probe (default: the prunable weights, as SNIP scores them; any
    name from ``model.named_parameters()`` is allowed, e.g. a bias). ``indices``: optional
    dict name -> flat (row-major) indices to probe; names without an entry are probed fully.
    ``loss_fn(outputs, targets)`` returns the mean loss (default ``F.cross_entropy``).
    Returns, per name, a tensor of ΔL_j: the parameter's shape when all its entries are
    probed, else a 1-D tensor aligned with the given indices. Sign, as in the paper: ΔL_j > 0
    means L(w) > L(w without j), i.e. removing the connection *lowers* the loss on this batch;
    ΔL_j < 0 means removing it raises the loss.

    Cost: one forward pass for L(w) plus one per probed connection, i.e. m + 1 passes for all
    m connections. The removals are evaluated ``chunk_size`` at a time in one vectorised call
    (``torch.func.vmap``), so the layers before the probed one run once per chunk, not once
    per removal. For the weight of an ``nn.Linear`` that the forward pass uses only by calling
    that module once (checked on the full-loss pass; not shared, not also read directly as in
    ``F.linear(x, self.fc.weight)``), zeroing W[i, k] only subtracts W[i, k]·x_k from output
    unit i, so a forward hook applies that rank-1 change and only the later layers are
    vectorised; any other parameter (conv, bias, ...) is handled by stacking copies of it, each
    with one entry zeroed. Chunks shrink so that chunk × (the stacked copies per removal + every
    value the forward pass computes from the parameter's first use on, as counted on the
    full-loss pass) stays at most 2**24 numbers (128 MiB in float64); temporaries inside a
    single operation are not counted. This makes each pass cheap, not the passes fewer: the total
    work still grows like m × (cost of the rest of the forward pass). Computed on a float64
    copy by default (see the module docstring).
    """
    full_loss, idx, paths = _setup(model, inputs, targets, names, indices, loss_fn, dtype, chunk_size)
    effects: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, path in paths.items():
            one = torch.ones((), dtype=path.p.dtype, device=path.p.device)
            removed = vmap(lambda *spec, path=path: path.phi(one, *spec))
            values = full_loss - _chunked(path, idx[name], chunk_size, removed)
            effects[name] = _per_name(values, path.p, name, indices)
    return effects


def first_order_effects(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str] | str | None = None,
    loss_fn: LossFn | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Signed g_j = ∂L(c ⊙ w)/∂c_j at c = 1 (paper Eq. 5), one tensor per name.

    Computed literally: indicators c = 1 multiply the chosen parameters and autograd
    differentiates the loss with respect to c (one forward-backward pass for all j). SNIP's
    score is ``|g_j|`` normalised (``snip.connection_sensitivity``); here the sign is kept, so
    that g_j can be compared with the exact ΔL_j of :func:`removal_effects` (first order:
    ΔL_j ≈ g_j). ``names`` as in :func:`removal_effects`. ``dtype=None`` keeps the model's
    dtype; pass ``torch.float64`` to compare with removal effects at full precision. Needs
    autograd, so it refuses to run under ``torch.inference_mode()``.
    """
    _check_model(model)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("first_order_effects differentiates the loss: "
                           "call it outside torch.inference_mode(), gradients are needed")
    _check_batch(inputs, targets)
    _check_dtype(dtype)
    loss_fn = _resolve_loss_fn(loss_fn)
    net = _working_copy(model, dtype)
    chosen = _resolve_names(net, names)
    base = {n: p.detach() for n, p in net.named_parameters()}
    buffers = {n: b.detach() for n, b in net.named_buffers()}
    x, y = _prepare_inputs(net, inputs, targets)
    loss = _loss_of(net, buffers, x, y, loss_fn)

    c = {n: torch.ones_like(base[n], requires_grad=True) for n in chosen}
    with torch.enable_grad():
        value = loss({**base, **{n: c[n] * base[n] for n in chosen}})
        _check_finite(value)
        grads = torch.autograd.grad(value, [c[n] for n in chosen], allow_unused=True)
    return {n: (torch.zeros_like(base[n]) if g is None else g.detach()) for n, g in zip(chosen, grads)}


def second_order_effects(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str] | str | None = None,
    indices: Indices | None = None,
    loss_fn: LossFn | None = None,
    *,
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Second-order estimate g_j − ½ w_j² H_jj of ΔL_j (Taylor expansion along −w_j e_j).

    H_jj = ∂²L/∂w_j² is the diagonal Hessian entry that OBD (LeCun et al., 1990) uses; at a
    minimum g = 0 and the estimate reduces to OBD's −½ H_jj w_j² (OBD's saliency is its
    magnitude). Both derivatives are taken along the removal direction, d/dt and d²/dt² of
    L(w − t·w_j e_j) at t = 0 (``torch.func.grad`` twice), vectorised like
    :func:`removal_effects`, so the cost is of the same order (a few times larger): a diagnostic
    that shows what the first-order g_j misses, not a pruning criterion for large networks. Same
    ``names``/``indices``/return layout and chunk sizes as :func:`removal_effects`; the
    derivatives keep a few times the forward values that the chunk budget counts.
    """
    _, idx, paths = _setup(model, inputs, targets, names, indices, loss_fn, dtype, chunk_size)
    estimates: dict[str, torch.Tensor] = {}
    for name, path in paths.items():
        zero = torch.zeros((), dtype=path.p.dtype, device=path.p.device)

        def taylor(*spec: torch.Tensor, path: _RemovalPaths = path) -> torch.Tensor:
            def slope(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                d1 = grad(lambda u: path.phi(u, *spec))(t)
                return d1, d1

            d2, d1 = grad(slope, has_aux=True)(zero)
            return -d1 - 0.5 * d2  # phi(0) - phi(1) to second order

        values = _chunked(path, idx[name], chunk_size, vmap(taylor))
        estimates[name] = _per_name(values, path.p, name, indices)
    return estimates


# ----------------------------------------------------------------------------- comparisons

def _as_vector(values, label: str) -> np.ndarray:
    if isinstance(values, Mapping):
        values = flatten_scores(values)
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError(f"{label} contains NaN; cannot rank it")
    return arr


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's rho requires)."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of ranks s+1 .. e
    return ranks


def _top_set(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values; ties go to the lower index (stable, like masks_from_scores)."""
    return np.argsort(-values, kind="stable")[:k]


def _sparsity_levels(sparsities: Any) -> list[float]:
    """One real number or a sequence of them, each in [0, 1); all checked before any work."""
    if isinstance(sparsities, (torch.Tensor, np.ndarray)):
        sparsities = sparsities.tolist()  # a 0-d array becomes a number, a 1-D one a list
    if isinstance(sparsities, numbers.Real) and not isinstance(sparsities, (bool, np.bool_)):
        sparsities = [sparsities]
    if isinstance(sparsities, (str, bytes)) or not isinstance(sparsities, Iterable):
        raise TypeError(f"sparsities must be a number in [0, 1) or a sequence of them, got {sparsities!r}")
    sparsities = list(sparsities)
    for s in sparsities:
        if (isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real)
                or not (0.0 <= s < 1.0)):
            raise ValueError(f"each sparsity must be a number in [0, 1), got {s!r}")
    return [s if type(s) in (int, float) else float(s) for s in sparsities]


def rank_agreement(
    a: Scores, b: Scores, sparsities: float | Sequence[float] = (0.9, 0.98)
) -> dict[str, Any]:
    """Do two scores rank the connections alike? Spearman's rho and top-κ overlaps.

    ``a`` and ``b`` are equal-length 1-D arrays/tensors (or dicts of tensors with the same keys,
    flattened in key order). Rank what you mean to compare: SNIP ranks by magnitude, so pass
    ``|g|`` and ``|ΔL|``. For each sparsity s, κ = round((1 − s)·n) entries are kept by each
    score (largest first, ties to the lower index) and ``overlap[s]`` is ``|top_a ∩ top_b| / κ``;
    ``chance[s]`` = κ / n is the expected overlap of two unrelated random selections.
    ``sparsities``: one number in [0, 1) or a sequence of them (NumPy/torch numbers count).

    Returns ``{"spearman": float, "n": int, "kappa": {s: int}, "overlap": {s: float},
    "chance": {s: float}}``.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping) and list(a) != list(b):
        raise ValueError(f"a and b must have the same keys in the same order, got {list(a)} and {list(b)}")
    x, y = _as_vector(a, "a"), _as_vector(b, "b")
    if x.size != y.size:
        raise ValueError(f"a and b must have the same number of entries, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"need at least 2 entries to compare rankings, got {x.size}")
    for label, v in (("a", x), ("b", y)):
        if np.all(v == v[0]):
            raise ValueError(f"{label} is constant ({v[0]!r} everywhere): its ranking, and Spearman's rho, are undefined")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])

    levels = _sparsity_levels(sparsities)
    kappa, overlap, chance = {}, {}, {}
    for s in levels:
        k = int(round((1.0 - s) * x.size))
        if k == 0:
            raise ValueError(f"sparsity {s!r} keeps no entry of {x.size}; use a lower sparsity or more entries")
        common = np.intersect1d(_top_set(x, k), _top_set(y, k), assume_unique=True).size
        kappa[s], overlap[s], chance[s] = k, common / k, k / x.size
    return {"spearman": rho, "n": int(x.size), "kappa": kappa, "overlap": overlap, "chance": chance}


# ----------------------------------------------------------------------------- helpers

def sample_connections(
    model: nn.Module, n: int, *, seed: int = 0, names: Sequence[str] | str | None = None
) -> dict[str, torch.Tensor]:
    """``n`` distinct connections drawn uniformly from the chosen parameters (default: the weights).

    Uniform over connections, so each layer gets a share proportional to its size. Returns
    name -> sorted flat indices (int64), ready for ``indices=`` of :func:`removal_effects`.
    ``seed``: any integer torch.Generator accepts (-2**63 .. 2**64 - 1).
    """
    _check_model(model)
    if not _is_integer(seed) or not (-2**63 <= seed < 2**64):
        raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {seed!r}")
    chosen = _resolve_names(model, names)
    params = dict(model.named_parameters())
    sizes = torch.tensor([params[c].numel() for c in chosen])
    total = int(sizes.sum())
    if not _is_integer(n) or not (1 <= n <= total):
        raise ValueError(f"n must be an integer in [1, {total}] (the number of connections), got {n!r}")
    gen = torch.Generator().manual_seed(int(seed))
    picked = torch.randperm(total, generator=gen)[:int(n)].sort().values
    offsets = torch.cumsum(sizes, 0) - sizes
    out = {}
    for name, off, size in zip(chosen, offsets.tolist(), sizes.tolist()):
        inside = picked[(picked >= off) & (picked < off + size)] - off
        out[name] = inside
    return out


def flatten_scores(scores: Mapping[str, torch.Tensor], indices: Indices | None = None) -> torch.Tensor:
    """Concatenate per-parameter scores into one 1-D tensor, in the dict's order.

    With ``indices`` (as returned by :func:`sample_connections`), full-shape scores are first
    reduced to those flat entries, so that first-order scores line up with removal effects.
    The indices are flat positions in the *full-shape* score (one value per parameter entry);
    scores already aligned with indices (``removal_effects(..., indices=...)``) are flattened
    without ``indices``. Each entry must be 1-D integers (not a bool mask) within range.
    """
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(f"scores must be a non-empty dict of name -> Tensor, got {scores!r:.80}")
    if indices is not None and not isinstance(indices, Mapping):
        raise TypeError(f"indices must be a dict of name -> flat indices, got {type(indices).__name__}")
    parts = []
    for name, s in scores.items():
        flat = torch.as_tensor(s).detach().reshape(-1)
        if indices is not None:
            if name not in indices:
                raise ValueError(f"indices has no entry for {name!r}; it has {list(indices)}")
            flat = flat[_flat_indices(name, indices[name], flat.numel()).to(flat.device)]
        parts.append(flat.cpu())
    return torch.cat(parts)


def time_forward(model: nn.Module, inputs: torch.Tensor, *, repeats: int = 20, warmup: int = 3) -> float:
    """Wall-clock seconds of one forward pass (no grad) of ``model`` on ``inputs``: the fastest of
    ``repeats`` timed runs after ``warmup`` untimed ones.

    The minimum, as ``timeit`` recommends: slower runs measure interference from other processes
    (on a shared 2-core machine a multi-threaded matmul can stall for tens of milliseconds), not
    the cost of the pass. The model runs in eval mode and every submodule's own train/eval flag
    is restored afterwards (a frozen BatchNorm inside a training model stays in eval).
    """
    _check_model(model)
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor (one batch), got {type(inputs).__name__}")
    for label, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if not _is_integer(value) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    repeats, warmup = int(repeats), int(warmup)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(inputs)
                if inputs.is_cuda:
                    torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        for module, training in modes:
            module.training = training
    return float(min(times))
