"""Tests for snip_lib.sparse: sparse export gives the masked model's outputs, is inference-only,
counts storage correctly and refuses bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from snip_lib import masking, models, snip, sparse


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pruned(arch: str, sparsity: float, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = models.build(arch)
    shape = models.input_shape(arch)
    x, y = torch.randn(32, *shape), torch.randint(0, 10, (32,))
    return masking.apply_masks(model, snip.snip_masks(model, x, y, sparsity)).eval()


def random_masks(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in snip.prunable_parameters(model).items()}


def assert_same_outputs(reference: nn.Module, exported: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        want, got = reference(x), exported(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("layout", sparse.LAYOUTS)
def test_lenet300_at_98_percent_gives_the_masked_models_outputs(layout):
    model = pruned("lenet300", 0.98)
    exported = sparse.to_sparse(model, layout)
    assert all(isinstance(getattr(exported, n), sparse.SparseLinear) for n in ("fc1", "fc2", "fc3"))
    for n in (1, 256):
        assert_same_outputs(model, exported, torch.randn(n, 1, 28, 28))


@pytest.mark.parametrize("layout", sparse.LAYOUTS)
@pytest.mark.parametrize("conv", sparse.CONV_MODES)
def test_lenet5_at_99_percent_gives_the_masked_models_outputs(layout, conv):
    model = pruned("lenet5", 0.99)
    exported = sparse.to_sparse(model, layout, conv=conv)
    conv_type = sparse.SparseConv2d if conv == "sparse" else nn.Conv2d
    assert isinstance(exported.conv2, conv_type) and isinstance(exported.fc3, sparse.SparseLinear)
    for n in (1, 16):
        assert_same_outputs(model, exported, torch.randn(n, 1, 28, 28))


def test_conv_with_stride_padding_dilation_and_no_bias():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 5, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), bias=False),
                          nn.Flatten(), nn.LazyLinear(7))
    model(torch.randn(1, 3, 17, 15))  # materialise the lazy layer
    masking.apply_masks(model, random_masks(model, 0.3))
    model.eval()
    exported = sparse.to_sparse(model, conv="sparse")
    assert isinstance(exported[0], sparse.SparseConv2d) and isinstance(exported[2], sparse.SparseConv2d)
    assert_same_outputs(model, exported, torch.randn(4, 3, 17, 15))
    # unbatched (C, H, W) input, as nn.Conv2d accepts
    with torch.no_grad():
        torch.testing.assert_close(exported[0](torch.ones(3, 9, 9)), model[0](torch.ones(3, 9, 9)),
                                   rtol=1e-4, atol=1e-5)


def test_linear_accepts_extra_leading_dimensions_like_nn_linear():
    model = pruned("lstm-s", 0.9)  # recurrent models are built from nn.Linear
    exported = sparse.to_sparse(model)
    assert any(isinstance(m, sparse.SparseLinear) for m in exported.modules())
    assert_same_outputs(model, exported, torch.randn(3, 28, 28))
    layer = sparse.SparseLinear.from_linear(nn.Linear(6, 4))
    assert layer(torch.randn(2, 5, 6)).shape == (2, 5, 4)


def test_weights_that_drifted_from_the_mask_are_exported_as_zero():
    model = pruned("lenet300", 0.9)
    pruned_entry = (~masking.get_masks(model)["fc1.weight"]).nonzero()[0]
    with torch.no_grad():
        model.fc1.weight[tuple(pruned_entry)] = 5.0  # e.g. an optimizer step without enforce_masks
    exported = sparse.to_sparse(model)
    masking.enforce_masks(model)
    assert_same_outputs(model, exported, torch.randn(8, 1, 28, 28))


def test_what_stays_dense_is_reported():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 8), nn.Linear(8, 2))
    masks = random_masks(model, 0.1)
    masks["3.weight"] = torch.ones(2, 8, dtype=torch.bool)  # a layer left dense by SNIP
    masking.apply_masks(model, masks)
    exported = sparse.to_sparse(model, conv="sparse", min_sparsity=0.5)
    assert exported.snip_export["0.weight"].startswith("dense (groups=2")
    assert exported.snip_export["2.weight"] == "csr"
    assert exported.snip_export["3.weight"].startswith("dense (sparsity 0.000")
    assert isinstance(exported[0], nn.Conv2d) and isinstance(exported[3], nn.Linear)
    assert_same_outputs(model.eval(), exported, torch.randn(5, 4, 4, 4))


def test_min_sparsity_is_inclusive():
    """'At least min_sparsity': a layer exactly at the bound is exported sparse; with the default 0 every
    masked Linear is, even one whose mask keeps everything."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))
    half = torch.zeros(4, 8, dtype=torch.bool)
    half[:, :4] = True                                            # exactly 50 % pruned
    masking.apply_masks(model, {"0.weight": half, "1.weight": torch.ones(2, 4, dtype=torch.bool)})
    at_bound = sparse.to_sparse(model, min_sparsity=0.5)
    assert at_bound.snip_export["0.weight"] == "csr" and at_bound.snip_export["1.weight"].startswith("dense")
    default = sparse.to_sparse(model)
    assert default.snip_export["0.weight"] == "csr" and default.snip_export["1.weight"] == "csr"
    assert_same_outputs(model.eval(), default, torch.randn(3, 8))


def test_a_masked_linear_model_itself_can_be_exported():
    model = nn.Linear(10, 3)
    masking.apply_masks(model, random_masks(model, 0.2))
    exported = sparse.to_sparse(model)
    assert isinstance(exported, sparse.SparseLinear)
    assert_same_outputs(model, exported, torch.randn(4, 10))


# --------------------------------------------------------------------------- inference only


def test_a_masked_bias_is_reported_under_its_own_layer_type():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))
    masks = {n: torch.rand(p.shape) < 0.3 for n, p in model.named_parameters()}   # biases too
    masking.apply_masks(model, masks)
    report = sparse.to_sparse(model).snip_export
    assert report["0.weight"] == "csr" and report["0.bias"] == "dense (Linear.bias has no sparse form here)"
    root = nn.Linear(10, 3)
    masking.apply_masks(root, {n: torch.rand(p.shape) < 0.3 for n, p in root.named_parameters()})
    exported = sparse.to_sparse(root)
    assert isinstance(exported, sparse.SparseLinear)
    assert exported.snip_export == {"weight": "csr", "bias": "dense (Linear.bias has no sparse form here)"}
    assert_same_outputs(root, exported, torch.randn(4, 10))


def test_export_is_inference_only_and_leaves_the_model_alone():
    model = pruned("lenet5", 0.99).train()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    exported = sparse.to_sparse(model, conv="sparse")
    assert not exported.training and not any(m.training for m in exported.modules())
    assert not any(p.requires_grad for p in exported.parameters())
    assert not any(isinstance(t, nn.Parameter) for m in exported.modules()
                   if isinstance(m, sparse.SparseLinear) for t in m.buffers())
    assert not masking.is_masked(exported)
    with pytest.raises(RuntimeError, match="inference-only"):
        exported.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        exported.fc3.train(True)
    exported.fc3.eval()  # allowed
    # the source model is untouched: still masked, still training, same tensors
    assert model.training and masking.is_masked(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_an_export_can_be_deep_copied_and_the_copy_is_independent(layout):
    """torch cannot deep-copy a CSR tensor; the sparse modules clone their buffers instead."""
    exported = sparse.to_sparse(pruned("lenet5", 0.99), layout, conv="sparse")
    twin = copy.deepcopy(exported)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(twin(x), exported(x))
    for name, module in exported.named_modules():
        if isinstance(module, (sparse.SparseLinear, sparse.SparseConv2d)):
            copied = twin.get_submodule(name)
            assert type(copied) is type(module) and copied.weight.layout == module.weight.layout
            assert copied.weight is not module.weight and copied.bias is not module.bias
            assert vars(copied).keys() == vars(module).keys()
    with torch.no_grad():  # the copy shares no memory with the original
        stored = (lambda w: w.values() if w.layout == torch.sparse_csr else w._values())
        stored(twin.fc3.weight).zero_()
        assert torch.count_nonzero(stored(exported.fc3.weight)) > 0
        assert not torch.equal(twin(x), exported(x))
    assert str(twin) == str(exported)
    with pytest.raises(RuntimeError, match="inference-only"):
        twin.train()


def test_a_refused_train_call_leaves_an_export_that_refuses_to_run_until_eval():
    """Module.train switches a BatchNorm placed before the first sparse layer before that layer
    refuses; the export must not then run on batch statistics (and update its running ones)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    masking.apply_masks(model, random_masks(model, 0.5)).eval()
    exported = sparse.to_sparse(model)
    x = torch.randn(8, 6)
    with torch.no_grad():
        want = exported(x)
    with pytest.raises(RuntimeError, match="inference-only"):
        exported.train()
    assert exported[0].training  # what Module.train did before the sparse layer refused
    stats = exported[0].running_mean.clone()
    with pytest.raises(RuntimeError, match=r"call \.eval\(\) on it"), torch.no_grad():
        exported(x)
    assert torch.equal(exported[0].running_mean, stats)
    parent = nn.Sequential(exported)
    with pytest.raises(RuntimeError, match="inference-only"):
        parent.train()  # through a parent, too
    with pytest.raises(RuntimeError, match=r"call \.eval\(\) on it"), torch.no_grad():
        parent(x)
    with torch.no_grad():
        assert torch.equal(exported.eval()(x), want)


# --------------------------------------------------------------------------- storage


def test_storage_bytes_on_a_hand_made_layer():
    layer = nn.Linear(4, 3)  # 12 weights + 3 biases, float32
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, 1] = mask[2, 3] = True
    masking.apply_masks(layer, {"weight": mask})
    dense = masking.remove_masks(copy.deepcopy(layer))
    assert sparse.storage_bytes(dense) == 12 * 4 + 3 * 4                  # 60
    assert sparse.storage_bytes(layer) == 60 + 12 * 4                     # + the float mask buffer
    csr = sparse.to_sparse(layer, "csr")
    # 2 values (4 B) + 2 column indices (8 B) + 4 row pointers (8 B) + 3 biases (4 B)
    assert sparse.storage_bytes(csr) == 2 * 4 + 2 * 8 + 4 * 8 + 3 * 4      # 68
    assert sparse.storage_bytes(sparse.to_sparse(layer, "csr", index_dtype=torch.int32)) == 8 + 8 + 16 + 12
    # COO: 2 values + a 2 x 2 int64 index matrix + biases
    assert sparse.storage_bytes(sparse.to_sparse(layer, "coo")) == 2 * 4 + 2 * 2 * 8 + 3 * 4  # 52
    assert sparse.storage_bytes(csr, by_tensor=True) == {"weight": 56, "bias": 12}
    rows = sparse.export_report(csr)
    assert rows == [{"weight": "weight", "kind": "csr", "shape": (3, 4), "non_zeros": 2,
                     "density": 2 / 12, "bytes": 56}]


def test_storage_shrinks_for_the_98_percent_lenet300():
    model = pruned("lenet300", 0.98)
    dense = masking.remove_masks(copy.deepcopy(model))
    kept = snip.kept_count(masking.get_masks(model))
    exported = sparse.to_sparse(model)
    biases = sum(m.bias.numel() for m in dense.modules() if isinstance(m, nn.Linear)) * 4
    row_pointers = (300 + 1 + 100 + 1 + 10 + 1) * 8
    assert sparse.storage_bytes(exported) == kept * (4 + 8) + row_pointers + biases
    assert sparse.storage_bytes(exported) < sparse.storage_bytes(dense) / 10


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_a_clear_message():
    model = pruned("lenet300", 0.9)
    with pytest.raises(ValueError, match="no snip_lib masks.*apply_masks"):
        sparse.to_sparse(models.build("lenet300"))
    torch_pruned = models.build("lenet300")
    prune.random_unstructured(torch_pruned.fc1, "weight", amount=0.5)
    with pytest.raises(ValueError, match="from_torch_prune"):
        sparse.to_sparse(torch_pruned)
    with pytest.raises(ValueError, match="unknown layout 'bsr'; allowed: csr, coo"):
        sparse.to_sparse(model, "bsr")
    with pytest.raises(ValueError, match="unknown conv mode"):
        sparse.to_sparse(model, conv="fast")
    with pytest.raises(ValueError, match="min_sparsity"):
        sparse.to_sparse(model, min_sparsity=1.5)
    with pytest.raises(ValueError, match="int32 needs layout='csr'"):
        sparse.to_sparse(model, "coo", index_dtype=torch.int32)
    with pytest.raises(ValueError, match="index_dtype"):
        sparse.to_sparse(model, index_dtype=torch.float32)
    with pytest.raises(TypeError, match="nn.Module"):
        sparse.to_sparse({"fc1.weight": torch.ones(2)})
    with pytest.raises(TypeError, match="nn.Module"):
        sparse.storage_bytes("model")
    with pytest.raises(ValueError, match="cannot lower"):
        sparse.SparseConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match="last dimension 784"):
        sparse.to_sparse(model).fc1(torch.randn(2, 10))


class _Blocks(nn.Module):
    """Attention and transformer layers whose Linear children are read without being called."""

    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.att(x, x, x)
        return self.head(self.dec(self.enc(a), x)[:, -1])


@pytest.mark.parametrize("layout", sparse.LAYOUTS)
def test_linear_layers_read_directly_by_their_parent_stay_dense_and_say_why(layout):
    torch.manual_seed(0)
    model = _Blocks()
    x, y = torch.randn(4, 5, 8), torch.randint(0, 3, (4,))
    masking.apply_masks(model, snip.snip_masks(model, x, y, 0.8))
    model.eval()
    exported = sparse.to_sparse(model, layout)
    assert_same_outputs(model, exported, x)
    decisions = exported.snip_export
    for name, parent in [("att.out_proj", "MultiheadAttention"), ("enc.self_attn.out_proj", "MultiheadAttention"),
                         ("enc.linear1", "TransformerEncoderLayer"), ("enc.linear2", "TransformerEncoderLayer")]:
        assert type(exported.get_submodule(name)) is not sparse.SparseLinear
        child = name.rpartition(".")[2]
        assert decisions[f"{name}.weight"] == f"dense ({parent} reads {child}.weight directly, not through its forward)"
    # the decoder layer calls its feed-forward layers, and the head is a plain Linear: those go sparse
    for name in ("dec.linear1", "dec.linear2", "head"):
        assert isinstance(exported.get_submodule(name), sparse.SparseLinear) and decisions[f"{name}.weight"] == layout


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_for_csr_on_the_cpu_and_exports_as_coo(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    masking.apply_masks(model, random_masks(model, 0.2))
    model = model.to(dtype).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"layout='csr' cannot run '0.weight' \({dtype}\).*layout='coo'.*model.float\(\)"):
        sparse.to_sparse(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()) and masking.is_masked(model)
    exported = sparse.to_sparse(model, "coo")
    x = torch.randn(4, 10).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(exported(x).float(), model(x).float(), rtol=2e-2, atol=2e-2)
    as_float = sparse.to_sparse(copy.deepcopy(model).float())               # the other way out
    with torch.no_grad():
        torch.testing.assert_close(as_float(x.float()), model.float()(x.float()), rtol=1e-5, atol=1e-5)


def test_a_csr_export_turned_half_precision_afterwards_gets_the_clear_error():
    exported = sparse.to_sparse(pruned("lenet5", 0.99), "csr", conv="sparse").half()
    with pytest.raises(ValueError, match=r"SparseConv2d: a CSR weight in torch.float16 cannot be multiplied on the CPU"):
        exported(torch.randn(2, 1, 28, 28).half())
    lenet300 = sparse.to_sparse(pruned("lenet300", 0.98), "csr").to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"SparseLinear: a CSR weight in torch.bfloat16 .* layout='coo'"):
        lenet300(torch.randn(2, 1, 28, 28).to(torch.bfloat16))
