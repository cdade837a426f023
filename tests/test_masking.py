"""Tests for snip_lib.masking: pruned weights stay exactly zero under every optimizer, reports,
save/load, copies and torch.nn.utils.prune interoperability."""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from snip_lib import masking
from snip_lib.masking import (
    apply_masks,
    enforce_masks,
    from_torch_prune,
    get_masks,
    global_sparsity,
    is_masked,
    layer_collapse,
    load_pruned,
    pruned_nonzero,
    remove_masks,
    save_pruned,
    sparsity_report,
    to_torch_prune,
)



pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------
# small nets
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


class Nested(nn.Module):
    """Linear layers inside nested containers; ``cell`` is reused at every time step like an RNN cell."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(12, 10), nn.Tanh()),
                                     nn.ModuleDict({"proj": nn.Linear(10, 10)})])
        self.cell = nn.Sequential(nn.Linear(10, 10))
        self.head = nn.Linear(10, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks[1]["proj"](self.blocks[0](x))
        for _ in range(3):
            h = torch.tanh(self.cell(h))
        return self.head(h)


def make(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return {"mlp": MLP, "cnn": SmallCNN, "nested": Nested}[kind]()


def batch(kind: str, n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3, 8, 8) if kind == "cnn" else (n, 12)
    return torch.randn(shape, generator=g), torch.randint(0, 4, (n,), generator=g)


def random_masks(model: nn.Module, density: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Masks for every weight of a Linear/Conv layer (biases and BN stay dense)."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(p.shape, generator=g) < density
            for name, p in model.named_parameters()
            if name.endswith("weight") and p.dim() > 1}


def masked(kind: str, density: float = 0.3, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = make(kind, seed)
    masks = random_masks(model, density, seed)
    apply_masks(model, masks)
    return model, masks


def pruned_values(model: nn.Module, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach()[~m] for n, m in masks.items()])


def assert_pruned_exactly_zero(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    values = pruned_values(model, masks)
    assert torch.equal(values, torch.zeros_like(values)), f"{int((values != 0).sum())} pruned weights revived"


def train(model: nn.Module, opt: torch.optim.Optimizer, kind: str, steps: int, enforce: bool = False) -> None:
    model.train()
    for step in range(steps):
        x, y = batch(kind, seed=100 + step)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        if enforce:
            enforce_masks(model)


def grad_hook_count(p: torch.Tensor) -> int:
    return sum(isinstance(h, masking._GradMask) for h in (p._post_accumulate_grad_hooks or {}).values())


# --------------------------------------------------------------------------------------------
# applying masks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn", "nested"])
def test_apply_zeroes_pruned_entries_and_keeps_the_rest(kind: str) -> None:
    model = make(kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = random_masks(model)
    assert apply_masks(model, masks) is model
    for name, p in model.named_parameters():
        if name in masks:
            m = masks[name]
            assert torch.equal(p[~m], torch.zeros_like(p[~m]))
            assert torch.equal(p[m], before[name][m])
        else:
            assert torch.equal(p, before[name])
    assert is_masked(model)
    got = get_masks(model)
    assert got.keys() == masks.keys()
    for name in masks:
        assert got[name].dtype == torch.bool and torch.equal(got[name], masks[name])


def test_masks_are_persistent_buffers_named_after_the_parameter() -> None:
    model, masks = masked("nested")
    keys = set(model.state_dict())
    assert {"blocks.0.0.weight_mask", "blocks.1.proj.weight_mask", "cell.0.weight_mask", "head.weight_mask"} <= keys
    assert "blocks.0.0.bias_mask" not in keys
    # parameters are untouched in number and name
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in make("nested").named_parameters()]


def test_gradient_of_pruned_entries_is_exactly_zero_even_for_a_reused_layer() -> None:
    model, masks = masked("nested")
    x, y = batch("nested")
    nn.functional.cross_entropy(model(x), y).backward()
    params = dict(model.named_parameters())
    for name, m in masks.items():
        grad = params[name].grad
        assert torch.equal(grad[~m], torch.zeros_like(grad[~m]))
        assert (grad[m] != 0).any()
    # the reused cell gets one hook, applied to the accumulated gradient
    assert grad_hook_count(model.cell[0].weight) == 1


def test_numeric_zero_one_masks_are_accepted_and_stored_as_bool() -> None:
    model = make("mlp")
    bool_masks = random_masks(model)
    apply_masks(model, {n: m.float() for n, m in bool_masks.items()})
    for name, m in get_masks(model).items():
        assert torch.equal(m, bool_masks[name])


def test_masks_are_validated_before_anything_changes() -> None:
    model = make("mlp")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = random_masks(model)
    masks["fc9.weight"] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"'fc9\.weight'.*'fc1\.weight'"):
        apply_masks(model, masks)
    assert not is_masked(model)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_bad_masks_raise_errors_naming_the_bad_value() -> None:
    model = make("mlp")
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(16, 12\)"):
        apply_masks(model, {"fc1.weight": torch.ones(4, 4, dtype=torch.bool)})
    with pytest.raises(TypeError, match=r"0\.5"):
        apply_masks(model, {"fc1.weight": torch.full((16, 12), 0.5)})
    with pytest.raises(TypeError, match="list"):
        apply_masks(model, {"fc1.weight": [[True] * 12] * 16})
    with pytest.raises(TypeError, match="dict"):
        apply_masks(model, [("fc1.weight", torch.ones(16, 12, dtype=torch.bool))])
    with pytest.raises(TypeError, match="Module"):
        apply_masks("not a model", {})
    assert not is_masked(model)


def test_refuses_to_overwrite_a_foreign_mask_attribute() -> None:
    model = make("mlp")
    model.fc1.register_buffer("weight_mask", torch.ones(16, 12))
    with pytest.raises(ValueError, match="weight_mask"):
        apply_masks(model, {"fc1.weight": torch.ones(16, 12, dtype=torch.bool)})


def test_reapplying_replaces_the_mask_and_does_not_stack_hooks() -> None:
    model = make("mlp")
    first = random_masks(model, seed=1)
    second = random_masks(model, seed=2)
    apply_masks(model, first)
    apply_masks(model, first)
    apply_masks(model, second)
    for p in (model.fc1.weight, model.fc2.weight, model.fc3.weight):
        assert grad_hook_count(p) == 1
    assert sum(isinstance(h, masking._MaskGuard) for h in model.fc1._forward_pre_hooks.values()) == 1
    assert all(torch.equal(get_masks(model)[n], second[n]) for n in second)
    # behaviour: gradients follow the second mask only; entries pruned by the first and kept by
    # the second get a gradient again
    x, y = batch("mlp")
    nn.functional.cross_entropy(model(x), y).backward()
    g, m1, m2 = model.fc2.weight.grad, first["fc2.weight"], second["fc2.weight"]
    assert torch.equal(g[~m2], torch.zeros_like(g[~m2]))
    assert (g[~m1 & m2] != 0).any()


def test_masks_of_other_parameters_are_kept_when_reapplying_a_subset() -> None:
    model, masks = masked("mlp")
    apply_masks(model, {"fc1.weight": torch.ones(16, 12, dtype=torch.bool)})
    got = get_masks(model)
    assert got["fc1.weight"].all()
    assert torch.equal(got["fc2.weight"], masks["fc2.weight"])


def test_remove_masks_keeps_zeros_and_drops_hooks_and_buffers() -> None:
    model, masks = masked("mlp")
    assert remove_masks(model) is model
    assert not is_masked(model) and get_masks(model) == {}
    assert not any(k.endswith("_mask") for k in model.state_dict())
    assert_pruned_exactly_zero(model, masks)
    assert grad_hook_count(model.fc1.weight) == 0
    x, y = batch("mlp")
    nn.functional.cross_entropy(model(x), y).backward()
    g = model.fc2.weight.grad
    assert (g[~masks["fc2.weight"]] != 0).any()  # pruned entries are trainable again


def test_frozen_parameter_can_be_masked_and_is_hooked_once_it_trains() -> None:
    model = make("mlp")
    model.fc1.weight.requires_grad_(False)
    masks = random_masks(model)
    apply_masks(model, masks)
    assert grad_hook_count(model.fc1.weight) == 0
    model.fc1.weight.requires_grad_(True)
    x, y = batch("mlp")
    nn.functional.cross_entropy(model(x), y).backward()  # the forward re-installs the hook
    g = model.fc1.weight.grad
    assert torch.equal(g[~masks["fc1.weight"]], torch.zeros_like(g[~masks["fc1.weight"]]))


# --------------------------------------------------------------------------------------------
# training keeps pruned weights at zero
# --------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd-nesterov-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam-wd": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=5e-4),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "rmsprop-centered-momentum-wd": lambda ps: torch.optim.RMSprop(
        ps, lr=1e-3, momentum=0.9, centered=True, weight_decay=5e-4),
    "adagrad-wd": lambda ps: torch.optim.Adagrad(ps, lr=1e-2, weight_decay=5e-4),
    "adadelta-wd": lambda ps: torch.optim.Adadelta(ps, weight_decay=5e-4),
    "adamax-wd": lambda ps: torch.optim.Adamax(ps, weight_decay=5e-4),
    "nadam-wd": lambda ps: torch.optim.NAdam(ps, weight_decay=5e-4),
    "radam-decoupled-wd": lambda ps: torch.optim.RAdam(ps, weight_decay=5e-4, decoupled_weight_decay=True),
    "asgd-wd": lambda ps: torch.optim.ASGD(ps, lr=1e-2, weight_decay=5e-4),
    "rprop": lambda ps: torch.optim.Rprop(ps),
    "lbfgs": lambda ps: torch.optim.LBFGS(ps, lr=0.1, max_iter=3),
}
if hasattr(torch.optim, "Adafactor"):
    OPTIMIZERS["adafactor-wd"] = lambda ps: torch.optim.Adafactor(ps, weight_decay=5e-4)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_under_every_optimizer_without_enforce(name: str) -> None:
    model, masks = masked("mlp")
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, OPTIMIZERS[name](model.parameters()), "mlp", steps=50)
    assert_pruned_exactly_zero(model, masks)
    params = dict(model.named_parameters())
    changed = torch.cat([(params[n] != start[n])[m] for n, m in masks.items()]).float().mean()
    assert changed > 0.5, f"only {changed:.0%} of the kept weights trained"
    assert all(torch.equal(get_masks(model)[n], masks[n]) for n in masks)
    assert sum(int((params[n] != 0).sum()) for n in masks) <= sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("kind", ["cnn", "nested"])
@pytest.mark.parametrize("name", ["sgd-momentum-wd", "adam-wd", "adamw"])
def test_pruned_weights_stay_zero_in_cnn_with_bn_and_nested_model(kind: str, name: str) -> None:
    model, masks = masked(kind)
    train(model, OPTIMIZERS[name](model.parameters()), kind, steps=50)
    assert_pruned_exactly_zero(model, masks)
    assert (pruned_values(model, {n: ~m for n, m in masks.items()}) != 0).all()


def test_zeroing_once_without_gradient_mask_revives_pruned_weights() -> None:
    """The bug this design fixes: zero the weights once, train with momentum and weight decay."""
    model = make("mlp")
    masks = random_masks(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
    train(model, OPTIMIZERS["sgd-momentum-wd"](model.parameters()), "mlp", steps=5)
    assert (pruned_values(model, masks) != 0).float().mean() > 0.5


def test_stale_momentum_revives_pruned_weights_and_enforce_masks_fixes_it() -> None:
    """Optimizer state from a dense run (non-zero momentum at pruned entries) moves pruned weights;
    enforce_masks after each step is the safety net."""
    results = {}
    for enforce in (False, True):
        model = make("mlp")
        opt = OPTIMIZERS["sgd-momentum-wd"](model.parameters())
        train(model, opt, "mlp", steps=3)  # dense warm-up builds momentum everywhere
        masks = random_masks(model)
        apply_masks(model, masks)
        train(model, opt, "mlp", steps=5, enforce=enforce)
        results[enforce] = pruned_values(model, masks)
    assert (results[False] != 0).any()
    assert torch.equal(results[True], torch.zeros_like(results[True]))


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon not available")
def test_non_elementwise_optimizer_needs_enforce_masks() -> None:
    """Muon orthogonalises whole update matrices, so zero gradients do not mean zero updates."""
    results = {}
    for enforce in (False, True):
        model, masks = masked("mlp")
        weights = [p for n, p in model.named_parameters() if p.dim() == 2]
        for n, p in model.named_parameters():
            p.requires_grad_(p.dim() == 2)
        train(model, torch.optim.Muon(weights, lr=0.02), "mlp", steps=5, enforce=enforce)
        results[enforce] = pruned_values(model, masks)
    assert (results[False] != 0).any()
    assert torch.equal(results[True], torch.zeros_like(results[True]))


def test_enforce_masks_rezeroes_and_leaves_kept_weights_alone() -> None:
    model, masks = masked("cnn")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    kept_before = pruned_values(model, {n: ~m for n, m in masks.items()}).clone()
    assert enforce_masks(model) is None
    assert_pruned_exactly_zero(model, masks)
    assert torch.equal(pruned_values(model, {n: ~m for n, m in masks.items()}), kept_before)
    enforce_masks(make("mlp"))  # unmasked model: no-op, no error


# --------------------------------------------------------------------------------------------
# copies, state_dict, dtype
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_stay_masked_and_keep_training_sparse(how: str) -> None:
    model, masks = masked("nested")
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert is_masked(clone)
    assert all(torch.equal(get_masks(clone)[n], masks[n]) for n in masks)
    train(clone, OPTIMIZERS["sgd-momentum-wd"](clone.parameters()), "nested", steps=20)
    assert_pruned_exactly_zero(clone, masks)
    for p in (clone.head.weight, clone.cell[0].weight):
        assert grad_hook_count(p) == 1
    # the original is untouched and its own hooks still work
    assert grad_hook_count(model.head.weight) == 1
    train(model, OPTIMIZERS["adam-wd"](model.parameters()), "nested", steps=5)
    assert_pruned_exactly_zero(model, masks)


def test_load_state_dict_brings_the_masks_along() -> None:
    source, source_masks = masked("mlp", seed=0)
    target, _ = masked("mlp", seed=5)
    target.load_state_dict(source.state_dict())
    assert all(torch.equal(get_masks(target)[n], source_masks[n]) for n in source_masks)
    train(target, OPTIMIZERS["sgd-momentum-wd"](target.parameters()), "mlp", steps=10)
    assert_pruned_exactly_zero(target, source_masks)


def test_dtype_conversion_keeps_masks_working() -> None:
    model, masks = masked("mlp")
    model.double()
    assert model.fc1.weight_mask.dtype == torch.float64
    x, y = batch("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x.double()), y).backward()
        opt.step()
    assert_pruned_exactly_zero(model, masks)


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


def test_sparsity_report_hand_computed() -> None:
    masks = {
        "a.weight": torch.tensor([[True, False, True], [True, True, False]]),  # 4 of 6 kept
        "b.weight": torch.zeros(4, dtype=torch.bool),  # collapsed
    }
    report = sparsity_report(masks)
    assert list(report.columns) == ["layer", "shape", "total", "kept", "density", "sparsity"]
    assert list(report["layer"]) == ["a.weight", "b.weight", "total"]
    assert list(report["shape"][:2]) == [(2, 3), (4,)]
    assert list(report["total"]) == [6, 4, 10]
    assert list(report["kept"]) == [4, 0, 4]
    assert report["density"].tolist() == pytest.approx([4 / 6, 0.0, 0.4])
    assert report["sparsity"].tolist() == pytest.approx([2 / 6, 1.0, 0.6])
    assert global_sparsity(masks) == pytest.approx(0.6)
    assert layer_collapse(masks) == ["b.weight"]
    # a bias with nothing kept leaves its layer connected: not a collapse
    assert layer_collapse({**masks, "a.bias": torch.zeros(2, dtype=torch.bool),
                           "rnn.bias_ih_l0": torch.zeros(8, dtype=torch.bool)}) == ["b.weight"]


def test_report_from_model_matches_report_from_masks() -> None:
    model, masks = masked("cnn")
    from_model, from_masks = sparsity_report(model), sparsity_report(masks)
    assert from_model.drop(columns="shape").equals(from_masks.drop(columns="shape"))
    total = from_model.iloc[-1]
    assert total["total"] == from_model["total"][:-1].sum() == sum(m.numel() for m in masks.values())
    assert total["kept"] == from_model["kept"][:-1].sum()
    assert global_sparsity(model) == pytest.approx(total["sparsity"])
    assert layer_collapse(model) == []


def test_report_rejects_unmasked_model_and_bad_input() -> None:
    with pytest.raises(ValueError, match="no masks"):
        sparsity_report(make("mlp"))
    with pytest.raises(ValueError, match="empty"):
        global_sparsity({})
    with pytest.raises(TypeError, match="str"):
        layer_collapse("fc1.weight")


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------


@pytest.fixture
def lenet300():
    models = pytest.importorskip("snip_lib.models")
    torch.manual_seed(0)
    model = models.build("lenet300")
    g = torch.Generator().manual_seed(3)
    masks = {n: torch.rand(p.shape, generator=g) < 0.1 for n, p in model.named_parameters() if p.dim() == 2}
    return apply_masks(model, masks), masks


def test_save_load_round_trip(lenet300, tmp_path) -> None:
    model, masks = lenet300
    path = save_pruned(model, tmp_path / "sub" / "net.pt", sparsity=0.9, seed=3, note="lenet")
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == masking.FORMAT and blob["arch"] == "lenet300"
    assert not any(k.endswith("_mask") for k in blob["state_dict"])  # masks are stored once, as bool
    loaded = load_pruned(path)
    assert loaded.snip_metadata == {"sparsity": 0.9, "seed": 3, "note": "lenet"}
    assert all(torch.equal(get_masks(loaded)[n], masks[n]) for n in masks) and get_masks(loaded).keys() == masks.keys()
    x = torch.randn(8, 1, 28, 28)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    opt = OPTIMIZERS["sgd-momentum-wd"](loaded.parameters())
    for step in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(loaded(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,))).backward()
        opt.step()
    assert_pruned_exactly_zero(loaded, masks)


def test_save_rejects_models_not_built_by_snip_lib_and_odd_metadata(lenet300, tmp_path) -> None:
    model, _ = lenet300
    with pytest.raises(ValueError, match="snip_arch"):
        save_pruned(masked("mlp")[0], tmp_path / "x.pt")
    with pytest.raises(TypeError, match="metadata.*object"):
        save_pruned(model, tmp_path / "x.pt", bad=object())


def test_save_rejects_a_model_pruned_by_torch_prune_and_names_the_conversion(tmp_path) -> None:
    model = pytest.importorskip("snip_lib.models").build("lenet300")
    prune.l1_unstructured(model.fc1, "weight", 0.5)
    with pytest.raises(ValueError, match=r"\['fc1'\].*from_torch_prune"):
        save_pruned(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    path = save_pruned(from_torch_prune(model), tmp_path / "x.pt")     # converted: round-trips
    assert get_masks(load_pruned(path))["fc1.weight"].float().mean().item() == pytest.approx(0.5)


def test_load_restores_the_saved_precision(lenet300, tmp_path) -> None:
    model, masks = lenet300
    model.double()
    loaded = load_pruned(save_pruned(model, tmp_path / "net64.pt"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    assert all(torch.equal(get_masks(loaded)[n], masks[n]) for n in masks)


def test_load_rejects_files_of_another_format(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"format": "something/2", "state_dict": {}}, path)
    with pytest.raises(ValueError, match="something/2"):
        load_pruned(path)
    torch.save(make("mlp").state_dict(), path)
    with pytest.raises(ValueError, match="None"):
        load_pruned(path)


# --------------------------------------------------------------------------------------------
# torch.nn.utils.prune interoperability
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn", "nested"])
def test_torch_prune_round_trip_preserves_outputs_and_masks(kind: str) -> None:
    model, masks = masked(kind)
    model.eval()
    x, _ = batch(kind)
    expected = model(x)

    to_torch_prune(model)
    assert prune.is_pruned(model) and not is_masked(model)
    keys = set(model.state_dict())
    for name in masks:
        stem = name.rsplit(".", 1)[0]
        assert {f"{stem}.weight_orig", f"{stem}.weight_mask"} <= keys and f"{stem}.weight" not in keys
    assert torch.equal(model(x), expected)

    from_torch_prune(model)
    assert not prune.is_pruned(model) and is_masked(model)
    got = get_masks(model)
    assert got.keys() == masks.keys() and all(torch.equal(got[n], masks[n]) for n in masks)
    assert torch.equal(model(x), expected)
    assert not any(k.endswith("_orig") for k in model.state_dict())
    train(model, OPTIMIZERS["adamw"](model.parameters()), kind, steps=10)
    assert_pruned_exactly_zero(model, masks)


def test_to_torch_prune_keeps_the_parameter_objects_for_existing_optimizers() -> None:
    model, _ = masked("mlp")
    weight = model.fc1.weight
    to_torch_prune(model)
    assert model.fc1.weight_orig is weight
    from_torch_prune(model)
    assert model.fc1.weight is weight


def test_import_from_global_unstructured_with_importance_scores() -> None:
    model = make("cnn")
    model.eval()
    layers = [(model.conv1, "weight"), (model.conv2, "weight"), (model.fc, "weight")]
    g = torch.Generator().manual_seed(4)
    scores = {(m, n): torch.rand(getattr(m, n).shape, generator=g) for m, n in layers}
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, importance_scores=scores, amount=0.8)
    expected_masks = {"conv1.weight": model.conv1.weight_mask.bool(), "conv2.weight": model.conv2.weight_mask.bool(),
                      "fc.weight": model.fc.weight_mask.bool()}
    x, _ = batch("cnn")
    expected = model(x)

    from_torch_prune(model)
    got = get_masks(model)
    assert got.keys() == expected_masks.keys()
    assert all(torch.equal(got[n], expected_masks[n]) for n in got)
    assert torch.equal(model(x), expected)
    assert_pruned_exactly_zero(model, got)
    total = sum(m.numel() for m in got.values())
    assert global_sparsity(model) == pytest.approx(round(0.8 * total) / total)


def test_torch_prune_conversion_errors() -> None:
    with pytest.raises(ValueError, match="no snip_lib masks"):
        to_torch_prune(make("mlp"))
    with pytest.raises(ValueError, match="no torch.nn.utils.prune"):
        from_torch_prune(make("mlp"))
    model = make("mlp")
    prune.random_unstructured(model.fc1, "weight", amount=0.5)
    with pytest.raises(ValueError, match="from_torch_prune"):
        apply_masks(model, {"fc2.weight": torch.ones(16, 16, dtype=torch.bool)})


def test_masked_model_state_dict_round_trips_through_a_buffer() -> None:
    model, masks = masked("cnn")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make("cnn", seed=9)
    apply_masks(fresh, {n: torch.ones_like(m) for n, m in masks.items()})
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert all(torch.equal(get_masks(fresh)[n], masks[n]) for n in masks)


def test_hooks_follow_replaced_and_swapped_parameters() -> None:
    # load_state_dict(assign=True) puts new Parameter objects in place
    model, masks = masked("mlp")
    model.load_state_dict(make("mlp", seed=4).state_dict() | {k: v for k, v in model.state_dict().items()
                                                             if k.endswith("_mask")}, assign=True)
    enforce_masks(model)
    train(model, OPTIMIZERS["sgd-momentum-wd"](model.parameters()), "mlp", steps=5)
    assert_pruned_exactly_zero(model, masks)
    # module.to() in swap mode keeps the Parameter objects but swaps their C++ tensors
    previous = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model, masks = masked("mlp")
        model.double()
    finally:
        torch.__future__.set_swap_module_params_on_conversion(previous)
    x, y = batch("mlp")
    nn.functional.cross_entropy(model(x.double()), y).backward()
    g = model.fc1.weight.grad
    assert torch.equal(g[~masks["fc1.weight"]], torch.zeros_like(g[~masks["fc1.weight"]]))
    assert grad_hook_count(model.fc1.weight) == 1


def test_pruned_nonzero_counts_only_pruned_entries_that_moved() -> None:
    model, masks = masked("mlp")
    assert masking.pruned_nonzero(model) == {}
    assert masking.pruned_nonzero(make("mlp")) == {}  # unmasked: nothing to count
    name = next(iter(masks))
    prefix, _, leaf = name.rpartition(".")
    weight = getattr(model.get_submodule(prefix), leaf)
    pruned = (~masks[name]).nonzero()[:3]
    kept = masks[name].nonzero()[0]
    with torch.no_grad():
        for idx in pruned:
            weight[tuple(idx)] = 0.5
        weight[tuple(kept)] = 7.0  # a kept weight may take any value
    assert masking.pruned_nonzero(model) == {name: 3}
    enforce_masks(model)
    assert masking.pruned_nonzero(model) == {}


# --------------------------------------------------------------------------------------------
# attention, torch.nn.utils.prune afterwards, weights changed behind the masks' back
# --------------------------------------------------------------------------------------------


class _Attention(nn.Module):
    """A transformer block + classifier: MultiheadAttention reads out_proj.weight without calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).mean(dim=1))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_attention_block_keeps_every_pruned_weight_at_zero(how: str) -> None:
    from snip_lib import snip

    torch.manual_seed(0)
    model = _Attention()
    x, y = torch.randn(8, 5, 16), torch.randint(0, 3, (8,))
    masks = snip.snip_masks(model, x, y, 0.9)
    assert "block.self_attn.in_proj_weight" in masks and "block.self_attn.out_proj.weight" in masks
    apply_masks(model, masks)
    clone = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    opt = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(clone(x), y).backward()
        opt.step()
    assert pruned_nonzero(clone) == {}          # out_proj too, whose own forward never runs
    remove_masks(clone)
    assert not any(type(h).__name__.endswith("Guard") for m in clone.modules() for h in m._forward_pre_hooks.values())


def test_torch_prune_after_apply_masks_is_named_not_half_done() -> None:
    model, masks = masked("mlp")
    first = next(n for n in masks if n.endswith("weight")).rpartition(".")[0]
    prune.l1_unstructured(model.get_submodule(first), "weight", amount=0.2)
    for call in (get_masks, pruned_nonzero, enforce_masks, remove_masks, sparsity_report):
        with pytest.raises(RuntimeError, match=r"pruned with torch.nn.utils.prune after snip_lib's masks.*to_torch_prune"):
            call(model)
    prune.remove(model.get_submodule(first), "weight")   # torch's remove also drops the mask buffer
    with pytest.raises(RuntimeError, match="mask buffer or the parameter of its masked 'weight' is gone"):
        get_masks(model)


def test_reports_warn_when_pruned_weights_changed_outside_the_optimizer() -> None:
    model, masks = masked("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert global_sparsity(model) == pytest.approx(global_sparsity(masks))   # no warning while exact
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight)        # "prune, then initialise": the zeros are gone
    with pytest.warns(UserWarning, match=r"pruned entries are not zero .*enforce_masks"):
        sparsity_report(model)
    enforce_masks(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparsity_report(model)


def test_a_state_dict_of_any_masked_model_loads_into_a_fresh_one_with_its_masks() -> None:
    from snip_lib.masking import load_masked_state_dict

    model, masks = masked("nested")
    state = model.state_dict()
    assert any(k.endswith("_mask") for k in state)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        make("nested").load_state_dict(state)               # what plain torch does with the masks
    fresh = load_masked_state_dict(make("nested"), state)
    assert all(torch.equal(get_masks(fresh)[n], masks[n]) for n in masks)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.values()))
    train(fresh, OPTIMIZERS["sgd-momentum-wd"](fresh.parameters()), "nested", steps=10)
    assert_pruned_exactly_zero(fresh, masks)                # the hooks came with the masks
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        load_masked_state_dict(make("nested"), [1, 2])


def test_a_failing_load_leaves_the_model_exactly_as_it_was() -> None:
    from snip_lib.masking import load_masked_state_dict

    source, _ = masked("nested")
    state = source.state_dict()
    wrong_shape = {**state, "head.bias": torch.zeros(5)}
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    not_a_tensor = {**state, "head.bias": [0.0] * 4}
    bad_mask = {**state, "cell.0.weight_mask": state["cell.0.weight_mask"] * 2}
    cases = [(wrong_shape, True, RuntimeError, r"size mismatch for 'head\.bias'.*\(5,\).*\(4,\)"),
             (wrong_shape, False, RuntimeError, "size mismatch"),     # shapes are checked even when not strict
             (missing, True, RuntimeError, r"Missing key\(s\).*'head\.bias'"),
             (not_a_tensor, True, RuntimeError, r"'head\.bias' must be a torch\.Tensor, got list"),
             (bad_mask, True, TypeError, "neither 0 nor 1")]
    for bad, strict, error, pattern in cases:
        for target in (make("nested", seed=5), masked("nested", density=0.6, seed=5)[0]):
            before = {k: v.clone() for k, v in target.state_dict().items()}
            hooks = {name: list(m._forward_pre_hooks.values()) for name, m in target.named_modules()}
            with pytest.raises(error, match=pattern):
                load_masked_state_dict(target, bad, strict=strict)
            after = target.state_dict()
            assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
            assert {name: list(m._forward_pre_hooks.values()) for name, m in target.named_modules()} == hooks


def test_a_torch_prune_state_dict_is_refused_with_the_way_to_convert_it() -> None:
    from snip_lib.masking import load_masked_state_dict

    source = make("mlp")
    prune.global_unstructured([(source.fc1, "weight"), (source.fc2, "weight")], prune.L1Unstructured, amount=0.8)
    state = source.state_dict()
    fresh = make("mlp", seed=7)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match=r"'fc1\.weight_orig', 'fc2\.weight_orig'.*from_torch_prune"):
        load_masked_state_dict(fresh, state, strict=False)
    assert not is_masked(fresh) and all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())
    # the way the message describes works
    for module in (fresh.fc1, fresh.fc2):
        prune.identity(module, "weight")
    fresh.load_state_dict(state)
    from_torch_prune(fresh)
    x, _ = batch("mlp")
    assert torch.equal(fresh(x), source(x))
    assert torch.equal(get_masks(fresh)["fc1.weight"], source.fc1.weight_mask.bool())


def test_apply_masks_masks_a_gradient_already_in_grad() -> None:
    model = make("mlp")
    masks = random_masks(model)
    x, y = batch("mlp")
    nn.functional.cross_entropy(model(x), y).backward()       # e.g. a scoring pass of one's own
    apply_masks(model, masks)
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(p.grad[~masks[name]], torch.zeros_like(p.grad[~masks[name]]))
            assert (p.grad[masks[name]] != 0).any()
    torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9).step()   # the step before any zero_grad
    assert_pruned_exactly_zero(model, masks)


def test_a_computed_weight_swapped_in_by_functional_call_leaves_the_hook_on_the_parameter() -> None:
    from torch.func import functional_call

    model, masks = masked("mlp")
    x, y = batch("mlp")
    params = dict(model.named_parameters())
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    fast = {n: p - 0.1 * g for (n, p), g in zip(params.items(), grads)}     # MAML-style non-leaf weights
    fast_loss = nn.functional.cross_entropy(functional_call(model, fast, (x,)), y)
    leaves = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    functional_call(model, leaves, (x,)).sum().backward()
    assert all(grad_hook_count(t) == 0 for t in leaves.values())          # no hook on the temporary tensors
    assert grad_hook_count(model.fc1.weight) == 1
    fast_loss.backward()
    g = model.fc1.weight.grad
    assert torch.equal(g[~masks["fc1.weight"]], torch.zeros_like(g[~masks["fc1.weight"]]))
    train(model, OPTIMIZERS["sgd-momentum-wd"](model.parameters()), "mlp", steps=5)
    assert_pruned_exactly_zero(model, masks)


def test_save_pruned_to_a_directory_names_it_and_writes_nothing(lenet300, tmp_path) -> None:
    model, _ = lenet300
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}.*is a directory.*model.pt"):
        save_pruned(model, tmp_path)
    assert list(tmp_path.iterdir()) == []
