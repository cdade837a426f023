"""Behaviour pinned by mutation testing: each test here kills a plausible bug (a setting that does not
reach its use, a provenance field not written, a check that compares too little) that the module
tests of baselines, analysis, replay, results, experiments, suites_beyond, viz and cli let through.

Self-contained: imports from snip_lib only; no recorded result file is needed. The few tests that
train call prune_and_train on 100-300 MNIST examples for one epoch (a fraction of a second once
MNIST is loaded).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snip_lib import analysis, baselines, cli, data, experiments, masking, pruners, replay, results, snip
from snip_lib import suites_beyond, viz

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ============================================================================ baselines


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 8), nn.Tanh(), nn.Linear(8, 3))


def test_random_masks_rank_the_biases_too_with_include_bias():
    model = _mlp()
    masks = baselines.random_masks(model, 0.5, seed=0, include_bias=True)
    assert list(masks) == list(snip.prunable_parameters(model, include_bias=True))
    m = sum(p.numel() for p in model.parameters())
    assert sum(t.numel() for t in masks.values()) == m
    assert sum(int(t.sum()) for t in masks.values()) == round(0.5 * m)


def test_obd_masks_refuse_infinite_scores():
    # MSE on a linear model: H_jj = 2/n sum_i x_ij^2 > 0 whatever w is. A float32 weight of 1e20 has
    # w^2 = inf while the loss stays finite (its input is 1e-15), so the OBD score is +inf.
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1e20, 0.5, -0.3]]))
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    x[:, 0] = 1e-15
    y = torch.randn(16, 1, generator=torch.Generator().manual_seed(1))
    assert math.isinf(baselines.obd_scores(model, x, y, loss_fn=F.mse_loss)["weight"][0, 0].item())
    with pytest.raises(ValueError, match="OBD scores are not finite"):
        baselines.obd_masks(model, x, y, 0.5, loss_fn=F.mse_loss)


def test_obd_scores_a_batchnorm_net_on_its_running_statistics_whatever_its_mode():
    """OBD runs the model in eval mode: BatchNorm uses its running statistics, not the batch's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[1].running_mean.copy_(torch.linspace(-1.0, 1.0, 6))
        model[1].running_var.copy_(torch.linspace(0.5, 3.0, 6))
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(2))
    model.train()
    in_train_mode = baselines.obd_scores(model, x, y, method="gauss-newton")
    assert model.training
    model.eval()
    in_eval_mode = baselines.obd_scores(model, x, y, method="gauss-newton")
    for name in in_eval_mode:
        torch.testing.assert_close(in_train_mode[name], in_eval_mode[name])


# ============================================================================ analysis


def test_rank_agreement_top_sets_break_ties_towards_the_lower_index_like_masks_from_scores():
    a = [1.0, 1.0, 1.0, 0.0]      # a three-way tie for the top two places
    b = [3.0, 2.0, 1.0, 0.0]
    got = analysis.rank_agreement(a, b, sparsities=(0.5,))
    assert got["kappa"] == {0.5: 2}
    assert got["overlap"] == {0.5: 1.0}   # a keeps entries 0 and 1 (lower indices), as b does
    # the same tie rule as the masks SNIP actually keeps
    kept = snip.masks_from_scores({"w": torch.tensor(a)}, 0.5)["w"]
    assert torch.nonzero(kept).reshape(-1).tolist() == [0, 1]


class _FakeClock:
    """time.perf_counter for analysis.time_forward: each forward pass advances it by the given seconds."""

    def __init__(self, durations):
        self.now, self.durations = 0.0, list(durations)

    def __call__(self):
        return self.now


class _Timed(nn.Module):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def forward(self, x):
        self.clock.now += self.clock.durations.pop(0)
        return x


def test_time_forward_is_the_fastest_timed_run_after_the_warmup(monkeypatch):
    # warm-up 0.0 s (must not count), then timed runs of 0.15, 0.03 and 0.15 s: the answer is 0.03 s
    clock = _FakeClock([0.0, 0.15, 0.03, 0.15])
    monkeypatch.setattr(analysis.time, "perf_counter", clock)
    model = _Timed(clock)
    assert analysis.time_forward(model, torch.zeros(1), repeats=3, warmup=1) == pytest.approx(0.03)
    assert clock.durations == []


# ============================================================================ replay


def _result_obj(tmp_path, name="r.json", *, epochs=2, config=None, train=None, metrics=None, threads=None):
    """A valid prune_and_train result file (no training), returned as its dict."""
    cfg = {"arch": "lenet300", "sparsity": 0.9, "seed": 3, "dataset": "mnist", "saliency_batch": 100,
           "init": "lecun_truncated_normal", "scoring_init": None, "scoring_bias": "zeros", "include_bias": False,
           "bn_mode": "eval", "method": "snip", "method_options": {}, "shuffle": False, "limit_train": 300,
           "train_examples": 300, "model_options": {}, "device": "cpu", "mode": "full",
           "train": {"epochs": epochs, "optimizer": "sgd", "lr": 0.1, "schedule": "step", "batch_size": 100,
                     "decay_every": 25_000, "decay_factor": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                     "warmup_iterations": 0, **(train or {})}}
    cfg.update(config or {})
    hist = {"train_loss": [2.0, 1.5][:epochs] + [1.0] * max(0, epochs - 2),
            "train_error": [50.0, 40.0][:epochs] + [30.0] * max(0, epochs - 2),
            "val_error": [45.0, 35.0][:epochs] + [25.0] * max(0, epochs - 2),
            "test_error": [44.0, 34.0][:epochs] + [24.0] * max(0, epochs - 2),
            "lr": [0.1] * epochs}
    m = {"iterations": 3 * epochs, "kept_parameters": 26_620, "history": hist, "smoke": False,
         "per_layer_density": {"fc1.weight": 0.09, "fc2.weight": 0.2, "fc3.weight": 0.5}}
    m.update(metrics or {})
    obj = results.write_result(tmp_path / name, kind="prune_and_train", config=cfg, metrics=m, seed=cfg["seed"],
                               wall_time=1.0, device="cpu")
    if threads is not None:
        obj["provenance"]["num_threads"] = threads
        (tmp_path / name).write_text(json.dumps(obj))
    return obj


def _replaying(monkeypatch, change=lambda new: None, seen=None):
    """Make replay.replay return the recorded run itself, changed by ``change``: verify's comparison alone."""
    def fake(obj, *, epochs=None, device=None, progress=False):
        if seen is not None:
            seen.append({"epochs": epochs, "threads": torch.get_num_threads()})
        new = copy.deepcopy(dict(obj))
        change(new)
        return new
    monkeypatch.setattr(replay, "replay", fake)


def test_verify_of_an_unchanged_replay_is_exact(tmp_path, monkeypatch):
    _replaying(monkeypatch)
    v = replay.verify(_result_obj(tmp_path))
    assert v.verdict == "exact" and v.density_difference == 0.0


def test_a_mask_that_moved_between_layers_differs_even_with_the_same_kept_count(tmp_path, monkeypatch):
    """Per-layer density is part of the mask check: a layer off by 0.01 is not 'within tolerance'."""
    def change(new):
        new["metrics"]["per_layer_density"]["fc2.weight"] += 0.01   # one layer only; kept count unchanged

    _replaying(monkeypatch, change)
    v = replay.verify(_result_obj(tmp_path), tolerance=100.0)
    assert v.kept[0] == v.kept[1]
    assert v.density_difference == pytest.approx(0.01)                 # the largest layer difference
    assert not v.exact and not v.agrees and v.verdict == "DIFFERS"


def test_a_density_change_below_the_tolerance_is_within_tolerance_not_exact(tmp_path, monkeypatch):
    def change(new):
        new["metrics"]["per_layer_density"]["fc1.weight"] += replay.DENSITY_TOLERANCE / 2

    _replaying(monkeypatch, change)
    v = replay.verify(_result_obj(tmp_path))
    assert v.verdict == "within tolerance"


def test_verify_replays_with_the_recorded_thread_count_and_restores_it(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    recorded = before + 1
    seen = []
    _replaying(monkeypatch, seen=seen)
    v = replay.verify(tmp_path / _result_obj_path(tmp_path, threads=recorded))
    assert seen == [{"epochs": 2, "threads": recorded}]
    assert v.platform.endswith(f"{recorded} thread(s)")
    assert torch.get_num_threads() == before


def _result_obj_path(tmp_path, **kwargs):
    _result_obj(tmp_path, "threads.json", **kwargs)
    return "threads.json"


def test_a_whole_cosine_run_can_be_replayed_but_not_a_part_of_it(tmp_path):
    obj = _result_obj(tmp_path, train={"schedule": "cosine"})
    assert replay.replay_arguments(obj)["schedule"] == "cosine"
    assert replay.replay_arguments(obj, epochs=2)["epochs"] == 2     # all recorded epochs: fine
    with pytest.raises(ValueError, match="cosine schedule"):
        replay.replay_arguments(obj, epochs=1)


def test_replay_arguments_rebuild_every_recorded_setting(tmp_path):
    """Everything prune_and_train recorded comes back: a replay must not fall back to a default."""
    config = {"scoring_init": "vs", "scoring_bias": "scheme", "include_bias": True, "bn_mode": "train",
              "init": "glorot_uniform", "saliency_batch": 10, "shuffle": True, "method": "snip",
              "method_options": {"iterations": 3}, "model_options": {"width": 2}, "dataset": "fashion-mnist",
              "sparsity": 0.95, "seed": 7, "limit_train": 300}
    train = {"optimizer": "adam", "lr": 0.001, "schedule": "constant", "batch_size": 50, "amp": True,
             "channels_last": True, "momentum": 0.5, "weight_decay": 0.0, "warmup_iterations": 7,
             "clip_grad_norm": 5.0, "decay_factor": 0.2}
    obj = _result_obj(tmp_path, config=config, train=train)
    args = replay.replay_arguments(obj)
    for key, value in config.items():
        assert args[key] == value, key
    for key in ("optimizer", "lr", "schedule", "batch_size", "amp", "channels_last"):
        assert args[key] == train[key], key
    assert args["train_options"] == {"decay_every": 25_000, "decay_factor": 0.2, "momentum": 0.5,
                                     "weight_decay": 0.0, "warmup_iterations": 7, "clip_grad_norm": 5.0}
    # and they are exactly prune_and_train's parameters (a typo would not reach it)
    import inspect
    assert set(args) <= set(inspect.signature(experiments.prune_and_train).parameters)


# ============================================================================ results


def _git(repo, *cmd, env):
    subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True)


def test_git_dirty_counts_changes_to_tracked_files_not_untracked_files(monkeypatch, tmp_path):
    repo = tmp_path / "repo"
    (repo / "snip_lib").mkdir(parents=True)
    (repo / "tracked.txt").write_text("a")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    try:
        for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
            _git(repo, *cmd, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    monkeypatch.setattr(results, "_repo_dir", lambda: repo)
    (repo / "scratch.json").write_text("{}")            # an untracked file (e.g. a new result)
    assert results.provenance()["git_dirty"] is False
    (repo / "tracked.txt").write_text("b")
    assert results.provenance()["git_dirty"] is True


def test_provenance_records_the_device_and_the_thread_count_it_ran_with():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert results.provenance()["num_threads"] == 2
        torch.set_num_threads(1)
        assert results.provenance()["num_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert results.provenance("meta")["device"] == "meta"
    assert results.provenance(torch.device("cpu"))["device"] == "cpu"


def test_provenance_line_names_the_kernel_builds_and_the_date_range():
    frame = pd.DataFrame({
        "seed": [0, 1, 2],
        "wall_time": [60.0, 60.0, 60.0],
        "provenance.timestamp_utc": ["2026-11-23T10:00:00+00:00", "2026-12-06T09:00:00+00:00",
                                     "2026-11-30T10:00:00+00:00"],
        "provenance.platform": ["Linux 6.18.44-fc-v657 x86_64", "Linux 6.1.0-x x86_64", "Linux 6.1.0-x x86_64"],
        "provenance.device_name": ["CPU A", "CPU A", "CPU B"],
        "provenance.git_commit": ["a" * 40] * 3,
        "provenance.git_dirty": [False] * 3,
    })
    line = results.provenance_line(frame)
    assert line == ("recorded: 3 run(s), seed(s) 0-2, 2026-11-23 to 2026-12-06 (UTC), CPU A, CPU B "
                    "(6.1.0-x, 6.18.44-fc-v657), commit(s) aaaaaaaa, 1.0 min per run")


# ============================================================================ experiments


@pytest.fixture(scope="module")
def spied_run():
    """One tiny real prune_and_train run with spies on what it asks of data and pruners (calling through)."""
    calls = {"first_batch": [], "make_loader": [], "load_dataset": [], "prune_masks": [], "shuffle": []}

    def spy(module, name, key, record):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key].append(record(*args, **kwargs))
            return real(*args, **kwargs)
        mp.setattr(module, name, wrapper)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNIP_QUICK", "0")
        spy(data, "first_batch", "first_batch", lambda name, n, **kw: {"n": n, **kw})
        spy(data, "make_loader", "make_loader", lambda ds, bs, **kw: {"n": len(ds), "split": ds.split, **kw})
        spy(data, "load_dataset", "load_dataset", lambda name, split, **kw: {"split": split, **kw})
        spy(pruners, "prune_masks", "prune_masks", lambda method, *a, **kw: {"method": method, **kw})
        spy(pruners, "shuffle_within_layers", "shuffle", lambda masks, **kw: kw)
        res = experiments.prune_and_train("lenet300", 0.9, seed=5, scoring_init="vs", shuffle=True, limit_train=100,
                                          epochs=1, progress=False, device="cpu")
    return res, calls


def test_prune_and_train_draws_everything_from_the_runs_seed(spied_run):
    res, calls = spied_run
    assert [c["seed"] for c in calls["first_batch"]] == [5]                      # the saliency batch D^b
    assert calls["first_batch"][0]["split"] == "train" and calls["first_batch"][0]["n"] == 100
    train_loaders = [c for c in calls["make_loader"] if c["split"] == "train"]
    assert len(train_loaders) == 1 and train_loaders[0]["shuffle"] is True and train_loaders[0]["seed"] == 5
    assert [c["seed"] for c in calls["prune_masks"]] == [5 + experiments.SCORING_SEED_OFFSET]  # the scored copy
    assert calls["shuffle"] == [{"seed": 5}]


def test_prune_and_train_validates_on_the_validation_split_and_limits_only_training(spied_run):
    res, calls = spied_run
    own = [c for c in calls["load_dataset"] if "root" not in c]   # first_batch loads the train split with root=
    assert sorted((c["split"], c.get("limit")) for c in own) == [("test", None), ("train", 100), ("val", None)]
    eval_sizes = {c["split"]: c["n"] for c in calls["make_loader"]}
    assert eval_sizes == {"train": 100, "val": 6000, "test": 10000}
    hist = res["metrics"]["history"]
    assert hist["val_error"] != hist["test_error"]


def test_a_shuffled_mask_keeps_each_layers_count_but_not_its_connections():
    common = dict(seed=2, limit_train=100, epochs=1, progress=False, device="cpu", return_model=True)
    plain = experiments.prune_and_train("lenet300", 0.95, **common)
    shuffled = experiments.prune_and_train("lenet300", 0.95, shuffle=True, **common)
    a, b = masking.get_masks(plain["model"]), masking.get_masks(shuffled["model"])
    assert {n: int(m.sum()) for n, m in a.items()} == {n: int(m.sum()) for n, m in b.items()}
    assert all(not torch.equal(a[n], b[n]) for n in a)
    assert shuffled["config"]["shuffle"] is True


def test_quick_mode_trains_on_5000_examples_and_the_lenet_decay_is_at_25k(monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "1")
    res = experiments.prune_and_train("lenet300", 0.9, seed=0, epochs=1, progress=False, device="cpu")
    assert res["config"]["limit_train"] == res["config"]["train_examples"] == 5000
    assert res["config"]["train"]["decay_every"] == 25_000             # the paper: x0.1 every 25k iterations
    assert experiments.requested_settings({"arch": "lenet300", "sparsity": 0.9})["limit_train"] == 5000
    monkeypatch.setenv("SNIP_QUICK", "0")
    assert experiments.requested_settings({"arch": "lenet300", "sparsity": 0.9})["limit_train"] is None


def test_check_existing_compares_train_options_key_by_key(tmp_path):
    path = tmp_path / "lenet300-sp0.9-seed0.json"
    results.write_result(path, kind="prune_and_train", seed=0, wall_time=1.0, device="cpu",
                         config={"arch": "lenet300", "sparsity": 0.9, "method_options": {"iterations": 100},
                                 "train": {"epochs": 50, "warmup_iterations": 500}},
                         metrics={"final_test_error": 2.0})
    experiments.check_existing([(path, {"epochs": 50, "train_options": {"warmup_iterations": 500}})])  # same: fine
    with pytest.raises(ValueError, match=r"train_options\['warmup_iterations'\]: recorded 500, now 0"):
        experiments.check_existing([(path, {"epochs": 50, "train_options": {"warmup_iterations": 0}})])
    with pytest.raises(ValueError, match=r"method_options\['iterations'\]: recorded 100, now 10"):
        experiments.check_existing([(path, {"method_options": {"iterations": 10}})])


def test_shortened_decay_every_scales_with_the_iterations_per_epoch():
    assert experiments.shortened_decay_every(50) == 25_000
    assert experiments.shortened_decay_every(2, 270) == round(25_000 / 27_000 * 540)
    assert experiments.shortened_decay_every(10, 100) == 926


# ============================================================================ suites_beyond


def _beyond_frame():
    def run(method, sparsity, shuffle, density, collapsed=()):
        return {"kind": "prune_and_train", "seed": 0, "wall_time": 10.0,
                "config": {"arch": "lenet300", "sparsity": sparsity, "method": method, "shuffle": shuffle,
                           "train": {"epochs": 10}, "mode": "full", "device": "cpu"},
                "metrics": {"final_test_error": 2.0, "test_error_at_best_val": 2.1, "kept_parameters": 10,
                            "collapsed_layers": list(collapsed), "per_layer_density": density, "prune_time": 1.0}}
    return suites_beyond.frame_of([
        run("snip", 0.98, True, {"fc1.weight": 0.01, "fc2.weight": 0.1}),
        run("snip", 0.0, False, {"fc1.weight": 1.0, "fc2.weight": 1.0}),
        run("snip", 0.98, False, {"fc1.weight": 0.02, "fc2.weight": 0.3}),
        run("synflow", 0.98, False, {"fc1.weight": 0.0, "fc2.weight": 0.4}, collapsed=["fc1.weight"]),
    ])


def test_tidy_labels_dense_and_shuffled_runs_and_reports_the_sparsest_layer():
    t = suites_beyond.tidy(_beyond_frame())
    assert t["label"].tolist() == ["Dense", "SNIP", "SynFlow", "SNIP + shuffled"]
    assert t["method"].tolist() == ["dense", "snip", "synflow", "snip"]
    assert t["min_density"].tolist() == [1.0, 0.02, 0.0, 0.01]
    assert t["collapsed"].tolist() == [0, 0, 1, 0] and t["commit"].tolist() == ["this run"] * 4


def test_synflow_frame_turns_compression_into_sparsity():
    frame = suites_beyond.synflow_frame()
    sparsities = sorted(set(frame["sparsity"]))
    assert sparsities == [0.0, 68.38, 90.0, 96.84, 99.0, 99.68, 99.9]
    row = frame.query("model == 'cifar10_lottery_vgg16_bn' and method == 'SNIP' and sparsity == 99.9")
    assert row["accuracy"].tolist() == [76.25]


# ============================================================================ viz


def test_mask_image_colour_scale_ends_at_the_images_maximum():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, 1] = True                      # at most one unit in four reads a pixel: max 0.25
    ax = viz.plot_mask_image(mask, (2, 3), colorbar=False)
    assert ax.images[0].get_clim() == (0.0, 0.25)
    empty = viz.plot_mask_image(torch.zeros(4, 6, dtype=torch.bool), (2, 3), colorbar=False)
    assert empty.images[0].get_clim() == (0.0, 1.0)
    import matplotlib.pyplot as plt
    plt.close("all")


# ============================================================================ cli


def test_run_names_files_of_other_methods_after_the_method():
    from pathlib import Path

    assert cli._out_path("res", "lenet300", 0.9, 0, True, "grasp") == Path("res/lenet300-sp0.9-mgrasp-seed0.json")
    assert cli._out_path("res", "lenet300", 0.9, 0, True, "snip") == Path("res/lenet300-sp0.9-seed0.json")
    assert cli._out_path("r/x.json", "lenet300", 0.9, 2, True, "random") == Path("r/x-sp0.9-mrandom-seed2.json")


def test_run_passes_every_seed_and_training_option_to_prune_and_train(tmp_path, monkeypatch):
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return {"kind": "prune_and_train", "seed": kwargs["seed"], "wall_time": 1.0,
                "config": {"arch": kwargs["arch"], "sparsity": kwargs["sparsity"], "device": "cpu"},
                "metrics": {"final_test_error": 1.0, "best_test_error": 1.0, "best_epoch": 1,
                            "test_error_at_best_val": 1.0, "kept_parameters": 1, "prunable_parameters": 2,
                            "smoke": False}}

    monkeypatch.setattr(experiments, "prune_and_train", fake)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--seeds", "3", "4", "--out", str(tmp_path),
                         "--device", "cpu", "--no-progress", "--momentum", "0", "--weight-decay", "0",
                         "--warmup-iterations", "500", "--decay-every", "100", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1                           # --threads took effect
    finally:
        torch.set_num_threads(before)
    assert [c["seed"] for c in calls] == [3, 4]
    assert all(c["train_options"] == {"decay_every": 100, "momentum": 0.0, "weight_decay": 0.0,
                                      "warmup_iterations": 500} for c in calls)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["lenet300-sp0.9-seed3.json", "lenet300-sp0.9-seed4.json"]


def test_reproduce_writes_into_the_suites_own_results_folder_by_default(monkeypatch):
    seen = {}
    monkeypatch.setattr(experiments, "run_suite", lambda name, out, **kw: seen.update(name=name, out=out))
    assert cli.main(["reproduce", "table1-lenet300"]) == 0
    assert seen == {"name": "table1-lenet300", "out": "results/lenet"}   # where the chapter reads it


# ============================================================================ suites_lenet


def test_paper_table1_holds_the_papers_numbers():
    """Lee et al. (2019), Table 1 (test error %): every 'ours - paper' cell of chapter 5 subtracts these."""
    from snip_lib import suites_lenet

    assert suites_lenet.PAPER_TABLE1 == {
        ("lenet300", 0.0): 1.7, ("lenet300", 0.95): 1.6, ("lenet300", 0.98): 2.4,
        ("lenet5", 0.0): 0.9, ("lenet5", 0.98): 0.8, ("lenet5", 0.99): 1.1,
    }
