"""Behaviour of snip_lib.keeps and snip_lib.suites_keeps (chapter 7: what SNIP keeps)."""

from __future__ import annotations

import inspect
import json
import math

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from snip_lib import data, experiments, init, keeps, models, results, snip, suites_keeps


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def tiny_dataset(n: int = 200, seed: int = 0) -> data.InMemoryImageDataset:
    """n 28x28 'images' whose first pixel is the example's index (so draws can be traced)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    targets = torch.arange(n) % 10
    return data.InMemoryImageDataset(images, targets, torch.tensor([0.0]), torch.tensor([255.0]),
                                     name="mnist", split="train")


def lenet300(seed: int = 0) -> torch.nn.Module:
    return init.apply(models.build("lenet300"), experiments.DEFAULT_INIT, seed=seed)


# ----------------------------------------------------------------------------- images


def test_correlation_matrix_matches_numpy_and_flags_constant_images():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 5))
    b = np.stack([a[0], -a[1], rng.normal(size=(4, 5))])
    c = keeps.correlation_matrix(a, b)
    assert c.shape == (3, 3)
    assert c[0, 0] == pytest.approx(1.0)
    assert c[1, 1] == pytest.approx(-1.0)
    assert c[2, 2] == pytest.approx(np.corrcoef(a[2].ravel(), b[2].ravel())[0, 1])
    constant = keeps.correlation_matrix(np.ones((1, 4, 5)), a)
    assert np.isnan(constant).all()


@pytest.mark.parametrize("value", [0.3, 1 / 300, 7 / 300, 0.1])
def test_a_constant_image_is_nan_even_when_its_mean_is_not_exact(value):
    """A first-layer mask image of one value k/300 leaves ~1e-16 after subtracting its mean:
    a correlation of ~0 with anything, which argmax would read as a class, unless it is NaN."""
    rng = np.random.default_rng(1)
    others = rng.normal(size=(3, 28, 28))
    rows = keeps.correlation_matrix(np.full((1, 28, 28), value), others)
    assert np.isnan(rows).all(), rows
    columns = keeps.correlation_matrix(others, np.full((2, 28, 28), value))  # a constant reference too
    assert np.isnan(columns).all(), columns
    almost = np.full((1, 28, 28), value)
    almost[0, 3, 4] += 1e-6                              # not constant: a defined correlation
    assert np.isfinite(keeps.correlation_matrix(almost, others)).all()


def test_correlation_matrix_rejects_mismatched_pixels():
    with pytest.raises(ValueError, match="pixels"):
        keeps.correlation_matrix(np.zeros((2, 4, 4)), np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="images"):
        keeps.correlation_matrix(np.zeros((0, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="dtype bool"):
        keeps.correlation_matrix(np.zeros((2, 4, 4), dtype=bool), np.zeros((2, 4, 4)))
    nan = np.zeros((3, 4, 4))
    nan[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"references\[2\] has a NaN or infinite pixel"):
        keeps.correlation_matrix(np.ones((2, 4, 4)), nan)


def test_class_mask_images_trace_their_class():
    """The chapter's Figure-2 claim on three very different digits: each mask looks most like its class."""
    classes = (0, 1, 7)
    images = keeps.class_mask_images(lenet300(), (0.5, 0.9), classes=classes, n=100, seed=0)
    assert images.shape == (2, 3, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0
    # At 90 % sparsity fc1 keeps fewer connections than at 50 %: the mean of the image is fc1's density.
    assert (images[1].mean(axis=(1, 2)) < images[0].mean(axis=(1, 2))).all()
    corr = keeps.correlation_matrix(images[1], keeps.class_mean_images(classes=classes))
    assert (corr.argmax(axis=1) == np.arange(3)).all(), corr


def test_class_mask_images_rejects_bad_arguments():
    net = lenet300()
    with pytest.raises(ValueError, match="sparsit"):
        keeps.class_mask_images(net, (1.2,))
    with pytest.raises(ValueError, match="class"):
        keeps.class_mask_images(net, (0.9,), classes=(3, 12))
    with pytest.raises(ValueError, match="n must"):
        keeps.class_mask_images(net, (0.9,), n=0)


def test_class_mean_images_are_pixel_averages():
    means = keeps.class_mean_images(classes=(1, 8))
    assert means.shape == (2, 28, 28)
    assert 0.0 <= means.min() and means.max() <= 1.0
    assert means[1].sum() > means[0].sum()  # an 8 has more ink than a 1


def test_plot_image_grid_draws_one_axes_per_image():
    fig = keeps.plot_image_grid(np.random.default_rng(0).random((2, 3, 28, 28)), row_labels=["a", "b"],
                                col_labels=["0", "1", "2"])
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="shape"):
        keeps.plot_image_grid(np.zeros((3, 28, 28)))
    with pytest.raises(ValueError, match="row_labels"):
        keeps.plot_image_grid(np.zeros((2, 1, 4, 4)), row_labels=["a"])


# ----------------------------------------------------------------------------- Figure 3


def test_disjoint_batches_never_share_an_example(monkeypatch):
    ds = tiny_dataset(200)
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: ds)
    batches = keeps.disjoint_batches("mnist", [5, 50, 100], seed=3)
    assert [len(y) for _, y in batches] == [5, 50, 100]
    ids = torch.cat([x[:, 0, 0, 0] for x, _ in batches])  # normalised index; unique iff examples are
    assert len(torch.unique(ids)) == 155
    again = keeps.disjoint_batches("mnist", [5, 50, 100], seed=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="need 250"):
        keeps.disjoint_batches("mnist", [100, 150], seed=0)
    with pytest.raises(ValueError, match="positive"):
        keeps.disjoint_batches("mnist", [0], seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        keeps.disjoint_batches("mnist", [5], seed=-1)   # torch would wrap it around
    with pytest.raises(TypeError, match="got True"):
        keeps.disjoint_batches("mnist", [5], seed=True)


def test_mask_overlap_counts_shared_kept_connections():
    a = {"w": torch.tensor([True, True, False, False])}
    assert keeps.mask_overlap(a, a) == 1.0
    assert keeps.mask_overlap(a, {"w": torch.tensor([False, False, True, True])}) == 0.0
    assert keeps.mask_overlap(a, {"w": torch.tensor([True, False, True, False])}) == 0.5
    with pytest.raises(ValueError, match="different parameters"):
        keeps.mask_overlap(a, {"v": a["w"]})
    with pytest.raises(ValueError, match="keeps no connection"):
        keeps.mask_overlap({"w": torch.zeros(3, dtype=torch.bool)}, {"w": torch.ones(3, dtype=torch.bool)})
    as_float = {"w": a["w"].float()}                       # 0/1 masks of any dtype are masks
    assert keeps.mask_overlap(as_float, as_float) == 1.0
    assert keeps.mask_overlap(as_float, {"w": torch.tensor([1, 0, 1, 0])}) == 0.5


@pytest.mark.parametrize("function", [keeps.mask_overlap, keeps.chance_overlap])
def test_overlaps_refuse_scores_passed_as_masks(function):
    """Scores are not masks: counting their sum as 'kept' gave an overlap of a mask with itself of 0.67."""
    mask = {"w": torch.tensor([True, False, False, True])}
    scores = {"w": torch.tensor([2.0, 0.0, 0.0, 1.0])}
    with pytest.raises(ValueError, match=r"mask a\['w'\] must hold only 0 and 1.*torch.float32"):
        function(scores, scores)
    with pytest.raises(ValueError, match=r"mask b\['w'\]"):
        function(mask, scores)
    with pytest.raises(TypeError, match=r"mask a\['w'\] must be a Tensor, got list"):
        function({"w": [1, 0, 0, 1]}, mask)


def test_chance_overlap_is_the_expected_overlap_at_matched_layer_densities():
    a = {"big": torch.tensor([True] + [False] * 99), "small": torch.tensor([True, False])}
    b = {"big": torch.tensor([False] * 99 + [True]), "small": torch.tensor([False, True])}
    # a keeps 2; by chance b's one of 100 hits a's big connection with p 0.01, its one of 2 with p 0.5
    assert keeps.chance_overlap(a, b) == pytest.approx((0.01 + 0.5) / 2)
    assert keeps.mask_overlap(a, b) == 0.0
    # far above the 2 / 102 that two uniformly random masks of the same overall density would share
    assert keeps.chance_overlap(a, b) > 10 * 2 / 102
    # it is the mean overlap of random masks with b's per-layer counts
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.rand(300, generator=gen) < 0.1, "v": torch.rand(20, generator=gen) < 0.6}
    b_counts = {"w": 30, "v": 10}
    draws = []
    for _ in range(2000):
        rand_b = {}
        for k, n in b_counts.items():
            m = torch.zeros(a[k].numel(), dtype=torch.bool)
            m[torch.randperm(a[k].numel(), generator=gen)[:n]] = True
            rand_b[k] = m
        draws.append(keeps.mask_overlap(a, rand_b))
    assert keeps.chance_overlap(a, rand_b) == pytest.approx(sum(draws) / len(draws), abs=0.01)
    with pytest.raises(ValueError, match="different parameters"):
        keeps.chance_overlap(a, {"w": a["w"]})
    with pytest.raises(ValueError, match="different shapes"):
        keeps.chance_overlap({"w": a["w"]}, {"w": a["w"][:10]})
    with pytest.raises(ValueError, match="keeps no connection"):
        keeps.chance_overlap({"w": torch.zeros(3, dtype=torch.bool)}, {"w": torch.ones(3, dtype=torch.bool)})


def test_mask_stability_rises_with_the_batch_size():
    table = keeps.mask_stability(lenet300(), [1, 1000], 0.9, seed=0, reference_size=2000)
    assert list(table["batch_size"]) == [1, 1000]
    assert table["overlap"].between(0, 1).all()
    assert (table["overlap"] > table["overlap_chance"]).all(), table  # more than the layer densities explain
    assert table["overlap_chance"].between(0.1, 1).all(), table  # a uniform 10 %-dense mask would share 10 %
    assert table["overlap"].iloc[1] > table["overlap"].iloc[0] + 0.2, table
    assert table["overlap_reference"].iloc[1] > table["overlap_reference"].iloc[0], table
    assert table["image_corr_reference"].iloc[1] > 0.9, table
    assert table.attrs["reference_size"] == 2000
    densities = table.filter(like="density").iloc[0]
    assert len(densities) == 3 and (densities > 0).all()


def test_mask_stability_rejects_a_reference_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        keeps.mask_stability(lenet300(), [20_000], 0.9, reference_size=20_000)
    with pytest.raises(ValueError, match="batch_sizes"):
        keeps.mask_stability(lenet300(), [], 0.9)
    # batches too large for any reference: the message names the batch size, not reference_size
    with pytest.raises(ValueError, match=r"batch size 27000 is too large: .*54000 .* at most 26999 fits"):
        keeps.mask_stability(lenet300(), [10, 27_000], 0.9)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        keeps.mask_stability(lenet300(), [10], 0.9, seed=-2, reference_size=100)


# ----------------------------------------------------------------------------- Figure 4


def test_shuffled_labels_permutes_labels_and_shares_images():
    ds = tiny_dataset(200)
    shuffled = keeps.shuffled_labels(ds, seed=1)
    assert shuffled.images is ds.images
    assert torch.equal(torch.bincount(shuffled.targets), torch.bincount(ds.targets))
    assert (shuffled.targets != ds.targets).float().mean() > 0.7
    assert torch.equal(keeps.shuffled_labels(ds, seed=1).targets, shuffled.targets)
    assert not torch.equal(keeps.shuffled_labels(ds, seed=2).targets, shuffled.targets)
    assert torch.equal(ds.targets, torch.arange(200) % 10)  # the original is untouched
    x, y = shuffled.get_batch(torch.arange(4))
    assert torch.equal(x, ds.get_batch(torch.arange(4))[0]) and torch.equal(y, shuffled.targets[:4])


def test_shuffled_labels_needs_an_in_memory_dataset():
    with pytest.raises(TypeError, match="InMemoryImageDataset"):
        keeps.shuffled_labels(torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3)))


def test_label_fitting_scores_with_true_labels(monkeypatch):
    seen = {}
    original = snip.snip_masks

    def spy(model, x, y, sparsity, **kwargs):
        seen["y"] = y.clone()
        return original(model, x, y, sparsity, **kwargs)

    monkeypatch.setattr(snip, "snip_masks", spy)
    run = keeps.label_fitting_run("lenet300", 0.9, "shuffled", n_train=200, epochs=2, n_test=100, seed=4)
    _, true_y = data.first_batch("mnist", 100, seed=4)
    assert torch.equal(seen["y"], true_y)
    m = run["metrics"]
    assert run["kind"] == "label_fitting" and run["config"]["labels"] == "shuffled"
    assert len(m["train_loss"]) == len(m["test_error"]) == 2
    assert m["kept_parameters"] == round(0.1 * m["prunable_parameters"])
    assert run["config"]["train"]["optimizer"] == "adam" and run["config"]["train"]["weight_decay"] == 0
    json.dumps(run)  # JSON-ready


def test_dense_memorises_shuffled_labels_pruned_does_not():
    """Figure 4 in miniature: 300 examples, 60 passes. The pruned network does learn the true labels
    (so its high loss on shuffled ones is not a network that cannot train at all); it cannot memorise."""
    kwargs = dict(n_train=300, epochs=60, n_test=100, seed=0)

    def loss(sparsity, labels):
        return keeps.label_fitting_run("lenet300", sparsity, labels, **kwargs)["metrics"]["final_train_loss"]

    dense, pruned, pruned_true = loss(0.0, "shuffled"), loss(0.99, "shuffled"), loss(0.99, "true")
    assert dense < 0.1, dense                                   # measured 0.008
    assert pruned > 0.8 * math.log(10), pruned                  # measured 2.06; chance is ln 10 = 2.30
    assert pruned_true < pruned - 0.5, (pruned_true, pruned)    # measured 1.09 against 2.06


def test_label_fitting_rejects_bad_arguments():
    with pytest.raises(ValueError, match="labels"):
        keeps.label_fitting_run("lenet300", 0.9, "random", n_train=10, epochs=1)
    with pytest.raises(ValueError, match="n_train"):
        keeps.label_fitting_run("lenet300", 0.9, "true", n_train=0, epochs=1)
    with pytest.raises(ValueError, match="sparsity"):
        keeps.label_fitting_run("lenet300", 1.0, "true", n_train=10, epochs=1)
    with pytest.raises(ValueError, match="n_test=50000 exceeds the 10000 test examples"):
        keeps.label_fitting_run("lenet300", 0.9, "true", n_train=10, epochs=1, n_test=50_000)


def test_a_dense_label_fitting_run_records_no_scoring_batch(monkeypatch):
    def no_scoring(*args, **kwargs):
        raise AssertionError("a dense run scores nothing")

    monkeypatch.setattr(snip, "snip_masks", no_scoring)
    run = keeps.label_fitting_run("lenet300", 0.0, "true", n_train=100, epochs=1, n_test=100, seed=0)
    assert run["config"]["saliency_batch"] is None and run["config"]["saliency_labels"] is None
    assert run["metrics"]["kept_parameters"] == run["metrics"]["prunable_parameters"]


# ----------------------------------------------------------------------------- Table 3


def test_scoring_init_densities_has_one_row_per_scheme_seed_and_layer():
    table = keeps.scoring_init_densities("lenet300", ["random_normal", "vs-h"], 0.9, seeds=(0, 1))
    assert len(table) == 2 * 2 * 3
    assert set(table["layer"]) == {"fc1", "fc2", "fc3"}
    # The kept fraction over all weights is the same 10 % whatever the scheme.
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
    kept = table.assign(kept=table["density"] * table["layer"].map(sizes)).groupby(["scheme", "seed"])["kept"].sum()
    assert np.allclose(kept, round(0.1 * sum(sizes.values())))
    with pytest.raises(ValueError, match="unknown initialisation"):
        keeps.scoring_init_densities("lenet300", ["nope"], 0.9)
    with pytest.raises(ValueError, match=r"seeds must differ .* got \[0, 0\]"):
        keeps.scoring_init_densities("lenet300", ["vs-h"], 0.9, seeds=(0, 0))
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        keeps.scoring_init_densities("lenet300", ["vs-h"], 0.9, seeds=(0.5,))


# ----------------------------------------------------------------------------- recorded results


def _write(path, mode, monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "1" if mode == "quick" else "0")
    results.write_result(path, kind="prune_and_train", config={"arch": "lenet300"},
                         metrics={"final_test_error": 1.5}, seed=0, wall_time=1.0)


def test_recorded_results_explains_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(keeps, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="suites_keeps figure3"):
        keeps.recorded_results("figure3")
    _write(tmp_path / "keeps" / "figure3" / "a.json", "quick", monkeypatch)
    with pytest.raises(FileNotFoundError, match="no recorded full results"):
        keeps.recorded_results("figure3")
    assert len(keeps.recorded_results("figure3", mode=None)) == 1
    _write(tmp_path / "keeps" / "figure3" / "b.json", "full", monkeypatch)
    frame = keeps.recorded_results("figure3")
    assert list(frame["metrics.final_test_error"]) == [1.5] and frame["path"].iloc[0].endswith("b.json")
    with pytest.raises(ValueError, match="suite"):
        keeps.recorded_results("../figure3")


def test_results_dir_is_next_to_the_package():
    import snip_lib

    assert keeps.results_dir().parent == suites_keeps.Path(snip_lib.__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- suites


def test_suites_are_registered_and_their_runs_are_valid_calls():
    assert {"figure3", "table3"} <= set(experiments.SUITES)
    assert "figure4" not in experiments.SUITES  # not a prune_and_train suite
    train_sig = inspect.signature(experiments.prune_and_train)
    fit_sig = inspect.signature(keeps.label_fitting_run)
    for suite in suites_keeps.KEEPS_SUITES.values():
        sig = fit_sig if suite.name == "figure4" else train_sig
        for run in suite.runs:
            sig.bind(**run, seed=0, device="cpu", progress=False)
    fig3 = suites_keeps.KEEPS_SUITES["figure3"].runs
    assert sorted(r["saliency_batch"] for r in fig3) == sorted(suites_keeps.PAPER_FIGURE3)
    assert all("epochs" not in r and "schedule" not in r for r in fig3)  # the family recipe decides
    from snip_lib import suites_lenet  # chapter 5's LeNet recipe: the same warm-up

    assert all(r["train_options"] == {"warmup_iterations": suites_lenet.WARMUP_ITERATIONS} for r in fig3)
    table3 = suites_keeps.KEEPS_SUITES["table3"].runs
    assert {r["scoring_init"] for r in table3} == set(suites_keeps.TABLE3_SCHEMES.values())
    assert all(r["init"] == "glorot_uniform" and r["optimizer"] == "adam" for r in table3)


def test_figure4_is_lenet5_in_full_mode_and_small_in_quick_mode(monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "0")
    full = suites_keeps.figure4_sizes()
    assert full == suites_keeps.FIGURE4_SETTINGS and full["arch"] == "lenet5" and full["sparsity"] == 0.99
    monkeypatch.setenv("SNIP_QUICK", "1")
    quick = suites_keeps.figure4_sizes()
    assert quick["n_train"] * quick["epochs"] < full["n_train"] * full["epochs"]
    full["n_train"] = 1  # a copy: the module's settings are not changed
    assert suites_keeps.FIGURE4_SETTINGS["n_train"] == 5000


def test_result_names_are_unique_within_every_suite():
    for suite in suites_keeps.KEEPS_SUITES.values():
        names = [suites_keeps.result_name(run, seed) for run in suite.runs for seed in (0, 1)]
        assert len(set(names)) == len(names), suite.name
    assert suites_keeps.result_name({"arch": "lenet300", "sparsity": 0.9, "saliency_batch": 10}, 2) == \
        "lenet300-sp0.9-sb10-seed2.json"


def test_run_suite_writes_one_file_per_run_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_runner(**kwargs):
        calls.append(kwargs)
        return {"kind": "fake", "seed": kwargs["seed"], "config": {**kwargs, "device": "cpu"},
                "metrics": {"final_test_error": 1.0}, "wall_time": 0.1}

    suite = suites_keeps.KeepsSuite("fake", "a fake suite", runs=({"arch": "lenet300", "sparsity": 0.5,
                                                                    "saliency_batch": 1},
                                                                   {"arch": "lenet300", "sparsity": 0.5,
                                                                    "saliency_batch": 2}),
                                    runner=fake_runner, seeds=(0,))
    monkeypatch.setitem(suites_keeps.KEEPS_SUITES, "fake", suite)
    paths = suites_keeps.run_suite("fake", out=tmp_path, progress=False, epochs=3)
    assert [p.name for p in paths] == ["lenet300-sp0.5-sb1-seed0.json", "lenet300-sp0.5-sb2-seed0.json"]
    assert all(results.read_result(p)["extra"] == {"suite": "fake"} for p in paths)
    assert calls[0]["epochs"] == 3 and calls[0]["progress"] is False
    suites_keeps.run_suite("fake", out=tmp_path, progress=False)  # both files exist: nothing runs
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"(?s)other settings.*epochs: recorded 3, now 5"):
        suites_keeps.run_suite("fake", out=tmp_path, progress=False, epochs=5)  # a 3-epoch file is no 5-epoch run
    assert len(calls) == 2                                                     # refused before running anything
    suites_keeps.run_suite("fake", out=tmp_path, progress=False, overwrite=True, seeds=[0])
    assert len(calls) == 4
    with pytest.raises(ValueError, match="unknown suite"):
        suites_keeps.run_suite("nope")


def test_main_lists_and_rejects(capsys):
    assert suites_keeps.main(["--list"]) == 0
    assert "figure3" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        suites_keeps.main(["nope"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv, message", [
    (["figure4", "--seeds", "-1"], "seed must be a non-negative int, got -1"),
    (["figure4", "--seeds", "0", "0"], "seeds must differ"),
    (["figure4", "--device", "tpu"], "unknown device 'tpu'"),
    (["figure4", "--epochs", "0"], "--epochs must be >= 1"),
])
def test_main_refuses_bad_input_with_status_2_before_running(monkeypatch, tmp_path, capsys, argv, message):
    monkeypatch.setattr(suites_keeps, "_run_planned", lambda *a, **k: pytest.fail("ran despite bad input"))
    with pytest.raises(SystemExit) as exc:
        suites_keeps.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_run_suite_refuses_no_seeds_before_running(tmp_path):
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence"):
        suites_keeps.run_suite("figure4", out=tmp_path, seeds=[])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- what the chapter-7 functions compute


def test_scoring_init_densities_scores_under_each_scheme():
    table = keeps.scoring_init_densities("lenet300", ["random_normal", "vs-h"], 0.9, seeds=(0,))
    by = table.pivot_table(index="layer", columns="scheme", values="density")
    assert (by["random_normal"] - by["vs-h"]).abs().max() > 1e-3, by


def test_label_fitting_on_shuffled_labels_trains_on_shuffled_labels(monkeypatch):
    seen = []
    original = data.make_loader
    monkeypatch.setattr(data, "make_loader", lambda ds, *a, **k: (seen.append(ds), original(ds, *a, **k))[1])
    keeps.label_fitting_run("lenet300", 0.0, "shuffled", n_train=200, epochs=1, n_test=100, seed=0)
    true = data.load_dataset("mnist", "train", limit=200)
    assert (seen[0].targets != true.targets).float().mean() > 0.7


def test_mask_stability_compares_each_mask_with_the_reference_mask():
    net = init.apply(models.build("lenet300"), experiments.DEFAULT_INIT, seed=0)
    table = keeps.mask_stability(net, [1, 1000], 0.9, seed=0, reference_size=2000)
    a, _, ref = keeps.disjoint_batches("mnist", [1000, 1000, 2000], seed=0)
    mask_a = snip.snip_masks(net, a[0][:1], a[1][:1], 0.9)
    ref_mask = snip.snip_masks(net, *keeps._chunked(*ref), 0.9)
    assert table["overlap_reference"].iloc[0] == pytest.approx(keeps.mask_overlap(mask_a, ref_mask))
    assert table["image_corr_reference"].iloc[0] < 0.99          # one image's mask is not the reference's


@pytest.mark.parametrize("mode, pinned", [("1", False), ("0", True)])
def test_a_table3_suite_run_takes_quick_modes_epochs_and_resumes(tmp_path, monkeypatch, mode, pinned):
    """Table 3 pins 20 (LeNet-300-100) and 4 (LeNet-5-Caffe) epochs: quick mode trains the family's quick
    epochs instead (as reproduce does), and a second call skips the files instead of refusing them."""
    monkeypatch.setenv("SNIP_QUICK", mode)
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        # the whole config the real run records: skip-if-exists compares every setting
        cfg = experiments.planned_config(**{k: v for k, v in kwargs.items() if k != "progress"})
        return {"kind": "prune_and_train", "seed": kwargs["seed"], "config": cfg, "wall_time": 1.0,
                "metrics": {"final_test_error": 2.0}}

    monkeypatch.setattr(experiments, "prune_and_train", fake)
    suites_keeps.run_suite("table3", out=tmp_path, seeds=[0], progress=False)
    runs = suites_keeps.KEEPS_SUITES["table3"].runs
    assert [c["epochs"] for c in calls] == [r["epochs"] if pinned else 1 for r in runs]
    suites_keeps.run_suite("table3", out=tmp_path, seeds=[0], progress=False)  # resumes: all skipped
    assert len(calls) == len(runs)
