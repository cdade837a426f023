"""SNIP under ``torch.distributed``: every rank scores its own data, all ranks get the same mask.

Why this exists. With ``DistributedDataParallel`` each process (rank) sees only its shard of the
data, but the network, and so its mask, must be the same everywhere: a rank that pruned other
connections would train a different network, and DDP would average gradients of different
sparsity patterns. :func:`distributed_snip_masks` therefore

1. checks that all ranks hold the same weights (DDP broadcasts rank 0's weights when it wraps a
   model; SNIP runs *before* that, so differently seeded ranks would score different networks);
2. lets each rank compute the indicator gradient ``g = ∂L(c ⊙ w)/∂c`` at ``c = 1`` on its own
   batch, **signed**, scaled by its number of examples;
3. sums them over the ranks with one ``all_reduce`` (all tensors flattened into one, the example
   count appended) and divides by the total count: this is exactly the gradient of the mean loss
   over the union of all batches, so the scores ``|g|`` are those single-process SNIP computes on
   the concatenated batch, up to floating-point rounding;
4. takes the global top-κ with :func:`snip_lib.snip.masks_from_scores` on every rank; all ranks
   hold bit-identical summed scores, and the selection is deterministic (ties included), so the
   masks agree;
5. checks that they do with a cheap integer fingerprint of the masks (one more tiny collective),
   raising ``RuntimeError`` otherwise instead of letting the ranks train different networks.

Why sum *signed* gradients and not the ranks' scores ``|g_r|``: the magnitude of a sum is not the
sum of magnitudes. Summing ``|g_r|`` would rank connections by how sensitive they are on each shard
separately, a different criterion that changes with the number of ranks; summing ``g_r`` keeps
SNIP's criterion, on the global batch, whatever the number of ranks.

Without an initialised process group, :func:`distributed_snip_masks` is plain single-process
:func:`snip_lib.snip.snip_masks` on the given batch, so the same script runs with and without
``torchrun``. :func:`run_local` starts a small process group on this machine (spawned processes,
gloo) for tests and the book; ``python -m snip_lib.ddp_train`` is a complete DDP training script.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from snip_lib import snip

__all__ = [
    "is_distributed",
    "distributed_snip_masks",
    "fingerprint",
    "check_identical",
    "run_local",
    "snip_on_local_ranks",
]

# Integer fingerprints: values and positions are reduced modulo this prime (< 2^16), so every
# term is < 2^32 and sums over up to 2^31 entries stay exact in int64, in any order.
_MOD = 65_521


# --------------------------------------------------------------------------------------------
# process-group helpers
# --------------------------------------------------------------------------------------------


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised (``init_process_group`` was called)."""
    return dist.is_available() and dist.is_initialized()


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel``, else ``model`` itself."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """An exact int64 checksum of a tensor's values *bits* and their positions (not cryptographic).

    Computed in integer arithmetic, so it is the same on every rank for bit-identical tensors,
    whatever the number of threads or the order of summation (a float sum would not be).
    Returns a 2-element int64 tensor on the tensor's device: (entries, positional checksum).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(tensor).__name__}")
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        values = flat.to(torch.int64)
    else:
        size = flat.element_size()
        if size not in _INT_VIEW or flat.is_complex():
            raise TypeError(f"cannot fingerprint a tensor of dtype {flat.dtype}")
        values = flat.view(_INT_VIEW[size]).to(torch.int64)
    positions = torch.arange(flat.numel(), device=flat.device, dtype=torch.int64) % _MOD + 1
    checksum = ((values % _MOD) * positions).sum()
    return torch.stack([torch.tensor(flat.numel(), device=flat.device, dtype=torch.int64), checksum])


def check_identical(tensors: Sequence[torch.Tensor], what: str, *, group: Any = None) -> None:
    """Raise ``RuntimeError`` unless ``tensors`` are bit-identical on every rank of ``group``.

    One ``all_reduce(MAX)`` of the fingerprints and their negatives (so max and min travel
    together). Every rank raises, or none does, so no rank is left waiting in a later collective.
    """
    if not tensors:
        raise ValueError("tensors is empty; nothing to compare")
    prints = torch.stack([fingerprint(t) for t in tensors]).reshape(-1)
    both = torch.cat([prints, -prints])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    highest, lowest = both[: prints.numel()], -both[prints.numel():]
    if not torch.equal(highest, lowest):
        raise RuntimeError(
            f"{what} differ across the {dist.get_world_size(group)} ranks (rank {dist.get_rank(group)} "
            "detected it); see snip_lib.distributed for why they must agree"
        )


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


def distributed_snip_masks(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    targets: torch.Tensor | Sequence[torch.Tensor],
    sparsity: float,
    *,
    group: Any = None,
    loss_fn: Callable | None = None,
    include_bias: bool = False,
    bn_mode: str = "eval",
) -> dict[str, torch.Tensor]:
    """SNIP masks from the union of every rank's batch; identical on all ranks (module docstring).

    Call it on every rank of ``group`` (default: the whole world), each with its own ``inputs``
    and ``targets`` (one batch, or lists of batches, as in :func:`snip_lib.snip.snip_masks`;
    ranks may hold different numbers of examples, none may hold zero). ``model`` may be wrapped in
    ``DistributedDataParallel``; its weights must be identical on all ranks (``RuntimeError``
    otherwise). Returns ``{parameter name: BoolTensor}``, ready for
    :func:`snip_lib.masking.apply_masks`. Collectives: three ``all_reduce`` calls, one of the size
    of the prunable weights, two of a few integers.

    Without an initialised process group (``torch.distributed`` not started, e.g. a plain
    ``python`` run), this is exactly ``snip.snip_masks(model, inputs, targets, sparsity, ...)``.
    """
    sparsity = snip._check_sparsity(sparsity)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = _unwrap(model)
    if not is_distributed():
        if group is not None:
            raise ValueError("group was given but no torch.distributed process group is initialised; "
                             "call torch.distributed.init_process_group first (or pass group=None)")
        # the private entry point, so that its warning about unprunable weights names the caller's line
        return snip._snip_masks(model, inputs, targets, sparsity, loss_fn=loss_fn, include_bias=include_bias,
                                bn_mode=bn_mode, scoring_init=None, scoring_bias="zeros", seed=None)

    snip._check_and_warn(model, include_bias)  # once, at the caller's line
    params = snip.prunable_parameters(model, include_bias=include_bias)
    check_identical([p.detach() for p in params.values()], "the model's prunable weights", group=group)
    grads = snip._indicator_gradients(model, inputs, targets, loss_fn, include_bias=include_bias, bn_mode=bn_mode)
    count = sum(len(x) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs]))

    # One collective: every rank's gradient times its example count, and the count itself.
    first = next(iter(grads.values()))
    flat = torch.cat([g.reshape(-1) * count for g in grads.values()]
                     + [torch.tensor([float(count)], dtype=first.dtype, device=first.device)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    total = flat[-1]
    scores, start = {}, 0
    for name, g in grads.items():
        scores[name] = (flat[start:start + g.numel()] / total).abs().reshape(g.shape)
        start += g.numel()
    snip._total_or_raise(scores, "the ranking, and so the mask, would be arbitrary")
    masks = snip.masks_from_scores(scores, sparsity)
    check_identical([torch.cat([m.reshape(-1) for m in masks.values()])], "the SNIP masks", group=group)
    return masks


# --------------------------------------------------------------------------------------------
# a local process group, for tests and the book
# --------------------------------------------------------------------------------------------


def _rank_entry(rank: int, fn: Callable, world_size: int, backend: str, folder: str, timeout: float,
                threads: int, args: tuple) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_local(
    fn: Callable[..., Any],
    world_size: int = 2,
    args: tuple = (),
    *,
    backend: str = "gloo",
    timeout: float = 120.0,
    threads: int = 1,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh processes forming a process group.

    For tests and demonstrations on one machine: the processes are spawned (``fn`` and ``args``
    must be picklable: a function defined at module top level), rendezvous through a file in a
    temporary folder (no network port is needed), use ``backend`` (gloo works on any CPU) with
    ``threads`` torch threads each, and return ``fn``'s results (saved with ``torch.save``) as a
    list indexed by rank. A rank that raises makes this raise (with its traceback) and the
    others are stopped. After ``timeout`` seconds all are killed and ``TimeoutError`` is raised,
    so a hung collective never hangs the caller; collectives inside time out likewise.
    """
    import torch.multiprocessing as mp

    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if backend not in ("gloo", "nccl", "mpi"):
        raise ValueError(f"unknown backend {backend!r}; allowed: gloo, nccl, mpi")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    with tempfile.TemporaryDirectory(prefix="snip_dist_") as folder:
        context = mp.start_processes(
            _rank_entry, args=(fn, world_size, backend, folder, float(timeout), int(threads), tuple(args)),
            nprocs=world_size, join=False, start_method="spawn",
        )
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world_size} processes running {getattr(fn, '__name__', fn)} "
                                       f"did not finish within {timeout:g} s; they were stopped")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5)
                    if process.is_alive():
                        process.kill()
        return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def _snip_rank(rank: int, world_size: int, model: nn.Module, xs: list, ys: list, sparsity: float,
               kwargs: dict) -> dict[str, torch.Tensor]:
    return distributed_snip_masks(model, xs[rank], ys[rank], sparsity, **kwargs)


def snip_on_local_ranks(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    sparsity: float,
    *,
    world_size: int = 2,
    timeout: float = 120.0,
    **kwargs: Any,
) -> list[dict[str, torch.Tensor]]:
    """Split one batch into ``world_size`` shards and run :func:`distributed_snip_masks` on gloo ranks.

    Each spawned rank gets a copy of ``model`` and one shard (``torch.tensor_split`` of the
    batch); returns each rank's masks, so one can check they are identical, and equal to
    single-process SNIP on the whole batch. ``kwargs`` go to :func:`distributed_snip_masks`.
    """
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("inputs and targets must be tensors (one batch, split across the ranks)")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if inputs.shape[0] < world_size or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"need at least one example per rank and as many targets as inputs; got "
                         f"{inputs.shape[0]} inputs, {targets.shape[0]} targets for {world_size} ranks")
    xs = list(torch.tensor_split(inputs.detach().cpu(), world_size))
    ys = list(torch.tensor_split(targets.detach().cpu(), world_size))
    model = _unwrap(model)
    return run_local(_snip_rank, world_size, (model, xs, ys, sparsity, kwargs), timeout=timeout)
