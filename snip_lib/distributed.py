"""SNIP under ``torch.distributed``: every rank scores its own data, all ranks get the same mask.

Why this exists. With ``DistributedDataParallel`` each process (rank) sees only its shard of the
data, but the network, and so its mask, must be the same everywhere: a rank that pruned other
connections would train a different network, and DDP would average gradients of different
sparsity patterns. :func:`distributed_snip_masks` therefore

1. checks that all ranks hold the same parameters and buffers, bit for bit (DDP broadcasts rank
   0's weights when it wraps a model; SNIP runs *before* that, so differently seeded ranks would
   score different networks);
2. lets each rank compute the indicator gradient ``g = ∂L(c ⊙ w)/∂c`` at ``c = 1`` on its own
   batch, **signed**, scaled by its number of examples;
3. sums them over the ranks with one ``all_reduce`` (all tensors flattened into one, the example
   count appended) and divides by the total count: this is exactly the gradient of the mean loss
   over the union of all batches, so the scores ``|g|`` are those single-process SNIP computes on
   the concatenated batch, up to floating-point rounding;
4. takes the global top-κ with :func:`snip_lib.snip.masks_from_scores` on every rank; all ranks
   hold bit-identical summed scores, and the selection is deterministic (ties included), so the
   masks agree;
5. checks that they do, exactly (:func:`check_identical`: every rank compares its masks with rank
   0's), raising ``RuntimeError`` otherwise instead of letting the ranks train different networks.

A rank whose own part fails (an empty batch, a non-finite loss, a bad argument) does not leave the
others waiting in a collective until the process group times out: before each collective the
ranks agree on whether any of them failed, and then every rank raises, naming the failing ranks
and their errors.

Why sum *signed* gradients and not the ranks' scores ``|g_r|``: the magnitude of a sum is not the
sum of magnitudes. Summing ``|g_r|`` would rank connections by how sensitive they are on each shard
separately, a different criterion that changes with the number of ranks; summing ``g_r`` keeps
SNIP's criterion, on the global batch, whatever the number of ranks. For the same reason
``bn_mode="train"`` is refused on several ranks of a network with BatchNorm: each rank would
normalise with its own shard's batch statistics, which is not SNIP on the whole batch.

Without an initialised process group, :func:`distributed_snip_masks` is plain single-process
:func:`snip_lib.snip.snip_masks` on the given batch, so the same script runs with and without
``torchrun``. :func:`run_local` starts a small process group on this machine (spawned processes,
gloo) for tests and the book; ``python -m snip_lib.ddp_train`` is a complete DDP training script.
"""

from __future__ import annotations

import datetime
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from snip_lib import snip

__all__ = [
    "is_distributed",
    "distributed_snip_masks",
    "check_identical",
    "run_local",
    "snip_on_local_ranks",
]

BACKENDS: tuple[str, ...] = ("gloo", "nccl")
_SNIP_OPTIONS = ("loss_fn", "include_bias", "bn_mode")


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


def _comm_device(group: Any) -> torch.device:
    """Where the group's collectives take tensors: NCCL needs the current CUDA device, gloo the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _source(group: Any) -> int:
    """The global rank of the group's rank 0 (``broadcast`` takes global ranks)."""
    return 0 if group is None else dist.get_global_rank(group, 0)


def _raise_if_any_failed(failure: BaseException | None, step: str, group: Any) -> None:
    """Make every rank raise if ``step`` failed on any rank, naming the ranks and their errors.

    One tiny ``all_reduce(MAX)`` of a failure flag, and an ``all_gather_object`` of the messages
    only when a rank failed, so the healthy ranks learn of it now instead of waiting in the next
    collective until the process group times out. The error is the failing ranks' own type when
    every rank failed with the same ``ValueError`` or ``TypeError`` (a bad argument given to all),
    else ``RuntimeError``.
    """
    flag = torch.tensor([0 if failure is None else 1], dtype=torch.int64, device=_comm_device(group))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if not int(flag.item()):
        return
    world = dist.get_world_size(group)
    reports: list[Any] = [None] * world
    mine = None if failure is None else (type(failure).__name__, str(failure))
    dist.all_gather_object(reports, mine, group=group)
    failed = {r: report for r, report in enumerate(reports) if report is not None}
    kinds = set(failed.values())
    if len(failed) == world and len(kinds) == 1:
        kind, message = kinds.pop()
        cls = {"ValueError": ValueError, "TypeError": TypeError}.get(kind, RuntimeError)
        raise cls(f"{message} ({step}: the same {kind} on all {world} ranks)") from failure
    detail = "; ".join(f"rank {r}: {kind}: {message}" for r, (kind, message) in failed.items())
    ranks = ", ".join(str(r) for r in failed)
    raise RuntimeError(f"{step} failed on rank(s) {ranks} of {world}, so every rank stops here: {detail}") from failure


def _named_tensors(tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    if isinstance(tensors, Mapping):
        named = [(str(name), t) for name, t in tensors.items()]
    elif isinstance(tensors, (list, tuple)):
        named = [(f"tensor {i}", t) for i, t in enumerate(tensors)]
    else:
        raise TypeError(f"tensors must be a mapping {{name: Tensor}} or a list of Tensors, "
                        f"got {type(tensors).__name__}")
    if not named:
        raise ValueError("tensors is empty; nothing to compare")
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name!r} is not a torch.Tensor but {type(t).__name__}")
        if t.layout != torch.strided:
            raise TypeError(f"{name!r} has layout {t.layout}; only dense (strided) tensors can be compared")
    return named


def _byte_count(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    numel = math.prod(shape)
    if dtype == torch.bool:
        return (numel + 7) // 8  # eight mask entries to a byte
    return numel * dtype.itemsize


def _as_bytes(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The tensor's exact contents as uint8 (bool tensors packed eight entries to a byte)."""
    flat = tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        bits = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)]).reshape(-1, 8).to(torch.uint8)
        weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=flat.device)
        flat = (bits * weights).sum(dim=1, dtype=torch.uint8)
    else:
        flat = flat.view(torch.uint8)
    return flat.to(device)


def _layout_difference(mine: list[tuple[str, tuple[int, ...], torch.dtype]],
                       reference: list[tuple[str, tuple[int, ...], torch.dtype]]) -> str | None:
    """How this rank's names, shapes and dtypes differ from rank 0's, or ``None``."""
    if mine == reference:
        return None
    if [m[0] for m in mine] != [r[0] for r in reference]:
        extra = sorted({m[0] for m in mine} - {r[0] for r in reference})
        missing = sorted({r[0] for r in reference} - {m[0] for m in mine})
        return (f"holds {len(mine)} tensors where rank 0 holds {len(reference)} (not on rank 0: {extra[:5]}, "
                f"only on rank 0: {missing[:5]}, or another order)")
    name, shape, dtype = next(m for m, r in zip(mine, reference) if m != r)
    _, shape0, dtype0 = next(r for r in reference if r[0] == name)
    return f"has {name!r} of shape {shape} {dtype} where rank 0's is {shape0} {dtype0}"


def check_identical(tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], what: str, *,
                    group: Any = None) -> None:
    """Raise ``RuntimeError`` on every rank unless ``tensors`` are bit-identical on all ranks of ``group``.

    An exact comparison, not a checksum (two different masks can share any cheap checksum):
    rank 0 broadcasts its names, shapes and dtypes, then its tensors' bytes (masks packed eight
    entries to a byte); every rank compares them with its own, and the ranks agree on the outcome
    before any of them raises, so none is left waiting. ``tensors``: ``{name: Tensor}``, or a list
    (named by position); the error names the ranks and tensors that differ from rank 0's.
    """
    if not isinstance(what, str) or not what:
        raise TypeError(f"what must be a non-empty string describing the tensors, got {what!r}")
    named = _named_tensors(tensors)
    device = _comm_device(group)
    rank, world, source = dist.get_rank(group), dist.get_world_size(group), _source(group)
    layout = [(name, tuple(t.shape), t.dtype) for name, t in named]
    box: list[Any] = [layout]
    dist.broadcast_object_list(box, src=source, group=group)
    reference = box[0]
    sizes = [_byte_count(shape, dtype) for _, shape, dtype in reference]
    problem = _layout_difference(layout, reference)
    mine = torch.cat([_as_bytes(t, device) for _, t in named]) if problem is None else None
    # rank 0 sends its bytes; the others receive them into a buffer of rank 0's size (also a rank
    # whose layout differs: it must still take part in the broadcast)
    received = mine if rank == 0 else torch.empty(sum(sizes), dtype=torch.uint8, device=device)
    dist.broadcast(received, src=source, group=group)
    if rank != 0 and mine is not None:
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        differing = [name for (name, _, _), a, b in zip(reference, offsets, offsets[1:])
                     if not torch.equal(mine[a:b], received[a:b])]
        if differing:
            more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
            problem = f"differs from rank 0 in {', '.join(repr(n) for n in differing[:5])}{more}"
    flag = torch.tensor([0 if problem is None else 1], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    if not int(flag.item()):
        return
    reports: list[Any] = [None] * world
    dist.all_gather_object(reports, problem, group=group)
    detail = "; ".join(f"rank {r} {p}" for r, p in enumerate(reports) if p is not None)
    raise RuntimeError(f"{what} differ across the {world} ranks: {detail}; see snip_lib.distributed "
                       "for why they must agree")


def _refuse_batch_statistics(model: nn.Module, bn_mode: str, world: int) -> None:
    """Several ranks scoring with BatchNorm's batch statistics would not compute SNIP on the whole batch."""
    if bn_mode == "train" and world > 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                for m in model.modules()):
        raise ValueError(
            f"bn_mode='train' is not allowed for a model with BatchNorm on {world} ranks: each rank would "
            "normalise its shard with that shard's own batch statistics, so the masks would not be "
            "single-process SNIP's on the whole batch; allowed: bn_mode='eval' (the running statistics, "
            "the same on every rank)"
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
    ``DistributedDataParallel``/``DataParallel``; all its parameters and buffers must be identical
    on all ranks (``RuntimeError`` otherwise). Returns ``{parameter name: BoolTensor}`` named as in
    the unwrapped module, ready for ``apply_masks(model.module, masks)`` with a wrapped model
    (:func:`snip_lib.masking.apply_masks`). ``bn_mode="train"`` is refused (``ValueError``) for a
    model with BatchNorm on more than one rank. An error on one rank is raised on every rank.

    Without an initialised process group (``torch.distributed`` not started, e.g. a plain
    ``python`` run), this is exactly ``snip.snip_masks(model, inputs, targets, sparsity, ...)``.
    """
    if not is_distributed():
        sparsity = snip._check_sparsity(sparsity)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if group is not None:
            raise ValueError("group was given but no torch.distributed process group is initialised; "
                             "call torch.distributed.init_process_group first (or pass group=None)")
        # the private entry point, so that its warning about unprunable weights names the caller's line
        return snip._snip_masks(_unwrap(model), inputs, targets, sparsity, loss_fn=loss_fn,
                                include_bias=include_bias, bn_mode=bn_mode, scoring_init=None,
                                scoring_bias="zeros", seed=None)

    # Every local step runs under try, and the ranks agree on its outcome before the next collective.
    failure = None
    try:
        sparsity = snip._check_sparsity(sparsity)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model = _unwrap(model)
        snip._check_bn_mode(bn_mode)
        _refuse_batch_statistics(model, bn_mode, dist.get_world_size(group))
        snip._check_and_warn(model, include_bias)  # once, at the caller's line
        state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    except Exception as exc:  # noqa: BLE001 - reported on every rank just below
        failure = exc
    _raise_if_any_failed(failure, "checking the arguments", group)
    check_identical(state, "the model's parameters and buffers", group=group)

    try:
        grads = snip._indicator_gradients(model, inputs, targets, loss_fn, include_bias=include_bias,
                                          bn_mode=bn_mode)
        count = sum(len(x) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs]))
        # One collective: every rank's gradient times its example count, and the count itself.
        first = next(iter(grads.values()))
        flat = torch.cat([g.reshape(-1) * count for g in grads.values()]
                         + [torch.tensor([float(count)], dtype=first.dtype, device=first.device)])
    except Exception as exc:  # noqa: BLE001
        failure = exc
    _raise_if_any_failed(failure, "the SNIP scoring pass", group)

    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    total = flat[-1]
    scores, start = {}, 0
    for name, g in grads.items():
        scores[name] = (flat[start:start + g.numel()] / total).abs().reshape(g.shape)
        start += g.numel()
    snip._total_or_raise(scores, "the ranking, and so the mask, would be arbitrary")
    masks = snip.masks_from_scores(scores, sparsity)
    check_identical(masks, "the SNIP masks", group=group)
    return masks


# --------------------------------------------------------------------------------------------
# a local process group, for tests and the book
# --------------------------------------------------------------------------------------------


def _rank_entry(rank: int, fn: Callable, world_size: int, backend: str, folder: str, timeout: float,
                threads: int, args: tuple) -> None:
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)  # one GPU per rank (run_local checked there are enough)
    dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _check_run_local(fn: Any, world_size: Any, args: Any, backend: Any, timeout: Any, threads: Any) -> None:
    """Everything :func:`run_local` can check before it spawns (a bad value found in a child costs seconds)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of fn's arguments after (rank, world_size), got {type(args).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: 'gloo' (any CPU), 'nccl' (one CUDA device "
                         "per rank); MPI cannot form a world from spawned processes")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ValueError(f"backend 'nccl' needs one CUDA device per rank: {world_size} ranks but "
                         f"{torch.cuda.device_count()} CUDA device(s) visible; use backend='gloo'")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1 (torch threads per process), got {threads!r}")


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
    temporary folder (no network port is needed), use ``backend`` (``"gloo"`` works on any CPU;
    ``"nccl"`` needs a CUDA device per rank, rank ``r`` using ``cuda:r``) with ``threads`` torch
    threads each, and return ``fn``'s results (saved with ``torch.save``) as a list indexed by rank.
    The arguments are checked before any process starts. A rank that raises makes this raise (with
    its traceback) and the others are stopped. After ``timeout`` seconds all are killed and
    ``TimeoutError`` is raised, so a hung collective never hangs the caller; collectives inside
    time out likewise.
    """
    import torch.multiprocessing as mp

    _check_run_local(fn, world_size, args, backend, timeout, threads)
    with tempfile.TemporaryDirectory(prefix="snip_dist_") as folder:
        context = mp.start_processes(
            _rank_entry, args=(fn, world_size, backend, folder, float(timeout), threads, tuple(args)),
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

    Each spawned rank gets a copy of ``model`` (unwrapped from DDP, so the masks are named as in
    the inner module) and one shard (``torch.tensor_split`` of the batch); returns each rank's
    masks, so one can check they are identical, and equal to single-process SNIP on the whole
    batch. ``kwargs`` (``loss_fn``, ``include_bias``, ``bn_mode``) go to
    :func:`distributed_snip_masks`; they are checked here, before any process starts.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("inputs and targets must be tensors (one batch, split across the ranks)")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if inputs.dim() == 0 or targets.dim() == 0 or inputs.shape[0] < world_size or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"need at least one example per rank and as many targets as inputs; got inputs of shape "
                         f"{tuple(inputs.shape)}, targets of shape {tuple(targets.shape)} for {world_size} ranks")
    unknown = sorted(set(kwargs) - set(_SNIP_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(_SNIP_OPTIONS)}")
    snip._check_sparsity(sparsity)
    bn_mode = kwargs.get("bn_mode", "eval")
    snip._check_bn_mode(bn_mode)
    if not isinstance(kwargs.get("include_bias", False), bool):
        raise TypeError(f"include_bias must be a bool, got {kwargs['include_bias']!r}")
    snip._check_loss_fn(kwargs.get("loss_fn"))
    model = _unwrap(model)
    snip.prunable_parameters(model, include_bias=kwargs.get("include_bias", False))  # raises if there are none
    _refuse_batch_statistics(model, bn_mode, world_size)
    xs = list(torch.tensor_split(inputs.detach().cpu(), world_size))
    ys = list(torch.tensor_split(targets.detach().cpu(), world_size))
    return run_local(_snip_rank, world_size, (model, xs, ys, sparsity, kwargs), timeout=timeout)
