"""Prune with SNIP and train with DistributedDataParallel: a complete, small, runnable script.

Run it on one machine with two CPU processes (gloo)::

    torchrun --standalone --nproc_per_node=2 -m snip_lib.ddp_train --arch lenet300 --sparsity 0.98 \\
        --epochs 1 --limit-train 5000

or on GPUs (one process per GPU, NCCL) with ``--nproc_per_node=<number of GPUs>``; without
``torchrun`` (``python -m snip_lib.ddp_train ...``) it runs as a single process. What it does, on
every rank:

1. build and initialise the network with the same seed (same weights everywhere);
2. draw the SNIP scoring batch with the same seed and keep this rank's share of it;
   :func:`snip_lib.distributed.distributed_snip_masks` turns the shares into one mask, the mask
   single-process SNIP computes on the whole batch, identical on all ranks;
3. apply it with :func:`snip_lib.masking.apply_masks`, wrap the model in
   ``DistributedDataParallel`` and train on this rank's shard of the training data
   (``torch.utils.data.DistributedSampler``: a fresh shuffle each epoch, equal shard sizes).
   The optimizer is :func:`snip_lib.train.make_optimizer`'s: for SGD on a masked model,
   :class:`snip_lib.optim.MaskedSGD`, which applies the mask inside its own update, so whatever
   gradient DDP averages, a pruned weight and its momentum stay exactly zero on every rank
   (``apply_masks``'s gradient hooks stay installed too, and ``masking.enforce_masks`` runs after
   each step unless ``--no-enforce``). ``--batch-size`` is the *global* batch, split over the
   ranks, so the recipe does not change with the number of processes;
4. check that pruned weights are still exactly zero on every rank and that all ranks hold the
   same parameters, raising ``RuntimeError`` on every rank otherwise (so ``torchrun`` exits with
   an error); rank 0 evaluates on the test set and prints the result.

BatchNorm. Each rank normalises with its own shard's batch statistics, so without synchronisation
a network with BatchNorm trains differently with a different number of processes. On NCCL (CUDA)
the script converts BatchNorm to ``torch.nn.SyncBatchNorm`` (statistics of the global batch); on
gloo, where ``SyncBatchNorm`` is not available, it warns that the result depends on the number of
processes. Networks without BatchNorm do not depend on it.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import time
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The script's options (``python -m snip_lib.ddp_train --help`` lists them); ``argv`` defaults to the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m snip_lib.ddp_train",
        description="SNIP pruning + DistributedDataParallel training (run under torchrun for several processes).",
    )
    parser.add_argument("--arch", default="lenet300", help="architecture (snip_lib.models), default lenet300")
    parser.add_argument("--sparsity", type=float, default=0.98, help="fraction of weights pruned, default 0.98")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100, help="global batch size, split across ranks")
    parser.add_argument("--saliency-batch", type=int, default=100, help="global SNIP scoring batch")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up iterations (default 0, as in the paper)")
    parser.add_argument("--limit-train", type=int, default=None, help="use only this many training examples")
    parser.add_argument("--limit-test", type=int, default=None, help="evaluate on only this many test examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=("auto", "gloo", "nccl"),
                        help="auto: nccl when CUDA is available, else gloo")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--no-enforce", action="store_true",
                        help="skip enforce_masks after each step: only the gradient hooks keep pruned weights zero")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "saliency_batch", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("limit_train", "limit_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1 (or left out for the whole set), "
                         f"got {getattr(args, name)}")
    if not 0.0 <= args.sparsity < 1.0:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a finite number > 0, got {args.lr}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0 (iterations), got {args.warmup}")
    return args


def _setup(backend: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call started the process group).

    Uses a process group that is already initialised (tests, notebooks), else starts one from
    torchrun's environment variables, else runs as a single process.
    """
    started = False
    if not dist.is_initialized() and "WORLD_SIZE" in os.environ:
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=5))
        started = True
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if dist.get_backend() == "nccl":
            local = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local), started
        return rank, world, torch.device("cpu"), started
    device = torch.device("cuda" if torch.cuda.is_available() and backend != "gloo" else "cpu")
    return 0, 1, device, started


def _buffer_sync(has_batchnorm: bool) -> dict[str, bool]:
    """DDP's option to broadcast rank 0's buffers before every forward: only BatchNorm needs it.

    The mask buffers are identical on all ranks by construction (checked), so broadcasting them
    every step would only cost time. The option was renamed in recent PyTorch.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    names = inspect.signature(DistributedDataParallel.__init__).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in names else "broadcast_buffers"
    return {key: has_batchnorm}


def _sync_batchnorm(model: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    """Make BatchNorm use the global batch's statistics where torch can (NCCL on CUDA), else warn.

    Per-rank statistics make a BatchNorm network's training depend on the number of processes;
    ``torch.nn.SyncBatchNorm`` needs CUDA tensors, so on gloo/CPU the dependence stays and is said.
    The converted model shares the original's parameters and buffers (and so the masks).
    """
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not has_bn or world == 1:
        return model
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    warnings.warn(
        f"the model has BatchNorm and runs on {world} CPU processes: each normalises with its own shard's "
        "batch statistics (SyncBatchNorm needs CUDA and NCCL), so the training, and the result, depend on "
        "the number of processes",
        RuntimeWarning, stacklevel=2,
    )
    return model


def _final_checks(model: torch.nn.Module, masks: dict[str, torch.Tensor], device: torch.device) -> int:
    """Raise ``RuntimeError`` on every rank unless pruned weights are zero and the ranks agree.

    Checks the parameters and the buffers DDP keeps equal (the masks; BatchNorm's running
    statistics only when synchronised: without SyncBatchNorm they are per rank by design).
    Returns the number of pruned weights that are non-zero, summed over the ranks: 0.
    """
    from snip_lib import distributed

    params = dict(model.named_parameters())
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"masks name parameters the model does not have: {unknown[:5]}")
    nonzero = torch.tensor(sum(int(torch.count_nonzero(params[n].detach()[~m.to(params[n].device)]))
                               for n, m in masks.items()), dtype=torch.int64, device=device)
    if dist.is_initialized():
        dist.all_reduce(nonzero)
        per_rank = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                    and not isinstance(m, torch.nn.SyncBatchNorm)]
        skip = {id(b) for m in per_rank for b in m.buffers(recurse=False)}
        state = {**params, **{n: b for n, b in model.named_buffers() if id(b) not in skip}}
        distributed.check_identical(state, "the trained parameters and masks")
    count = int(nonzero)
    if count:
        ranks = dist.get_world_size() if dist.is_initialized() else 1
        raise RuntimeError(f"{count:,} of the pruned weights are non-zero after training (summed over {ranks} "
                           "rank(s)); the masks were not kept")
    return count


def _shard_batches(dataset: Any, batch: int, sampler: Any, device: torch.device):
    """This rank's mini-batches for one epoch, in the order the DistributedSampler gives."""
    indices = torch.tensor(list(sampler), dtype=torch.long)
    for start in range(0, len(indices), batch):
        x, y = dataset.get_batch(indices[start:start + batch])
        yield x.to(device), y.to(device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the script; returns a summary dict on every rank (rank 0 also prints it)."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from snip_lib import data, distributed, experiments, masking, models, snip, train
    from snip_lib import init as init_mod

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rank, world, device, started = _setup(args.backend)

    def say(message: str) -> None:
        if rank == 0:
            print(message)

    try:
        if args.batch_size % world or args.saliency_batch < world:
            raise ValueError(f"--batch-size ({args.batch_size}) must be divisible by the number of processes ({world}) "
                             f"and --saliency-batch ({args.saliency_batch}) at least that number")
        start = time.perf_counter()
        train.seed_everything(args.seed)
        model = models.build(args.arch)
        init_mod.apply(model, experiments.DEFAULT_INIT, seed=args.seed)
        model.to(device)
        family = experiments.family_of(args.arch)
        name = models.dataset_for(args.arch)
        sequential = family == "rnn"
        train_ds = data.load_dataset(name, "train", sequential=sequential, limit=args.limit_train)
        test_ds = data.load_dataset(name, "test", sequential=sequential, limit=args.limit_test)

        # 2. one scoring batch, the same on all ranks; each scores its share of it
        x, y = data.first_batch(name, args.saliency_batch, seed=args.seed, sequential=sequential)
        share = torch.tensor_split(torch.arange(len(y)), world)[rank]
        masks = distributed.distributed_snip_masks(model, x[share].to(device), y[share].to(device), args.sparsity)
        masking.apply_masks(model, masks)
        kept, total = snip.kept_count(masks), sum(m.numel() for m in masks.values())
        say(f"[rank 0 of {world}, {device}] {args.arch}: SNIP kept {kept:,} of {total:,} weights "
            f"({1 - kept / total:.2%} pruned), masks identical on all ranks")

        # 3. DDP training on this rank's shard
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        model = _sync_batchnorm(model, world, device)
        if dist.is_initialized():
            ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          **_buffer_sync(has_bn))
        else:
            ddp = model
        fam = experiments.defaults_for(args.arch)
        config = train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   schedule=fam["schedule"], decay_every=fam["decay_every"],
                                   warmup_iterations=args.warmup)
        optimizer = train.make_optimizer(model, config)
        sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        per_rank = args.batch_size // world
        steps = math.ceil(len(sampler) / per_rank)
        total_steps, iteration, loss_sum, seen = args.epochs * steps, 0, 0.0, 0
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            ddp.train()
            loss_sum, seen = 0.0, 0
            for xb, yb in _shard_batches(train_ds, per_rank, sampler, device):
                for group in optimizer.param_groups:
                    group["lr"] = train.lr_at(config, iteration, total_steps)
                loss = F.cross_entropy(ddp(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if not args.no_enforce:
                    masking.enforce_masks(model)
                iteration += 1
                loss_sum += float(loss.detach()) * len(yb)
                seen += len(yb)
            say(f"epoch {epoch + 1}/{args.epochs}: train loss (rank 0's shard) {loss_sum / seen:.4f}")

        # 4. checks across ranks, then rank 0 evaluates
        pruned_nonzero = _final_checks(model, masks, device)  # raises on every rank unless all is well
        identical = True
        result: dict[str, Any] = {
            "rank": rank, "world_size": world, "device": str(device),
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "arch": args.arch, "sparsity": args.sparsity, "kept": kept, "prunable": total,
            "train_examples_per_rank": len(sampler), "iterations": iteration,
            "train_loss_rank0_shard": loss_sum / max(seen, 1),
            "pruned_nonzero_all_ranks": int(pruned_nonzero), "parameters_identical": identical,
            "masks": {n: m.cpu() for n, m in masks.items()}, "test_error": None,
        }
        if rank == 0:
            loader = data.make_loader(test_ds, 1000, shuffle=False)
            _, result["test_error"] = train.evaluate(model, loader)
        result["wall_time"] = time.perf_counter() - start
        if rank == 0:
            say(f"done in {result['wall_time']:.1f} s on {world} process(es): test error {result['test_error']:.2f}% "
                f"on {len(test_ds):,} test images; pruned weights still non-zero (all ranks): "
                f"{result['pruned_nonzero_all_ranks']}; parameters identical across ranks: {identical}")
        return result
    finally:
        if started:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
