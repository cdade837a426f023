"""Behaviour of snip_lib.snip: connection sensitivity, global top-κ masks, state safety, errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from snip_lib import init, snip


# ----------------------------------------------------------------------------- tiny nets

class TinyMLP(nn.Module):
    def __init__(self, d_in: int = 5, hidden: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyCNN(nn.Module):
    """conv -> BN -> ReLU -> linear, on (N, 1, 6, 6) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.bn(self.conv(x))))
        return self.fc(h.flatten(1))


class TinyLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class NoPrunable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.emb(x)).sum(1)


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> TinyMLP:
    torch.manual_seed(seed)
    return init.apply(TinyMLP().to(dtype), "glorot_normal", seed=seed, bias="default")


def _cnn_with_stats(seed: int = 0) -> TinyCNN:
    """A BN net whose running statistics are far from the fresh (0, 1)."""
    torch.manual_seed(seed)
    net = init.apply(TinyCNN().double(), "he_normal", seed=seed, bias="default")
    with torch.no_grad():
        net.bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        net.bn.running_var.copy_(torch.tensor([3.0, 0.2, 7.0]))
        net.bn.weight.copy_(torch.tensor([1.5, 0.7, 1.2]))
        net.bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    net.bn.num_batches_tracked.fill_(12)
    return net


def _batch(n: int, shape: tuple[int, ...], classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def _snapshot(model: nn.Module):
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        [m.training for m in model.modules()],
    )


def _assert_unchanged(model: nn.Module, snapshot) -> None:
    state, grads, flags = snapshot
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed"
    for n, p in model.named_parameters():
        if grads[n] is None:
            assert p.grad is None, f"{n}.grad was created"
        else:
            assert torch.equal(p.grad, grads[n]), f"{n}.grad changed"
    assert [m.training for m in model.modules()] == flags


# ----------------------------------------------------------------------------- prunable_parameters

def test_a_model_pruned_by_torch_prune_is_refused_not_half_scored():
    """Its fc1 weight hides in 'weight_orig': scoring the rest would compute κ over the wrong total."""
    from torch.nn.utils import prune

    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    prune.random_unstructured(model[0], "weight", 0.5)
    with pytest.raises(ValueError, match=r"\['0'\] carry torch.nn.utils.prune.*from_torch_prune"):
        snip.prunable_parameters(model)
    with pytest.raises(ValueError, match="torch.nn.utils.prune"):
        snip.snip_masks(model, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), 0.5)


def test_inputs_of_another_dtype_are_named_not_a_deep_torch_error():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    with pytest.raises(ValueError, match=r"inputs are torch.float32 but the model's weights are torch.float64"):
        snip.snip_masks(model, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), 0.5)
    masks = snip.snip_masks(model, torch.randn(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0]), 0.5)
    assert snip.kept_count(masks) == snip.kept_for(0.5, 45)


def test_normalised_half_precision_scores_keep_the_raw_ranking():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10)).half()
    x, y = torch.randn(32, 784).half(), torch.randint(0, 10, (32,))
    try:
        raw = snip.connection_sensitivity(model, x, y, normalize=False)
    except RuntimeError as err:  # some CPU builds have no half-precision matmul
        pytest.skip(f"no float16 kernels here: {err}")
    norm = snip.connection_sensitivity(model, x, y)
    assert all(s.dtype == torch.float32 for s in norm.values())
    for name in raw:
        assert torch.equal(raw[name] == 0, norm[name] == 0), name   # no new zeros from underflow
    assert torch.equal(torch.cat([m.flatten() for m in snip.masks_from_scores(raw, 0.9).values()]),
                       torch.cat([m.flatten() for m in snip.masks_from_scores(norm, 0.9).values()]))


def test_kept_for_is_kappa_and_refuses_an_empty_mask():
    assert snip.kept_for(0.98, 266_200) == 5324
    assert snip.kept_for(0.0, 7) == 7
    with pytest.raises(ValueError, match=r"sparsity 0.99999999 leaves no connection.*m = 1000"):
        snip.kept_for(0.99999999, 1000)
    with pytest.raises(ValueError, match="m must be a positive int"):
        snip.kept_for(0.5, 0)


def test_prunable_parameters_picks_weights_in_named_parameter_order():
    net = TinyCNN()
    assert list(snip.prunable_parameters(net)) == ["conv.weight", "fc.weight"]
    with_bias = snip.prunable_parameters(net, include_bias=True)
    assert list(with_bias) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert with_bias["conv.weight"] is net.conv.weight


def test_prunable_parameters_include_recurrent_weights_and_tied_once():
    assert list(snip.prunable_parameters(TinyLSTM())) == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "head.weight"]
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert list(snip.prunable_parameters(tied)) == ["0.weight"]


def test_model_without_prunable_parameters_raises():
    x, y = torch.randint(0, 10, (4, 3)), torch.randint(0, 4, (4,))
    with pytest.raises(ValueError, match="no prunable parameters"):
        snip.prunable_parameters(NoPrunable())
    with pytest.raises(ValueError, match="NoPrunable.*no prunable parameters"):
        snip.connection_sensitivity(NoPrunable(), x, y)
    with pytest.raises(ValueError, match="no prunable parameters"):
        snip.snip_masks(NoPrunable(), x, y, 0.5)


# ----------------------------------------------------------------------------- the score itself

def _w_times_grad(model, x, y, params):
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {n: (p.detach() * g) for (n, p), g in zip(params.items(), grads)}


@pytest.mark.parametrize("make, shape, classes", [
    (lambda: _mlp(1), (5,), 3),
    (lambda: _cnn_with_stats(1), (1, 6, 6), 4),
    (lambda: TinyLSTM().double(), (7, 4), 3),
])
def test_indicator_gradient_equals_w_times_weight_gradient(make, shape, classes):
    model = make().eval()
    x, y = _batch(10, shape, classes)
    params = snip.prunable_parameters(model, include_bias=True)
    expected = _w_times_grad(model, x, y, params)
    model.zero_grad(set_to_none=True)
    signed = snip.indicator_gradients(model, x, y, include_bias=True)
    scores = snip.connection_sensitivity(model, x, y, include_bias=True, normalize=False)
    assert list(scores) == list(signed) == list(params)
    for name in params:
        torch.testing.assert_close(signed[name], expected[name], rtol=1e-10, atol=1e-12)  # with its sign
        torch.testing.assert_close(scores[name], expected[name].abs(), rtol=1e-10, atol=1e-12)
        assert scores[name].dtype == torch.float64 and scores[name].shape == params[name].shape
    assert any((g < 0).any() for g in signed.values()) and any((g > 0).any() for g in signed.values())


def test_scores_are_not_the_plain_weight_gradient():
    model = _mlp(2)
    x, y = _batch(10, (5,), 3)
    params = snip.prunable_parameters(model)
    plain = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
    scores = snip.connection_sensitivity(model, x, y, normalize=False)
    assert not torch.allclose(scores["fc1.weight"], plain[0].abs())


def test_first_order_relaxation_tracks_true_loss_change():
    """g_j approximates ΔL_j = L(w) − L(w with w_j = 0), checked by brute force on every connection."""
    model = _mlp(3)
    with torch.no_grad():  # small weights: removing one connection is a small perturbation
        for p in model.parameters():
            p.mul_(0.2)
    x, y = _batch(32, (5,), 3, seed=4)
    scores = snip.connection_sensitivity(model, x, y, normalize=False)
    base = F.cross_entropy(model(x), y).item()
    true_change, approx = [], []
    with torch.no_grad():
        for name, p in snip.prunable_parameters(model).items():
            flat = p.view(-1)
            for j in range(flat.numel()):
                old = flat[j].item()
                flat[j] = 0.0
                true_change.append(base - F.cross_entropy(model(x), y).item())
                flat[j] = old
                approx.append(scores[name].view(-1)[j].item())
    true_change, approx = np.abs(true_change), np.array(approx)
    spread = approx.max() - approx.min()
    assert np.max(np.abs(true_change - approx)) < 0.1 * spread
    assert spearmanr(true_change, approx).correlation > 0.95


def test_score_is_derivative_with_respect_to_the_indicator():
    """Central finite difference in c_j at c = 1 reproduces g_j, sign included."""
    model = _mlp(5)
    x, y = _batch(16, (5,), 3, seed=6)
    params = snip.prunable_parameters(model)
    signed = _w_times_grad(model, x, y, params)
    scores = snip.connection_sensitivity(model, x, y, normalize=False)
    w = model.fc1.weight
    h = 1e-5
    for j in [(0, 0), (3, 2), (5, 4)]:
        original = w[j].item()
        with torch.no_grad():
            w[j] = original * (1 + h)
            up = F.cross_entropy(model(x), y).item()
            w[j] = original * (1 - h)
            down = F.cross_entropy(model(x), y).item()
            w[j] = original
        fd = (up - down) / (2 * h)
        assert fd == pytest.approx(signed["fc1.weight"][j].item(), rel=1e-5, abs=1e-10)
        assert abs(fd) == pytest.approx(scores["fc1.weight"][j].item(), rel=1e-5, abs=1e-10)


def test_normalised_scores_sum_to_one_and_keep_ratios():
    model = _cnn_with_stats()
    x, y = _batch(8, (1, 6, 6), 4)
    raw = snip.connection_sensitivity(model, x, y, normalize=False)
    norm = snip.connection_sensitivity(model, x, y)
    assert sum(s.sum().item() for s in norm.values()) == pytest.approx(1.0, abs=1e-12)
    total = sum(s.sum().item() for s in raw.values())
    for name in raw:
        torch.testing.assert_close(norm[name], raw[name] / total)
        assert torch.all(norm[name] >= 0)


@pytest.mark.parametrize("make, shape, classes", [
    (lambda: _mlp(7), (5,), 3),
    (lambda: _cnn_with_stats(7), (1, 6, 6), 4),
])
def test_several_batches_equal_one_concatenated_batch(make, shape, classes):
    model = make()
    x, y = _batch(12, shape, classes, seed=8)
    whole = snip.connection_sensitivity(model, x, y, normalize=False)
    parts = snip.connection_sensitivity(model, [x[:5], x[5:]], (y[:5], y[5:]), normalize=False)
    for name in whole:
        torch.testing.assert_close(parts[name], whole[name], rtol=1e-10, atol=1e-13)
    first_only = snip.connection_sensitivity(model, x[:5], y[:5], normalize=False)
    assert not all(torch.allclose(parts[k], first_only[k]) for k in parts)  # both batches count


def test_custom_loss_function_is_used():
    model = _mlp(9)
    x, y = _batch(6, (5,), 3)
    ce = snip.connection_sensitivity(model, x, y, normalize=False)
    doubled = snip.connection_sensitivity(model, x, y, lambda o, t: 2 * F.cross_entropy(o, t), normalize=False)
    for name in ce:
        torch.testing.assert_close(doubled[name], 2 * ce[name])


# ----------------------------------------------------------------------------- state safety

@pytest.mark.parametrize("bn_mode", snip.BN_MODES)
@pytest.mark.parametrize("training", [True, False])
def test_model_state_unchanged(bn_mode, training):
    model = _cnn_with_stats()
    model.train(training)
    model.drop.train(not training)  # a mixed state must come back as it was
    x, y = _batch(8, (1, 6, 6), 4)
    before = _snapshot(model)
    snip.connection_sensitivity(model, x, y, bn_mode=bn_mode, include_bias=True)
    snip.snip_masks(model, x, y, 0.5, bn_mode=bn_mode)
    _assert_unchanged(model, before)


def test_existing_gradients_are_left_alone():
    model = _cnn_with_stats()
    x, y = _batch(8, (1, 6, 6), 4)
    F.cross_entropy(model(x), y).backward()
    before = _snapshot(model)
    snip.connection_sensitivity(model, x, y, bn_mode="train")
    _assert_unchanged(model, before)


def test_bn_train_and_eval_modes_give_different_scores():
    model = _cnn_with_stats()
    x, y = _batch(8, (1, 6, 6), 4)
    ev = snip.connection_sensitivity(model, x, y, bn_mode="eval")
    tr = snip.connection_sensitivity(model, x, y, bn_mode="train")
    assert not torch.allclose(ev["conv.weight"], tr["conv.weight"])
    # "train" really uses batch statistics: same as scoring a copy that is in train mode.
    twin = copy.deepcopy(model).train()
    twin.drop.eval()
    params = snip.prunable_parameters(twin)
    expected = _w_times_grad(twin, x, y, params)
    total = sum(v.abs().sum() for v in expected.values())
    torch.testing.assert_close(tr["conv.weight"], expected["conv.weight"].abs() / total)


def test_scores_are_deterministic_with_dropout_in_the_model():
    model = _cnn_with_stats().train()
    x, y = _batch(8, (1, 6, 6), 4)
    a = snip.connection_sensitivity(model, x, y)
    b = snip.connection_sensitivity(model, x, y)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- masks

@pytest.mark.parametrize("m, sparsity, kept", [
    (10, 0.0, 10),
    (10, 0.25, 8),    # 7.5 -> 8 (Python's round: halves to even)
    (10, 0.75, 2),    # 2.5 -> 2
    (7, 0.5, 4),      # 3.5 -> 4
    (5, 0.5, 2),      # 2.5 -> 2
    (1000, 0.9, 100),
    (1000, 0.999, 1),
    (266200, 0.95, 13310),
])
def test_exact_number_kept(m, sparsity, kept):
    assert kept == round((1 - sparsity) * m)
    g = torch.Generator().manual_seed(m)
    flat = torch.rand(m, generator=g)
    cut = m // 3
    scores = {"a": flat[:cut].reshape(-1, 1) if cut else flat[:0], "b": flat[cut:]}
    masks = snip.masks_from_scores(scores, sparsity)
    assert snip.kept_count(masks) == kept
    assert all(masks[k].dtype == torch.bool and masks[k].shape == scores[k].shape for k in scores)
    kept_scores = torch.cat([scores[k][masks[k]] for k in scores])
    dropped = torch.cat([scores[k][~masks[k]] for k in scores])
    if dropped.numel():
        assert kept_scores.min() > dropped.max()  # exactly the top κ, chosen globally


def test_ties_keep_lowest_global_indices():
    scores = {"a": torch.ones(2, 2), "b": torch.ones(6)}
    masks = snip.masks_from_scores(scores, 0.5)  # κ = 5 of 10
    assert masks["a"].all()
    assert masks["b"].tolist() == [True, False, False, False, False, False]
    # a tie straddling the threshold: the larger score is always kept, then the first tied ones
    scores = {"a": torch.tensor([0.2, 0.5, 0.2]), "b": torch.tensor([[0.2, 0.9, 0.1]])}
    masks = snip.masks_from_scores(scores, 0.5)  # κ = 3 of 6: 0.9, 0.5, first 0.2
    assert masks["a"].tolist() == [True, True, False]
    assert masks["b"].tolist() == [[False, True, False]]


def test_selection_is_global_not_per_layer():
    scores = {"small": torch.full((10,), 1.0), "large": torch.full((10,), 2.0)}
    masks = snip.masks_from_scores(scores, 0.5)
    assert snip.layerwise_density(masks) == {"small": 0.0, "large": 1.0}


def test_snip_masks_deterministic_for_same_seeded_model():
    x, y = _batch(8, (1, 6, 6), 4)
    a = snip.snip_masks(_cnn_with_stats(11), x, y, 0.6)
    b = snip.snip_masks(_cnn_with_stats(11), x, y, 0.6)
    assert list(a) == ["conv.weight", "fc.weight"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    m = sum(v.numel() for v in a.values())
    assert snip.kept_count(a) == round(0.4 * m)


def test_snip_masks_equal_top_k_of_connection_sensitivity():
    model = _mlp(12)
    x, y = _batch(10, (5,), 3)
    masks = snip.snip_masks(model, x, y, 0.7, include_bias=True)
    scores = snip.connection_sensitivity(model, x, y, include_bias=True)
    expected = snip.masks_from_scores(scores, 0.7)
    assert list(masks) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert all(torch.equal(masks[k], expected[k]) for k in masks)


def test_include_bias_adds_bias_keys_and_zero_biases_score_zero():
    model = _mlp(13)
    init.apply(model, "glorot_normal", seed=13)  # zero biases, as in the official code
    x, y = _batch(10, (5,), 3)
    scores = snip.connection_sensitivity(model, x, y, include_bias=True)
    assert set(scores) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert torch.count_nonzero(scores["fc1.bias"]) == 0
    masks = snip.snip_masks(model, x, y, 0.5, include_bias=True)
    assert not masks["fc1.bias"].any() and not masks["fc2.bias"].any()


def test_two_initialisation_variant_scores_a_reinitialised_copy():
    model = _cnn_with_stats(14)
    x, y = _batch(8, (1, 6, 6), 4)
    before = _snapshot(model)
    masks = snip.snip_masks(model, x, y, 0.5, scoring_init="he_normal", seed=3)
    _assert_unchanged(model, before)
    twin = init.apply(copy.deepcopy(model), "he_normal", seed=3)
    expected = snip.snip_masks(twin, x, y, 0.5)
    assert all(torch.equal(masks[k], expected[k]) for k in masks)
    own = snip.snip_masks(model, x, y, 0.5)
    assert not all(torch.equal(masks[k], own[k]) for k in masks)
    other_seed = snip.snip_masks(model, x, y, 0.5, scoring_init="he_normal", seed=4)
    assert not all(torch.equal(masks[k], other_seed[k]) for k in masks)


def test_official_scoring_biases_compete_for_the_kept_budget():
    """scoring_bias="scheme": the copy's biases are not zero, so they score and some are kept (official code)."""
    model = _mlp(15)
    init.apply(model, "lecun_truncated_normal", seed=15)  # the trained network: zero biases
    x, y = _batch(10, (5,), 3)
    plain = snip.snip_masks(model, x, y, 0.5, include_bias=True, scoring_init="vs", seed=2)
    assert not plain["fc1.bias"].any()                    # zero biases score zero
    masks = snip.snip_masks(model, x, y, 0.5, include_bias=True, scoring_init="vs", scoring_bias="scheme", seed=2)
    assert masks["fc1.bias"].any() or masks["fc2.bias"].any()
    twin = init.apply(copy.deepcopy(model), "vs", seed=2, bias="scheme")
    expected = snip.snip_masks(twin, x, y, 0.5, include_bias=True)
    assert all(torch.equal(masks[k], expected[k]) for k in masks)
    assert torch.count_nonzero(model.fc1.bias) == 0       # the model itself is untouched
    with pytest.raises(ValueError, match="scoring_bias='scheme'.*needs scoring_init"):
        snip.snip_masks(model, x, y, 0.5, scoring_bias="scheme")
    with pytest.raises(ValueError, match="'ones'.*zeros, default, scheme"):
        snip.snip_masks(model, x, y, 0.5, scoring_init="vs", scoring_bias="ones", seed=2)


def test_layerwise_density_and_kept_count():
    masks = {"a": torch.tensor([True, False, False, True]), "b": torch.zeros(2, 3, dtype=torch.bool)}
    assert snip.layerwise_density(masks) == {"a": 0.5, "b": 0.0}
    assert snip.kept_count(masks) == 2
    with pytest.raises(TypeError, match="masks\\['a'\\].*float32"):
        snip.kept_count({"a": torch.ones(3)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_follow_the_model_to_its_device():
    model = _cnn_with_stats().cuda()
    x, y = _batch(8, (1, 6, 6), 4)  # on the CPU
    scores = snip.connection_sensitivity(model, x, y)
    masks = snip.snip_masks(model, x, y, 0.5, scoring_init="vs", seed=0)
    assert all(s.is_cuda for s in scores.values()) and all(m.is_cuda for m in masks.values())
    cpu = snip.connection_sensitivity(_cnn_with_stats(), x, y)
    for k in cpu:
        torch.testing.assert_close(scores[k].cpu(), cpu[k])


# ----------------------------------------------------------------------------- bad input

X, Y = _batch(4, (5,), 3)


@pytest.mark.parametrize("sparsity, error, pattern", [
    (1.0, ValueError, r"sparsity.*\[0, 1\).*1\.0"),
    (1, ValueError, r"got 1\b"),
    (-0.1, ValueError, r"-0\.1"),
    (1.5, ValueError, r"1\.5"),
    (float("nan"), ValueError, "nan"),
    ("0.5", TypeError, r"'0\.5'.*str"),
    (True, TypeError, r"True.*bool"),
    (None, TypeError, "None"),
])
def test_bad_sparsity(sparsity, error, pattern):
    with pytest.raises(error, match=pattern):
        snip.masks_from_scores({"a": torch.rand(10)}, sparsity)
    model = _mlp()
    before = _snapshot(model)
    with pytest.raises(error, match=pattern):  # checked before any work is done
        snip.snip_masks(model, "not a batch", None, sparsity, scoring_init="he_normal")
    _assert_unchanged(model, before)


def test_sparsity_that_leaves_nothing_raises():
    with pytest.raises(ValueError, match=r"0\.96 leaves no connection.*m = 10"):
        snip.masks_from_scores({"a": torch.rand(10)}, 0.96)


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="non-empty dict"):
        snip.masks_from_scores({}, 0.5)
    with pytest.raises(TypeError, match=r"scores\['a'\].*list"):
        snip.masks_from_scores({"a": [1.0, 2.0]}, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        snip.masks_from_scores({"a": torch.tensor([1.0, float("nan")])}, 0.5)


@pytest.mark.parametrize("inputs, targets, error, pattern", [
    (X[:0], Y[:0], ValueError, r"empty.*\(0, 5\)"),
    (X, Y[:3], ValueError, "4 inputs but 3 targets"),
    ([X, X], [Y], ValueError, "2 input batches but 1 target batches"),
    ([], [], ValueError, "empty lists"),
    (X.numpy(), Y, TypeError, "ndarray"),
    ([X, X.numpy()], [Y, Y], TypeError, "inputs batch 1.*ndarray"),
    (X, [Y], TypeError, "Tensor and list"),
    (torch.tensor(1.0), Y, ValueError, "0-d"),
])
def test_bad_batches(inputs, targets, error, pattern):
    with pytest.raises(error, match=pattern):
        snip.connection_sensitivity(_mlp(), inputs, targets)


def test_bad_options():
    with pytest.raises(ValueError, match=r"'training'.*eval, train"):
        snip.connection_sensitivity(_mlp(), X, Y, bn_mode="training")
    with pytest.raises(TypeError, match="'yes'"):
        snip.connection_sensitivity(_mlp(), X, Y, normalize="yes")
    with pytest.raises(TypeError, match="'mse'"):
        snip.connection_sensitivity(_mlp(), X, Y, "mse")
    with pytest.raises(TypeError, match="str"):
        snip.prunable_parameters("model")
    with pytest.raises(ValueError, match="'bogus'"):
        snip.snip_masks(_mlp(), X, Y, 0.5, scoring_init="bogus")
    with pytest.raises(ValueError, match="seed=3.*scoring_init"):
        snip.snip_masks(_mlp(), X, Y, 0.5, seed=3)


def test_bad_loss_raises():
    nan_x = X.clone()
    nan_x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="loss is nan.*inputs/initialisation"):
        snip.connection_sensitivity(_mlp(), nan_x, Y)
    with pytest.raises(ValueError, match="loss is inf"):
        snip.connection_sensitivity(_mlp(), X, Y, lambda o, t: o.sum() * float("inf"))
    with pytest.raises(ValueError, match=r"scalar.*\(4,\)"):
        snip.connection_sensitivity(_mlp(), X, Y, lambda o, t: F.cross_entropy(o, t, reduction="none"))


def test_all_zero_scores_cannot_be_normalised():
    model = _mlp()
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc2.weight.zero_()
    with pytest.raises(ValueError, match="all connection sensitivities are zero.*normalise"):
        snip.connection_sensitivity(model, X, Y)
    raw = snip.connection_sensitivity(model, X, Y, normalize=False)
    assert all(torch.count_nonzero(v) == 0 for v in raw.values())
    with pytest.raises(ValueError, match="all connection sensitivities are zero.*arbitrary"):
        snip.snip_masks(model, X, Y, 0.5)


# ----------------------------------------------------------------------------- models of your own


def test_transposed_convolutions_bilinear_and_attention_are_pruned_too():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 3, 3, padding=1))
    masks = snip.snip_masks(decoder, torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), 0.9, loss_fn=F.mse_loss)
    assert list(masks) == ["0.weight", "1.weight"]
    assert snip.kept_count(masks) == round(0.1 * (8 * 3 * 9 + 8 * 3 * 9))
    attention = nn.MultiheadAttention(8, 2, kdim=4, vdim=4)
    names = list(snip.prunable_parameters(attention, include_bias=True))
    assert names == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "out_proj.weight",
                     "out_proj.bias"]
    assert list(snip.prunable_parameters(nn.Bilinear(3, 4, 2))) == ["weight"]



def test_attention_bias_k_and_v_are_biases_not_unprunable_weights():
    attention = nn.MultiheadAttention(8, 2, add_bias_kv=True)
    assert snip.unprunable_weights(attention) == []
    assert list(snip.prunable_parameters(attention, include_bias=True)) == [
        "in_proj_weight", "in_proj_bias", "bias_k", "bias_v", "out_proj.weight", "out_proj.bias"]
    assert list(snip.prunable_parameters(attention)) == ["in_proj_weight", "out_proj.weight"]


class _Scaled(nn.Module):
    """A custom layer SNIP does not know: its weight matrix would silently stay dense."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.table = nn.Embedding(10, 6)         # embeddings are not pruned, and not worth a warning
        self.custom = nn.Parameter(torch.randn(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) @ self.custom


def test_weights_left_dense_are_named_in_a_warning():
    model = _Scaled()
    assert snip.unprunable_weights(model) == ["custom"]
    with pytest.warns(UserWarning, match=r"1 weight tensor\(s\) of _Scaled are not prunable .*: custom;"):
        snip.snip_masks(model, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]), 0.5)
    from snip_lib import pruners

    with pytest.warns(UserWarning, match="custom"):
        pruners.prune_masks("magnitude", model, None, None, 0.5)
    model.custom.requires_grad_(False)             # a frozen matrix is not part of training: no warning
    assert snip.unprunable_weights(model) == []


def test_wrappers_inference_mode_and_tuple_outputs_get_clear_errors():
    net = nn.Sequential(nn.Linear(6, 3))
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match=r"DataParallel.*snip_masks\(model.module, \.\.\.\)"):
        snip.snip_masks(nn.DataParallel(net), x, y, 0.5)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        snip.snip_masks(net, x, y, 0.5)

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(x), x

    with pytest.raises(TypeError, match="returned a tuple, not a Tensor of logits.*loss_fn="):
        snip.snip_masks(TwoHeads(), x, y, 0.5)
    masks = snip.snip_masks(TwoHeads(), x, y, 0.5, loss_fn=lambda out, t: F.cross_entropy(out[0], t))
    assert snip.kept_count(masks) == 9
    with pytest.raises(ValueError, match=r"7 inputs but 4 targets.*batch_first=True"):
        snip.snip_masks(nn.Sequential(nn.Linear(6, 3)), torch.randn(7, 4, 6), y, 0.5)


def test_a_mask_chosen_among_zero_scores_says_so():
    scores = {"a": torch.tensor([3.0, 2.0, 0.0, 0.0]), "b": torch.tensor([0.0, 0.0, 1.0, 0.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snip.masks_from_scores(scores, 0.625)                 # κ = 3 non-zero scores: a real ranking
    with pytest.warns(UserWarning, match=r"only 3 of the κ = 5 .* other 2 are picked among 5 zero scores"):
        masks = snip.masks_from_scores(scores, 0.375)
    assert masks["a"].tolist() == [True, True, True, True]    # ties by position: the first zeros
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        snip.masks_from_scores(scores, 0.375, warn_zero_ties=False)
        signed = {"a": torch.tensor([3.0, -2.0, 0.0, 0.0])}   # GraSP-like signed scores: 0 is not "no information"
        snip.masks_from_scores(signed, 0.5)


def test_every_scoring_function_warns_once_about_weights_left_dense_at_the_callers_line():
    from snip_lib import pruners

    model, x, y = _Scaled(), torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    calls = {
        "connection_sensitivity": lambda: snip.connection_sensitivity(model, x, y),
        "indicator_gradients": lambda: snip.indicator_gradients(model, x, y),
        "snip_masks": lambda: snip.snip_masks(model, x, y, 0.5),
        "snip_masks(scoring_init)": lambda: snip.snip_masks(model, x, y, 0.5, scoring_init="he_normal", seed=0),
        "prune_masks('snip')": lambda: pruners.prune_masks("snip", model, x, y, 0.5),
    }
    for label, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        dense = [w for w in caught if "not prunable by snip_lib" in str(w.message)]
        assert len(dense) == 1, f"{label}: {len(dense)} warnings"
        assert "custom" in str(dense[0].message) and dense[0].filename == __file__, (label, dense[0].filename)


def test_a_masked_model_can_be_scored_again_and_the_new_mask_lies_inside_the_old_one():
    from snip_lib import masking, pruners

    model = _cnn_with_stats(3)
    x, y = _batch(8, (1, 6, 6), 4)
    old = snip.snip_masks(model, x, y, 0.5)
    masking.apply_masks(model, old)
    before = _snapshot(model)
    scores = snip.connection_sensitivity(model, x, y, normalize=False)
    gradients = snip.indicator_gradients(model, x, y)
    _assert_unchanged(model, before)
    for name, mask in old.items():
        assert torch.count_nonzero(scores[name][~mask]) == 0           # pruned weights score 0
        assert torch.count_nonzero(gradients[name][~mask]) == 0
        assert torch.count_nonzero(scores[name][mask]) > 0
    new = snip.snip_masks(model, x, y, 0.8)
    assert all(not (new[n] & ~old[n]).any() for n in old)
    assert snip.kept_count(new) == snip.kept_for(0.8, sum(m.numel() for m in old.values()))
    for other in (snip.snip_masks(model, x, y, 0.8, scoring_init="he_normal", seed=1),
                  pruners.prune_masks("snip", model, x, y, 0.8)):
        assert all(not (other[n] & ~old[n]).any() for n in old)
    _assert_unchanged(model, before)

    masking.apply_masks(model, new)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    model.train()
    for step in range(5):
        xb, yb = _batch(8, (1, 6, 6), 4, seed=10 + step)
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    assert masking.pruned_nonzero(model) == {}
    params = dict(model.named_parameters())
    assert all((params[n][new[n]] != 0).any() for n in new)


def test_complex_and_bool_scores_are_refused_by_name():
    for bad in (torch.rand(3, dtype=torch.complex64), torch.rand(3) > 0.5):
        with pytest.raises(TypeError, match=rf"scores\['b'\] has dtype {bad.dtype}.*real numbers"):
            snip.masks_from_scores({"a": torch.rand(3), "b": bad}, 0.5)
