"""Behaviour of snip_lib.init: the distributions, determinism and validation."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from snip_lib import init

FAN_IN, FAN_OUT = 500, 2000  # distinct fans so Glorot (uses both) and He/LeCun (fan_in) differ


def _big_linear() -> nn.Linear:
    return nn.Linear(FAN_IN, FAN_OUT)  # 1e6 weights: the std estimate is good to ~0.1%


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(5)
        self.fc = nn.Linear(5, 3)
        self.conv1 = nn.Conv1d(2, 3, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - not used
        return x


def test_alias_and_scheme_lists_are_consistent():
    assert len(set(init.SCHEMES)) == len(init.SCHEMES) == 8
    assert set(init.ALIASES.values()) <= set(init.SCHEMES)
    assert init.canonical_scheme("VS-H") == "he_normal"
    assert init.canonical_scheme("vs") == "lecun_truncated_normal"
    assert init.canonical_scheme("xavier_uniform") == "glorot_uniform"


@pytest.mark.parametrize("scheme", init.SCHEMES)
def test_empirical_std_matches_expected(scheme):
    layer = init.apply(_big_linear(), scheme, seed=0)
    expected = init.init_std(scheme, FAN_IN, FAN_OUT)
    measured = layer.weight.std().item()
    assert measured == pytest.approx(expected, rel=0.02)
    assert abs(layer.weight.mean().item()) < 0.01 * expected


def test_expected_std_formulas():
    fi, fo = 300, 100
    assert init.init_std("standard", fi, fo) == pytest.approx(1 / math.sqrt(3 * fi))
    assert init.init_std("glorot_uniform", fi, fo) == pytest.approx(math.sqrt(2 / (fi + fo)))
    assert init.init_std("glorot_normal", fi, fo) == pytest.approx(math.sqrt(2 / (fi + fo)))
    assert init.init_std("he_normal", fi, fo) == pytest.approx(math.sqrt(2 / fi))
    assert init.init_std("he_uniform", fi, fo) == pytest.approx(math.sqrt(2 / fi))
    assert init.init_std("lecun_truncated_normal", fi, fo) == pytest.approx(math.sqrt(1 / fi))
    assert init.init_std("random_normal", fi, fo) == 1.0  # TF default, no variance scaling
    assert init.init_std("truncated_normal", fi, fo) == pytest.approx(0.87962566103423978)
    assert init.init_std("rn", fi, fo, std=0.05) == pytest.approx(0.05)


@pytest.mark.parametrize("scheme, bound", [
    ("lecun_truncated_normal", 2 * math.sqrt(1 / FAN_IN) / init.TRUNCATED_NORMAL_STD_FACTOR),
    ("truncated_normal", 2.0),
    ("standard", 1 / math.sqrt(FAN_IN)),
    ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_uniform", math.sqrt(6 / FAN_IN)),
])
def test_bounded_schemes_stay_within_their_bound(scheme, bound):
    weight = init.apply(_big_linear(), scheme, seed=1).weight
    assert weight.abs().max().item() <= bound * (1 + 1e-6)
    # and the bound is actually approached (the distribution is not narrower than claimed)
    assert weight.abs().max().item() >= 0.95 * bound


def test_untruncated_normal_goes_beyond_two_std():
    weight = init.apply(_big_linear(), "he_normal", seed=1).weight
    assert weight.abs().max().item() > 3 * math.sqrt(2 / FAN_IN)


def test_std_option_overrides_tf_default():
    for scheme in ("random_normal", "truncated_normal"):
        layer = init.apply(_big_linear(), scheme, seed=2, std=0.01)
        assert layer.weight.std().item() == pytest.approx(init.init_std(scheme, 1, 1, std=0.01), rel=0.02)
    assert init.apply(_big_linear(), "tn", seed=2, std=0.01).weight.abs().max().item() <= 0.02 + 1e-9


def test_fan_in_fan_out_matches_pytorch():
    for shape in [(7, 3), (16, 8, 3, 3), (4, 2, 5), (3, 2, 2, 2, 2)]:
        t = torch.empty(shape)
        assert init.fan_in_fan_out(t) == nn.init._calculate_fan_in_and_fan_out(t)


def test_conv_weights_use_receptive_field_fans():
    conv = init.apply(nn.Conv2d(64, 128, 3), "he_normal", seed=0)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)


def test_seed_is_deterministic_and_leaves_global_rng_alone():
    a, b, c = _Net(), _Net(), _Net()  # built first: construction itself uses the global RNG
    state = torch.get_rng_state()
    init.apply(a, "glorot_uniform", seed=5, bias="default")
    init.apply(b, "glorot_uniform", seed=5, bias="default")
    init.apply(c, "glorot_uniform", seed=6, bias="default")
    assert torch.equal(state, torch.get_rng_state())
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_no_seed_uses_global_rng():
    torch.manual_seed(3)
    a = init.apply(_Net(), "he_normal")
    torch.manual_seed(3)
    b = init.apply(_Net(), "he_normal")
    assert torch.equal(a.conv.weight, b.conv.weight)


def test_alias_gives_same_weights_as_canonical_name():
    a = init.apply(_Net(), "vs-h", seed=0)
    b = init.apply(_Net(), "he_normal", seed=0)
    assert torch.equal(a.fc.weight, b.fc.weight)


def test_biases_and_normalisation_layers():
    net = _Net()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.7)
    net.bn.running_mean.fill_(3.0)
    net.bn.running_var.fill_(5.0)
    init.apply(net, "glorot_normal", seed=0)
    assert torch.count_nonzero(net.conv.bias) == 0 and torch.count_nonzero(net.fc.bias) == 0
    assert torch.all(net.bn.weight == 1) and torch.all(net.bn.bias == 0)
    assert torch.all(net.ln.weight == 1) and torch.all(net.ln.bias == 0)
    assert torch.all(net.bn.running_mean == 0) and torch.all(net.bn.running_var == 1)
    assert not torch.all(net.conv1.weight == 0.7)


def test_default_bias_is_pytorch_rule():
    layer = init.apply(nn.Linear(400, 300), "he_normal", seed=0, bias="default")
    bound = 1 / math.sqrt(400)
    assert torch.count_nonzero(layer.bias) == 300
    assert layer.bias.abs().max().item() <= bound
    assert layer.bias.abs().max().item() > 0.9 * bound


def test_scheme_bias_is_drawn_like_a_tensorflow_vector():
    """bias="scheme": TF's fans of a 1-D variable are its length, so 'vs' gives std 1/sqrt(300) for 300 units."""
    layer = init.apply(nn.Linear(4000, 3000), "lecun_truncated_normal", seed=0, bias="scheme")
    std = 1 / math.sqrt(3000)
    assert torch.count_nonzero(layer.bias) == 3000
    assert abs(layer.bias.std().item() - std) < 0.05 * std                # not the weights' 1/sqrt(4000)
    assert layer.bias.abs().max().item() <= 2 * std / init.TRUNCATED_NORMAL_STD_FACTOR + 1e-6  # truncated
    assert abs(layer.weight.std().item() - 1 / math.sqrt(4000)) < 0.01 / math.sqrt(4000)
    again = init.apply(nn.Linear(4000, 3000), "lecun_truncated_normal", seed=0, bias="scheme")
    assert torch.equal(layer.bias, again.bias)                             # seeded
    with pytest.raises(ValueError, match="'vs'.*zeros, default, scheme"):
        init.apply(nn.Linear(3, 2), "he_normal", bias="vs")


def test_apply_keeps_dtype_and_returns_model():
    net = _Net().double()
    assert init.apply(net, "he_uniform", seed=0) is net
    assert net.fc.weight.dtype == torch.float64


def test_unknown_scheme_is_named_with_allowed_list():
    with pytest.raises(ValueError, match=r"'kaiming_wrong'.*glorot_uniform"):
        init.apply(_Net(), "kaiming_wrong")
    with pytest.raises(ValueError, match="None"):
        init.init_std(None, 3, 3)


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"'ones'.*zeros, default"):
        init.apply(_Net(), "he_normal", bias="ones")
    with pytest.raises(ValueError, match=r"std=0\.1.*he_normal"):
        init.apply(_Net(), "he_normal", std=0.1)
    with pytest.raises(ValueError, match="-1.0"):
        init.apply(_Net(), "random_normal", std=-1.0)
    with pytest.raises(TypeError, match="True"):
        init.apply(_Net(), "he_normal", seed=True)
    with pytest.raises(TypeError, match="1.5"):
        init.apply(_Net(), "he_normal", seed=1.5)
    with pytest.raises(ValueError, match="-3"):
        init.apply(_Net(), "he_normal", seed=-3)
    with pytest.raises(TypeError, match="str"):
        init.apply("model", "he_normal")
    with pytest.raises(ValueError, match="fan_in.*0"):
        init.init_std("he_normal", 0, 3)
    with pytest.raises(ValueError, match=r"\(5,\)"):
        init.fan_in_fan_out(torch.empty(5))


@pytest.mark.parametrize("scheme", ["he_normal", "glorot_normal"])
def test_transposed_conv_weights_use_the_fans_of_the_layer_not_of_the_stored_shape(scheme):
    # weight (in, out/groups, kh, kw) = (96, 8, 3, 3); reading the fans off that shape would swap them
    conv = init.apply(nn.ConvTranspose2d(96, 16, 3, groups=2), scheme, seed=0)
    fan_in, fan_out = 96 // 2 * 9, 16 * 9
    assert conv.weight.std().item() == pytest.approx(init.init_std(scheme, fan_in, fan_out), rel=0.03)
    assert torch.count_nonzero(conv.bias) == 0


def test_lecun_scaled_transposed_conv_keeps_the_variance_of_its_input():
    conv = init.apply(nn.ConvTranspose2d(64, 8, 3), "lecun_truncated_normal", seed=0)
    x = torch.randn(16, 64, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        inner = conv(x)[:, :, 2:12, 2:12]          # outputs that sum over the whole kernel
    assert inner.var().item() == pytest.approx(1.0, rel=0.15)


def test_bilinear_weights_are_drawn_with_fan_in_in1_times_in2():
    layer = nn.Bilinear(20, 30, 40)
    before = layer.weight.detach().clone()
    init.apply(layer, "he_normal", seed=0)
    assert not torch.equal(layer.weight, before) and torch.count_nonzero(layer.bias) == 0
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (20 * 30)), rel=0.03)


def test_a_masked_model_stays_pruned_and_its_kept_weights_are_the_unmasked_draw():
    from snip_lib import masking

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    g = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in model.named_parameters() if p.dim() == 2}
    twin = init.apply(copy.deepcopy(model), "he_normal", seed=4)
    masking.apply_masks(model, masks)
    init.apply(model, "he_normal", seed=4)
    assert masking.pruned_nonzero(model) == {}
    params, expected = dict(model.named_parameters()), dict(twin.named_parameters())
    for name, mask in masks.items():
        assert torch.equal(params[name][mask], expected[name][mask])
        assert torch.count_nonzero(params[name][~mask]) == 0


def test_model_without_linear_or_conv_raises():
    with pytest.raises(ValueError, match="Sequential.*Linear"):
        init.apply(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()), "he_normal")


# ----------------------------------------------------------------------------- one seed check


def _seeded_calls():
    """Every public function that takes a seed for a local generator, called with ``seed``."""
    from snip_lib import baselines, data, keeps, pruners
    from snip_lib import snip as snip_mod

    images = torch.zeros(20, 1, 28, 28, dtype=torch.uint8)
    dataset = data.InMemoryImageDataset(images, torch.arange(20) % 10, torch.tensor([0.0]), torch.tensor([255.0]),
                                        name="mnist", split="train")

    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 0])
    masks = {"fc.weight": torch.ones(3, 5, dtype=torch.bool)}
    return {
        "init.apply": lambda s: init.apply(_Net(), "glorot_normal", seed=s),
        "snip_masks(scoring_init=...)": lambda s: snip_mod.snip_masks(
            nn.Sequential(nn.Linear(5, 3)), x, y, 0.5, scoring_init="glorot_normal", seed=s),
        "baselines.random_masks": lambda s: baselines.random_masks(nn.Sequential(nn.Linear(5, 3)), 0.5, seed=s),
        "prune_masks('random')": lambda s: pruners.prune_masks("random", nn.Sequential(nn.Linear(5, 3)), None, None, 0.5, seed=s),
        "shuffle_within_layers": lambda s: pruners.shuffle_within_layers(masks, s),
        "keeps.shuffled_labels": lambda s: keeps.shuffled_labels(dataset, seed=s),
    }


@pytest.mark.parametrize("bad, error", [("3", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)])
def test_every_seeded_function_rejects_a_bad_seed_with_the_same_message(bad, error):
    for call in _seeded_calls().values():
        with pytest.raises(error, match=rf"^seed must be a non-negative int( or None)?, got {re.escape(repr(bad))}"):
            call(bad)


def test_check_seed_returns_plain_ints_and_none_only_where_allowed():
    import numpy as np

    assert init.check_seed(None) is None
    value = init.check_seed(np.int64(7))
    assert value == 7 and type(value) is int
    with pytest.raises(TypeError, match="seed must be a non-negative int, got None"):
        init.check_seed(None, allow_none=False)
    for call in _seeded_calls().values():   # each good seed is accepted, and gives a result
        assert call(3) is not None


def _computed_weight_layers():
    pruned = nn.Linear(40, 30)
    prune.random_unstructured(pruned, "weight", amount=0.5)
    parametrized = nn.utils.parametrizations.weight_norm(nn.Linear(40, 30))
    return [("torch.nn.utils.prune", pruned, "from_torch_prune"),
            ("parametriz", parametrized, "parametrizations.weight.original"),
            ("lazy", nn.LazyLinear(30), "run one forward pass first")]


@pytest.mark.parametrize("what, layer, advice", _computed_weight_layers(), ids=["torch-prune", "parametrize", "lazy"])
def test_a_weight_that_is_computed_rather_than_stored_is_refused_before_anything_changes(what, layer, advice):
    """copy_ into a weight rebuilt at every forward (or read) was lost without a word; a lazy layer
    failed half-way, after the layers before it were redrawn."""
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), layer)
    before = model[0].weight.detach().clone()
    with pytest.raises(ValueError, match=rf"layer '2' \(\w+\) .*{what}.*{re.escape(advice)}|"
                                         rf"layer '2' \(\w+\) is {what}.*{re.escape(advice)}"):
        init.apply(model, "random_normal", seed=0)
    assert torch.equal(model[0].weight, before)                    # nothing changed


def test_recurrent_torch_modules_are_left_alone_with_a_warning_naming_them():
    model = nn.ModuleDict({"rnn": nn.GRU(8, 16), "head": nn.Linear(16, 4)})
    gru_before = copy.deepcopy(model["rnn"].state_dict())
    with pytest.warns(UserWarning, match=r"init.apply leaves rnn as they are"):
        init.apply(model, "random_normal", seed=0)
    assert all(torch.equal(v, gru_before[k]) for k, v in model["rnn"].state_dict().items())
    assert model["head"].weight.std() > 0.5                        # the Linear was drawn (std 1)
