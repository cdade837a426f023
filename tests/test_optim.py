"""Tests for snip_lib.optim.MaskedSGD and masking.gradient_hooks_paused: the same weights as
torch.optim.SGD with the masks' gradient hooks, bit for bit, with the hooks switched off."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snip_lib import masking, train
from snip_lib.optim import MaskedSGD

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SmallCNN(nn.Module):
    """Convolutions, batch norm (a no-decay group in make_optimizer) and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2).flatten(1))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 4))


def _wide() -> nn.Module:
    """A first layer of 131,072 weights: at 5 % density MaskedSGD updates its buffer at the kept
    entries only (optim.SPARSE_UPDATE_*); the small second layer takes the addcmul path."""
    return nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 4))


def _make(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return {"cnn": SmallCNN, "wide": _wide}.get(kind, _mlp)()


def _batch(kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn({"cnn": (16, 3, 8, 8), "wide": (16, 512)}.get(kind, (16, 12)), generator=g)
    return x, torch.randint(0, 4, (16,), generator=g)


def _density(kind: str) -> float:
    return 0.05 if kind == "wide" else 0.3


def _masks(model: nn.Module, density: float = 0.3, with_bias: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in model.named_parameters()
            if (n.endswith("weight") and p.dim() > 1) or (with_bias and n == "fc.bias")}


def _train(model: nn.Module, opt: torch.optim.Optimizer, kind: str, steps: int, *, start: int = 0,
           closure: bool = False) -> None:
    """``steps`` SGD steps on the batches ``start``, ``start + 1``, ...; with ``closure``, through ``opt.step(closure)``."""
    model.train()
    for step in range(start, start + steps):
        x, y = _batch(kind, 100 + step)

        def loss_fn():
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        if closure:
            opt.step(loss_fn)
        else:
            loss_fn()
            opt.step()


def _pruned_values(model: nn.Module, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach()[~m] for n, m in masks.items()])


def _groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """make_optimizer's grouping: no weight decay for batch norm."""
    cfg = train.TrainConfig(epochs=1, lr=0.05, momentum=0.9, weight_decay=weight_decay)
    return [{"params": list(g["params"]), "weight_decay": g["weight_decay"]}
            for g in train.make_optimizer(model, cfg).param_groups]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "wide"])
@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 5e-4), (0.9, 0.0), (0.0, 5e-4), (0.0, 0.0)])
def test_same_weights_as_torch_sgd_with_the_hooks_bit_for_bit(kind, momentum, weight_decay):
    base = _make(kind)
    masks = _masks(base, _density(kind), with_bias=kind == "cnn")  # a masked bias too, on the CNN
    hooked, folded = copy.deepcopy(base), copy.deepcopy(base)
    masking.apply_masks(hooked, masks)
    masking.apply_masks(folded, masks)
    reference = torch.optim.SGD(_groups(hooked, weight_decay), lr=0.05, momentum=momentum)
    ours = MaskedSGD(_groups(folded, weight_decay), folded, lr=0.05, momentum=momentum)
    _train(hooked, reference, kind, 25)
    with masking.gradient_hooks_paused(folded):
        _train(folded, ours, kind, 25)
    for (name, a), b in zip(hooked.named_parameters(), folded.parameters()):
        assert torch.equal(a, b), name
    assert torch.equal(_pruned_values(folded, masks), torch.zeros_like(_pruned_values(folded, masks)))
    if momentum:  # the buffers are torch.optim.SGD's, under its key, and zero where pruned
        for name, p in folded.named_parameters():
            assert torch.equal(ours.state[p]["momentum_buffer"], reference.state[dict(hooked.named_parameters())[name]]["momentum_buffer"])
    if kind == "wide" and momentum:  # the large sparse layer went the kept-entries way, the small one did not
        layers = dict(folded.named_parameters())
        assert ours._kept[id(layers["0.weight"])] is not None and ours._kept[id(layers["2.weight"])] is None


def test_the_kept_entries_update_is_chosen_by_size_density_and_device():
    from snip_lib import optim

    big = torch.zeros(optim.SPARSE_UPDATE_MIN_NUMEL)
    sparse_mask = torch.zeros_like(big)
    sparse_mask[:: 16] = 1.0                                        # exactly 1/16 kept
    kept = MaskedSGD._kept_indices(big, sparse_mask)
    assert kept is not None and torch.equal(kept, torch.arange(0, big.numel(), 16))
    denser = sparse_mask.clone()
    denser[1] = 1.0                                                 # one more than 1/16
    assert MaskedSGD._kept_indices(big, denser) is None
    small = torch.zeros(optim.SPARSE_UPDATE_MIN_NUMEL - 1)
    assert MaskedSGD._kept_indices(small, torch.zeros_like(small)) is None
    assert MaskedSGD._kept_indices(big.to("meta"), sparse_mask.to("meta")) is None  # not the CPU


def test_it_is_the_optimizer_that_keeps_the_zeros_while_the_hooks_are_paused():
    model = _make("mlp")
    masks = _masks(model)
    masking.apply_masks(model, masks)
    opt = MaskedSGD(model.parameters(), model, lr=0.05, momentum=0.9, weight_decay=5e-4)
    with masking.gradient_hooks_paused(model):
        _train(model, opt, "mlp", 5)
        pruned_grad = model[0].weight.grad[~masks["0.weight"]]
        assert torch.count_nonzero(pruned_grad) > 0.5 * pruned_grad.numel()  # gradients are not masked ...
    assert masking.pruned_nonzero(model) == {}                                 # ... yet no pruned weight moved
    revived = copy.deepcopy(model)
    with masking.gradient_hooks_paused(revived):                              # plain SGD without hooks revives
        _train(revived, torch.optim.SGD(revived.parameters(), lr=0.05, momentum=0.9), "mlp", 2)
    assert masking.pruned_nonzero(revived)


def test_an_unmasked_model_gets_plain_sgd():
    a, b = _make("mlp"), _make("mlp")
    _train(a, torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4), "mlp", 10)
    _train(b, MaskedSGD(b.parameters(), b, lr=0.05, momentum=0.9, weight_decay=5e-4), "mlp", 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _masked_twins() -> tuple[nn.Module, nn.Module]:
    """Two identical copies of the MLP with the same masks applied: one per optimiser to compare."""
    base = _make("mlp")
    masks = _masks(base)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    for m in (a, b):
        masking.apply_masks(m, masks)
    return a, b


def test_state_dict_continues_in_torch_sgd():
    a, b = _masked_twins()
    opt_a = MaskedSGD(a.parameters(), a, lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt_b = MaskedSGD(b.parameters(), b, lr=0.05, momentum=0.9, weight_decay=5e-4)
    _train(a, opt_a, "mlp", 5)
    _train(b, opt_b, "mlp", 5)
    plain = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    plain.load_state_dict(opt_b.state_dict())
    _train(a, opt_a, "mlp", 5)
    _train(b, plain, "mlp", 5)  # hooks still on: torch SGD + hooks from the same state
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_masks_are_read_at_every_step():
    model = _make("mlp")
    masks = _masks(model)
    masking.apply_masks(model, masks)
    opt = MaskedSGD(model.parameters(), model, lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.double()  # new mask buffers (float64); the parameters are the same objects
    with masking.gradient_hooks_paused(model):
        for step in range(3):
            x, y = _batch("mlp", step)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.double()), y).backward()
            opt.step()
    assert masking.pruned_nonzero(model) == {}


def test_closure_is_supported():
    model = _make("mlp")
    opt = MaskedSGD(model.parameters(), model, lr=0.05)
    x, y = _batch("mlp", 0)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    assert torch.is_tensor(opt.step(closure))


@pytest.mark.parametrize("kwargs, error, needle", [
    ({"lr": -0.1}, ValueError, "lr must be a finite number >= 0, got -0.1"),
    ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\), got 1.0"),
    ({"weight_decay": "5e-4"}, ValueError, "weight_decay must be a finite number >= 0, got '5e-4'"),
    ({"lr": True}, ValueError, "lr must be a finite number >= 0, got True"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number >= 0, got inf"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number >= 0, got nan"),
    ({"weight_decay": float("inf")}, ValueError, "weight_decay must be a finite number >= 0, got inf"),
])
def test_bad_hyperparameters_name_the_value(kwargs, error, needle):
    model = _make("mlp")
    with pytest.raises(error, match=needle):
        MaskedSGD(model.parameters(), model, **kwargs)


def test_bad_group_value_and_bad_model_are_refused():
    model = _make("mlp")
    with pytest.raises(ValueError, match="momentum must be in"):
        MaskedSGD([{"params": model.parameters(), "momentum": 2.0}], model, lr=0.1)
    with pytest.raises(ValueError, match="MaskedSGD supports nesterov=False only, got nesterov=True"):
        MaskedSGD([{"params": model.parameters(), "nesterov": True}], model, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="model must be the torch.nn.Module whose masks apply, got list"):
        MaskedSGD(model.parameters(), [model], lr=0.1)


def test_add_param_group_checks_like_the_constructor_and_adds_nothing_on_error():
    model = _make("mlp")
    opt = MaskedSGD(model[0].parameters(), model, lr=0.1, momentum=0.9)
    for bad, needle in [({"nesterov": True}, "MaskedSGD supports nesterov=False only, got nesterov=True"),
                        ({"lr": -1.0}, "lr must be a finite number >= 0, got -1.0"),
                        ({"lr": float("inf")}, "lr must be a finite number >= 0, got inf"),
                        ({"momentum": 1.5}, r"momentum must be in \[0, 1\), got 1.5"),
                        ({"dampening": 0.5}, "MaskedSGD supports dampening=0.0 only, got dampening=0.5")]:
        with pytest.raises(ValueError, match=needle):
            opt.add_param_group({"params": list(model[2].parameters()), **bad})
        assert len(opt.param_groups) == 1
    opt.add_param_group({"params": list(model[2].parameters()), "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01] and opt.param_groups[1]["momentum"] == 0.9


def _trained_two_group_optimizer(lr: float = 0.05, momentum: float = 0.9) -> tuple[nn.Module, MaskedSGD]:
    model = _make("mlp")
    masking.apply_masks(model, _masks(model))
    opt = MaskedSGD([{"params": list(model[0].parameters())}, {"params": list(model[2].parameters()) +
                                                                list(model[4].parameters())}],
                    model, lr=lr, momentum=momentum, weight_decay=5e-4)
    _train(model, opt, "mlp", 2)
    return model, opt


_MISSING = object()


@pytest.mark.parametrize("change, error, needle", [
    ({"nesterov": True}, ValueError, "MaskedSGD supports nesterov=False only, got nesterov=True"),
    ({"maximize": True}, ValueError, "MaskedSGD supports maximize=False only, got maximize=True"),
    ({"dampening": 0.1}, ValueError, "MaskedSGD supports dampening=0.0 only, got dampening=0.1"),
    ({"momentum": 1.5}, ValueError, r"momentum must be in \[0, 1\), got 1.5"),
    ({"lr": -1.0}, ValueError, "lr must be a finite number >= 0, got -1.0"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay must be a finite number >= 0, got nan"),
    ({"lr": "0.1"}, ValueError, "lr must be a finite number >= 0, got '0.1'"),
    ({"lr": _MISSING}, ValueError, "has no 'lr'"),
])
def test_load_state_dict_refuses_what_the_constructor_refuses_and_changes_nothing(change, error, needle):
    _, source = _trained_two_group_optimizer()
    saved = source.state_dict()
    for key, value in change.items():
        if value is _MISSING:
            del saved["param_groups"][1][key]
        else:
            saved["param_groups"][1][key] = value
    model, target = _trained_two_group_optimizer(lr=0.2, momentum=0.5)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in target.param_groups]
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in target.state.items()}
    with pytest.raises(error, match=r"saved param group 1: .*" + needle):
        target.load_state_dict(saved)
    assert [{k: v for k, v in g.items() if k != "params"} for g in target.param_groups] == groups
    assert {id(p): set(s) for p, s in target.state.items()} == {i: set(s) for i, s in state.items()}
    assert all(torch.equal(v, state[id(p)][k]) for p, s in target.state.items() for k, v in s.items())


def test_load_state_dict_refuses_a_nesterov_torch_sgd_checkpoint_and_takes_a_plain_one():
    model = _make("mlp")
    masking.apply_masks(model, _masks(model))
    nesterov = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    _train(model, nesterov, "mlp", 1)
    opt = MaskedSGD(model.parameters(), model, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="saved param group 0: MaskedSGD supports nesterov=False only"):
        opt.load_state_dict(nesterov.state_dict())
    assert opt.param_groups[0]["nesterov"] is False and len(opt.state) == 0
    with pytest.raises(TypeError, match="state_dict must be a dict .*got list"):
        opt.load_state_dict([])
    plain = torch.optim.SGD(model.parameters(), lr=0.07, momentum=0.8, weight_decay=1e-4)
    _train(model, plain, "mlp", 1)
    opt.load_state_dict(plain.state_dict())
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == (0.07, 0.8)


def test_numpy_scalars_are_accepted_as_hyperparameters_and_stored_as_floats():
    import numpy as np

    a, b = _masked_twins()
    lr, momentum, decay = np.float32(0.05), np.float64(0.9), np.float32(5e-4)
    opt_a = MaskedSGD(list(a[0].parameters()) + list(a[2].parameters()), a, lr=lr, momentum=momentum,
                      weight_decay=decay)
    opt_a.add_param_group({"params": list(a[4].parameters()), "lr": np.float32(0.02), "weight_decay": np.int64(0)})
    opt_b = MaskedSGD(list(b[0].parameters()) + list(b[2].parameters()), b, lr=float(lr), momentum=float(momentum),
                      weight_decay=float(decay))
    opt_b.add_param_group({"params": list(b[4].parameters()), "lr": float(np.float32(0.02)), "weight_decay": 0.0})
    for group in opt_a.param_groups:
        assert all(type(group[k]) is float for k in ("lr", "momentum", "weight_decay"))
    _train(a, opt_a, "mlp", 5)
    _train(b, opt_b, "mlp", 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    for bad in (np.bool_(True), True, np.float32("nan")):
        with pytest.raises(ValueError, match=r"lr must be a finite number >= 0, got "):
            MaskedSGD(a.parameters(), a, lr=bad)


def test_fit_takes_numpy_hyperparameters_for_a_masked_model_as_for_a_dense_one():
    import numpy as np

    train_loader, test_loader = _loaders()
    base = _make("mlp")
    masks = _masks(base)
    runs = []
    for lr, decay in ((np.float32(0.05), np.float32(5e-4)), (float(np.float32(0.05)), float(np.float32(5e-4)))):
        model = masking.apply_masks(copy.deepcopy(base), masks)
        cfg = train.TrainConfig(epochs=1, lr=lr, weight_decay=decay, schedule="constant")
        train.fit(model, train_loader, test_loader, cfg, device="cpu", progress=False)
        runs.append(model)
    assert masking.pruned_nonzero(runs[0]) == {}
    assert all(torch.equal(p, q) for p, q in zip(runs[0].parameters(), runs[1].parameters()))


def test_masks_applied_after_the_optimizer_was_built_are_honoured():
    base = _make("mlp")
    masks = _masks(base)
    hooked, folded = copy.deepcopy(base), copy.deepcopy(base)
    reference = torch.optim.SGD(hooked.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    ours = MaskedSGD(folded.parameters(), folded, lr=0.05, momentum=0.9, weight_decay=5e-4)
    masking.apply_masks(hooked, masks)
    masking.apply_masks(folded, masks)                  # after MaskedSGD was built
    _train(hooked, reference, "mlp", 5)
    with masking.gradient_hooks_paused(folded):
        _train(folded, ours, "mlp", 5)
    assert masking.pruned_nonzero(folded) == {}
    assert all(torch.equal(a, b) for a, b in zip(hooked.parameters(), folded.parameters()))


def test_sparse_gradients_are_refused():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = MaskedSGD(emb.parameters(), emb, lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


def test_a_copied_optimizer_refuses_to_step_instead_of_forgetting_the_masks():
    model = _make("mlp")
    masking.apply_masks(model, _masks(model))
    opt = MaskedSGD(model.parameters(), model, lr=0.1, momentum=0.9)
    clone = copy.deepcopy(opt)  # its parameters are copies too, unknown to any model's masks
    for p in clone.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="no longer knows its model's masks"):
        clone.step()


# --------------------------------------------------------------------------- pausing the hooks


def _hook_count(model: nn.Module) -> int:
    return sum(isinstance(h, masking._GradMask) for p in model.parameters()
               for h in (p._post_accumulate_grad_hooks or {}).values())


def test_gradient_hooks_paused_removes_and_restores_the_hooks():
    model = _make("mlp")
    masks = _masks(model)
    masking.apply_masks(model, masks)
    assert _hook_count(model) == 3
    with masking.gradient_hooks_paused(model) as same:
        assert same is model
        x, y = _batch("mlp", 0)
        nn.functional.cross_entropy(model(x), y).backward()  # a forward must not re-install them
        assert _hook_count(model) == 0
        with masking.gradient_hooks_paused(model):            # nested
            assert _hook_count(model) == 0
        assert _hook_count(model) == 0                         # still paused by the outer block
    assert _hook_count(model) == 3
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.count_nonzero(model[0].weight.grad[~masks["0.weight"]]) == 0


def test_gradient_hooks_come_back_after_an_exception():
    model = _make("mlp")
    masking.apply_masks(model, _masks(model))
    with pytest.raises(KeyError):
        with masking.gradient_hooks_paused(model):
            raise KeyError("boom")
    assert _hook_count(model) == 3


def test_gradient_hooks_paused_refuses_a_non_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        with masking.gradient_hooks_paused({}):
            pass


def test_masked_parameters_names_the_mask_buffers():
    model = _make("cnn")
    masks = _masks(model, with_bias=True)
    masking.apply_masks(model, masks)
    found = {name: (param, module, leaf) for name, param, module, leaf in masking.masked_parameters(model)}
    assert set(found) == set(masks)
    for name, (param, module, leaf) in found.items():
        assert param is dict(model.named_parameters())[name]
        assert torch.equal(getattr(module, f"{leaf}_mask") != 0, masks[name])
    assert masking.masked_parameters(_make("mlp")) == []


# --------------------------------------------------------------------------- fit


def _loaders():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 12, generator=g), torch.randint(0, 4, (200,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=20), DataLoader(TensorDataset(x[:50], y[:50]), batch_size=50)


def test_fit_trains_masked_sgd_without_running_the_hooks(monkeypatch):
    calls = []
    original = masking._GradMask.__call__

    def counting(self, param):
        calls.append(1)
        original(self, param)

    monkeypatch.setattr(masking._GradMask, "__call__", counting)
    train_loader, test_loader = _loaders()
    model = _make("mlp")
    masking.apply_masks(model, _masks(model))
    train.fit(model, train_loader, test_loader, train.TrainConfig(epochs=1, lr=0.05), progress=False)
    assert calls == []                    # MaskedSGD masked the update; the hooks were paused
    assert _hook_count(model) == 3        # and are back afterwards
    adam = _make("mlp")
    masking.apply_masks(adam, _masks(adam))
    train.fit(adam, train_loader, test_loader, train.TrainConfig(epochs=1, optimizer="adam"), progress=False)
    assert len(calls) == 3 * len(train_loader)  # Adam: the hooks mask the gradients


def test_fit_gives_the_same_weights_with_and_without_the_hooks():
    """Clipping keeps the hooks on (it must see masked gradients); a clip that never bites
    leaves the gradients unchanged, so both paths must give the same weights bit for bit."""
    train_loader, test_loader = _loaders()
    base = _make("mlp")
    masks = _masks(base)
    runs = {}
    for name, clip in (("folded", None), ("hooked", 1e9)):
        model = copy.deepcopy(base)
        masking.apply_masks(model, masks)
        torch.manual_seed(5)
        train.fit(model, train_loader, test_loader,
                  train.TrainConfig(epochs=2, lr=0.05, clip_grad_norm=clip), progress=False)
        runs[name] = model
    for (name, a), b in zip(runs["folded"].named_parameters(), runs["hooked"].parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_with_clipping_clips_the_masked_gradients(optimizer, monkeypatch):
    """Clipping reads the gradients, so fit keeps the hooks on: its run must equal a loop that masks
    every gradient itself before clipping. With the hooks broken, the clip would also count the
    pruned entries' gradients (other weights) and Adam would revive pruned weights (fit raises)."""
    train_loader, test_loader = _loaders()
    base = _make("mlp")
    masks = _masks(base)
    cfg = train.TrainConfig(epochs=2, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                            clip_grad_norm=0.1)

    def fitted() -> nn.Module:
        model = masking.apply_masks(copy.deepcopy(base), masks)
        train.fit(model, train_loader, test_loader, cfg, device="cpu", progress=False)
        return model

    reference = masking.apply_masks(copy.deepcopy(base), masks)
    params = dict(reference.named_parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(reference.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(reference.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    norms = []
    iteration, total = 0, cfg.epochs * len(train_loader)
    for _ in range(cfg.epochs):
        reference.train()
        for x, y in train_loader:
            for group in opt.param_groups:
                group["lr"] = train.lr_at(cfg, iteration, total)
            loss = nn.functional.cross_entropy(reference(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for name, mask in masks.items():
                params[name].grad.mul_(mask)                   # masked here, whatever the hooks did
            norms.append(float(nn.utils.clip_grad_norm_(reference.parameters(), cfg.clip_grad_norm)))
            opt.step()
            iteration += 1
    assert max(norms) > cfg.clip_grad_norm                     # the clip did bite
    for (name, a), b in zip(fitted().named_parameters(), reference.parameters()):
        assert torch.equal(a, b), name
    # the comparison sees broken hooks: with hooks that do nothing, fit's run differs (or fit raises)
    monkeypatch.setattr(masking._GradMask, "__call__", lambda self, param: None)
    try:
        broken = fitted()
    except RuntimeError as err:
        assert "pruned weights are not zero" in str(err)
    else:
        assert not all(torch.equal(a, b) for a, b in zip(broken.parameters(), reference.parameters()))


# --------------------------------------------------------------------------- bit for bit with torch.optim.SGD


def test_a_closure_step_updates_the_weights_like_torch_sgd():
    base = _make("mlp")
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    _train(a, torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9), "mlp", 3, closure=True)
    _train(b, MaskedSGD(b.parameters(), b, lr=0.05, momentum=0.9), "mlp", 3, closure=True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(base.parameters(), b.parameters()))   # it did step


def test_masks_applied_between_steps_are_honoured_from_the_next_step():
    """MaskedSGD reads the masks at every step: new masks after two steps count (not a cached first set)."""
    base = _make("mlp")
    first = _masks(base, 0.3)
    second = {n: m | (torch.rand(m.shape, generator=torch.Generator().manual_seed(9)) < 0.3) for n, m in first.items()}
    hooked, folded = copy.deepcopy(base), copy.deepcopy(base)
    for model in (hooked, folded):
        masking.apply_masks(model, first)
    ref = torch.optim.SGD(hooked.parameters(), lr=0.05, momentum=0.9)
    ours = MaskedSGD(folded.parameters(), folded, lr=0.05, momentum=0.9)
    _train(hooked, ref, "mlp", 2)
    with masking.gradient_hooks_paused(folded):
        _train(folded, ours, "mlp", 2)
    for model in (hooked, folded):
        masking.apply_masks(model, second)
    _train(hooked, ref, "mlp", 3, start=2)
    with masking.gradient_hooks_paused(folded):
        _train(folded, ours, "mlp", 3, start=2)
    assert all(torch.equal(p, q) for p, q in zip(hooked.parameters(), folded.parameters()))


def test_per_group_learning_rates_are_used():
    base = _make("mlp")
    masks = _masks(base)
    hooked, folded = copy.deepcopy(base), copy.deepcopy(base)
    for model in (hooked, folded):
        masking.apply_masks(model, masks)

    def groups(m):
        return [{"params": list(m[0].parameters()), "lr": 0.2},
                {"params": list(m[2].parameters()) + list(m[4].parameters())}]

    ref = torch.optim.SGD(groups(hooked), lr=0.05, momentum=0.9)
    ours = MaskedSGD(groups(folded), folded, lr=0.05, momentum=0.9)
    _train(hooked, ref, "mlp", 3)
    with masking.gradient_hooks_paused(folded):
        _train(folded, ours, "mlp", 3)
    assert all(torch.equal(p, q) for p, q in zip(hooked.parameters(), folded.parameters()))


@pytest.mark.parametrize("kind", ["mlp", "wide"])
def test_load_state_dict_resumes_training_where_it_stopped(kind):
    """A checkpoint of MaskedSGD loads into a new MaskedSGD, which steps on as the first one does
    (Optimizer.load_state_dict goes through __setstate__, which must keep the model)."""
    base = _make(kind)
    masking.apply_masks(base, _masks(base, _density(kind)))
    resumed = copy.deepcopy(base)
    opt = MaskedSGD(base.parameters(), base, lr=0.05, momentum=0.9, weight_decay=5e-4)
    _train(base, opt, kind, 3)
    checkpoint = copy.deepcopy((base.state_dict(), opt.state_dict()))
    _train(base, opt, kind, 2, start=3)
    resumed.load_state_dict(checkpoint[0])
    opt2 = MaskedSGD(resumed.parameters(), resumed, lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt2.load_state_dict(checkpoint[1])
    _train(resumed, opt2, kind, 2, start=3)
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), resumed.parameters()))


@pytest.mark.parametrize("kind", ["mlp", "wide"])
def test_a_sparser_mask_clears_the_momentum_of_the_weights_it_prunes(kind):
    """Masks re-applied during training that prune more: old momentum must not move the newly
    pruned weights (with torch.optim.SGD and the gradient hooks, it does). On the wide net the
    second mask is sparse enough for the kept-entries update, which needs the cleared buffer."""
    base = _make(kind)
    first = _masks(base, 0.6 if kind == "mlp" else 0.1)
    second = {n: m & (torch.rand(m.shape, generator=torch.Generator().manual_seed(9)) < 0.5) for n, m in first.items()}
    ours, hooked = copy.deepcopy(base), copy.deepcopy(base)
    opts = {}
    for model in (ours, hooked):
        masking.apply_masks(model, first)
    opts["ours"] = MaskedSGD(ours.parameters(), ours, lr=0.05, momentum=0.9, weight_decay=5e-4)
    opts["hooked"] = torch.optim.SGD(hooked.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for name, model in (("ours", ours), ("hooked", hooked)):
        _train(model, opts[name], kind, 3)
        masking.apply_masks(model, second)
        assert masking.pruned_nonzero(model) == {}
        _train(model, opts[name], kind, 2, start=3)
    assert masking.pruned_nonzero(ours) == {}
    assert masking.pruned_nonzero(hooked) != {}  # what the buffers' clearing prevents


def test_gradients_are_masked_again_when_the_hooks_come_back():
    """Inside gradient_hooks_paused .grad is not masked; after the block it is (as train.fit leaves it)."""
    model = _make("mlp")
    masks = _masks(model)
    masking.apply_masks(model, masks)
    x, y = _batch("mlp", 0)
    with masking.gradient_hooks_paused(model):
        nn.functional.cross_entropy(model(x), y).backward()
        grads = dict(model.named_parameters())
        assert any(bool((grads[n].grad[~m] != 0).any()) for n, m in masks.items())  # unmasked inside
    assert all(bool((grads[n].grad[~m] == 0).all()) for n, m in masks.items())
    fitted = _make("mlp")
    masking.apply_masks(fitted, masks)
    train.fit(fitted, *_loaders(), train.TrainConfig(epochs=1, lr=0.05), device="cpu", progress=False)
    params = dict(fitted.named_parameters())
    assert all(bool((params[n].grad[~m] == 0).all()) for n, m in masks.items())


def test_the_kept_entries_update_gives_the_numbers_of_the_addcmul_update(monkeypatch):
    """The wide net trained twice, once with the kept-entries update and once with every masked layer
    on the addcmul path (the size threshold raised past it), through a re-applied sparser mask, a
    checkpoint and a resume: the same weights and buffers bit for bit."""
    from snip_lib import optim

    def run(sparse_path: bool) -> tuple[nn.Module, MaskedSGD]:
        if not sparse_path:
            monkeypatch.setattr(optim, "SPARSE_UPDATE_MIN_NUMEL", 10**12)
        model = _make("wide")
        first = _masks(model, 0.1)
        masking.apply_masks(model, first)
        opt = MaskedSGD(model.parameters(), model, lr=0.05, momentum=0.9, weight_decay=5e-4)
        _train(model, opt, "wide", 3)
        masking.apply_masks(model, {n: m & (torch.rand(m.shape, generator=torch.Generator().manual_seed(9)) < 0.5)
                                    for n, m in first.items()})
        _train(model, opt, "wide", 2, start=3)
        resumed = MaskedSGD(model.parameters(), model, lr=0.05, momentum=0.9, weight_decay=5e-4)
        resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
        _train(model, resumed, "wide", 2, start=5)
        used = [k for k in resumed._kept.values() if k is not None]
        assert bool(used) == sparse_path                     # each run took the path it was meant to
        monkeypatch.undo()
        return model, resumed

    (a, opt_a), (b, opt_b) = run(True), run(False)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
        assert torch.equal(opt_a.state[p]["momentum_buffer"], opt_b.state[q]["momentum_buffer"]), name
    assert masking.pruned_nonzero(a) == {}


def test_masks_removed_and_applied_again_between_steps_are_new_masks():
    """remove_masks then apply_masks between two steps frees the old mask tensors; the new ones may
    get the freed ones' ids (and have version 0 again). The optimizer must still see new masks: clear
    the buffers where they prune and recompute the kept entries (it compared ids and versions)."""
    base = _make("wide")
    first = _masks(base, 0.1)
    ours, hooked = copy.deepcopy(base), copy.deepcopy(base)
    for model in (ours, hooked):
        masking.apply_masks(model, first)
    opts = {"ours": MaskedSGD(ours.parameters(), ours, lr=0.05, momentum=0.9, weight_decay=5e-4),
            "hooked": torch.optim.SGD(hooked.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)}
    for step in range(3):
        second = {n: m & (torch.rand(m.shape, generator=torch.Generator().manual_seed(10 + step)) < 0.7)
                  for n, m in first.items()}
        for name, model in (("ours", ours), ("hooked", hooked)):
            _train(model, opts[name], "wide", 2, start=2 * step)
            masking.remove_masks(model)
            masking.apply_masks(model, second)
        # the reference: torch.optim.SGD with the hooks, its momentum cleared where the new masks prune
        for name, p in hooked.named_parameters():
            if name in second:
                opts["hooked"].state[p]["momentum_buffer"].mul_(second[name])
        first = second
    for name, model in (("ours", ours), ("hooked", hooked)):
        _train(model, opts[name], "wide", 2, start=6)
    assert masking.pruned_nonzero(ours) == {}
    for (name, a), b in zip(ours.named_parameters(), hooked.parameters()):
        assert torch.equal(a, b), name
        assert torch.equal(opts["ours"].state[a]["momentum_buffer"], opts["hooked"].state[b]["momentum_buffer"]), name
