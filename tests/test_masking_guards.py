"""Tests for snip_lib.masking from a review of its guards and converters: the gradient hooks survive
DataParallel replicas and functional_call with another model's Parameters; from_torch_prune,
apply_masks and load_masked_state_dict refuse bad input before changing anything, or leave the
model exactly as sparse as its masks."""

from __future__ import annotations

import copy
import gc
import importlib
import warnings
import weakref

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import prune

from snip_lib import masking
from snip_lib.masking import apply_masks, from_torch_prune, get_masks, is_masked, pruned_nonzero

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hooks(p: torch.Tensor) -> int:
    """How many of the masks' gradient hooks ``p`` carries."""
    return sum(isinstance(h, masking._GradMask) for h in (p._post_accumulate_grad_hooks or {}).values())


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# --------------------------------------------------------------------------------------------
# DataParallel replicas
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cpu_replicate(monkeypatch):
    """torch's own ``replicate`` (what ``DataParallel.forward`` calls on >= 2 GPUs), on the CPU:
    only the cross-device broadcast is replaced by an autograd alias of each tensor."""
    rep = importlib.import_module("torch.nn.parallel.replicate")
    monkeypatch.setattr(rep, "_get_device_index", lambda d, optional=False: 0)
    monkeypatch.setattr(rep, "_broadcast_coalesced_reshape", lambda tensors, devices, detach=False: [
        [t.detach() if detach else t.view_as(t) for t in tensors] for _ in devices])
    return rep.replicate


def test_dataparallel_replicas_leave_the_hooks_on_the_real_parameters(cpu_replicate) -> None:
    """A replica shares its module's hooks (so the guard) but has no Parameters of its own; its
    forward must not take the hook off the real Parameter, whose gradient DataParallel fills."""
    model = _mlp()
    masks = {"0.weight": torch.rand(16, 8, generator=torch.Generator().manual_seed(2)) < 0.3,
             "2.weight": torch.rand(3, 16, generator=torch.Generator().manual_seed(3)) < 0.5}
    apply_masks(model, masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, y = _data()
    for _ in range(3):
        opt.zero_grad()
        replicas = cpu_replicate(model, [0, 1])
        assert all(getattr(r[0], "_is_replica", False) for r in replicas)
        out = torch.cat([r(part) for r, part in zip(replicas, x.chunk(2))])
        nn.functional.cross_entropy(out, y).backward()
        for name, mask in masks.items():
            param = model.get_parameter(name)
            assert _hooks(param) == 1, name
            assert int(torch.count_nonzero(param.grad[~mask])) == 0, name
            assert int(torch.count_nonzero(param.grad[mask])) > 0, name      # it did get a gradient
        opt.step()
    assert pruned_nonzero(model) == {}
    model(x)                                                # the real module's forward: still one hook each
    assert all(_hooks(model.get_parameter(n)) == 1 for n in masks)


# --------------------------------------------------------------------------------------------
# functional_call with Parameters of another model
# --------------------------------------------------------------------------------------------


def test_functional_call_with_a_teachers_parameters_keeps_the_hook_on_the_models_own() -> None:
    """An EMA/teacher copy's Parameters swapped in by functional_call get hooked for that call;
    the model's own weight keeps its hook, so a backward of an earlier forward is still masked."""
    model = _mlp()
    mask = torch.rand(16, 8, generator=torch.Generator().manual_seed(2)) < 0.3
    apply_masks(model, {"0.weight": mask})
    teacher = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data()
    for _ in range(3):
        opt.zero_grad()
        student = model(x)
        with torch.no_grad():
            target = functional_call(model, dict(teacher.named_parameters()), (x,))
        assert _hooks(model[0].weight) == 1
        loss = nn.functional.cross_entropy(student, y) + nn.functional.mse_loss(student, target)
        loss.backward()
        assert int(torch.count_nonzero(model[0].weight.grad[~mask])) == 0
        opt.step()
    assert pruned_nonzero(model) == {}
    # a teacher Parameter that did take part in a backward has its gradient masked too
    teacher.zero_grad()
    functional_call(model, dict(teacher.named_parameters()), (x,)).sum().backward()
    assert int(torch.count_nonzero(teacher[0].weight.grad[~mask])) == 0
    assert _hooks(model[0].weight) == 1
    # fresh Parameters swapped in call after call are not kept alive by the guard (nor their hooks)
    refs = []
    for _ in range(5):
        fresh = {n: nn.Parameter(p.detach().clone()) for n, p in model.named_parameters()}
        functional_call(model, fresh, (x,))
        refs.append(weakref.ref(fresh["0.weight"]))
        del fresh
    model(x)
    assert all(ref() is None for ref in refs)
    assert _hooks(model[0].weight) == 1
    # and a masked model is freed by reference counting alone (no cycle through guard and hooks)
    gc.disable()
    try:
        other = apply_masks(_mlp(), {"0.weight": mask})
        other(x)
        functional_call(other, {n: nn.Parameter(p.detach().clone()) for n, p in other.named_parameters()}, (x,))
        other(x)
        weight, guard = weakref.ref(other[0].weight), weakref.ref(masking._find_guard(other[0])[1])
        del other
        assert weight() is None and guard() is None
    finally:
        gc.enable()


# --------------------------------------------------------------------------------------------
# from_torch_prune: all or nothing
# --------------------------------------------------------------------------------------------


class _Tied(nn.Module):
    """Weight tying: the head shares the embedding matrix (named only 'emb.weight')."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mid(self.emb(t))))


def _tied_pruned(seed: int = 0) -> _Tied:
    torch.manual_seed(seed)
    model = _Tied()
    prune.l1_unstructured(model.mid, "weight", 0.5)
    prune.l1_unstructured(model.head, "weight", 0.5)        # the tied head, the usual place for a mask
    return model


def test_from_torch_prune_converts_a_pruned_head_tied_to_an_embedding() -> None:
    """The head's mask goes to the Parameter's only name, 'emb.weight'; the embedding's use of it
    is pruned too, as torch's own prune.remove leaves it (and a warning says so)."""
    model = _tied_pruned()
    expected_masks = {"mid.weight": model.mid.weight_mask.bool(), "emb.weight": model.head.weight_mask.bool()}
    by_torch = _tied_pruned()
    prune.remove(by_torch.mid, "weight")
    prune.remove(by_torch.head, "weight")
    t = torch.arange(10)
    with pytest.warns(UserWarning, match=r"'head\.weight' shares its Parameter with 'emb\.weight'"):
        from_torch_prune(model)
    assert not prune.is_pruned(model)
    assert model.head.weight is model.emb.weight
    got = get_masks(model)
    assert got.keys() == expected_masks.keys() and all(torch.equal(got[k], expected_masks[k]) for k in got)
    assert torch.equal(model(t), by_torch(t))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(t), t).backward()
        opt.step()
    assert pruned_nonzero(model) == {}


def _torch_pruned_pair() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    prune.l1_unstructured(model[0], "weight", 0.5)
    prune.l1_unstructured(model[1], "weight", 0.5)
    return model


def test_from_torch_prune_refusing_a_mask_leaves_the_torch_pruning_in_place() -> None:
    model = _torch_pruned_pair()
    with torch.no_grad():
        model[1].weight_mask[0, 0] = 0.5                    # an edited mask: refused
    before = _state(model)
    x = torch.randn(3, 4)
    expected = model(x)
    with pytest.raises(TypeError, match=r"'1\.weight'.*0\.5"):
        from_torch_prune(model)
    assert prune.is_pruned(model[0]) and prune.is_pruned(model[1])
    assert _same_state(model, before)                       # weight_orig and weight_mask of both
    assert not is_masked(model)
    assert torch.equal(model(x), expected)


def test_from_torch_prune_refuses_one_parameter_pruned_twice_with_different_masks() -> None:
    torch.manual_seed(0)
    model = _Tied()
    prune.random_unstructured(model.emb, "weight", 0.5)
    prune.l1_unstructured(model.head, "weight", 0.3)        # the same Parameter, another mask
    before = _state(model)
    with pytest.raises(ValueError, match=r"'emb\.weight' and 'head\.weight'.*same Parameter.*different masks"):
        from_torch_prune(model)
    assert prune.is_pruned(model.emb) and prune.is_pruned(model.head) and _same_state(model, before)
    # the same mask in both places converts, without a warning: every use was pruned
    torch.manual_seed(0)
    model = _Tied()
    mask = torch.rand(10, 4, generator=torch.Generator().manual_seed(4)) < 0.5
    prune.custom_from_mask(model.emb, "weight", mask)
    prune.custom_from_mask(model.head, "weight", mask)
    t = torch.arange(10)
    expected = model(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_torch_prune(model)
    assert torch.equal(get_masks(model)["emb.weight"], mask) and torch.equal(model(t), expected)


def test_from_torch_prune_refuses_a_foreign_mask_attribute_before_removing_anything() -> None:
    torch.manual_seed(0)
    model = _Tied()
    model.emb.register_buffer("weight_mask", torch.ones(10, 4))     # not torch's and not ours
    prune.l1_unstructured(model.mid, "weight", 0.5)
    prune.l1_unstructured(model.head, "weight", 0.5)                 # its mask would go to 'emb.weight'
    before = _state(model)
    with pytest.raises(ValueError, match=r"'emb\.weight'.*'weight_mask'"):
        from_torch_prune(model)
    assert prune.is_pruned(model.mid) and prune.is_pruned(model.head) and _same_state(model, before)


# --------------------------------------------------------------------------------------------
# masks that are not dense tensors with data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "meta"])
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_a_sparse_or_meta_mask_is_refused_before_anything_changes(kind: str) -> None:
    model = _mlp()
    good = torch.rand(16, 8, generator=torch.Generator().manual_seed(2)) < 0.5
    other = torch.rand(3, 16, generator=torch.Generator().manual_seed(3)) < 0.5
    for dtype in (torch.bool, torch.float32):
        bad = other.to(dtype)
        bad = {"sparse_coo": bad.to_sparse, "sparse_csr": bad.to_sparse_csr, "meta": lambda: bad.to("meta")}[kind]()
        before = _state(model)
        with pytest.raises((TypeError, ValueError), match=r"mask for '2\.weight'.*(sparse|meta)"):
            apply_masks(model, {"0.weight": good, "2.weight": bad})
        assert _same_state(model, before) and not is_masked(model)
        with pytest.raises((TypeError, ValueError), match=r"mask for '2\.weight'.*(sparse|meta)"):
            masking.sparsity_report({"2.weight": bad})


# --------------------------------------------------------------------------------------------
# load_masked_state_dict, empty masks
# --------------------------------------------------------------------------------------------


def test_load_masked_state_dict_leaves_the_pruned_weights_at_zero() -> None:
    """Weights saved non-zero where the saved mask prunes (re-initialised after masking, or masks
    and weights from different runs) are zeroed: the model is as sparse as its masks."""
    source = _mlp()
    mask = torch.rand(16, 8, generator=torch.Generator().manual_seed(2)) < 0.3
    apply_masks(source, {"0.weight": mask})
    dense = _mlp(seed=5).state_dict()
    mixed = {**dense, "0.weight_mask": source.state_dict()["0.weight_mask"]}
    model = masking.load_masked_state_dict(_mlp(seed=9), mixed)
    assert pruned_nonzero(model) == {}
    assert torch.equal(model[0].weight[mask], dense["0.weight"][mask])       # kept entries as loaded
    assert torch.equal(model[2].weight, dense["2.weight"])                   # unmasked ones untouched
    assert torch.equal(get_masks(model)["0.weight"], mask)


def test_apply_masks_with_no_masks_is_refused() -> None:
    model = _mlp()
    before = _state(model)
    with pytest.raises(ValueError, match="masks is empty"):
        apply_masks(model, {})
    assert _same_state(model, before) and not is_masked(model)
