"""Tests for snip_lib.distributed and snip_lib.ddp_train: SNIP and DDP training on two gloo processes.

The two-process checks share one spawned process group (starting processes that import torch is
the slow part, several seconds); every run has a timeout, so a hung collective fails the test
instead of hanging CI. No network is needed: the ranks meet through a file.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch
from torch import nn

from snip_lib import data, distributed, masking, snip

SPARSITY = 0.9
WORLD = 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


def batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=g), torch.randint(0, 4, (n,), generator=g)


# --------------------------------------------------------------------------- worker (runs in each rank)


def _rank_checks(rank: int, world: int, x: torch.Tensor, y: torch.Tensor, mnist_ok: bool) -> dict:
    """Everything the tests need from one rank, in one process group."""
    from torch.nn.parallel import DistributedDataParallel

    from snip_lib import ddp_train

    out: dict = {}
    model = small_net(0)
    # 1. masks from uneven shards (rank 0: 7 examples, rank 1: 5): identical and equal to SNIP on all 12
    shard = slice(0, 7) if rank == 0 else slice(7, 12)
    out["masks"] = distributed.distributed_snip_masks(model, x[shard], y[shard], SPARSITY)
    # 2. a few DDP steps with momentum and weight decay, gradient hooks only (no enforce_masks)
    masking.apply_masks(model, out["masks"])
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)
    for step in range(3):
        xb, yb = batch(8, seed=100 + 10 * step + rank)  # each rank its own data
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(xb), yb).backward()
        opt.step()
    out["params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    # 3. different weights on the two ranks must be refused (on both ranks, so none hangs)
    other = small_net(0)
    if rank == 1:
        with torch.no_grad():
            other[1].weight[0, 0] += 1.0
    try:
        distributed.distributed_snip_masks(other, x[shard], y[shard], SPARSITY)
        out["mismatch_error"] = None
    except RuntimeError as exc:
        out["mismatch_error"] = str(exc)
    # 4. a weight SNIP cannot prune is named in one warning, at this line (not inside snip_lib)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distributed.distributed_snip_masks(_WithCustomWeight(), x[shard], y[shard], SPARSITY)
    out["dense_warnings"] = [(str(w.message), w.filename) for w in caught if "not prunable" in str(w.message)]
    # 5. the training script, on real MNIST, in this process group
    if mnist_ok:
        out["script"] = ddp_train.main(["--arch", "lenet300", "--sparsity", "0.98", "--epochs", "1",
                                        "--limit-train", "400", "--limit-test", "200", "--batch-size", "20",
                                        "--saliency-batch", "20", "--no-enforce"])
    return out


class _WithCustomWeight(nn.Module):
    """A net with a bare weight matrix that no prunable layer owns: it stays dense."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 8)
        self.custom = nn.Parameter(torch.randn(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) @ self.custom


def _sleep(rank: int, world: int) -> None:
    time.sleep(120)


def _fail(rank: int, world: int) -> None:
    raise ValueError(f"rank {rank} fails on purpose")


@pytest.fixture(scope="module")
def two_ranks():
    x, y = batch(12, seed=1)
    results = distributed.run_local(_rank_checks, WORLD, (x, y, data.available("mnist")), timeout=150)
    return x, y, results


# --------------------------------------------------------------------------- two processes


def test_masks_are_identical_on_all_ranks_and_equal_single_process_snip(two_ranks):
    x, y, results = two_ranks
    masks0, masks1 = results[0]["masks"], results[1]["masks"]
    assert list(masks0) == list(masks1)
    for name in masks0:
        assert torch.equal(masks0[name], masks1[name]), name

    model = small_net(0)
    single = snip.snip_masks(model, x, y, SPARSITY)
    assert snip.kept_count(masks0) == snip.kept_count(single)
    # Equal up to ties: the distributed sum rounds differently, so only entries whose score lies
    # within rounding of the κ-th score may swap.
    scores = snip.connection_sensitivity(model, x, y, normalize=False)
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    threshold = flat.sort(descending=True).values[snip.kept_count(single) - 1]
    for name in single:
        differ = masks0[name] != single[name]
        assert torch.allclose(scores[name][differ], threshold.expand(int(differ.sum())), rtol=1e-5, atol=0), name


def test_ddp_steps_keep_pruned_weights_zero_and_ranks_identical(two_ranks):
    _, _, results = two_ranks
    masks = results[0]["masks"]
    start = dict(small_net(0).named_parameters())
    for r in range(WORLD):
        for name, mask in masks.items():
            weight = results[r]["params"][name]
            assert torch.count_nonzero(weight[~mask]) == 0, (r, name)
            assert not torch.equal(weight[mask], start[name].detach()[mask]), (r, name)  # it did train
    for name in results[0]["params"]:
        assert torch.equal(results[0]["params"][name], results[1]["params"][name]), name


def test_ranks_with_different_weights_are_refused(two_ranks):
    _, _, results = two_ranks
    for r in range(WORLD):
        message = results[r]["mismatch_error"]
        assert message is not None and "prunable weights differ" in message, r


def test_training_script_under_ddp(two_ranks):
    _, _, results = two_ranks
    if "script" not in results[0]:
        pytest.skip("MNIST is not available offline here")
    first, second = results[0]["script"], results[1]["script"]
    assert first["world_size"] == second["world_size"] == WORLD
    assert first["backend"] == "gloo"
    assert first["pruned_nonzero_all_ranks"] == 0
    assert first["parameters_identical"] and second["parameters_identical"]
    assert first["kept"] == round(0.02 * first["prunable"])
    for name, mask in first["masks"].items():
        assert torch.equal(mask, second["masks"][name]), name
    assert first["train_examples_per_rank"] == second["train_examples_per_rank"] == 200
    assert 0.0 <= first["test_error"] < 90.0 and second["test_error"] is None


# --------------------------------------------------------------------------- one process


def test_without_process_group_it_is_plain_snip():
    assert not distributed.is_distributed()
    model = small_net(3)
    x, y = batch(10, seed=4)
    got = distributed.distributed_snip_masks(model, x, y, SPARSITY)
    want = snip.snip_masks(model, x, y, SPARSITY)
    assert list(got) == list(want)
    assert all(torch.equal(got[n], want[n]) for n in want)


def test_the_warning_about_dense_weights_names_the_callers_line(two_ranks):
    *_, results = two_ranks
    for rank, out in enumerate(results):
        assert len(out["dense_warnings"]) == 1, (rank, out["dense_warnings"])
        message, filename = out["dense_warnings"][0]
        assert "custom" in message and filename == __file__, (rank, message, filename)
    x, y = batch(6, seed=2)                                    # no process group: the same warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distributed.distributed_snip_masks(_WithCustomWeight(), x, y, SPARSITY)
    dense = [w for w in caught if "not prunable" in str(w.message)]
    assert len(dense) == 1 and "custom" in str(dense[0].message) and dense[0].filename == __file__


def test_group_without_process_group_is_an_error():
    x, y = batch(4, seed=0)
    with pytest.raises(ValueError, match="no torch.distributed process group"):
        distributed.distributed_snip_masks(small_net(), x, y, SPARSITY, group=object())


def test_bad_arguments():
    x, y = batch(4, seed=0)
    with pytest.raises(TypeError, match="nn.Module"):
        distributed.distributed_snip_masks("net", x, y, SPARSITY)
    with pytest.raises(ValueError, match="sparsity"):
        distributed.distributed_snip_masks(small_net(), x, y, 1.0)
    with pytest.raises(ValueError, match="world_size"):
        distributed.run_local(_sleep, 0)
    with pytest.raises(ValueError, match="backend"):
        distributed.run_local(_sleep, 2, backend="tcp")
    with pytest.raises(ValueError, match="at least one example per rank"):
        distributed.snip_on_local_ranks(small_net(), x[:1], y[:1], SPARSITY, world_size=2)


def test_fingerprint_sees_values_and_positions():
    t = torch.randn(100)
    assert torch.equal(distributed.fingerprint(t), distributed.fingerprint(t.clone()))
    changed = t.clone()
    changed[37] = torch.nextafter(changed[37], torch.tensor(float("inf")))  # one bit
    assert not torch.equal(distributed.fingerprint(t), distributed.fingerprint(changed))
    mask = torch.zeros(50, dtype=torch.bool)
    mask[3] = True
    moved = torch.zeros(50, dtype=torch.bool)
    moved[4] = True
    assert not torch.equal(distributed.fingerprint(mask), distributed.fingerprint(moved))
    with pytest.raises(TypeError):
        distributed.fingerprint([1, 2])


def test_run_local_times_out_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish"):
        distributed.run_local(_sleep, 2, timeout=3)
    assert time.monotonic() - start < 30


def test_run_local_reports_a_failing_rank():
    with pytest.raises(Exception, match="fails on purpose"):
        distributed.run_local(_fail, 1, timeout=60)
