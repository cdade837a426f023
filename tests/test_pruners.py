"""Pruning-at-initialisation methods behind one interface (snip_lib.pruners).

Small networks only: every method must keep exactly κ entries, leave the model untouched, be
deterministic, and compute what its paper says (GraSP against a brute-force Hessian, SynFlow
against a hand computation and its conservation law).
"""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import experiments, masking, pruners, snip, suites_beyond

FAST = {"synflow": {"iterations": 10}, "iterative-snip": {"steps": 5}, "force": {"steps": 5}}


def _mlp(widths, seed=0, bias=True):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3),
    )


def _batch(shape, classes, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("method", pruners.METHODS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_every_method_keeps_exactly_kappa_entries(method, sparsity):
    model = _convnet()
    x, y = _batch((1, 8, 8), 3)
    masks = pruners.prune_masks(method, model, x, y, sparsity, seed=0, **FAST.get(method, {}))
    params = snip.prunable_parameters(model)
    m = sum(p.numel() for p in params.values())
    assert list(masks) == list(params)
    assert all(masks[n].dtype == torch.bool and masks[n].shape == p.shape for n, p in params.items())
    assert snip.kept_count(masks) == round((1 - sparsity) * m)


@pytest.mark.parametrize("method", pruners.METHODS)
@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_methods_leave_the_model_untouched(method, bn_mode):
    model = _convnet()
    x, y = _batch((1, 8, 8), 3)
    model.train()
    model[3].eval()  # a mixed set of flags must come back as it was
    F.cross_entropy(model(x), y).backward()  # .grad fields exist and must survive
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    flags = [m.training for m in model.modules()]
    pruners.prune_masks(method, model, x, y, 0.9, bn_mode=bn_mode, seed=3, **FAST.get(method, {}))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    assert [m.training for m in model.modules()] == flags


@pytest.mark.parametrize("method", pruners.METHODS)
def test_methods_are_deterministic(method):
    model = _mlp((12, 10, 6, 3))
    x, y = _batch((12,), 3)
    a = pruners.prune_masks(method, model, x, y, 0.8, seed=7, **FAST.get(method, {}))
    b = pruners.prune_masks(method, model, x, y, 0.8, seed=7, **FAST.get(method, {}))
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_random_depends_on_the_seed_and_magnitude_does_not():
    model = _mlp((40, 30, 3))
    x, y = _batch((40,), 3)
    r0, r1 = (pruners.prune_masks("random", model, x, y, 0.9, seed=s) for s in (0, 1))
    assert not all(torch.equal(r0[n], r1[n]) for n in r0)
    m0, m1 = (pruners.prune_masks("magnitude", model, None, None, 0.9, seed=s) for s in (0, 1))
    assert all(torch.equal(m0[n], m1[n]) for n in m0)


def test_snip_and_magnitude_match_the_existing_functions():
    from snip_lib import baselines

    model = _mlp((12, 10, 3))
    x, y = _batch((12,), 3)
    ours = pruners.prune_masks("snip", model, x, y, 0.7, seed=5)  # seed is ignored without scoring_init
    theirs = snip.snip_masks(model, x, y, 0.7)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)
    ours = pruners.prune_masks("magnitude", model, x, y, 0.7, scope="layer")
    theirs = baselines.magnitude_masks(model, 0.7, scope="layer")
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


# ----------------------------------------------------------------------------- GraSP


def _flat_loss(model, x, y, temperature):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def loss(theta):
        pieces = {n: t.reshape(s) for n, t, s in zip(names, torch.split(theta, sizes), shapes)}
        return F.cross_entropy(torch.func.functional_call(model, pieces, (x,)) / temperature, y)

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return loss, theta, names, sizes, shapes


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_scores_equal_theta_times_brute_force_hessian_gradient(temperature):
    model = _mlp((5, 4, 3), seed=1, bias=False).double()
    x, y = _batch((5,), 3, n=8)
    x = x.double()
    loss, theta, names, sizes, shapes = _flat_loss(model, x, y, temperature)
    g = torch.autograd.functional.jacobian(loss, theta)
    h = torch.autograd.functional.hessian(loss, theta)
    expected = torch.split(theta * (h @ g), sizes)
    scores = pruners.grasp_scores(model, x, y, temperature=temperature)
    for name, want, shape in zip(names, expected, shapes):
        torch.testing.assert_close(scores[name], want.reshape(shape), rtol=1e-8, atol=1e-12)


def test_grasp_keeps_the_weights_whose_removal_would_reduce_gradient_flow_most():
    """d/dε ‖g(θ − ε θ_q e_q)‖² at 0 is −2 θ_q (Hg)_q = −2·score: a high score means removal hurts the flow."""
    model = _mlp((5, 4, 3), seed=2, bias=False).double()
    x, y = _batch((5,), 3, n=8, seed=2)
    x = x.double()
    loss, theta, names, sizes, shapes = _flat_loss(model, x, y, 1.0)
    flat_scores = torch.cat([s.reshape(-1) for s in pruners.grasp_scores(model, x, y, temperature=1.0).values()])

    def flow(t):
        return torch.autograd.functional.jacobian(loss, t).square().sum()

    eps = 1e-6
    for q in (int(flat_scores.argmax()), int(flat_scores.argmin())):
        step = torch.zeros_like(theta)
        step[q] = -eps * theta[q]
        derivative = (flow(theta + step) - flow(theta - step)) / (2 * eps)
        assert math.isclose(derivative.item(), -2 * flat_scores[q].item(), rel_tol=1e-4, abs_tol=1e-10)
    masks = pruners.prune_masks("grasp", model, x, y, 0.5, temperature=1.0)
    assert torch.cat([m.reshape(-1) for m in masks.values()])[int(flat_scores.argmax())]


class _LogitsAndHidden(nn.Module):
    """Returns (logits, hidden), as models with auxiliary outputs do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h), h


def test_grasp_refuses_a_temperature_it_cannot_apply_to_a_tuple_output():
    model = _LogitsAndHidden()
    x, y = _batch((6,), 3, n=8)

    def pick(out, t):
        return F.cross_entropy(out[0], t)

    with pytest.raises(ValueError, match=r"GraSP divides the model's output by temperature=200, but the model "
                                         r"returned a tuple, not a Tensor of logits; pass temperature=1"):
        pruners.prune_masks("grasp", model, x, y, 0.5, loss_fn=pick)
    ours = pruners.grasp_scores(model, x, y, pick, temperature=1)  # temperature 1 divides nothing: it works

    class LogitsOnly(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    theirs = pruners.grasp_scores(LogitsOnly(model), x, y, temperature=1)
    assert all(torch.equal(ours[n], theirs[f"inner.{n}"]) for n in ours)


# ----------------------------------------------------------------------------- SynFlow


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.out = nn.Embedding(10, 4), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.embed(x).flatten(1))


@pytest.mark.parametrize("call, error, needle", [
    (lambda m, x: pruners.synflow_scores(m, x, torch.ones(4, 6, dtype=torch.bool)), TypeError,
     "^masks must be None or a dict of prunable parameter name -> bool mask, got a Tensor$"),
    (lambda m, x: pruners.synflow_scores(m, x, [torch.ones(4, 6, dtype=torch.bool)]), TypeError,
     "^masks must be None or a dict of prunable parameter name -> bool mask, got a list$"),
    (lambda m, x: pruners.synflow_scores(m, [x]), ValueError,
     r"^synflow needs an example input tensor with a batch dimension \(only its shape is used\), got a list$"),
    (lambda m, x: pruners.synflow_scores(_LogitsAndHidden(), x), TypeError,
     r"synflow sums the model's output .*, but the model returned a tuple, not a Tensor"),
    (lambda m, x: pruners.synflow_scores(_Tokens(), torch.randint(0, 10, (2, 2))), TypeError,
     "all-ones torch.float64 input .* its example inputs are torch.int64 .* SynFlow needs a model that takes "
     "floating-point inputs"),
])
def test_synflow_errors_say_what_is_wrong(call, error, needle):
    with pytest.raises(error, match=needle):
        call(_mlp((6, 4, 3)), _batch((6,), 3)[0])


def test_synflow_scores_match_a_hand_computation():
    model = _mlp((4, 3, 2), seed=3, bias=False)
    w1, w2 = model[0].weight.detach().abs(), model[2].weight.detach().abs()
    scores = pruners.synflow_scores(model, torch.zeros(7, 4))  # only the shape of the inputs matters
    # R = 1ᵀ|W2||W1|1: ∂R/∂W1_ij = Σ_k |W2_ki|, ∂R/∂W2_ki = Σ_j |W1_ij|
    torch.testing.assert_close(scores["0.weight"].float(), w1 * w2.sum(0)[:, None])
    torch.testing.assert_close(scores["2.weight"].float(), w2 * w1.sum(1)[None, :])
    assert all(s.dtype == torch.float64 for s in scores.values())


def test_synflow_conserves_flow_across_layers_and_masks_score_zero():
    model = _mlp((10, 8, 8, 8, 3), seed=4, bias=False)
    x = torch.randn(2, 10)
    sums = [s.sum().item() for s in pruners.synflow_scores(model, x).values()]
    assert max(sums) == pytest.approx(min(sums), rel=1e-9)  # every layer carries the whole flow R
    mask = {"2.weight": torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) > 0.5}
    scores = pruners.synflow_scores(model, x, mask)
    assert (scores["2.weight"][~mask["2.weight"]] == 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synflow_avoids_the_layer_collapse_of_snip_on_a_deep_narrow_mlp(seed):
    model = _mlp((64, 8, 8, 8, 8, 8, 8, 8, 8, 4), seed=seed, bias=False)
    x, y = _batch((64,), 4, n=64, seed=seed)
    assert masking.layer_collapse(pruners.prune_masks("snip", model, x, y, 0.99))
    assert masking.layer_collapse(pruners.prune_masks("synflow", model, x, y, 0.99)) == []


# ----------------------------------------------------------------------------- iterative SNIP / FORCE


@pytest.mark.parametrize("method", ["iterative-snip", "force"])
def test_one_round_of_progressive_pruning_is_snip(method):
    model = _convnet()
    x, y = _batch((1, 8, 8), 3)
    ours = pruners.prune_masks(method, model, x, y, 0.95, steps=1)
    theirs = snip.snip_masks(model, x, y, 0.95)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


def test_force_lets_pruned_weights_return_and_iterative_snip_does_not(monkeypatch):
    rounds = []
    original = pruners.masks_from_scores

    def recording(scores, sparsity, **options):
        rounds.append(original(scores, sparsity, **options))
        return rounds[-1]

    monkeypatch.setattr(pruners, "masks_from_scores", recording)
    model = _mlp((20, 16, 16, 4), seed=0, bias=False)
    x, y = _batch((20,), 4, n=32)

    def returned(method):
        rounds.clear()
        pruners.prune_masks(method, model, x, y, 0.95, steps=10)
        assert len(rounds) == 10
        return sum(int((~a[n] & b[n]).sum()) for a, b in zip(rounds, rounds[1:]) for n in a)

    assert returned("iterative-snip") == 0
    assert returned("force") > 0


def _dead_end_mlp(zero="4.weight"):
    """An MLP whose weight ``zero`` is all zeros: every weight before it gets a zero gradient."""
    model = _mlp((12, 16, 16, 4))
    with torch.no_grad():
        dict(model.named_parameters())[zero].zero_()
        model[2].bias.fill_(0.1)  # the units after a zeroed 2.weight stay alive, so 4.weight scores
    return model


_PROGRESSIVE = {"iterative-snip": {"steps": 5}, "force": {"steps": 5}, "synflow": {"iterations": 5}}


@pytest.mark.parametrize("method", list(_PROGRESSIVE))
def test_progressive_methods_refuse_all_zero_first_round_scores_like_snip(method):
    """A zeroed last layer zeroes every score (SynFlow's R too): the rounds would rank by position."""
    x, y = _batch((12,), 4)
    with pytest.raises(ValueError, match="all connection sensitivities are zero"):
        snip.snip_masks(_dead_end_mlp(), x, y, 0.9)
    with pytest.raises(ValueError, match=f"all connection sensitivities are zero .*'{method}' has nothing to rank "
                                         "in its first round: the ranking, and so the mask, would be arbitrary"):
        pruners.prune_masks(method, _dead_end_mlp(), x, y, 0.9, **_PROGRESSIVE[method])


@pytest.mark.parametrize("method", list(_PROGRESSIVE))
def test_zero_score_ties_of_the_first_round_are_reported_once(method):
    """With 2.weight zeroed only 4.weight scores (64 entries): round 1 must keep 323 of 512 by position."""
    x, y = _batch((12,), 4)
    with pytest.warns(UserWarning, match=rf"^{method}, round 1 of 5 .*only 64 of the κ = 323 connections") as caught:
        pruners.prune_masks(method, _dead_end_mlp("2.weight"), x, y, 0.9, **_PROGRESSIVE[method])
    assert len([w for w in caught if "zero-score ties" in str(w.message)]) == 1
    assert caught[0].filename == __file__  # it points at the call of prune_masks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a network whose scores are all non-zero: not a word
        pruners.prune_masks(method, _mlp((12, 16, 16, 4)), x, y, 0.9, **_PROGRESSIVE[method])


def test_force_reports_zero_score_ties_in_later_rounds_and_iterative_snip_does_not(monkeypatch):
    """FORCE re-ranks pruned weights by |θ ⊙ g|, so a zero there is news; iterative SNIP's pruned stay out."""
    real, calls = pruners.pruned_sensitivity, []

    def dead_after_round_one(*args, **kwargs):
        scores = real(*args, **kwargs)
        calls.append(None)
        if len(calls) > 1:  # from round 2 on, only the last layer's 64 weights score
            scores = {n: s if n == "4.weight" else torch.zeros_like(s) for n, s in scores.items()}
        return scores

    monkeypatch.setattr(pruners, "pruned_sensitivity", dead_after_round_one)
    x, y = _batch((12,), 4)
    with pytest.warns(UserWarning, match=r"^force, round 2 of 5 \(zero-score ties in round\(s\) 2, 3, 4, 5\)"):
        pruners.prune_masks("force", _mlp((12, 16, 16, 4)), x, y, 0.9, steps=5)
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruners.prune_masks("iterative-snip", _mlp((12, 16, 16, 4)), x, y, 0.9, steps=5)


def test_pruned_sensitivity_with_all_ones_masks_is_snips_sensitivity():
    model = _mlp((12, 10, 3))
    x, y = _batch((12,), 3)
    ones = {n: torch.ones_like(p, dtype=torch.bool) for n, p in snip.prunable_parameters(model).items()}
    ours = pruners.pruned_sensitivity(model, x, y, ones)
    theirs = snip.connection_sensitivity(model, x, y, normalize=False)
    assert all(torch.allclose(ours[n], theirs[n]) for n in ours)


def test_sparsity_schedules():
    exp = pruners.sparsity_schedule(0.99, 4)
    assert exp[-1] == 0.99 and exp == sorted(exp)
    assert [1 - s for s in exp[:3]] == pytest.approx([0.01 ** (t / 4) for t in (1, 2, 3)])
    assert pruners.sparsity_schedule(0.8, 4, "linear") == pytest.approx([0.2, 0.4, 0.6, 0.8])


# ----------------------------------------------------------------------------- shuffle


def test_shuffle_keeps_per_layer_counts_and_moves_positions():
    model = _mlp((30, 20, 10))
    masks = pruners.prune_masks("snip", model, *_batch((30,), 10), 0.8)
    before = {n: m.clone() for n, m in masks.items()}
    shuffled = pruners.shuffle_within_layers(masks, seed=0)
    assert all(torch.equal(masks[n], before[n]) for n in masks)  # the input is not modified
    for n in masks:
        assert shuffled[n].shape == masks[n].shape and shuffled[n].dtype == torch.bool
        assert int(shuffled[n].sum()) == int(masks[n].sum())
        assert not torch.equal(shuffled[n], masks[n])
    again = pruners.shuffle_within_layers(masks, seed=0)
    assert all(torch.equal(again[n], shuffled[n]) for n in masks)
    twins = pruners.shuffle_within_layers({"a": masks["0.weight"], "b": masks["0.weight"].clone()}, seed=0)
    assert not torch.equal(twins["a"], twins["b"])   # each layer its own permutation, even at equal size


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, error, needle",
    [
        (lambda m, x, y: pruners.prune_masks("optimal-brain-surgeon", m, x, y, 0.9), ValueError, "synflow"),
        (lambda m, x, y: pruners.prune_masks("snip", m, x, y, 1.0), ValueError, "1.0"),
        (lambda m, x, y: pruners.prune_masks("snip", m, x, y, "0.9"), TypeError, "'0.9'"),
        (lambda m, x, y: pruners.prune_masks("snip", m, x, y, 0.9, iterations=3), ValueError, "iterations"),
        (lambda m, x, y: pruners.prune_masks("synflow", m, x, y, 0.9, iterations=0), ValueError,
         "^iterations must be a positive int, got 0$"),
        (lambda m, x, y: pruners.prune_masks("force", m, x, y, 0.9, schedule="cosine"), ValueError, "cosine"),
        (lambda m, x, y: pruners.prune_masks("grasp", m, x, y, 0.9, temperature=-1), ValueError,
         "^temperature must be a positive finite number, got -1$"),
        (lambda m, x, y: pruners.prune_masks("grasp", m, None, None, 0.9), ValueError, "grasp"),
        (lambda m, x, y: pruners.prune_masks("random", m, x, y, 0.9, seed=-2), ValueError, "-2"),
        (lambda m, x, y: pruners.prune_masks("snip", m, x, y, 0.9, bn_mode="batch"), ValueError, "batch"),
        (lambda m, x, y: pruners.shuffle_within_layers({"w": torch.ones(3)}, seed=0), TypeError, "bool"),
        (lambda m, x, y: pruners.shuffle_within_layers({"w": torch.ones(3, dtype=torch.bool)}, seed=-1),
         ValueError, "-1"),
    ],
)
def test_errors_name_the_bad_value(call, error, needle):
    model = _mlp((6, 4, 3))
    x, y = _batch((6,), 3)
    with pytest.raises(error, match=needle):
        call(model, x, y)


def test_method_names_are_forgiving_but_checked():
    assert pruners.check_method("Iterative_SNIP") == "iterative-snip"
    with pytest.raises(ValueError, match="allowed: snip, random, magnitude, grasp, synflow, iterative-snip, force"):
        pruners.check_method("snap")


# ----------------------------------------------------------------------------- experiments and suites


def test_prune_and_train_records_method_and_shuffle():
    res = experiments.prune_and_train("lenet300", 0.99, method="synflow", method_options={"iterations": 5},
                                      shuffle=True, limit_train=200, epochs=1, progress=False, device="cpu")
    cfg, metrics = res["config"], res["metrics"]
    assert (cfg["method"], cfg["method_options"], cfg["shuffle"]) == ("synflow", {"iterations": 5}, True)
    assert metrics["kept_parameters"] == round(0.01 * metrics["prunable_parameters"])
    with pytest.raises(ValueError, match="snap"):
        experiments.prune_and_train("lenet300", 0.9, method="snap", progress=False)
    with pytest.raises(ValueError, match="scoring_init"):
        experiments.prune_and_train("lenet300", 0.9, method="grasp", scoring_init="vs-x", progress=False)
    with pytest.raises(ValueError, match="scoring_bias='scheme'.*needs scoring_init"):
        experiments.prune_and_train("lenet300", 0.9, scoring_bias="scheme", progress=False)
    with pytest.raises(ValueError, match="'ones'.*zeros, default, scheme"):
        experiments.prune_and_train("lenet300", 0.9, scoring_init="vs", scoring_bias="ones", progress=False)
    with pytest.raises(ValueError, match="pass scoring_bias as the argument"):
        experiments.prune_and_train("lenet300", 0.9, method_options={"scoring_bias": "scheme"}, progress=False)


def test_prune_and_train_official_scoring_keeps_some_biases_and_records_it():
    """The first official code's scoring: a 'vs' copy with 'vs' biases, biases ranked with the weights."""
    res = experiments.prune_and_train("lenet300", 0.98, scoring_init="vs", scoring_bias="scheme", include_bias=True,
                                      limit_train=200, epochs=1, progress=False, device="cpu")
    cfg, density = res["config"], res["metrics"]["per_layer_density"]
    assert (cfg["scoring_init"], cfg["scoring_bias"], cfg["include_bias"]) == ("vs", "scheme", True)
    assert max(density[f"fc{i}.bias"] for i in (1, 2, 3)) > 0   # zero biases would all be pruned
    assert res["metrics"]["kept_parameters"] == round(0.02 * res["metrics"]["prunable_parameters"])


@pytest.mark.parametrize("suite", suites_beyond.SUITE_NAMES)
def test_beyond_suites_have_unique_file_names_and_valid_runs(suite):
    names = suites_beyond.expected_files(suite)
    assert len(names) == len(set(names)) == len(experiments.SUITES[suite].runs)
    for run in experiments.SUITES[suite].runs:
        if run["sparsity"] > 0:
            assert pruners.check_method(run["method"]) == run["method"]


# --------------------------------------------------------------------------- options and inputs every method must honour


def test_synflow_linearises_the_biases_too():
    """Hand computation on a biased MLP: R = 1'|W2|(|W1|1 + |b1|), so a negative bias counts by its size."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-0.5, 0.3, -0.2]))
    w1, b1, w2 = model[0].weight.detach().abs(), model[0].bias.detach().abs(), model[2].weight.detach().abs()
    scores = pruners.synflow_scores(model, torch.zeros(5, 4))
    torch.testing.assert_close(scores["2.weight"].float(), w2 * (w1.sum(1) + b1)[None, :])


@pytest.mark.parametrize("method, options", [("snip", {}), ("force", {"steps": 1}), ("iterative-snip", {"steps": 1})])
def test_the_loss_fn_option_reaches_the_score(method, options):
    model = _mlp((12, 24, 16, 4))
    x, y = _batch((12,), 4)

    def weighted(out, t):
        return F.cross_entropy(out * torch.linspace(0.1, 3.0, out.shape[1]), t)

    ours = pruners.prune_masks(method, model, x, y, 0.7, loss_fn=weighted, **options)
    reference = snip.snip_masks(model, x, y, 0.7, loss_fn=weighted)
    assert all(torch.equal(ours[n], reference[n]) for n in ours)
    assert not all(torch.equal(ours[n], snip.snip_masks(model, x, y, 0.7)[n]) for n in ours)   # the loss matters


@pytest.mark.parametrize("fn", ["grasp", "force"])
def test_several_batches_are_one_batch_weighted_by_size(fn):
    model = _mlp((12, 24, 16, 4)).double()
    x, y = _batch((12,), 4)
    x = x.double()
    if fn == "grasp":
        whole = pruners.grasp_scores(model, x, y, temperature=1.0)
        parts = pruners.grasp_scores(model, [x[:5], x[5:]], [y[:5], y[5:]], temperature=1.0)
    else:
        kept = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) < 0.5
                for n, p in snip.prunable_parameters(model).items()}
        whole = pruners.pruned_sensitivity(model, x, y, kept)
        parts = pruners.pruned_sensitivity(model, [x[:5], x[5:]], [y[:5], y[5:]], kept)
    for n in whole:
        torch.testing.assert_close(parts[n], whole[n], rtol=1e-9, atol=1e-12)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        net[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        net[1].running_var.copy_(torch.tensor([3.0, 0.2, 7.0]))
    return net


def test_synflow_linearises_batchnorm_buffers():
    """|running_mean| is used: flipping the sign of a running mean changes no score."""
    a, b = _bn_net(), _bn_net()
    with torch.no_grad():
        b[1].running_mean.neg_()
    sa, sb = pruners.synflow_scores(a, torch.zeros(1, 1, 6, 6)), pruners.synflow_scores(b, torch.zeros(1, 1, 6, 6))
    assert all(torch.allclose(sa[n], sb[n]) for n in sa)


def test_synflow_runs_batchnorm_on_its_running_statistics():
    a, b = _bn_net(), _bn_net()
    with torch.no_grad():
        b[1].running_var.mul_(4.0)
    sa, sb = pruners.synflow_scores(a, torch.zeros(1, 1, 6, 6)), pruners.synflow_scores(b, torch.zeros(1, 1, 6, 6))
    assert not torch.allclose(sa["0.weight"], sb["0.weight"])


def _ones(model):
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in snip.prunable_parameters(model).items()}


@pytest.mark.parametrize("mask, error, needle", [
    (torch.ones(6, dtype=torch.bool), ValueError, r"has shape \(6,\); it must have the shape of the parameter, \(4, 6\)"),
    (torch.full((4, 6), 7.0), TypeError, "7.0 that is neither 0 nor 1"),
    ("all", TypeError, "must be a torch.Tensor"),
])
def test_masks_handed_to_the_scores_are_checked(mask, error, needle):
    """A mask that would broadcast, or holds values other than 0 and 1, is refused, not used."""
    model = _mlp((6, 4, 3))
    x, y = _batch((6,), 3)
    masks = {**_ones(model), "0.weight": mask}
    with pytest.raises(error, match=needle):
        pruners.pruned_sensitivity(model, x, y, masks)
    with pytest.raises(error, match=needle):
        pruners.synflow_scores(model, x, masks)
    numeric = {n: m.float() for n, m in _ones(model).items()}  # 0/1 floats are masks too
    assert set(pruners.pruned_sensitivity(model, x, y, numeric)) == set(numeric)


def test_every_score_refuses_inference_mode_with_a_clear_error():
    model = _mlp((6, 4, 3))
    x, y = _batch((6,), 3)
    calls = [lambda: pruners.grasp_scores(model, x, y), lambda: pruners.synflow_scores(model, x),
             lambda: pruners.pruned_sensitivity(model, x, y, _ones(model))]
    for call in calls:
        with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
            call()


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_grasp_leaves_a_float16_model_untouched(bn_mode):
    """Its float32 scoring copy must not leak: same half tensors, .grad, flags and parameter objects."""
    model = _convnet().half()
    x, y = _batch((1, 8, 8), 3)
    model.train()
    model[3].eval()
    for i, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, float(i))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    ids, flags = [id(p) for p in model.parameters()], [m.training for m in model.modules()]
    pruners.prune_masks("grasp", model, x.half(), y, 0.9, bn_mode=bn_mode)
    assert all(v.dtype == state[k].dtype and torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    assert [id(p) for p in model.parameters()] == ids and [m.training for m in model.modules()] == flags


def test_grasp_scores_a_float16_model_in_float32():
    """GraSP's scores (~1e-7 at T = 200) underflow float16; a half model is scored as a float32 copy."""
    model = _mlp((64, 48, 32, 10))
    x, y = _batch((64,), 10, n=64)
    reference = pruners.grasp_scores(model, x, y)
    half = copy.deepcopy(model).half()
    scores = pruners.grasp_scores(half, x.half(), y)
    assert all(s.dtype == torch.float32 for s in scores.values())
    assert all(p.dtype == torch.float16 for p in half.parameters())  # the model itself is not converted
    def zero_share(scores):  # dead ReLU units score exactly 0 in any precision
        return sum(int((s == 0).sum()) for s in scores.values()) / sum(s.numel() for s in scores.values())

    assert zero_share(scores) < zero_share(reference) + 0.01, (zero_share(scores), zero_share(reference))
    keep = snip.masks_from_scores(reference, 0.9), snip.masks_from_scores(scores, 0.9)
    overlap = sum(int((a & b).sum()) for a, b in zip(keep[0].values(), keep[1].values())) / snip.kept_count(keep[0])
    assert overlap > 0.8, overlap  # float16 weights, float32 arithmetic: nearly the float32 ranking


# ----------------------------------------------------------------------------- what a result records


def _tiny_run(**kwargs):
    return experiments.prune_and_train("lenet300", 0.9, seed=0, epochs=1, limit_train=200, device="cpu",
                                       progress=False, **kwargs)


def _pruning_loss(outputs, targets):
    return F.cross_entropy(outputs, targets)


def test_a_custom_pruning_loss_is_recorded_by_name_not_dropped():
    """Dropping it made the file describe a default-loss run that never happened."""
    run = _tiny_run(method_options={"loss_fn": _pruning_loss})
    recorded = run["config"]["method_options"]["loss_fn"]
    assert recorded == f"{experiments.CUSTOM_LOSS_PREFIX}{__name__}._pruning_loss"
    assert "loss_fn" not in _tiny_run()["config"]["method_options"]


def test_amp_and_channels_last_are_recorded_as_what_ran_off_cuda():
    with pytest.warns(UserWarning, match="only take effect on CUDA"):
        run = _tiny_run(amp=True, channels_last=True)
    assert (run["config"]["train"]["amp"], run["config"]["train"]["channels_last"]) == (False, False)


@pytest.mark.parametrize("spelling", ["cifar10", "CIFAR-10", "Cifar10"])
def test_any_spelling_of_cifar10_gets_its_augmentation_and_its_canonical_name(spelling, monkeypatch):
    from snip_lib import data

    asked = {}

    def load_dataset(name, split, **kwargs):
        asked[split] = (name, kwargs.get("augment"))
        raise RuntimeError("stop before training")

    monkeypatch.setattr(data, "available", lambda name: True)
    monkeypatch.setattr(data, "load_dataset", load_dataset)
    with pytest.raises(RuntimeError, match="stop before training"):
        experiments.prune_and_train("vgg-d", 0.9, seed=0, dataset=spelling, epochs=1, device="cpu")
    assert asked["train"] == ("cifar10", True)


def test_a_run_with_a_custom_pruning_loss_is_refused_by_replay(tmp_path):
    from snip_lib import replay, results

    run = _tiny_run(method_options={"loss_fn": _pruning_loss})
    path = tmp_path / "custom-loss.json"
    results.write_result(path, kind=run["kind"], seed=run["seed"], config=run["config"], metrics=run["metrics"],
                         wall_time=run["wall_time"])
    with pytest.raises(ValueError, match="custom loss function .*a replay would score with another loss"):
        replay.replay_arguments(path)
