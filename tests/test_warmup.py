"""The two training guards added for the LeNets: linear lr warm-up and gradient-norm clipping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snip_lib import experiments
from snip_lib.train import TrainConfig, fit, lr_at


def test_warmup_ramps_linearly_then_follows_the_schedule():
    cfg = TrainConfig(epochs=1, warmup_iterations=4, schedule="step", decay_every=6)
    lrs = [lr_at(cfg, i, 10) for i in range(8)]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4:6] == pytest.approx([0.1, 0.1])
    assert lrs[6:] == pytest.approx([0.01, 0.01])  # the step decay is unchanged by the warm-up


def test_no_warmup_by_default():
    cfg = TrainConfig(epochs=1)
    assert cfg.warmup_iterations == 0 and cfg.clip_grad_norm is None
    assert lr_at(cfg, 0, 10) == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_warmup_rejected(bad):
    with pytest.raises(ValueError, match="warmup_iterations"):
        TrainConfig(epochs=1, warmup_iterations=bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "5"])
def test_bad_clip_rejected(bad):
    with pytest.raises(ValueError, match="clip_grad_norm"):
        TrainConfig(epochs=1, clip_grad_norm=bad)


def _one_step_change(clip: float | None) -> float:
    """Size of the first SGD step on a linear model with a huge loss gradient."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = torch.cat([p.detach().clone().flatten() for p in model.parameters()])
    x = torch.randn(8, 4) * 100.0  # large inputs -> large gradient
    y = torch.randint(0, 3, (8,))
    loader = [(x, y)]
    cfg = TrainConfig(epochs=1, momentum=0.0, weight_decay=0.0, lr=1.0, clip_grad_norm=clip)
    fit(model, loader, loader, cfg, progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_clipping_bounds_the_step():
    unclipped = _one_step_change(None)
    clipped = _one_step_change(0.5)
    assert unclipped > 1.0
    assert clipped == pytest.approx(0.5, rel=1e-4)  # lr 1, no momentum/decay: step = clipped gradient


def test_prune_and_train_accepts_the_guards():
    from snip_lib import suites_lenet

    run = suites_lenet.expected_run("table1-lenet300", "lenet300", 0.95)
    assert run["train_options"]["warmup_iterations"] == suites_lenet.WARMUP_ITERATIONS
    assert {"warmup_iterations", "clip_grad_norm"} <= set(
        TrainConfig(epochs=1, **run["train_options"]).to_dict()
    )
    assert "table1-lenet300" in experiments.SUITES and "table1-lenet5-short" in experiments.SUITES


def test_every_table1_suite_uses_the_book_recipe_and_its_stated_learning_rate():
    from snip_lib import suites_lenet

    for name in experiments.GROUPS["table1"].members:
        for run in experiments.SUITES[name].runs:
            assert run["train_options"]["warmup_iterations"] == suites_lenet.WARMUP_ITERATIONS, (name, run)
            expected_lr = (None if run["arch"] == "lenet300" else
                           suites_lenet.LENET5_PAPER_LR if "lr0.1" in name else suites_lenet.LENET5_LR)
            assert run.get("lr") == expected_lr, (name, run)
    for run in experiments.SUITES["table1-lenet5-short"].runs:
        assert run["lr"] == suites_lenet.LENET5_LR
        assert run["train_options"]["warmup_iterations"] == suites_lenet.WARMUP_ITERATIONS
