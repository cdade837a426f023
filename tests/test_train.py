"""Tests for snip_lib.train: the training loop, schedules, seeds and devices."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snip_lib import train
from snip_lib.train import History, TrainConfig, evaluate, fit, lr_at, seed_everything


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny nets: see conftest.py


def _blobs(n: int, seed: int) -> TensorDataset:
    """Three well separated Gaussian blobs in 8 dimensions: a linearly separable task."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0] + [0.0] * 7, [0.0, 4.0] + [0.0] * 6, [-4.0, -4.0] + [0.0] * 6])
    y = torch.randint(0, 3, (n,), generator=g)
    x = centres[y] + torch.randn(n, 8, generator=g)
    return TensorDataset(x, y)


def _loaders(batch_size: int = 20):
    train_loader = DataLoader(_blobs(300, 0), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(_blobs(100, 1), batch_size=50)
    test_loader = DataLoader(_blobs(200, 2), batch_size=50)
    return train_loader, val_loader, test_loader


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=20, optimizer="sgd", lr=0.05, schedule="constant")
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- fit


def test_fit_learns_a_separable_task_and_records_every_epoch():
    seed_everything(0)
    train_loader, val_loader, test_loader = _loaders()
    model = _mlp()
    _, err_before = evaluate(model, test_loader)
    hist = fit(model, train_loader, test_loader, _cfg(epochs=5), val_loader=val_loader, progress=False)
    assert err_before > 20  # an untrained 3-class model is far from perfect
    assert hist.final_test_error < 3.0
    assert hist.train_loss[-1] < hist.train_loss[0]
    for name in ("train_loss", "train_error", "val_error", "test_error", "lr", "epoch_times"):
        assert len(getattr(hist, name)) == 5, name
    assert hist.best_test_error <= hist.final_test_error
    assert hist.test_error_at_best_val == hist.test_error[hist.best_val_epoch - 1]
    assert hist.iterations == 5 * len(train_loader)
    assert hist.wall_time >= sum(hist.epoch_times) * 0.99
    d = hist.to_dict()
    assert d["final_test_error"] == hist.final_test_error
    assert d["best_test_error"] == hist.best_test_error
    assert d["epochs"] == 5


def test_fit_without_validation_has_no_best_val():
    train_loader, _, test_loader = _loaders()
    hist = fit(_mlp(), train_loader, test_loader, _cfg(epochs=1), progress=False)
    assert hist.val_error == []
    assert hist.test_error_at_best_val is None
    assert hist.best_val_epoch is None


def test_history_protocols_on_known_numbers():
    h = History(test_error=[5.0, 2.0, 3.0, 4.0], val_error=[6.0, 4.0, 3.5, 3.5])
    assert h.final_test_error == 4.0
    assert h.best_test_error == 2.0 and h.best_epoch == 2
    assert h.best_val_epoch == 3  # earliest of the tied minima
    assert h.test_error_at_best_val == 3.0
    assert h.best_test_error_last(2) == 3.0
    with pytest.raises(ValueError, match="0"):
        h.best_test_error_last(0)


def test_seed_everything_makes_fit_reproducible():
    def run():
        seed_everything(123)
        train_loader, val_loader, test_loader = _loaders()
        model = _mlp()
        return fit(model, train_loader, test_loader, _cfg(epochs=2), val_loader=val_loader, progress=False), model

    (h1, m1), (h2, m2) = run(), run()
    assert h1.train_loss == h2.train_loss
    assert h1.test_error == h2.test_error and h1.val_error == h2.val_error
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    seed_everything(124)
    assert not torch.equal(_mlp()[0].weight, m1[0].weight)


def test_seed_everything_rejects_bad_seeds():
    with pytest.raises(TypeError, match="1.5"):
        seed_everything(1.5)
    with pytest.raises(ValueError, match="-1"):
        seed_everything(-1)


def test_nan_loss_stops_training_with_the_epoch_and_iteration():
    train_loader, _, test_loader = _loaders()
    model = _mlp()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, iteration 1\b"):
        fit(model, train_loader, test_loader, _cfg(epochs=1), progress=False)


def test_divergence_is_reported_as_non_finite():
    train_loader, _, test_loader = _loaders()
    # lr 1e6 without momentum blows the weights up within a few steps.
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(_mlp(), train_loader, test_loader, _cfg(epochs=3, lr=1e6, momentum=0.0), progress=False)


def test_masked_model_keeps_pruned_weights_exactly_zero():
    from snip_lib import masking

    seed_everything(0)
    train_loader, _, test_loader = _loaders()
    model = _mlp()
    g = torch.Generator().manual_seed(0)
    masks = {
        "0.weight": torch.rand(model[0].weight.shape, generator=g) > 0.7,
        "2.weight": torch.rand(model[2].weight.shape, generator=g) > 0.5,
    }
    masking.apply_masks(model, masks)
    assert masking.is_masked(model)
    # momentum 0.9 and weight decay are what would revive pruned weights without the masks
    fit(model, train_loader, test_loader, _cfg(epochs=3, momentum=0.9, weight_decay=5e-4), progress=False)
    for name, mask in masks.items():
        w = dict(model.named_parameters()).get(name)
        if w is None:  # masking may re-parametrise; read the effective weight from the module
            layer = model[int(name.split(".")[0])]
            w = layer.weight
        assert torch.all(w.detach()[~mask] == 0), name
        assert torch.count_nonzero(w.detach()[mask]) > 0.9 * mask.sum()  # the kept ones did train


def test_fit_keeps_pruned_weights_zero_without_enforce_masks(monkeypatch):
    """fit relies on the gradient hooks (its optimizers are fresh and element-wise), not on a
    per-step enforce_masks: pruned weights stay exactly zero with momentum and weight decay."""
    from snip_lib import masking

    calls = []
    monkeypatch.setattr(masking, "enforce_masks", lambda m: calls.append(1))
    train_loader, _, test_loader = _loaders()
    mask = torch.rand(32, 8, generator=torch.Generator().manual_seed(3)) > 0.5
    model = masking.apply_masks(_mlp(), {"0.weight": mask})
    fit(model, train_loader, test_loader, _cfg(epochs=2, weight_decay=5e-4), progress=False)
    assert calls == []
    assert masking.pruned_nonzero(model) == {}
    assert torch.all(model[0].weight.detach()[~mask] == 0)


def test_fit_refuses_a_masked_model_whose_pruned_weights_are_not_zero():
    from snip_lib import masking

    train_loader, _, test_loader = _loaders()
    mask = torch.ones(32, 8, dtype=torch.bool)
    mask[0, :3] = False
    model = masking.apply_masks(_mlp(), {"0.weight": mask})
    with torch.no_grad():
        model[0].weight[0, :2] = 1.0  # someone wrote into two pruned entries
    with pytest.raises(RuntimeError, match=r"not zero before training: 0\.weight \(2\)"):
        fit(model, train_loader, test_loader, _cfg(epochs=1), progress=False)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_stops_when_pruned_weights_move_during_an_epoch(monkeypatch, optimizer):
    from snip_lib import masking
    from snip_lib.optim import MaskedSGD

    train_loader, _, test_loader = _loaders()
    mask = torch.ones(32, 8, dtype=torch.bool)
    mask[:, 0] = False
    model = masking.apply_masks(_mlp(), {"0.weight": mask})
    # what keeps the zeros fails: MaskedSGD's masks (SGD) or the gradient hooks (Adam)
    monkeypatch.setattr(MaskedSGD, "_masks", lambda self: {})
    monkeypatch.setattr(masking._GradMask, "__call__", lambda self, param: None)
    decay = {"weight_decay": 5e-4} if optimizer == "sgd" else {}
    with pytest.raises(RuntimeError, match="not zero after epoch 1: 0.weight"):
        fit(model, train_loader, test_loader, _cfg(epochs=2, optimizer=optimizer, lr=0.01, **decay), progress=False)


def test_fit_rejects_bad_arguments():
    train_loader, _, test_loader = _loaders()
    with pytest.raises(TypeError, match="TrainConfig"):
        fit(_mlp(), train_loader, test_loader, {"epochs": 1}, progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(_mlp(), [], test_loader, _cfg(), progress=False)
    with pytest.raises(ValueError, match="log_every"):
        fit(_mlp(), train_loader, test_loader, _cfg(), progress=False, log_every=0)


def test_log_every_writes_progress_lines(capsys):
    train_loader, _, test_loader = _loaders()
    fit(_mlp(), train_loader, test_loader, _cfg(epochs=1), progress=False, log_every=5)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "iteration 5/" in text and "test error" in text


# --------------------------------------------------------------------------- evaluate


def test_evaluate_counts_errors_and_restores_mode():
    class Fixed(nn.Module):
        """Predicts class 0 for every example."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3)
            logits[:, 0] = 1.0
            return logits + 0 * self.w

    y = torch.tensor([0, 0, 1, 2, 0, 1, 1, 2])
    loader = DataLoader(TensorDataset(torch.zeros(8, 2), y), batch_size=3)
    model = Fixed().train()
    loss, err = evaluate(model, loader)
    assert err == pytest.approx(100 * 5 / 8)
    expected = nn.functional.cross_entropy(torch.tensor([[1.0, 0, 0]]).expand(8, 3), y).item()
    assert loss == pytest.approx(expected)
    assert model.training
    model.eval()
    evaluate(model, loader)
    assert not model.training


def test_evaluate_gives_each_submodule_back_its_own_mode():
    """A BatchNorm frozen in eval mode inside a model that trains stays frozen after evaluate
    (model.train(previous) would have switched it back to training)."""
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).train()
    model[1].eval()
    seen = []
    model[2].register_forward_hook(lambda module, args, out: seen.append(module.training))
    loader = DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 3, (8,))), batch_size=4)
    evaluate(model, loader)
    assert seen and not any(seen)                      # evaluated in eval mode throughout
    assert [m.training for m in model] == [True, False, True]


# --------------------------------------------------------------------------- schedules


def test_step_schedule_is_the_papers_times_0_1():
    cfg = TrainConfig(epochs=1, schedule="step", decay_every=25_000)
    assert cfg.lr == 0.1 and cfg.decay_factor == 0.1
    total = 100_000
    assert lr_at(cfg, 0, total) == pytest.approx(0.1)
    assert lr_at(cfg, 24_999, total) == pytest.approx(0.1)
    assert lr_at(cfg, 25_000, total) == pytest.approx(0.01)
    assert lr_at(cfg, 50_000, total) == pytest.approx(0.001)
    assert lr_at(cfg, 99_999, total) == pytest.approx(1e-4)


def test_official_schedule_matches_the_readme_values():
    cfg = TrainConfig(epochs=1, schedule="official")
    assert cfg.decay_factor == 0.2 and cfg.boundaries == (0.2, 0.4, 0.6, 0.8)
    total = 150_000  # README: boundaries 30k 60k 90k 120k, values 0.1 0.02 0.004 0.0008 0.00016
    # tf.train.piecewise_constant keeps a value while global_step <= its boundary: step 30000 still at 0.1
    expected = {0: 0.1, 29_999: 0.1, 30_000: 0.1, 30_001: 0.02, 60_000: 0.02, 60_001: 0.004, 90_001: 0.0008,
                120_000: 0.0008, 120_001: 0.00016, 149_999: 0.00016}
    for it, lr in expected.items():
        assert lr_at(cfg, it, total) == pytest.approx(lr), it
    explicit = TrainConfig(epochs=1, schedule="official", boundaries=(30_000, 60_000, 90_000, 120_000))
    for it, lr in expected.items():
        assert lr_at(explicit, it, 1_000_000) == pytest.approx(lr), it  # independent of the run length


def test_fraction_boundaries_never_decay_before_the_first_iteration():
    short = TrainConfig(epochs=1, schedule="official", boundaries=(0.1, 0.2))
    assert [lr_at(short, i, 4) for i in range(4)] == pytest.approx([0.1, 0.1, 0.004, 0.004])  # both at 1
    assert train.fraction_boundaries((0.2, 0.4, 0.6, 0.8), 150_000) == [30_000, 60_000, 90_000, 120_000]
    assert train.fraction_boundaries((0.01,), 3) == [1]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_decay_factor_the_schedule_ignores_is_refused(schedule):
    with pytest.raises(ValueError, match=rf"decay_factor=0.5 does nothing with schedule='{schedule}'"):
        TrainConfig(epochs=1, schedule=schedule, decay_factor=0.5)
    assert TrainConfig(epochs=1, schedule=schedule, decay_factor=1.0).decay_factor == 1.0  # a replayed record


def test_constant_and_cosine_schedules():
    const = TrainConfig(epochs=1, schedule="constant", lr=0.3)
    assert {lr_at(const, i, 10) for i in range(10)} == {0.3}
    cos = TrainConfig(epochs=1, schedule="cosine", lr=0.2)
    assert lr_at(cos, 0, 100) == pytest.approx(0.2)
    assert lr_at(cos, 50, 100) == pytest.approx(0.1)
    assert lr_at(cos, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_fit_applies_the_schedule_per_iteration():
    train_loader, _, test_loader = _loaders(batch_size=100)  # 3 iterations per epoch
    cfg = _cfg(epochs=4, schedule="step", decay_every=3, lr=0.1)
    hist = fit(_mlp(), train_loader, test_loader, cfg, progress=False)
    assert hist.lr == pytest.approx([0.1, 0.01, 0.001, 0.0001])


@pytest.mark.parametrize("overrides", [
    {"schedule": "step", "decay_every": 2},              # a decay inside an epoch of 3 iterations
    {"schedule": "cosine", "decay_factor": 1.0},
    {"schedule": "step", "decay_every": 25_000, "warmup_iterations": 5},
])
def test_fit_sets_the_scheduled_rate_at_every_iteration(monkeypatch, overrides):
    """The rate each optimizer step runs with is lr_at of its own iteration (History.lr keeps only
    one per epoch, which a per-epoch schedule could match)."""
    seen = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    train_loader, _, test_loader = _loaders(batch_size=100)  # 3 iterations per epoch
    cfg = _cfg(epochs=3, lr=0.1, **overrides)
    fit(_mlp(), train_loader, test_loader, cfg, progress=False)
    assert seen == pytest.approx([lr_at(cfg, i, 9) for i in range(9)])
    assert len(set(seen)) > 3                                       # the rate really moves within epochs


def test_adam_defaults_are_table3():
    cfg = TrainConfig(epochs=1, optimizer="adam")
    assert cfg.lr == 1e-3 and cfg.weight_decay == 0.0 and cfg.momentum is None
    opt = train.make_optimizer(_mlp(), cfg)
    assert isinstance(opt, torch.optim.Adam)


def test_sgd_defaults_are_the_paper_and_skip_decay_on_batchnorm():
    cfg = TrainConfig(epochs=1)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = train.make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model[0].weight) in decayed and id(model[0].bias) in decayed
    assert id(model[1].weight) not in decayed and id(model[1].bias) not in decayed



@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="nn.RMSNorm needs torch >= 2.4")
def test_no_weight_decay_on_any_normalisation_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.GroupNorm(2, 4), nn.RMSNorm(4), nn.Linear(4, 2))
    opt = train.make_optimizer(model, TrainConfig(epochs=1))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for i in (0, 4) for p in model[i].parameters()}


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "2.5"),
        ({"epochs": 1, "optimizer": "rmsprop"}, "rmsprop"),
        ({"epochs": 1, "schedule": "linear"}, "linear"),
        ({"epochs": 1, "lr": -0.1}, "-0.1"),
        ({"epochs": 1, "lr": float("nan")}, "nan"),
        ({"epochs": 1, "momentum": 1.5}, "1.5"),
        ({"epochs": 1, "optimizer": "adam", "momentum": 0.9}, "momentum"),
        ({"epochs": 1, "weight_decay": -1e-4}, "-0.0001"),
        ({"epochs": 1, "decay_every": 0}, "decay_every"),
        ({"epochs": 1, "decay_factor": 2.0}, "2.0"),
        ({"epochs": 1, "batch_size": 0}, "batch_size"),
        ({"epochs": 1, "schedule": "official", "boundaries": (0.5, 0.2)}, "increasing"),
        ({"epochs": 1, "schedule": "official", "boundaries": (0.5, 3000)}, "fractions"),
        ({"epochs": 1, "schedule": "step", "boundaries": (0.5,)}, "official"),
        ({"epochs": 1, "amp": "yes"}, "amp"),
    ],
)
def test_bad_train_config_names_the_value(kwargs, needle):
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert needle in str(info.value)


def test_bad_optimizer_lists_the_allowed_values():
    with pytest.raises(ValueError, match="sgd, adam"):
        TrainConfig(epochs=1, optimizer="lbfgs")


def test_train_config_to_dict_shows_resolved_values():
    d = TrainConfig(epochs=3, schedule="official").to_dict()
    assert d["lr"] == 0.1 and d["boundaries"] == [0.2, 0.4, 0.6, 0.8] and d["decay_factor"] == 0.2


# --------------------------------------------------------------------------- devices


def test_default_device_is_usable():
    dev = train.default_device()
    assert isinstance(dev, torch.device)
    torch.zeros(1, device=dev)  # the device exists
    if torch.cuda.is_available():
        assert dev.type == "cuda"


def test_default_device_takes_the_gpu_when_there_is_one(monkeypatch):
    """What a Colab GPU runtime gets; checked with the GPU faked, since CI has none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.default_device() == torch.device("cuda")
    assert train.resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert train.default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert train.default_device() == torch.device("cpu")


def test_resolve_device():
    assert train.resolve_device("cpu") == torch.device("cpu")
    assert train.resolve_device("auto") == train.default_device()
    with pytest.raises(ValueError, match="tpu"):
        train.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            train.resolve_device("cuda")


def test_amp_off_cuda_warns_and_still_trains():
    if torch.cuda.is_available():
        pytest.skip("amp is real on CUDA")
    train_loader, _, test_loader = _loaders()
    with pytest.warns(UserWarning, match="amp"):
        hist = fit(_mlp(), train_loader, test_loader, _cfg(epochs=1, amp=True), device="cpu", progress=False)
    assert math.isfinite(hist.train_loss[0])


def test_clipping_sees_the_masked_gradients(monkeypatch):
    """With clip_grad_norm, fit keeps the gradient hooks running, so the norm is the masked gradient's."""
    from snip_lib import masking

    calls = []
    original = masking._GradMask.__call__

    def counting(self, p):
        calls.append(1)
        return original(self, p)

    monkeypatch.setattr(masking._GradMask, "__call__", counting)
    train_loader, _, test_loader = _loaders()
    torch.manual_seed(0)
    model = _mlp()
    gen = torch.Generator().manual_seed(1)
    masking.apply_masks(model, {n: torch.rand(p.shape, generator=gen) < 0.3
                                for n, p in model.named_parameters() if p.dim() > 1})
    fit(model, train_loader, test_loader, _cfg(epochs=1, clip_grad_norm=1.0), progress=False)
    assert len(calls) == 2 * len(train_loader)    # both masked weights, every step


def test_fit_checks_a_config_changed_after_it_was_built():
    cfg = _cfg(epochs=2)
    cfg.epochs = 0                    # a dataclass field, changed after __post_init__ checked it
    train_loader, _, test_loader = _loaders()
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        fit(_mlp(), train_loader, test_loader, cfg, progress=False)
    cfg = _cfg(epochs=1)
    cfg.lr = float("nan")
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got nan"):
        fit(_mlp(), train_loader, test_loader, cfg, progress=False)


def test_fit_names_a_train_loader_that_yields_nothing():
    class Lying:
        """len() says 3 batches; iterating gives none (an exhausted generator behind a len())."""

        def __len__(self):
            return 3

        def __iter__(self):
            return iter(())

    _, _, test_loader = _loaders()
    with pytest.raises(ValueError, match="train_loader yielded no batch in epoch 1 although its len\\(\\) is 3"):
        fit(_mlp(), Lying(), test_loader, _cfg(epochs=1), progress=False)
