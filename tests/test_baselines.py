"""Tests for snip_lib.baselines: random, magnitude and Optimal Brain Damage saliencies."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import baselines
from snip_lib.snip import prunable_parameters


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 3))


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def kept(masks):
    return sum(int(m.sum()) for m in masks.values())


def total(masks):
    return sum(m.numel() for m in masks.values())


# ----------------------------------------------------------------------------- counts


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.987])
@pytest.mark.parametrize("make", ["random", "magnitude", "magnitude-layer"])
def test_exact_kept_count(sparsity, make):
    model = small_mlp()
    if make == "magnitude-layer" and sparsity > 0.95:
        sparsity = 0.95  # 0.987 would empty the 24-entry last layer (tested below)
    if make == "random":
        masks = baselines.random_masks(model, sparsity, seed=1)
    elif make == "magnitude":
        masks = baselines.magnitude_masks(model, sparsity)
    else:
        masks = baselines.magnitude_masks(model, sparsity, scope="layer")
    m = total(masks)
    assert m == 12 * 20 + 20 * 8 + 8 * 3
    if make == "magnitude-layer":
        expected = sum(round((1 - sparsity) * t.numel()) for t in masks.values())
    else:
        expected = round((1 - sparsity) * m)
    assert kept(masks) == expected
    assert all(mask.dtype == torch.bool for mask in masks.values())


def test_masks_cover_prunable_parameters_with_their_shapes():
    model = small_mlp()
    params = prunable_parameters(model)
    for masks in (baselines.random_masks(model, 0.5, seed=0), baselines.magnitude_masks(model, 0.5)):
        assert list(masks) == list(params)
        assert all(masks[n].shape == p.shape for n, p in params.items())


def test_include_bias_adds_bias_masks():
    model = small_mlp()
    masks = baselines.magnitude_masks(model, 0.5, include_bias=True)
    assert "0.bias" in masks and total(masks) == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- magnitude


def test_magnitude_keeps_the_largest_weights_globally():
    model = small_mlp()
    masks = baselines.magnitude_masks(model, 0.8)
    weights = prunable_parameters(model)
    kept_abs = torch.cat([weights[n].detach().abs()[masks[n]] for n in masks])
    dropped_abs = torch.cat([weights[n].detach().abs()[~masks[n]] for n in masks])
    assert kept_abs.min() >= dropped_abs.max()


def test_magnitude_layer_scope_gives_each_layer_the_same_density():
    model = small_mlp()
    with torch.no_grad():  # make the last layer much larger, so global selection favours it
        model[4].weight.mul_(100)
    layer = baselines.magnitude_masks(model, 0.75, scope="layer")
    glob = baselines.magnitude_masks(model, 0.75)
    for name, mask in layer.items():
        assert int(mask.sum()) == round(0.25 * mask.numel())
        w = dict(model.named_parameters())[name].detach().abs()
        assert w[mask].min() >= w[~mask].max()
    assert bool(glob["4.weight"].all())  # the scaled layer keeps every weight globally
    # so the other layers share what is left and fall below the uniform density 0.25
    assert int(glob["0.weight"].sum() + glob["2.weight"].sum()) == round(0.25 * 424) - 24


def test_magnitude_layer_scope_refuses_to_empty_a_layer():
    with pytest.raises(ValueError, match="4.weight"):
        baselines.magnitude_masks(small_mlp(), 0.99, scope="layer")


class _WithEmptyLayer(nn.Module):
    """A zero-width Linear (``e``) beside two ordinary ones."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(10, 8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: "Initializing zero-element tensors is a no-op"
            self.e = nn.Linear(10, 0)
        self.b = nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) + self.e(x).sum()


@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_magnitude_layer_scope_gives_an_empty_layer_an_empty_mask(sparsity):
    model = _WithEmptyLayer()
    masks = baselines.magnitude_masks(model, sparsity, scope="layer")
    assert list(masks) == ["a.weight", "e.weight", "b.weight"]
    assert masks["e.weight"].shape == (0, 10) and masks["e.weight"].dtype == torch.bool
    assert [int(masks[n].sum()) for n in ("a.weight", "b.weight")] == [round((1 - sparsity) * 80),
                                                                       round((1 - sparsity) * 24)]
    with pytest.raises(ValueError, match="leaves no connection in 'b.weight'"):  # a real layer still may not go
        baselines.magnitude_masks(model, 0.99, scope="layer")
    with pytest.raises(ValueError, match=r"the prunable tensors \['weight'\] have no entries"):
        baselines.magnitude_masks(model.e, 0.5, scope="layer")  # nothing at all to prune is still refused


def test_magnitude_scores_are_absolute_copies():
    model = small_mlp()
    scores = baselines.magnitude_scores(model)
    scores["0.weight"].zero_()
    assert model[0].weight.abs().sum() > 0
    torch.testing.assert_close(scores["2.weight"], model[2].weight.detach().abs())


# ----------------------------------------------------------------------------- random


def test_random_is_seed_deterministic_and_seed_dependent():
    model = small_mlp()
    a = baselines.random_masks(model, 0.7, seed=3)
    b = baselines.random_masks(model, 0.7, seed=3)
    c = baselines.random_masks(model, 0.7, seed=4)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_random_ignores_weight_values_and_leaves_global_rng_alone():
    model, other = small_mlp(0), small_mlp(1)
    state = torch.get_rng_state()
    a = baselines.random_masks(model, 0.6, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    b = baselines.random_masks(other, 0.6, seed=5)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_random_density_is_roughly_uniform_across_layers():
    model = nn.Sequential(nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10))
    masks = baselines.random_masks(model, 0.9, seed=0)
    m = total(masks)
    for name, mask in masks.items():
        density = mask.float().mean().item()
        # binomial standard deviation of a layer's density, times 5
        tol = 5 * (0.1 * 0.9 / mask.numel()) ** 0.5
        assert abs(density - 0.1) < tol, (name, density)
    assert kept(masks) == round(0.1 * m)


def test_random_with_seed_none_uses_global_rng():
    model = small_mlp()
    torch.manual_seed(11)
    a = baselines.random_masks(model, 0.5)
    torch.manual_seed(11)
    b = baselines.random_masks(model, 0.5)
    assert all(torch.equal(a[n], b[n]) for n in a)


# ----------------------------------------------------------------------------- OBD


def test_obd_on_a_quadratic_loss_equals_the_analytic_value():
    # L(w) = mean_i (x_i·w − y_i)²  ⇒  H = (2/n) XᵀX,  H_jj = (2/n) Σ_i x_ij²
    torch.manual_seed(0)
    n, d = 40, 6
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.randn(n, 1, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    scores = baselines.obd_scores(model, x, y, loss_fn=F.mse_loss)
    h_diag = 2.0 / n * x.square().sum(dim=0)
    expected = 0.5 * h_diag * model.weight.detach()[0].square()
    torch.testing.assert_close(scores["weight"][0], expected)


def test_exact_hessian_diagonal_matches_full_hessian():
    model = tiny_net().double()
    torch.manual_seed(1)
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    diag = baselines.hessian_diagonal(model, x, y, include_bias=True, chunk_size=7)
    names = list(diag)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(*tensors):
        out = torch.func.functional_call(model, dict(zip(names, tensors)), (x,))
        return F.cross_entropy(out, y)

    full = torch.autograd.functional.hessian(loss, tuple(params[n] for n in names))
    for i, n in enumerate(names):
        block = full[i][i].reshape(params[n].numel(), params[n].numel())
        torch.testing.assert_close(diag[n].reshape(-1), torch.diagonal(block))


def test_gauss_newton_equals_exact_for_a_linear_softmax_classifier():
    # Logits linear in the weights: the term Gauss-Newton drops is zero, so both agree.
    torch.manual_seed(2)
    model = nn.Linear(5, 4).double()
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (30,))
    exact = baselines.hessian_diagonal(model, x, y, include_bias=True)
    gn = baselines.hessian_diagonal(model, x, y, include_bias=True, method="gauss-newton", chunk_size=8)
    for n in exact:
        torch.testing.assert_close(gn[n], exact[n])


def test_gauss_newton_equals_exact_diagonal_for_a_relu_network():
    # The output is piecewise linear in every single weight, so the term Gauss-Newton drops
    # has a zero diagonal (chapter 1 relies on this for the LeNets).
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    exact = baselines.hessian_diagonal(model, x, y)
    gn = baselines.hessian_diagonal(model, x, y, method="gauss-newton")
    for n in exact:
        torch.testing.assert_close(gn[n], exact[n])


def test_gauss_newton_is_non_negative_and_differs_from_exact_for_a_hidden_layer():
    model = tiny_net().double()
    torch.manual_seed(3)
    x = torch.randn(25, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (25,))
    gn = baselines.hessian_diagonal(model, x, y, method="gauss-newton")
    exact = baselines.hessian_diagonal(model, x, y)
    assert all((g >= 0).all() for g in gn.values())
    assert not torch.allclose(gn["0.weight"], exact["0.weight"])


def test_obd_leaves_the_model_untouched():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    baselines.obd_scores(model, x, y)
    baselines.obd_scores(model, x, y, method="gauss-newton")
    assert model.training and model[1].training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_obd_masks_keep_the_highest_saliency():
    model = small_mlp()
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    scores = baselines.obd_scores(model, x, y)
    masks = baselines.obd_masks(model, x, y, 0.9)
    assert kept(masks) == round(0.1 * total(masks))
    kept_s = torch.cat([scores[n][masks[n]] for n in masks])
    dropped_s = torch.cat([scores[n][~masks[n]] for n in masks])
    assert kept_s.min() >= dropped_s.max()


@pytest.mark.parametrize("fn", [baselines.hessian_diagonal, baselines.obd_scores,
                                lambda m, x, y, **kw: baselines.obd_masks(m, x, y, 0.5, **kw)])
@pytest.mark.parametrize("method", ["exact", "gauss-newton"])
def test_obd_refuses_mismatched_dtypes_and_data_parallel_clearly(fn, method):
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with pytest.raises(ValueError, match=r"^the inputs are torch.float32 but the model's weights are torch.float64; "
                                         r"convert one of them \(e.g. inputs.to\(torch.float64\)\)$"):
        fn(tiny_net().double(), x, y, method=method)
    with pytest.raises(TypeError, match=r"^got a DataParallel; compute OBD on the model inside it"):
        fn(nn.DataParallel(tiny_net()), x, y, method=method)


def test_obd_still_runs_in_inference_mode():
    """torch.func computes the same diagonal there, so inference mode is not refused (unlike the pruners)."""
    model = tiny_net()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    expected = baselines.obd_scores(model, x, y)
    with torch.inference_mode():
        got = baselines.obd_scores(model, x, y)
    assert all(torch.equal(expected[n], got[n]) for n in expected)


def test_exact_hessian_refuses_large_models():
    model = small_mlp()
    x, y = torch.randn(4, 12), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match="max_entries"):
        baselines.hessian_diagonal(model, x, y, max_entries=100)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_bad_sparsity_raises_value_error(sparsity):
    model = small_mlp()
    with pytest.raises(ValueError, match="sparsity"):
        baselines.random_masks(model, sparsity, seed=0)
    with pytest.raises(ValueError, match="sparsity"):
        baselines.magnitude_masks(model, sparsity)
    with pytest.raises(ValueError, match="sparsity"):
        baselines.obd_masks(model, torch.randn(2, 12), torch.tensor([0, 1]), sparsity)


@pytest.mark.parametrize("sparsity", ["0.9", True, None])
def test_non_numeric_sparsity_raises_type_error(sparsity):
    with pytest.raises(TypeError, match="sparsity"):
        baselines.magnitude_masks(small_mlp(), sparsity)


def test_other_bad_arguments():
    model = small_mlp()
    x, y = torch.randn(4, 12), torch.randint(0, 3, (4,))
    with pytest.raises(ValueError, match="scope"):
        baselines.magnitude_masks(model, 0.5, scope="per-layer")
    with pytest.raises(ValueError, match="seed"):
        baselines.random_masks(model, 0.5, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        baselines.random_masks(model, 0.5, seed=1.5)
    with pytest.raises(ValueError, match="method"):
        baselines.obd_scores(model, x, y, method="fisher")
    with pytest.raises(ValueError, match="gauss-newton"):
        baselines.obd_scores(model, x, y, loss_fn=F.cross_entropy, method="gauss-newton")
    with pytest.raises(ValueError, match="match"):
        baselines.obd_scores(model, x, y[:3])
    with pytest.raises(TypeError, match="inputs"):
        baselines.obd_scores(model, [x], y)
    with pytest.raises(ValueError, match="chunk_size"):
        baselines.obd_scores(model, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="no prunable"):
        baselines.magnitude_masks(nn.Sequential(nn.ReLU()), 0.5)
