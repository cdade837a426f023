"""Tests for snip_lib.distributed and snip_lib.ddp_train: SNIP and DDP training on two gloo processes.

The two-process checks share one spawned process group (starting processes that import torch is
the slow part, several seconds); every run has a timeout, so a hung collective fails the test
instead of hanging CI. No network is needed: the ranks meet through a file.
"""

from __future__ import annotations

import datetime
import time
import warnings

import pytest
import torch
from torch import nn

from snip_lib import data, ddp_train, distributed, masking, snip

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


def _error(fn, *args, **kwargs) -> tuple[str, str] | None:
    """``(exception type, message)`` of what ``fn`` raises, ``None`` if it returns."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the tests look at it
        return type(exc).__name__, str(exc)
    return None


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))


def _rank_checks(rank: int, world: int, x: torch.Tensor, y: torch.Tensor, mnist_ok: bool) -> dict:
    """Everything the tests need from one rank, in one process group."""
    import torch.distributed as dist
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
    # 3b. two masks with the same count and the same sum of positions are still different masks
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[[100, 500] if rank == 0 else [101, 499]] = True
    out["collision_error"] = _error(distributed.check_identical, {"fc.weight": mask}, "the SNIP masks")
    # 3c. only a bias differs (rank 1: += 5): refused too, not only the prunable weights are compared
    biased = small_net(0)
    if rank == 1:
        with torch.no_grad():
            biased[1].bias += 5.0
    out["bias_error"] = _error(distributed.distributed_snip_masks, biased, x[shard], y[shard], SPARSITY)
    # 3d. BatchNorm with batch statistics would normalise each shard on its own: refused on every rank
    out["bn_train_error"] = _error(distributed.distributed_snip_masks, bn_net(), x[shard], y[shard], SPARSITY,
                                   bn_mode="train")
    out["bn_eval_masks"] = distributed.distributed_snip_masks(bn_net(), x[shard], y[shard], SPARSITY)
    # 3e. the training script's end-of-run check fails on every rank when the ranks' parameters differ
    trained = small_net(0)
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in trained.named_parameters()
             if name.endswith("weight")}
    if rank == 1:
        with torch.no_grad():
            trained[3].bias[0] += 1e-3
    out["final_check_error"] = _error(lambda: ddp_train._final_checks(trained, masks, torch.device("cpu")))
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
    # 6. last: rank 1 has an empty batch. Both ranks must get the clear error at once; a group with a
    #    short timeout makes a regression (rank 0 waiting in the all_reduce) fail instead of hang.
    short = dist.new_group(timeout=datetime.timedelta(seconds=10))
    empty = x[shard] if rank == 0 else x[:0]
    out["empty_batch_error"] = _error(distributed.distributed_snip_masks, small_net(0), empty, y[:len(empty)],
                                      SPARSITY, group=short)
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
        assert message is not None and "parameters and buffers differ" in message and "'1.weight'" in message, r


def each_rank_error(results, key):
    """(rank, exception type name, message) of the error each rank recorded under ``key``."""
    return [(r, *results[r][key]) for r in range(WORLD)]


def test_equal_checksums_do_not_make_different_masks_identical(two_ranks):
    _, _, results = two_ranks
    for r, kind, message in each_rank_error(results, "collision_error"):
        assert kind == "RuntimeError" and "the SNIP masks differ" in message, r
        assert "rank 1 differs from rank 0 in 'fc.weight'" in message, r


def test_a_differing_bias_is_refused_on_every_rank(two_ranks):
    _, _, results = two_ranks
    for r, kind, message in each_rank_error(results, "bias_error"):
        assert kind == "RuntimeError" and "rank 1 differs from rank 0 in '1.bias'" in message, r


def test_batch_statistics_on_several_ranks_are_refused(two_ranks):
    x, y, results = two_ranks
    for r, kind, message in each_rank_error(results, "bn_train_error"):
        assert kind == "ValueError" and "bn_mode='train'" in message and "bn_mode='eval'" in message, r
    want = snip.snip_masks(bn_net(), x, y, SPARSITY)                       # eval (running statistics) is allowed
    assert snip.kept_count(results[0]["bn_eval_masks"]) == snip.kept_count(want)


def test_an_error_on_one_rank_is_raised_on_every_rank(two_ranks):
    _, _, results = two_ranks
    for r, kind, message in each_rank_error(results, "empty_batch_error"):
        assert kind == "RuntimeError" and "failed on rank(s) 1 of 2" in message, (r, message)
        assert "inputs batch 0 is empty" in message, (r, message)


def test_the_end_of_training_check_fails_on_every_rank(two_ranks):
    _, _, results = two_ranks
    for r, kind, message in each_rank_error(results, "final_check_error"):
        assert kind == "RuntimeError" and "rank 1 differs from rank 0 in '3.bias'" in message, r


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


@pytest.fixture
def no_spawn(monkeypatch):
    """Fail the test if a process is started: these errors must come before any spawn."""
    import torch.multiprocessing as mp

    monkeypatch.setattr(mp, "start_processes", lambda *a, **k: pytest.fail("a process was spawned"))


@pytest.mark.parametrize("kwargs, match", [
    ({"threads": 0}, "threads must be an int >= 1.*got 0"),
    ({"threads": "x"}, "threads must be an int >= 1.*got 'x'"),
    ({"threads": True}, "threads must be an int >= 1.*got True"),
    ({"backend": "mpi"}, "unknown backend 'mpi'; allowed: 'gloo'.*'nccl'"),
    ({"timeout": True}, "timeout must be"),
])
def test_run_local_checks_its_arguments_before_spawning(no_spawn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.run_local(_sleep, 2, **kwargs)


def test_nccl_needs_a_cuda_device_per_rank(no_spawn, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="'nccl' needs one CUDA device per rank: 2 ranks but 1"):
        distributed.run_local(_sleep, 2, backend="nccl")


def test_snip_on_local_ranks_checks_snips_arguments_before_spawning(no_spawn):
    x, y = batch(4, seed=0)
    with pytest.raises(ValueError, match="sparsity must be in"):
        distributed.snip_on_local_ranks(small_net(), x, y, 1.5)
    with pytest.raises(ValueError, match="unknown bn_mode 'batch'"):
        distributed.snip_on_local_ranks(small_net(), x, y, SPARSITY, bn_mode="batch")
    with pytest.raises(ValueError, match="bn_mode='train' is not allowed.*2 ranks"):
        distributed.snip_on_local_ranks(bn_net(), x, y, SPARSITY, bn_mode="train")
    with pytest.raises(TypeError, match="unexpected keyword argument.*group"):
        distributed.snip_on_local_ranks(small_net(), x, y, SPARSITY, group=None)


def test_training_script_options_are_checked():
    for argv, option in ((["--limit-train", "0"], "--limit-train"), (["--limit-train", "-5"], "--limit-train"),
                         (["--lr", "0"], "--lr"), (["--lr", "-0.1"], "--lr"), (["--lr", "nan"], "--lr"),
                         (["--warmup", "-1"], "--warmup")):
        with pytest.raises(SystemExit):
            ddp_train.parse_args(argv)
    assert ddp_train.parse_args(["--limit-train", "1", "--warmup", "0"]).limit_train == 1


def test_training_script_options_name_the_bad_option(capsys):
    with pytest.raises(SystemExit):
        ddp_train.parse_args(["--lr", "0"])
    assert "--lr must be a finite number > 0, got 0.0" in capsys.readouterr().err


def test_training_script_fails_when_a_pruned_weight_comes_back(monkeypatch):
    """A single-process run in which one pruned weight is set to 1 after masking (nothing zeroes it:
    --no-enforce, and MaskedSGD leaves pruned entries alone) must end in an error, not a print."""
    if not data.available("mnist"):
        pytest.skip("MNIST is not available offline here")
    real = masking.apply_masks

    def revive_one(model, masks):
        real(model, masks)
        name, mask = next(iter(masks.items()))
        with torch.no_grad():
            dict(model.named_parameters())[name][tuple((~mask).nonzero()[0])] = 1.0
        return model

    monkeypatch.setattr(masking, "apply_masks", revive_one)
    with pytest.raises(RuntimeError, match="1 of the pruned weights are non-zero after training"):
        ddp_train.main(["--sparsity", "0.98", "--limit-train", "40", "--limit-test", "20", "--batch-size", "20",
                        "--saliency-batch", "20", "--no-enforce"])


def test_batchnorm_is_synchronised_on_cuda_and_a_warning_on_the_cpu():
    net = bn_net()
    with pytest.warns(RuntimeWarning, match="depend on the number of processes"):
        assert ddp_train._sync_batchnorm(net, 2, torch.device("cpu")) is net
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ddp_train._sync_batchnorm(net, 1, torch.device("cpu")) is net          # one process: nothing to sync
        plain = small_net()
        assert ddp_train._sync_batchnorm(plain, 2, torch.device("cpu")) is plain            # no BatchNorm: no warning
    synced = ddp_train._sync_batchnorm(bn_net(), 2, torch.device("cuda", 0))      # conversion needs no GPU
    assert isinstance(synced[1], nn.SyncBatchNorm)


def test_run_local_times_out_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish"):
        distributed.run_local(_sleep, 2, timeout=3)
    assert time.monotonic() - start < 30


def test_run_local_reports_a_failing_rank():
    with pytest.raises(Exception, match="fails on purpose"):
        distributed.run_local(_fail, 1, timeout=60)
