"""Tests for snip_lib.analysis: exact removal effects, signed first-order scores, rank agreement."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import analysis


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 3)
    )


def batch(n: int = 8, shape=(12,), classes: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def naive_removal(model: nn.Module, x, y, name: str, loss_fn=F.cross_entropy) -> torch.Tensor:
    """The definition, literally: copy the float64 model, zero one entry, evaluate, repeat."""
    net = copy.deepcopy(model).double().eval()
    x = x.double()
    with torch.no_grad():
        full = loss_fn(net(x), y)
        p = dict(net.named_parameters())[name]
        out = torch.empty(p.numel(), dtype=torch.float64)
        for j in range(p.numel()):
            saved = p.view(-1)[j].clone()
            p.view(-1)[j] = 0
            out[j] = full - loss_fn(net(x), y)
            p.view(-1)[j] = saved
    return out.reshape(p.shape)


# ----------------------------------------------------------------------------- removal_effects

def test_removal_effects_equal_naive_loop_for_every_linear_weight():
    model = tiny_mlp()
    x, y = batch()
    effects = analysis.removal_effects(model, x, y, chunk_size=4)  # several chunks per layer
    assert list(effects) == ["1.weight", "3.weight", "5.weight"]
    for name, values in effects.items():
        expected = naive_removal(model, x, y, name)
        assert values.shape == expected.shape
        torch.testing.assert_close(values, expected, rtol=0, atol=1e-13)
    # the effects are not all zero: the test would catch a function returning zeros
    assert all(v.abs().max() > 1e-4 for v in effects.values())


def test_removal_effects_fallback_path_conv_bias_and_batchnorm():
    model = tiny_cnn()
    model[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial eval-mode BN statistics
    model[1].running_var.uniform_(0.5, 2.0)
    x, y = batch(6, shape=(1, 4, 4))
    names = ["0.weight", "0.bias", "4.bias"]
    effects = analysis.removal_effects(model, x, y, names=names, chunk_size=5)
    for name in names:
        torch.testing.assert_close(effects[name], naive_removal(model, x, y, name), rtol=0, atol=1e-13)


def test_removal_effects_shared_weight_is_removed_everywhere():
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.Tanh(), layer, nn.Tanh(), nn.Linear(4, 3))  # tied weight used twice
    x, y = batch(5, shape=(4,))
    effects = analysis.removal_effects(model, x, y, names="0.weight")
    torch.testing.assert_close(effects["0.weight"], naive_removal(model, x, y, "0.weight"), rtol=0, atol=1e-13)


class ReadsWeight(nn.Module):
    """fc1's weight reached without (only) calling fc1: the rank-1 hook would not see that use."""

    def __init__(self, how: str, act: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.how, self.act = nn.Linear(4, 5), nn.Linear(5, 3), how, act
        if how == "hooked":  # a hook of the caller's on fc1 changes its output
            self.fc1.register_forward_hook(lambda mod, args, out: 2 * out + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "functional":
            h = F.linear(x, self.fc1.weight, self.fc1.bias)
        elif self.how == "both":
            h = self.fc1(x) + 0.5 * F.linear(x, self.fc1.weight)
        else:
            h = self.fc1(x)
        return self.fc2(self.act(h))


@pytest.mark.parametrize("how", ["functional", "both", "hooked", "global hook"])
def test_removal_effects_of_a_weight_used_outside_its_module(how):
    x, y = batch(6, shape=(4,))
    handle = None
    if how == "global hook":  # a hook registered for every module changes fc1's output
        def double_fc1(mod, args, out):
            return 2 * out + 1 if isinstance(mod, nn.Linear) and out.shape[-1] == 5 else None
        handle = nn.modules.module.register_module_forward_hook(double_fc1)
    try:
        model = ReadsWeight(how, nn.Tanh())
        effects = analysis.removal_effects(model, x, y, names="fc1.weight", chunk_size=7)["fc1.weight"]
        expected = naive_removal(model, x, y, "fc1.weight")
        assert expected.abs().max() > 1e-4
        torch.testing.assert_close(effects, expected, rtol=0, atol=1e-13)
        # Linear in each weight and a quadratic loss: the second-order estimate is exact.
        model, target = ReadsWeight(how, nn.Identity()), torch.randn(6, 3)
        second = analysis.second_order_effects(model, x, target, names="fc1.weight", loss_fn=F.mse_loss)
        torch.testing.assert_close(second["fc1.weight"], naive_removal(model, x, target, "fc1.weight", F.mse_loss),
                                   rtol=1e-9, atol=1e-12)
    finally:
        if handle is not None:
            handle.remove()


def test_fast_path_is_kept_for_weights_used_only_through_their_module():
    x, y = batch()
    paths = analysis._setup(tiny_mlp(), x, y, None, None, None, torch.float64, 256)[-1]
    assert all(path.linear is not None for path in paths.values())


def test_chunks_shrink_when_the_activations_are_large():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 26 * 26, 10))
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    paths = analysis._setup(model, x, y, "0.weight", None, None, torch.float64, 256)[-1]
    conv_output = 32 * 16 * 26 * 26  # one removal changes the whole conv output, and all after it
    step = paths["0.weight"].chunk(256)
    assert 1 <= step and step * conv_output <= analysis._CHUNK_BUDGET
    small = analysis._setup(tiny_cnn(), *batch(6, shape=(1, 4, 4)), "0.weight", None, None, torch.float64, 256)
    assert small[-1]["0.weight"].chunk(256) == 256  # small nets keep the requested chunk


def test_removal_effects_with_indices_and_custom_loss():
    model = tiny_mlp(3)
    x, _ = batch()
    target = torch.randn(8, 3)
    idx = {"3.weight": torch.tensor([34, 0, 7]), "5.weight": [14]}
    effects = analysis.removal_effects(model, x, target, names=["3.weight", "5.weight"], indices=idx,
                                       loss_fn=F.mse_loss)
    for name, sel in idx.items():
        expected = naive_removal(model, x, target, name, loss_fn=F.mse_loss).reshape(-1)[torch.as_tensor(sel)]
        assert effects[name].shape == (len(sel),)
        torch.testing.assert_close(effects[name], expected, rtol=0, atol=1e-13)


def test_removal_effects_leave_the_model_untouched():
    model = tiny_cnn().train()
    before = copy.deepcopy(model.state_dict())
    x, y = batch(6, shape=(1, 4, 4))
    analysis.removal_effects(model, x, y)
    analysis.second_order_effects(model, x, y, names="4.weight")
    analysis.first_order_effects(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert next(model.parameters()).dtype == torch.float32


def test_removal_effects_bad_names_and_indices_are_named():
    model = tiny_mlp()
    x, y = batch()
    with pytest.raises(ValueError, match="fc9.weight"):
        analysis.removal_effects(model, x, y, names=["1.weight", "fc9.weight"])
    with pytest.raises(ValueError, match=r"\[84\].*0\.\.83"):
        analysis.removal_effects(model, x, y, names="1.weight", indices={"1.weight": [3, 84]})
    with pytest.raises(ValueError, match=r"\[-1\]"):
        analysis.removal_effects(model, x, y, names="1.weight", indices={"1.weight": [-1]})
    with pytest.raises(ValueError, match="5.weight"):
        analysis.removal_effects(model, x, y, names="1.weight", indices={"5.weight": [0]})
    with pytest.raises(ValueError, match="integer"):
        analysis.removal_effects(model, x, y, names="1.weight", indices={"1.weight": [0.5]})
    with pytest.raises(ValueError, match="chunk_size"):
        analysis.removal_effects(model, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="3 targets"):
        analysis.removal_effects(model, x, y[:3])
    with pytest.raises(ValueError, match="dtype"):
        analysis.removal_effects(model, x, y, dtype=torch.int64)
    with pytest.raises(TypeError, match="Module"):
        analysis.removal_effects("lenet300", x, y)


def test_measures_accept_numpy_integers_and_refuse_a_non_finite_loss():
    model = tiny_mlp()
    x, y = batch()
    a = analysis.removal_effects(model, x, y, names="5.weight", chunk_size=np.int64(4))
    torch.testing.assert_close(a["5.weight"], naive_removal(model, x, y, "5.weight"), rtol=0, atol=1e-13)
    bad = x.clone()
    bad[0, 0] = float("nan")
    for measure in (analysis.removal_effects, analysis.first_order_effects, analysis.second_order_effects):
        with pytest.raises(ValueError, match="loss is nan.*check the inputs"):
            measure(model, bad, y)


def test_first_order_effects_checks_its_loss_and_the_grad_mode():
    model = tiny_mlp()
    x, y = batch()
    with pytest.raises(TypeError, match="callable.*'mse'"):
        analysis.first_order_effects(model, x, y, loss_fn="mse")
    with pytest.raises(ValueError, match=r"scalar.*got shape \(8,\)"):
        analysis.first_order_effects(model, x, y, loss_fn=lambda o, t: F.cross_entropy(o, t, reduction="none"))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        analysis.first_order_effects(model, x, y)


# ----------------------------------------------------------------------------- first order

def test_signed_g_equals_finite_difference_in_the_indicator():
    model = tiny_mlp(1).double()
    x, y = batch()
    x = x.double()
    g = analysis.first_order_effects(model, x, y)
    params = dict(model.named_parameters())
    h = 1e-6
    for name in g:
        for j in (0, 5, g[name].numel() - 1):
            def loss_at(c_j: float) -> float:
                with torch.no_grad():
                    p = params[name]
                    saved = p.view(-1)[j].clone()
                    p.view(-1)[j] = saved * c_j  # the network computes with c ⊙ w
                    value = F.cross_entropy(model(x), y).item()
                    p.view(-1)[j] = saved
                return value
            fd = (loss_at(1 + h) - loss_at(1 - h)) / (2 * h)
            assert g[name].reshape(-1)[j].item() == pytest.approx(fd, rel=1e-6, abs=1e-10)
    assert any((v < 0).any() and (v > 0).any() for v in g.values())  # signed, not magnitudes


def test_g_is_w_times_weight_gradient_and_matches_snip_magnitudes():
    from snip_lib import snip

    model = tiny_mlp(2)
    x, y = batch()
    g = analysis.first_order_effects(model, x, y)
    loss = F.cross_entropy(model(x), y)
    params = snip.prunable_parameters(model)
    grads = torch.autograd.grad(loss, list(params.values()))
    for (name, p), dw in zip(params.items(), grads):
        torch.testing.assert_close(g[name], p.detach() * dw, rtol=1e-5, atol=1e-7)
    magnitudes = snip.connection_sensitivity(model, x, y, normalize=False)
    for name in g:
        torch.testing.assert_close(g[name].abs(), magnitudes[name], rtol=1e-5, atol=1e-7)


def test_first_order_error_shrinks_quadratically_with_the_weight_scale():
    # ΔL_j − g_j is the second-order term −½ w_j² H_jj + ...: scaling the probed layer's
    # weights by 1/4 (a smooth net, so the Taylor expansion holds) cuts the error ~16x.
    errors = []
    for scale in (1.0, 0.25):
        model = tiny_mlp(4).double()
        model[2] = nn.Softplus()
        with torch.no_grad():
            model[3].weight.mul_(scale)
        x, y = batch()
        g = analysis.first_order_effects(model, x, y, names="3.weight")["3.weight"]
        d = analysis.removal_effects(model, x, y, names="3.weight")["3.weight"]
        errors.append((d - g).abs().sum().item())
    assert errors[1] < errors[0] / 8


def test_second_order_is_exact_for_a_quadratic_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 2))  # linear in each weight: MSE is quadratic
    x, target = torch.randn(10, 6), torch.randn(10, 2)
    names = ["0.weight", "1.weight", "1.bias"]
    second = analysis.second_order_effects(model, x, target, names=names, loss_fn=F.mse_loss, chunk_size=3)
    exact = analysis.removal_effects(model, x, target, names=names, loss_fn=F.mse_loss)
    first = analysis.first_order_effects(model, x, target, names=names, loss_fn=F.mse_loss, dtype=torch.float64)
    for name in names:
        torch.testing.assert_close(second[name], exact[name], rtol=1e-9, atol=1e-12)
        assert (first[name] - exact[name]).abs().max() > 1e-6  # first order alone is not exact


def test_second_order_improves_on_first_order_for_smooth_nets():
    model = tiny_mlp(5)
    model[2] = nn.Softplus()
    x, y = batch()
    g = analysis.first_order_effects(model, x, y, dtype=torch.float64)
    second = analysis.second_order_effects(model, x, y, indices={"1.weight": [1, 2, 3, 40, 80]})
    exact = analysis.removal_effects(model, x, y, indices={"1.weight": [1, 2, 3, 40, 80]})
    for name in exact:
        sel = [1, 2, 3, 40, 80] if name == "1.weight" else slice(None)
        err1 = (g[name].reshape(-1)[sel] - exact[name].reshape(-1)).abs().sum()
        err2 = (second[name].reshape(-1) - exact[name].reshape(-1)).abs().sum()
        assert err2 < 0.5 * err1, name


# ----------------------------------------------------------------------------- rank agreement

def test_rank_agreement_hand_examples():
    perfect = analysis.rank_agreement([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], sparsities=(0.6,))
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["kappa"] == {0.6: 2} and perfect["overlap"] == {0.6: 1.0}
    assert perfect["chance"] == {0.6: pytest.approx(0.4)} and perfect["n"] == 5

    reverse = analysis.rank_agreement(torch.tensor([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1]), sparsities=0.5)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["overlap"] == {0.5: 0.0}

    # d = rank differences (0, 0, 1, -1, 0) -> rho = 1 - 6*2/(5*24) = 0.9; top-2 sets {4,3} vs {4,2}
    partial = analysis.rank_agreement([1, 2, 3, 4, 5], [1, 2, 4, 3, 5], sparsities=(0.6, 0.8))
    assert partial["spearman"] == pytest.approx(0.9)
    assert partial["overlap"] == {0.6: 0.5, 0.8: 1.0}


def test_rank_agreement_ties_use_average_ranks():
    scipy_stats = pytest.importorskip("scipy.stats")
    a = [0, 0, 1, 2, 2, 2, 5]
    b = [3, 1, 1, 4, 2, 6, 0]
    got = analysis.rank_agreement(a, b, sparsities=())["spearman"]
    assert got == pytest.approx(scipy_stats.spearmanr(a, b).correlation)
    # hand value: ranks of a = (1.5, 1.5, 3, 5, 5, 5, 7) are the average ranks of the ties
    np.testing.assert_allclose(analysis._average_ranks(np.array(a, dtype=float)), [1.5, 1.5, 3, 5, 5, 5, 7])


def test_rank_agreement_accepts_dicts_and_rejects_bad_input():
    a = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([[3.0, 4.0]])}
    b = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([[4.0, 3.0]])}
    assert analysis.rank_agreement(a, b, sparsities=(0.5,))["spearman"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="same keys"):
        analysis.rank_agreement(a, {"y": b["y"], "x": b["x"]})
    with pytest.raises(ValueError, match="3 and 2"):
        analysis.rank_agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="constant"):
        analysis.rank_agreement([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        analysis.rank_agreement([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(ValueError, match="1.5"):
        analysis.rank_agreement([1, 2, 3], [1, 2, 3], sparsities=(1.5,))
    with pytest.raises(ValueError, match="keeps no entry"):
        analysis.rank_agreement([1, 2, 3], [1, 2, 3], sparsities=(0.9,))


def test_rank_agreement_sparsities_as_numpy_or_torch_numbers_and_refuses_text():
    a, b = [1, 2, 3, 4], [1, 3, 2, 4]  # top halves {3, 2} and {3, 1}
    for one in (np.float32(0.5), torch.tensor(0.5), np.array([0.5])):
        assert analysis.rank_agreement(a, b, sparsities=one)["overlap"] == {0.5: 0.5}
    with pytest.raises(TypeError, match="'0.5'"):
        analysis.rank_agreement(a, b, sparsities="0.5")
    with pytest.raises(ValueError, match="True"):
        analysis.rank_agreement(a, b, sparsities=(0.5, True))


# ----------------------------------------------------------------------------- helpers

def test_sample_connections_and_flatten_scores():
    model = tiny_mlp()
    picked = analysis.sample_connections(model, 50, seed=3)
    assert sum(v.numel() for v in picked.values()) == 50
    sizes = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight")}
    for name, idx in picked.items():
        assert idx.unique().numel() == idx.numel() and idx.min() >= 0 and idx.max() < sizes[name]
    again = analysis.sample_connections(model, 50, seed=3)
    assert all(torch.equal(picked[n], again[n]) for n in picked)
    other = analysis.sample_connections(model, 50, seed=4)
    assert not all(torch.equal(picked[n], other[n]) for n in picked)
    scores = {n: p.detach() for n, p in model.named_parameters() if n in picked}
    flat = analysis.flatten_scores(scores, picked)
    expected = torch.cat([scores[n].reshape(-1)[picked[n]] for n in picked])
    assert torch.equal(flat, expected)
    assert analysis.flatten_scores(scores).numel() == sum(sizes.values())
    with pytest.raises(ValueError, match=r"\[1, 134\]"):
        analysis.sample_connections(model, 10_000)
    with pytest.raises(ValueError, match="3.weight"):
        analysis.flatten_scores(scores, {"1.weight": picked["1.weight"]})


def test_sample_connections_takes_numpy_integers_and_checks_the_seed():
    model = tiny_mlp()
    picked = analysis.sample_connections(model, np.int64(50), seed=np.int32(3))
    assert all(torch.equal(picked[n], v) for n, v in analysis.sample_connections(model, 50, seed=3).items())
    for seed in (1.5, True, "a"):
        with pytest.raises(ValueError, match=f"seed.*{seed!r}"):
            analysis.sample_connections(model, 5, seed=seed)


def test_flatten_scores_checks_indices_like_removal_effects():
    scores = {"w": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    with pytest.raises(ValueError, match="integer"):
        analysis.flatten_scores(scores, {"w": torch.tensor([False, False, True, True])})  # a mask
    with pytest.raises(ValueError, match="integer"):
        analysis.flatten_scores(scores, {"w": [0.9, 2.7]})
    with pytest.raises(ValueError, match=r"\[7\].*0\.\.3"):
        analysis.flatten_scores(scores, {"w": [1, 7]})
    assert analysis.flatten_scores(scores, {"w": np.array([3, 0])}).tolist() == [40.0, 10.0]


def test_time_forward_restores_mode():
    model = tiny_mlp().train()
    seconds = analysis.time_forward(model, batch()[0], repeats=3, warmup=1)
    assert seconds > 0 and model.training
    mixed = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    mixed[1].eval()  # a frozen BatchNorm inside a training model
    before = [m.training for m in mixed.modules()]
    analysis.time_forward(mixed, torch.randn(8, 4), repeats=np.int64(1), warmup=0)
    assert [m.training for m in mixed.modules()] == before
    with pytest.raises(TypeError, match="list"):
        analysis.time_forward(model, [batch()[0]])
    with pytest.raises(ValueError, match="repeats"):
        analysis.time_forward(model, batch()[0], repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        analysis.time_forward(model, batch()[0], warmup=-1)
