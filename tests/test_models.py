"""Tests for snip_lib.models: exact parameter counts, shapes, options, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import models

# Weights + biases, BN excluded. Paper values: see the module docstring.
EXPECTED_COUNTS = {
    "lenet300": 266_610,
    "lenet5": 431_080,
    "alexnet-s": 5_070_218,
    "alexnet-b": 8_490_378,
    "vgg-c": 10_526_538,
    "vgg-d": 15_245_130,
    "vgg-like": 14_982_474,
    "wrn-16-8": 10_954_170,
    "wrn-16-10": 17_107_642,
    "wrn-22-8": 17_147_322,
    "lstm-s": 136_586,
    "lstm-b": 535_306,
    "gru-s": 103_690,
    "gru-b": 403_978,
}

RECURRENT = ["lstm-s", "lstm-b", "gru-s", "gru-b"]


def test_available_models_lists_exactly_the_paper_architectures():
    assert models.available_models() == list(EXPECTED_COUNTS)


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_parameter_count_is_exact(name):
    assert models.count_parameters(models.build(name)) == EXPECTED_COUNTS[name]


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_forward_gives_one_logit_per_class(name):
    torch.manual_seed(0)
    model = models.build(name).eval()
    x = torch.randn(2, *models.input_shape(name))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "alexnet-s", "gru-s", "lstm-s"])
def test_num_classes_option_sets_the_output_width(name):
    model = models.build(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *models.input_shape(name)))
    assert out.shape == (2, 7)


@pytest.mark.parametrize(
    "name, shape, dataset",
    [("lenet300", (1, 28, 28), "mnist"), ("lenet5", (1, 28, 28), "mnist"),
     ("gru-b", (28, 28), "mnist"), ("vgg-d", (3, 32, 32), "cifar10"), ("wrn-22-8", (3, 32, 32), "cifar10")],
)
def test_input_shape_and_dataset(name, shape, dataset):
    assert models.input_shape(name) == shape
    assert models.dataset_for(name) == dataset


# --------------------------------------------------------------------------- LeNet-5-Caffe


def _inputs_seen_by(model: nn.Module, layer_names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(model, name).register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0]))
        for name in layer_names
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_lenet5_has_no_relu_after_convolutions_by_default():
    torch.manual_seed(0)
    model = models.build("lenet5")
    assert model.snip_options["conv_relu"] is False
    seen = _inputs_seen_by(model, ["conv2", "fc3"], torch.randn(4, 1, 28, 28))
    # Pooled conv outputs reach the next layer with their negative values intact.
    assert (seen["conv2"] < 0).any()
    assert (seen["fc3"] < 0).any()


def test_lenet5_conv_relu_option_adds_relu_after_both_convolutions():
    torch.manual_seed(0)
    plain = models.build("lenet5")
    with_relu = models.build("lenet5", conv_relu=True)
    with_relu.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 28, 28)
    seen = _inputs_seen_by(with_relu, ["conv2", "fc3"], x)
    assert (seen["conv2"] >= 0).all() and (seen["fc3"] >= 0).all()
    assert (seen["conv2"] > 0).any() and (seen["fc3"] > 0).any()
    with torch.no_grad():
        assert not torch.allclose(plain(x), with_relu(x))


# --------------------------------------------------------------------------- AlexNet options


def test_alexnet_paper_fc_widths_give_the_smaller_counts():
    small = models.build("alexnet-s", fc_widths="paper")
    big = models.build("alexnet-b", fc_widths="paper")
    assert small.classifier[0][0].out_features == 512
    assert big.classifier[0][0].out_features == 1024
    assert models.count_parameters(small) == 4_146_570
    assert models.count_parameters(big) == 5_070_218


# --------------------------------------------------------------------------- rebuild and names


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_rebuild_from_snip_arch_and_options(name):
    model = models.build(name)
    rebuilt = models.build(model.snip_arch, **model.snip_options)
    assert rebuilt.snip_arch == model.snip_arch == name
    assert rebuilt.snip_options == model.snip_options
    assert models.count_parameters(rebuilt) == models.count_parameters(model)
    assert "num_classes" in model.snip_options


def test_rebuild_keeps_non_default_options():
    model = models.build("lenet5", conv_relu=True, num_classes=3)
    assert model.snip_options == {"num_classes": 3, "conv_relu": True}
    rebuilt = models.build(model.snip_arch, **model.snip_options)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("spelling", ["WRN_16_8", "Wrn-16-8", " wrn-16_8 "])
def test_names_are_case_insensitive_and_accept_underscores(spelling):
    assert models.build(spelling).snip_arch == "wrn-16-8"


# --------------------------------------------------------------------------- errors


def test_unknown_name_raises_value_error_listing_allowed_names():
    with pytest.raises(ValueError) as info:
        models.build("resnet-50")
    assert "resnet-50" in str(info.value)
    assert "lenet300" in str(info.value) and "gru-b" in str(info.value)
    with pytest.raises(ValueError, match="resnet-50"):
        models.input_shape("resnet-50")
    with pytest.raises(ValueError, match="resnet-50"):
        models.dataset_for("resnet-50")


def test_unknown_option_raises_type_error_naming_it_and_the_allowed_ones():
    with pytest.raises(TypeError) as info:
        models.build("vgg-d", dropout=0.5)
    assert "dropout" in str(info.value) and "num_classes" in str(info.value)
    # conv_relu exists for lenet5 only.
    with pytest.raises(TypeError, match="conv_relu"):
        models.build("lenet300", conv_relu=True)


@pytest.mark.parametrize(
    "name, options, error, bad",
    [
        ("alexnet-s", {"fc_widths": "wide"}, ValueError, "wide"),
        ("lenet5", {"conv_relu": 1}, TypeError, "1"),
        ("lenet300", {"num_classes": 0}, ValueError, "0"),
        ("lenet300", {"num_classes": 2.5}, TypeError, "2.5"),
        ("lstm-s", {"forget_bias": "one"}, TypeError, "one"),
        ("lstm-s", {"forget_bias": float("nan")}, ValueError, "forget_bias must be a finite number, got nan"),
        ("lstm-b", {"forget_bias": float("-inf")}, ValueError, "got -inf"),
    ],
)
def test_bad_option_values_are_rejected(name, options, error, bad):
    with pytest.raises(error, match=bad):
        models.build(name, **options)


# --------------------------------------------------------------------------- recurrent models


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_models_contain_only_linear_layers(name):
    model = models.build(name)
    owners = {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))}
    assert owners == {nn.Linear}


@pytest.mark.parametrize("name", ["lstm-s", "gru-s"])
def test_recurrent_models_accept_both_input_layouts(name):
    torch.manual_seed(0)
    model = models.build(name)
    x = torch.randn(3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="27"):
        model(torch.randn(3, 28, 27))


def test_recurrent_models_read_rows_in_order():
    torch.manual_seed(0)
    model = models.build("gru-s")
    x = torch.randn(2, 28, 28)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.flip(1)))


def test_lstm_cell_matches_torch_lstm_cell():
    torch.manual_seed(0)
    h = 8
    ours = models.LSTMCell(h, h)
    ref = nn.LSTMCell(h, h)  # same gate order i, f, g, o
    with torch.no_grad():
        ref.weight_ih.copy_(ours.gates.weight[:, :h])
        ref.weight_hh.copy_(ours.gates.weight[:, h:])
        ref.bias_ih.copy_(ours.gates.bias)
        ref.bias_hh.zero_()
        x, h0, c0 = torch.randn(5, h), torch.randn(5, h), torch.randn(5, h)
        got_h, got_c = ours(x, (h0, c0))
        want_h, want_c = ref(x, (h0, c0))
    torch.testing.assert_close(got_h, want_h)
    torch.testing.assert_close(got_c, want_c)


def test_lstm_forget_bias_shifts_the_forget_gate():
    torch.manual_seed(0)
    x, h0, c0 = torch.randn(4, 6), torch.zeros(4, 6), torch.randn(4, 6)
    cell = models.LSTMCell(6, 6)
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.zero_()
        _, c_zero = cell(x, (h0, c0))
        cell.forget_bias = 100.0  # forget gate saturates at 1: with i*g = 0.5*0, c is kept
        _, c_keep = cell(x, (h0, c0))
    torch.testing.assert_close(c_zero, 0.5 * c0)
    torch.testing.assert_close(c_keep, c0)
    assert models.build("lstm-s", forget_bias=1).snip_options["forget_bias"] == 1.0


def test_gru_cell_follows_tensorflow_layout():
    torch.manual_seed(0)
    n_in, h = 3, 4
    cell = models.GRUCell(n_in, h)
    x, h0 = torch.randn(2, n_in), torch.randn(2, h)
    with torch.no_grad():
        got = cell(x, h0)
        gates = torch.sigmoid(torch.cat([x, h0], 1) @ cell.gates.weight.T + cell.gates.bias)
        r, u = gates[:, :h], gates[:, h:]
        cand = torch.tanh(torch.cat([x, r * h0], 1) @ cell.candidate.weight.T + cell.candidate.bias)
    torch.testing.assert_close(got, u * h0 + (1 - u) * cand)


# --------------------------------------------------------------------------- count_parameters


def test_count_parameters_excludes_normalisation_unless_asked():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),       # 108 + 4
        nn.BatchNorm2d(4),        # 8
        nn.Flatten(),
        nn.LayerNorm(4),          # 8
        nn.Linear(4, 2),          # 8 + 2
    )
    assert models.count_parameters(model) == 122
    assert models.count_parameters(model, include_bn=True) == 138


def test_count_parameters_counts_shared_tensors_once():
    shared = nn.Linear(5, 5)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert models.count_parameters(model) == 30


def test_count_parameters_include_bn_on_a_paper_model():
    model = models.build("vgg-like")
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for p in m.parameters())
    assert bn > 0
    assert models.count_parameters(model, include_bn=True) == EXPECTED_COUNTS["vgg-like"] + bn


def _conv_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """(channels, height, kernel) of every convolution's output, in forward order."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((o.shape[1], o.shape[2], m.kernel_size[0])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name, kernels", [
    ("vgg-d", [3] * 13),
    ("vgg-c", [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]),   # VGG-C: a 1x1 convolution ends blocks 3 to 5
])
def test_vgg_pools_after_convolutions_2_4_7_10_and_13(name, kernels):
    """The parameter count cannot see where the pooling is; the feature-map sizes can."""
    outputs = _conv_outputs(models.build(name), torch.randn(2, 3, 32, 32))
    assert [h for _, h, _ in outputs] == [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    assert [c for c, _, _ in outputs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    assert [k for _, _, k in outputs] == kernels
    net = models.build(name)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 13      # BN after every convolution
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 2       # and every hidden fc layer
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5


def test_wrn_blocks_are_pre_activation_with_a_projection_that_reads_the_activated_input():
    net = models.build("wrn-16-8").eval()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3 * 2 * 2 + 1
    projections = [n for n, m in net.named_modules() if n.endswith("shortcut") and m is not None]
    assert projections == ["group1.0.shortcut", "group2.0.shortcut", "group3.0.shortcut"]
    block = net.group2[0]
    x = torch.randn(2, 128, 16, 16)
    seen = {}
    block.shortcut.register_forward_hook(lambda m, i, o: seen.update(input=i[0]))  # returns None: output kept
    with torch.no_grad():
        out = block(x)
        expected_in = F.relu(block.bn1(x))
        assert torch.equal(seen["input"], expected_in)                   # not the raw x
        branch = block.conv2(F.relu(block.bn2(block.conv1(expected_in))))
        torch.testing.assert_close(out, branch + block.shortcut(expected_in))
        plain = net.group2[1]                                            # identity shortcut: adds raw x
        y = torch.randn(2, 256, 8, 8)
        torch.testing.assert_close(plain(y), plain.conv2(F.relu(plain.bn2(plain.conv1(F.relu(plain.bn1(y)))))) + y)
    assert [h for _, h, _ in _conv_outputs(net, torch.randn(1, 3, 32, 32))][::5] == [32, 32, 16, 8]
