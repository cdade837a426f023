"""Tests for snip_lib.propagation: signal propagation measurements and the variance-scaling theory."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import init, propagation


def _batch(n=256, features=64, seed=12345):
    # A seed of its own: drawing x from the same stream as the weights (seed 0) correlates them.
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, 10, (n,), generator=g)


def _linear_net(scheme, depth=8, width=128, seed=0):
    """A deep *linear* network with square hidden layers: the derivation is exact here."""
    model = propagation.deep_mlp(depth, width, "linear", in_features=width, num_classes=10)
    return init.apply(model, scheme, seed=seed)


def _log_slope(values):
    """Least-squares slope of log(values) against the layer index."""
    values = np.asarray(values, dtype=float)
    return np.polyfit(np.arange(len(values)), np.log(values), 1)[0]


# ----------------------------------------------------------------------------- deep_mlp

def test_deep_mlp_structure_and_output_shape():
    model = propagation.deep_mlp(4, 32, "relu")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 5
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 32), (32, 32), (32, 32), (32, 32), (32, 10)]
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("activation", propagation.ACTIVATIONS)
def test_deep_mlp_applies_its_activation(activation):
    model = propagation.deep_mlp(1, 8, activation, in_features=4, num_classes=2)
    hidden = model.hidden[0]
    with torch.no_grad():
        hidden.weight.copy_(torch.eye(8, 4) * 3.0)
        hidden.bias.zero_()
        model.classifier.weight.copy_(torch.eye(2, 8))
        model.classifier.bias.zero_()
    x = torch.tensor([[-1.0, 0.5, 0.0, 0.0]])
    expected = {"tanh": torch.tanh(torch.tensor([-3.0, 1.5])),
                "relu": torch.tensor([0.0, 1.5]), "linear": torch.tensor([-3.0, 1.5])}[activation]
    assert torch.allclose(model(x)[0], expected)


def test_deep_mlp_default_init_is_the_standard_heuristic():
    # PyTorch's nn.Linear default is U(-1/sqrt(n_in), 1/sqrt(n_in)): Glorot's "standard" rule.
    torch.manual_seed(0)
    layer = propagation.deep_mlp(1, 400, "tanh", in_features=300).hidden[0]
    bound = 1 / math.sqrt(300)
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.var().item() == pytest.approx(1 / (3 * 300), rel=0.03)


@pytest.mark.parametrize("kwargs", [
    {"depth": 0, "width": 8}, {"depth": 2, "width": -1}, {"depth": 2.5, "width": 8},
    {"depth": True, "width": 8}, {"depth": 2, "width": 8, "in_features": 0},
])
def test_deep_mlp_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        propagation.deep_mlp(**kwargs)


def test_deep_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="sigmoid.*tanh, relu, linear"):
        propagation.deep_mlp(2, 8, "sigmoid")


# ----------------------------------------------------------------------------- expected_variance_ratio

def test_expected_ratio_standard_is_one_third_forward():
    r = propagation.expected_variance_ratio("standard", 500, 500)
    assert r.forward == pytest.approx(1 / 3)
    assert r.backward == pytest.approx(1 / 3)
    # The backward factor uses n_out: a wide-to-narrow layer passes less gradient back.
    assert propagation.expected_variance_ratio("standard", 500, 100).backward == pytest.approx(100 / 1500)


def test_expected_ratio_glorot_is_the_compromise():
    square = propagation.expected_variance_ratio("glorot_uniform", 300, 300)
    assert square == pytest.approx((1.0, 1.0))
    r = propagation.expected_variance_ratio("glorot_normal", 784, 300)
    # Var(W) = 2/(n_in+n_out): the forward and backward factors average to exactly 1.
    assert (r.forward + r.backward) / 2 == pytest.approx(1.0)
    assert r.forward > 1 > r.backward


@pytest.mark.parametrize("scheme, forward", [
    ("he_normal", 2.0), ("he_uniform", 2.0), ("lecun_truncated_normal", 1.0), ("vs", 1.0), ("vs-h", 2.0),
])
def test_expected_ratio_fan_in_schemes(scheme, forward):
    r = propagation.expected_variance_ratio(scheme, 200, 50)
    assert r.forward == pytest.approx(forward)
    assert r.backward == pytest.approx(forward * 50 / 200)


def test_expected_ratio_random_normal_uses_std():
    assert propagation.expected_variance_ratio("random_normal", 500, 500).forward == pytest.approx(500.0)
    assert propagation.expected_variance_ratio("random_normal", 500, 500, std=0.01).forward == pytest.approx(0.05)


@pytest.mark.parametrize("n_in, n_out", [(0, 5), (5, -1), (2.5, 3), (True, 3)])
def test_expected_ratio_rejects_bad_fans(n_in, n_out):
    with pytest.raises(ValueError, match="positive integer"):
        propagation.expected_variance_ratio("standard", n_in, n_out)


def test_expected_ratio_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="unknown initialisation scheme"):
        propagation.expected_variance_ratio("orthogonal", 10, 10)


# ----------------------------------------------------------------------------- signal_propagation: table

def test_one_row_per_layer_in_call_order_with_the_documented_columns():
    model = propagation.deep_mlp(3, 16, "tanh", in_features=64)
    x, y = _batch()
    df = propagation.signal_propagation(model, x, y)
    assert list(df.columns) == list(propagation.COLUMNS)
    assert list(df["layer"]) == ["hidden.0", "hidden.1", "hidden.2", "classifier"]
    assert list(df["depth"]) == [1, 2, 3, 4]
    assert list(df["fan_in"]) == [64, 16, 16, 16] and list(df["fan_out"]) == [16, 16, 16, 10]
    assert (df["calls"] == 1).all()
    assert set(df["kind"]) == {"Linear"}
    numeric = df[["weight_variance", "input_variance", "input_second_moment", "forward_variance",
                  "input_grad_variance", "backward_variance"]]
    assert np.isfinite(numeric.to_numpy()).all() and (numeric.to_numpy() > 0).all()


def test_values_match_a_hand_computation():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    df = propagation.signal_propagation(model, x, y).set_index("layer")

    xr = x.clone().requires_grad_(True)
    h = model[0](xr)
    h.retain_grad()
    out = model[2](torch.tanh(h))
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    var = lambda t: t.detach().double().var(unbiased=False).item()  # noqa: E731
    assert df.loc["0", "forward_variance"] == pytest.approx(var(h))
    assert df.loc["0", "input_variance"] == pytest.approx(var(x))
    assert df.loc["0", "input_second_moment"] == pytest.approx(x.double().pow(2).mean().item())
    assert df.loc["0", "input_grad_variance"] == pytest.approx(var(xr.grad))
    assert df.loc["0", "backward_variance"] == pytest.approx(var(h.grad))
    assert df.loc["2", "forward_variance"] == pytest.approx(var(out))
    assert df.loc["2", "backward_variance"] == pytest.approx(var(out.grad))
    assert df.loc["2", "weight_variance"] == pytest.approx(var(model[2].weight))


def test_convolutions_are_measured_with_pytorch_fans():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    df = propagation.signal_propagation(model, x, y)
    assert list(df["kind"]) == ["Conv2d", "Linear"]
    assert (df.loc[0, "fan_in"], df.loc[0, "fan_out"]) == (9, 36)


def test_inplace_activation_still_measures_the_pre_activation():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 50), nn.ReLU(inplace=True), nn.Linear(50, 10))
    x, y = torch.randn(64, 10), torch.randint(0, 10, (64,))
    pre = model[0](x).detach().double()
    df = propagation.signal_propagation(model, x, y)
    assert df.loc[0, "forward_variance"] == pytest.approx(pre.var(unbiased=False).item())
    # ∂L/∂(pre-activation) is zero where the ReLU is off; ∂L/∂(post-activation) would not be.
    expected = model[0](x)
    expected.retain_grad()
    F.cross_entropy(model[2](F.relu(expected)), y).backward()
    assert df.loc[0, "backward_variance"] == pytest.approx(expected.grad.double().var(unbiased=False).item())


def test_a_layer_used_several_times_pools_its_calls():
    class Unrolled(nn.Module):
        def __init__(self):
            super().__init__()
            self.step = nn.Linear(8, 8)
            self.out = nn.Linear(8, 3)

        def forward(self, x):
            for _ in range(5):
                x = torch.tanh(self.step(x))
            return self.out(x)

    model = Unrolled()
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    df = propagation.signal_propagation(model, x, y).set_index("layer")
    assert df.loc["step", "calls"] == 5 and df.loc["out", "calls"] == 1
    # Pooled over calls: the variance of all five outputs together.
    outs, h = [], x
    with torch.no_grad():
        for _ in range(5):
            o = model.step(h)
            outs.append(o)
            h = torch.tanh(o)
    assert df.loc["step", "forward_variance"] == pytest.approx(torch.cat(outs).double().var(unbiased=False).item())


# ----------------------------------------------------------------------------- signal_propagation: no side effects

def test_model_is_left_unchanged_and_hooks_are_removed():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    model.train()
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    before = model(x).detach()
    model.load_state_dict(state)  # undo the BN statistics update of the forward just above

    propagation.signal_propagation(model, x, y)

    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
        assert not module._forward_pre_hooks
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # parameters and BN running statistics
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[3].weight.grad is None
    assert model.training
    assert torch.allclose(model(x), before)


def test_hooks_are_removed_and_buffers_restored_when_the_loss_fails():
    model = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 10)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def bad_loss(outputs, targets):
        return outputs.sum(dim=1)  # not a scalar

    x, y = _batch()
    with pytest.raises(ValueError, match="scalar"):
        propagation.signal_propagation(model, x, y, loss_fn=bad_loss)
    assert all(not m._forward_hooks for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # the failed pass had updated the running statistics


def test_refuses_inference_mode_before_touching_the_model():
    model = propagation.deep_mlp(2, 8, in_features=64)
    x, y = _batch()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        propagation.signal_propagation(model, x, y)
    assert all(not m._forward_hooks for m in model.modules())
    with torch.no_grad():  # no_grad is lifted inside
        assert len(propagation.signal_propagation(model, x, y)) == 3


def test_inputs_are_cast_to_the_model_dtype():
    model = propagation.deep_mlp(2, 8, in_features=64).double()
    x, y = _batch()
    df = propagation.signal_propagation(model, x, y)  # float32 batch, float64 model
    expected = propagation.signal_propagation(model, x.double(), y)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(df, expected)


def test_input_grad_variance_is_the_total_gradient_at_a_shared_input():
    # Two layers read the same x: each row reports Var of the summed ∂L/∂x (the documented
    # meaning), not the layer's own share, so the ratio to backward_variance is no per-layer factor.
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.a(x) + self.b(x)

    torch.manual_seed(0)
    model = TwoHeads()
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    df = propagation.signal_propagation(model, x, y).set_index("layer")
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    total = xr.grad.double().var(unbiased=False).item()
    assert df.loc["a", "input_grad_variance"] == pytest.approx(total)
    assert df.loc["b", "input_grad_variance"] == pytest.approx(total)


def test_frozen_parameters_still_give_gradients_and_stay_frozen():
    model = propagation.deep_mlp(2, 8, in_features=64)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = _batch()
    df = propagation.signal_propagation(model, x, y)
    assert (df["backward_variance"] > 0).all()
    assert not any(p.requires_grad for p in model.parameters())


def test_custom_loss_is_used():
    model = propagation.deep_mlp(2, 8, "linear", in_features=64)
    x, y = _batch()
    base = propagation.signal_propagation(model, x, y)
    doubled = propagation.signal_propagation(model, x, y, loss_fn=lambda o, t: 2 * F.cross_entropy(o, t))
    assert np.allclose(doubled["backward_variance"], 4 * base["backward_variance"])
    assert np.allclose(doubled["forward_variance"], base["forward_variance"])


# ----------------------------------------------------------------------------- signal_propagation: the theory

def test_standard_init_shrinks_a_deep_linear_network_by_one_third_per_layer():
    model = _linear_net("standard")
    x, y = _batch(features=128)
    df = propagation.signal_propagation(model, x, y)
    hidden = df[df["layer"].str.startswith("hidden")]
    assert _log_slope(hidden["forward_variance"]) == pytest.approx(math.log(1 / 3), abs=0.1)
    # Backward: the gradient shrinks by 1/3 per layer on its way down to the input.
    assert _log_slope(hidden["backward_variance"]) == pytest.approx(-math.log(1 / 3), abs=0.1)


def test_glorot_keeps_a_deep_linear_network_steady_on_square_layers():
    model = _linear_net("glorot_uniform")
    x, y = _batch(features=128)
    df = propagation.signal_propagation(model, x, y)
    hidden = df[df["layer"].str.startswith("hidden")]
    forward = hidden["forward_variance"].to_numpy()
    backward = hidden["backward_variance"].to_numpy()
    assert 0.5 < forward[-1] / forward[0] < 2.0
    assert 0.5 < backward[0] / backward[-1] < 2.0
    assert abs(_log_slope(forward)) < 0.1


def test_relu_halves_the_signal_and_he_init_compensates():
    x, y = _batch(features=128)
    slopes = {}
    for scheme in ("glorot_uniform", "he_normal"):
        model = init.apply(propagation.deep_mlp(8, 128, "relu", in_features=128), scheme, seed=0)
        df = propagation.signal_propagation(model, x, y)
        slopes[scheme] = _log_slope(df[df["layer"].str.startswith("hidden")]["forward_variance"])
    # ReLU nets are noisier than linear ones (a random half of the units is off): wider margins.
    assert slopes["glorot_uniform"] == pytest.approx(math.log(1 / 2), abs=0.25)
    assert slopes["he_normal"] == pytest.approx(0.0, abs=0.25)


@pytest.mark.parametrize("scheme", ["standard", "glorot_uniform", "lecun_truncated_normal"])
def test_per_layer_factors_match_expected_variance_ratio(scheme):
    model = _linear_net(scheme, depth=4, width=256)
    x, y = _batch(n=512, features=256)
    df = propagation.signal_propagation(model, x, y)
    for row in df[df["layer"].str.startswith("hidden")].itertuples():
        theory = propagation.expected_variance_ratio(scheme, row.fan_in, row.fan_out)
        forward = row.forward_variance / row.input_second_moment
        backward = row.input_grad_variance / row.backward_variance
        assert forward == pytest.approx(theory.forward, rel=0.15), row.layer
        assert backward == pytest.approx(theory.backward, rel=0.15), row.layer


# ----------------------------------------------------------------------------- signal_propagation: bad input

@pytest.mark.parametrize("call, error, match", [
    (lambda m, x, y: propagation.signal_propagation("net", x, y), TypeError, "torch.nn.Module"),
    (lambda m, x, y: propagation.signal_propagation(m, x.numpy(), y), TypeError, "inputs must be a torch.Tensor"),
    (lambda m, x, y: propagation.signal_propagation(m, x, [1, 2]), TypeError, "targets must be a torch.Tensor"),
    (lambda m, x, y: propagation.signal_propagation(m, x, y[:-1]), ValueError, "one entry per example"),
    (lambda m, x, y: propagation.signal_propagation(m, x[:0], y[:0]), ValueError, "non-empty"),
    (lambda m, x, y: propagation.signal_propagation(m, x.long(), y), TypeError, "floating-point"),
    (lambda m, x, y: propagation.signal_propagation(m, x, y, loss_fn="mse"), TypeError, "callable"),
    (lambda m, x, y: propagation.signal_propagation(nn.Sequential(nn.Tanh()), x, y), ValueError, "no nn.Linear"),
])
def test_bad_input_is_rejected(call, error, match):
    model = propagation.deep_mlp(2, 8, in_features=64)
    x, y = _batch()
    with pytest.raises(error, match=match):
        call(model, x, y)
