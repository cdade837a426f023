"""The named suites of recorded runs: unique file names, resumable runner, import order, Figure 1 helpers."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from snip_lib import experiments, results, suites_lenet, suites_modern

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(experiments.SUITES))
def test_every_suite_has_unique_file_names(name):
    suite = experiments.SUITES[name]
    names = [experiments.result_name(suite, run, seed) for run in suite.runs for seed in (0, 1)]
    assert len(set(names)) == len(names), names


def test_result_name_tags_only_what_varies():
    suite = experiments.Suite("s", "", runs=(
        {"arch": "lenet300", "sparsity": 0.9, "saliency_batch": 1, "lr": 0.1},
        {"arch": "lenet300", "sparsity": 0.9, "saliency_batch": 10, "lr": 0.1},
        {"arch": "lenet5", "sparsity": 0.9, "lr": 0.01},
    ))
    assert experiments.result_name(suite, suite.runs[0], 3) == "lenet300-sp0.9-sb1-seed3.json"
    assert experiments.result_name(suite, suite.runs[2], 0) == "lenet5-sp0.9-seed0.json"
    clash = experiments.Suite("c", "", runs=({"arch": "lenet300", "sparsity": 0.9, "device": "cpu"},
                                             {"arch": "lenet300", "sparsity": 0.9, "device": "cuda"}))
    with pytest.raises(ValueError, match="differ only in keys"):
        experiments.result_name(clash, clash.runs[0], 0)


def test_run_suite_runs_seeds_outermost_skips_existing_and_filters(tmp_path, monkeypatch):
    calls = []

    def fake(**kwargs):
        calls.append((kwargs["arch"], kwargs["seed"]))
        return {"kind": "fake", "seed": kwargs["seed"], "config": _planned(kwargs), "wall_time": 0.1,
                "metrics": {"final_test_error": 1.0, "test_error_at_best_val": 1.0, "kept_parameters": 1,
                            "prunable_parameters": 2, "smoke": False}}

    suite = experiments.Suite("fake-suite", "", runs=({"arch": "lenet300", "sparsity": 0.5},
                                                      {"arch": "lenet5", "sparsity": 0.5}), seeds=(0, 1))
    monkeypatch.setitem(experiments.SUITES, suite.name, suite)
    monkeypatch.setattr(experiments, "prune_and_train", fake)
    lines = []
    paths = experiments.run_suite("fake-suite", tmp_path, log=lines.append)
    assert calls == [("lenet300", 0), ("lenet5", 0), ("lenet300", 1), ("lenet5", 1)]
    assert all(p.exists() and results.read_result(p)["extra"] == {"suite": "fake-suite"} for p in paths)
    experiments.run_suite("fake-suite", tmp_path, log=lines.append)  # everything exists: nothing runs
    assert len(calls) == 4 and sum("skipped" in line for line in lines) == 4
    experiments.run_suite("fake-suite", tmp_path, archs=["lenet5"], seeds=[1], overwrite=True, log=lines.append)
    assert calls[-1] == ("lenet5", 1) and len(calls) == 5
    with pytest.raises(ValueError, match="no run for architectures"):
        experiments.run_suite("fake-suite", tmp_path, archs=["vgg-d"])
    experiments.run_suite("fake-suite", tmp_path, sparsities=[0.5], archs=["lenet300"], seeds=[7], log=lines.append)
    assert calls[-1] == ("lenet300", 7) and len(calls) == 6
    with pytest.raises(ValueError, match=r"no run at sparsities \[0.9\].*it has \[0.5\]"):
        experiments.run_suite("fake-suite", tmp_path, sparsities=[0.9])
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        experiments.run_suite("nope", tmp_path)


@pytest.mark.parametrize("module", ["suites_lenet", "suites_keeps", "suites_modern", "experiments", "cli"])
def test_each_suite_module_imports_first(module):
    """The suite modules import each other through experiments: any of them must work as the first import."""
    code = f"import snip_lib.{module}; from snip_lib import experiments; print(len(experiments.SUITES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(experiments.SUITES)


def test_modern_suites_follow_the_paper_and_say_their_budget():
    t2 = experiments.SUITES["table2-rnn"]
    assert {r["arch"] for r in t2.runs} == set(suites_modern.RNN_ARCHS)
    assert {r["sparsity"] for r in t2.runs} == {0.0, 0.95}
    for run in t2.runs:
        assert run["train_options"]["decay_every"] == suites_modern.decay_for(run["epochs"]) < run["epochs"] * 540
    assert "SHORTENED" in t2.description
    t3 = experiments.SUITES["table3-rnn"]
    assert all(r["init"] == "glorot_uniform" and r["optimizer"] == "adam" and r["sparsity"] == 0.9 for r in t3.runs)
    cifar = experiments.SUITES["table2-cifar"]
    assert {(r["arch"], r["sparsity"]) for r in cifar.runs if r["sparsity"]} == \
        {(a, v[0]) for a, v in suites_modern.PAPER_TABLE2.items() if a not in suites_modern.RNN_ARCHS}
    with pytest.raises(ValueError, match="positive int"):
        suites_modern.decay_for(0)


def test_figure1_helpers(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_lenet, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="figure1-lenet300"):
        suites_lenet.figure1_results()
    for folder, sp, err in (("lenet", 0.0, 1.5), ("figure1-lenet300", 0.5, 1.4)):
        cfg = {"arch": "lenet300", "sparsity": sp, "train": {"epochs": 50}}
        results.write_result(tmp_path / folder / f"r{sp}.json", kind="prune_and_train", config=cfg, seed=0,
                             metrics={"final_test_error": err, "test_error_at_best_val": err + 0.1},
                             wall_time=1.0, device="cpu")
    frame = suites_lenet.figure1_results(mode=None)
    assert sorted(frame["source"]) == ["figure1-lenet300", "lenet"]
    tidy = suites_lenet.sweep_frame(frame).sort_values("sparsity")
    assert tidy["sparsity"].tolist() == [0.0, 50.0] and tidy["final"].tolist() == [1.5, 1.4]
    assert tidy["epochs"].tolist() == [50, 50]


@pytest.mark.parametrize("setting, other, named", [
    ("limit_train", 5000, "config.limit_train: 5000 vs null"),                 # a --limit-train run
    ("train", {"epochs": 50, "lr": 0.1, "decay_every": 5000}, "config.train.decay_every"),
    ("init", "he_normal", 'config.init: "glorot_uniform" vs "he_normal"'),
    ("mode", "quick", 'config.mode: "full" vs "quick"'),
])
def test_summarize_refuses_a_row_whose_runs_differ_in_any_setting(tmp_path, setting, other, named):
    """A row is keyed on (arch, sparsity, lr, epochs); a run that differs in anything else (a smaller
    training set, another decay point, init or mode) must not be averaged into it."""
    base = {"arch": "lenet300", "sparsity": 0.95, "init": "glorot_uniform", "limit_train": None, "mode": "full",
            "train": {"epochs": 50, "lr": 0.1, "decay_every": 25000}}
    for seed, config in enumerate((base, dict(base, **{setting: other}))):
        results.write_result(tmp_path / f"r{seed}.json", kind="prune_and_train", config=config, seed=seed,
                             metrics={"final_test_error": 1.9 + seed, "test_error_at_best_val": 2.0,
                                      "best_test_error": 1.8}, wall_time=60.0, device="cpu")
    frame = results.load_results(tmp_path)
    with pytest.raises(ValueError, match=r"(?s)runs of lenet300 at 95 %, lr 0.1, 50 epochs were not trained the "
                                         r"same way \(.*" + re.escape(named) + r".*Files: r0.json, r1.json"):
        suites_lenet.summarize(frame)
    assert suites_lenet.summarize(frame[frame["seed"] == 0])["n"].tolist() == [1]  # one recipe: fine


def test_mixed_settings_ignores_seed_and_device_and_fills_settings_older_files_lack(tmp_path):
    for seed, extra in enumerate(({}, {"method": "snip", "shuffle": False, "device": "cuda"})):
        results.write_result(tmp_path / f"r{seed}.json", kind="prune_and_train", seed=seed, wall_time=1.0,
                             config={"arch": "lenet300", "seed": seed, "device": "cpu", "train": {"lr": 0.1}, **extra},
                             metrics={"final_test_error": 2.0})
    assert results.mixed_settings(results.load_results(tmp_path)) == {}
    results.write_result(tmp_path / "r2.json", kind="prune_and_train", seed=2, wall_time=1.0,
                         config={"arch": "lenet300", "method": "grasp", "train": {"lr": 0.1}},
                         metrics={"final_test_error": 2.0})
    assert results.mixed_settings(results.load_results(tmp_path)) == {"config.method": ['"grasp"', '"snip"']}


def test_table1_results_and_summarize_keep_learning_rates_and_budgets_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_lenet, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="table1-lenet5-lr0.1"):
        suites_lenet.table1_results()

    def write(folder, name, sp, lr, epochs, err, seed):
        cfg = {"arch": "lenet5", "sparsity": sp, "train": {"epochs": epochs, "lr": lr}}
        results.write_result(tmp_path / folder / name, kind="prune_and_train", config=cfg, seed=seed,
                             metrics={"final_test_error": err, "test_error_at_best_val": err, "best_test_error": err},
                             wall_time=60.0, device="cpu")

    write("lenet", "a0.json", 0.98, 0.01, 10, 1.4, 0)
    write("lenet", "a1.json", 0.98, 0.01, 10, 1.6, 1)
    write("table1-lenet5-short-lr0.1", "b0.json", 0.98, 0.1, 10, 1.0, 0)
    write("table1-lenet5-lr0.1", "c0.json", 0.98, 0.1, 50, 0.9, 0)
    write("table1-lenet5-lr0.1", "c1.json", 0.99, 0.1, 50, 1.2, 0)
    write("table1-lenet5-lr0.1-100ep", "d0.json", 0.99, 0.1, 100, 1.1, 0)
    frame = suites_lenet.table1_results(mode=None)
    assert sorted(set(frame["source"])) == sorted(suites_lenet.TABLE1_FOLDERS)
    table = suites_lenet.summarize(frame)
    assert table[["sparsity", "lr", "epochs", "n"]].values.tolist() == [
        [98.0, 0.01, 10, 2], [98.0, 0.1, 10, 1], [98.0, 0.1, 50, 1], [99.0, 0.1, 50, 1], [99.0, 0.1, 100, 1]]
    assert table["final_mean"].tolist() == pytest.approx([1.5, 1.0, 0.9, 1.2, 1.1])
    assert table["final_std"].iloc[0] == pytest.approx(0.1414, abs=1e-4) and math.isnan(table["final_std"].iloc[1])
    assert table["paper"].tolist() == [0.8, 0.8, 0.8, 1.1, 1.1]
    assert table["seed_ids"].tolist() == ["0-1", "0", "0", "0", "0"]
    assert table["recorded"].str.match(r"\d{4}-\d\d-\d\d").all()        # when, from the provenance
    shown = suites_lenet.table1_frame(table)
    assert {"seed ids", "device", "machine", "recorded (UTC)", "commit"} <= set(shown.columns)
    assert results._id_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    with pytest.raises(ValueError, match="non-empty"):
        suites_lenet.summarize(frame.iloc[0:0])


def test_diagnosis_table_compares_each_change_with_the_plain_run_of_its_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_lenet, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="table1-lenet300-diagnosis"):
        suites_lenet.diagnosis_table(mode=None)
    suite = experiments.SUITES["table1-lenet300-diagnosis"]
    variant_run = dict(zip(suites_lenet.DIAGNOSIS_VARIANTS, suite.runs))

    def write(folder, name, err, seed, epochs=50):
        config = {"arch": "lenet300", "sparsity": 0.98, "train": {"epochs": epochs}}
        results.write_result(tmp_path / folder / name, kind="prune_and_train", config=config, seed=seed,
                             metrics={"final_test_error": err, "test_error_at_best_val": err},
                             wall_time=1.0, device="cpu")

    def write_variant(label, err, seed, epochs=50):
        write("table1-lenet300-diagnosis", experiments.result_name(suite, variant_run[label], seed), err, seed, epochs)

    write("lenet", "p0.json", 3.0, 0)
    write("lenet", "p1.json", 2.0, 1)
    write("lenet", "p7.json", 9.0, 7)        # a Table 1 seed no variant ran: not in the plain row's mean
    write_variant("Glorot initialisation", 3.5, 0)
    write_variant("100 epochs (two lr decays)", 2.5, 0, epochs=100)
    scoring = "the first official code's scoring (two initialisations, 'vs' biases, biases prunable)"
    write_variant(scoring, 2.8, 0)
    write_variant(scoring, 1.6, 1)
    write("table1-lenet300-diagnosis", "lenet300-sp0.98-seed0.json", 9.9, 0)  # no variant's name: ignored
    table = suites_lenet.diagnosis_table(mode=None).set_index("variant")
    assert table.loc["plain (Table 1 recipe)", "final"] == pytest.approx(2.5)   # mean over the variants' seeds 0, 1
    assert table.loc["plain (Table 1 recipe)", "seeds"] == 2
    assert math.isnan(table.loc["plain (Table 1 recipe)", "change_sd"])           # no spread of a row with itself
    assert table.loc["Glorot initialisation", "change"] == pytest.approx(0.5)   # against seed 0's plain run
    assert math.isnan(table.loc["Glorot initialisation", "change_sd"])          # one seed: no spread
    assert table.loc["100 epochs (two lr decays)", "change"] == pytest.approx(-0.5)
    assert table.loc["100 epochs (two lr decays)", "epochs"] == 100
    # Paired by seed: -0.2 and -0.4, so the change is -0.3 with sd 0.141 (the means alone differ by 0.3 too).
    assert table.loc[scoring, "change"] == pytest.approx(-0.3)
    assert table.loc[scoring, "change_sd"] == pytest.approx(0.1414, abs=1e-4)
    assert table.loc[scoring, "seeds"] == 2
    # The scoring variant also sets scoring_init, but its files are not two-initialisation runs.
    assert "two initialisations (official code)" not in table.index
    assert "biases prunable (official code)" not in table.index                 # not recorded: no row
    assert list(table.index[:2]) == ["plain (Table 1 recipe)", "Glorot initialisation"]  # the suite's order


@pytest.mark.parametrize("mixed", ["variant", "plain"])
def test_diagnosis_table_refuses_a_row_whose_runs_are_not_one_recipe(tmp_path, monkeypatch, mixed):
    """A variant's (or the plain row's) mean is over seeds of one recipe: a 10-epoch file is not averaged in."""
    monkeypatch.setattr(suites_lenet, "results_dir", lambda: tmp_path)
    suite = experiments.SUITES["table1-lenet300-diagnosis"]
    glorot = dict(zip(suites_lenet.DIAGNOSIS_VARIANTS, suite.runs))["Glorot initialisation"]

    def write(folder, name, seed, epochs):
        config = {"arch": "lenet300", "sparsity": 0.98, "train": {"epochs": epochs, "lr": 0.1}}
        results.write_result(tmp_path / folder / name, kind="prune_and_train", config=config, seed=seed,
                             metrics={"final_test_error": 3.0, "test_error_at_best_val": 3.0}, wall_time=1.0,
                             device="cpu")

    for seed in (0, 1):
        write("lenet", f"lenet300-sp0.98-seed{seed}.json", seed, 10 if mixed == "plain" and seed else 50)
        write("table1-lenet300-diagnosis", experiments.result_name(suite, glorot, seed), seed,
              10 if mixed == "variant" and seed else 50)
    what = "Glorot initialisation" if mixed == "variant" else "plain (Table 1 recipe)"
    with pytest.raises(ValueError, match=rf"runs of the diagnosis row '{re.escape(what)}' were not trained the "
                                         r"same way \(config.train.epochs: 10 vs 50"):
        suites_lenet.diagnosis_table(mode=None)


def test_make_reproduce_runs_every_cpu_suite(make_reproduce_suites):
    """`make reproduce` is the README's one command for the recorded results: no CPU suite may be left out."""
    names = set(make_reproduce_suites)
    assert names <= set(experiments.SUITES), names - set(experiments.SUITES)
    not_run = {"table2-cifar"}    # needs CIFAR-10 and a GPU
    assert set(experiments.SUITES) - not_run == names, set(experiments.SUITES) - not_run ^ names


def test_every_recorded_run_matches_what_make_reproduce_would_request_now(make_reproduce_suites, monkeypatch):
    """In full mode `make reproduce` skips the recorded files only because each holds the settings it
    would request, family defaults included (batch sizes, schedule, decay point): no recorded run
    stands in for another recipe."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    for name in make_reproduce_suites:
        suite = experiments.SUITES[name]
        folder = REPO / "results" / suite.results_folder
        experiments.check_existing([(folder / experiments.result_name(suite, run, seed), experiments.requested_settings(run))
                                    for run, seed in experiments.planned_runs(suite)])


def test_a_changed_family_default_is_not_hidden_by_a_recorded_file(monkeypatch):
    """Moving the LeNet decay point (a family default no suite run sets) must stop the old file from being skipped."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    suite = experiments.SUITES["table1-lenet300"]
    run, seed = next((r, s) for r, s in experiments.planned_runs(suite) if r["sparsity"] == 0.98)
    path = REPO / "results" / suite.results_folder / experiments.result_name(suite, run, seed)
    experiments.check_existing([(path, experiments.requested_settings(run))])           # as recorded: fine
    monkeypatch.setitem(experiments.FAMILY_DEFAULTS, "lenet", {**experiments.FAMILY_DEFAULTS["lenet"], "decay_every": 20_000})
    with pytest.raises(ValueError, match="decay_every"):
        experiments.check_existing([(path, experiments.requested_settings(run))])


def test_every_run_make_reproduce_plans_is_recorded(make_reproduce_suites):
    """On a fresh clone `make reproduce` finds every planned run recorded, so it trains nothing and
    the chapters' tables (means over the recorded seeds) stay what their prose describes."""
    missing = []
    for name in make_reproduce_suites:
        suite = experiments.SUITES[name]
        folder = REPO / "results" / suite.results_folder
        missing += [f"{name}: {experiments.result_name(suite, run, seed)}"
                    for run, seed in experiments.planned_runs(suite)
                    if not (folder / experiments.result_name(suite, run, seed)).exists()]
    assert not missing, missing


def _planned(kwargs):
    """The config prune_and_train records when called with ``kwargs`` (what a stand-in for it returns)."""
    mechanics = ("progress", "smoke_ok", "log_every", "return_model")
    return experiments.planned_config(**{k: v for k, v in kwargs.items() if k not in mechanics})


def _fake_prune_and_train(calls):
    """A stand-in for prune_and_train that records its call and returns a plausible Table 1 result."""
    def fake(**kwargs):
        calls.append((kwargs["arch"], kwargs["sparsity"], kwargs["seed"]))
        err = 1.0 + kwargs["sparsity"] + 0.1 * kwargs["seed"]
        return {"kind": "prune_and_train", "seed": kwargs["seed"], "config": _planned(kwargs), "wall_time": 60.0,
                "metrics": {"final_test_error": err, "test_error_at_best_val": err, "best_test_error": err - 0.05,
                            "kept_parameters": 1, "prunable_parameters": 2, "smoke": False}}
    return fake


def test_run_group_runs_each_member_into_its_own_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake_prune_and_train(calls))
    a = experiments.Suite("fake-a", "", runs=({"arch": "lenet300", "sparsity": 0.5},), seeds=(0, 1), folder="shared")
    b = experiments.Suite("fake-b", "", runs=({"arch": "lenet5", "sparsity": 0.9},), seeds=(0,))
    for suite in (a, b):
        monkeypatch.setitem(experiments.SUITES, suite.name, suite)
    group = experiments.SuiteGroup("fake-group", "", members=("fake-a", "fake-b"))
    monkeypatch.setitem(experiments.GROUPS, group.name, group)
    lines = []
    paths = experiments.run_group("fake-group", tmp_path, log=lines.append)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "fake-b/lenet5-sp0.9-seed0.json", "shared/lenet300-sp0.5-seed0.json", "shared/lenet300-sp0.5-seed1.json"]
    assert all(p.exists() for p in paths) and len(calls) == 3
    assert results.read_result(paths[-1])["extra"] == {"suite": "fake-b"}   # each file names its own suite
    experiments.run_group("fake-group", tmp_path, log=lines.append)        # all exist: resumes, runs nothing
    assert len(calls) == 3
    experiments.run_group("fake-group", tmp_path, seeds=[5], archs=["lenet5"], log=lines.append)
    assert calls[-1] == ("lenet5", 0.9, 5) and len(calls) == 4              # only the lenet5 member, seed 5
    experiments.run_group("fake-group", tmp_path, seeds=[6], sparsities=[0.5], log=lines.append)
    assert calls[-1] == ("lenet300", 0.5, 6) and len(calls) == 5               # only the member with 50 %
    with pytest.raises(ValueError, match="no run for architectures"):
        experiments.run_group("fake-group", tmp_path, archs=["vgg-d"])
    with pytest.raises(ValueError, match=r"at sparsities \[0.7\]"):
        experiments.run_group("fake-group", tmp_path, sparsities=[0.7])
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        experiments.run_group("nope", tmp_path)


@pytest.mark.parametrize("mode", ["0", "1"])
def test_run_suite_refuses_to_skip_a_file_recorded_with_other_settings(tmp_path, monkeypatch, mode):
    """A one-epoch smoke file must not stand in for the full run, nor a full run for a quick one."""
    monkeypatch.setenv("SNIP_QUICK", mode)
    calls = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake_prune_and_train(calls))
    suite = experiments.Suite("fake-s", "", runs=({"arch": "lenet300", "sparsity": 0.5},
                                                  {"arch": "lenet5", "sparsity": 0.5, "lr": 0.01}), seeds=(0,))
    monkeypatch.setitem(experiments.SUITES, suite.name, suite)
    default = experiments.defaults_for("lenet300")["epochs"]
    other = default + 1                                   # not this mode's budget
    experiments.run_suite("fake-s", tmp_path, epochs=other, log=lambda line: None)
    assert len(calls) == 2
    with pytest.raises(ValueError, match=rf"(?s)other settings.*lenet300-sp0.5-seed0.json: epochs: recorded {other}, "
                                         rf"now {default}"):
        experiments.run_suite("fake-s", tmp_path, log=lambda line: None)
    assert len(calls) == 2                               # refused before running anything
    experiments.run_suite("fake-s", tmp_path, epochs=other, log=lambda line: None)  # same settings: skipped
    assert len(calls) == 2
    monkeypatch.setitem(experiments.SUITES, suite.name, dataclasses.replace(
        suite, runs=(suite.runs[0], {"arch": "lenet5", "sparsity": 0.5, "lr": 0.05})))  # the suite changed
    with pytest.raises(ValueError, match=r"lr: recorded 0.01, now 0.05"):
        experiments.run_suite("fake-s", tmp_path, epochs=other, log=lambda line: None)
    experiments.run_suite("fake-s", tmp_path, overwrite=True, log=lambda line: None)
    assert len(calls) == 4


def test_a_run_may_have_more_seeds_than_its_suite(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake_prune_and_train(calls))
    suite = experiments.Suite("fake-seeds", "", runs=({"arch": "lenet300", "sparsity": 0.5},
                                                      {"arch": "lenet300", "sparsity": 0.9, "seeds": (0, 1, 2)}),
                              seeds=(0,))
    monkeypatch.setitem(experiments.SUITES, suite.name, suite)
    paths = experiments.run_suite("fake-seeds", tmp_path, log=lambda line: None)
    assert calls == [("lenet300", 0.5, 0), ("lenet300", 0.9, 0), ("lenet300", 0.9, 1), ("lenet300", 0.9, 2)]
    assert [p.name for p in paths][-1] == "lenet300-sp0.9-seed2.json"
    experiments.run_suite("fake-seeds", tmp_path, seeds=[7], log=lambda line: None)   # --seeds: every run
    assert calls[-2:] == [("lenet300", 0.5, 7), ("lenet300", 0.9, 7)]
    assert experiments.seeds_of(suite, suite.runs[1]) == (0, 1, 2) and experiments.seeds_of(suite, suite.runs[0]) == (0,)
    assert experiments.SUITES["figure1-lenet300"].runs[4]["sparsity"] == 0.9
    assert experiments.seeds_of(experiments.SUITES["figure1-lenet300"], experiments.SUITES["figure1-lenet300"].runs[4]) \
        == tuple(range(10))                                # chapter 5's ten seeds at 90 %


def test_every_recorded_suite_file_has_the_settings_reproduce_would_use(monkeypatch):
    """`make reproduce` (full mode) skips the recorded files: each must be what it would have run."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    checked = 0
    for suite in experiments.SUITES.values():
        folder = REPO / "results" / suite.results_folder
        planned = [(folder / experiments.result_name(suite, run, seed),
                    dict(experiments.requested_settings(run), seed=seed))
                   for run in suite.runs for seed in range(20)]
        planned = [(path, settings) for path, settings in planned if path.exists()]
        experiments.check_existing(planned)
        checked += len(planned)
    assert checked >= 190, checked


def test_register_group_checks_name_and_members(monkeypatch):
    monkeypatch.setattr(experiments, "GROUPS", dict(experiments.GROUPS))
    with pytest.raises(ValueError, match="'table1-lenet300' is already registered"):
        experiments.register_group(experiments.SuiteGroup("table1-lenet300", "", members=("table1-lenet300",)))
    with pytest.raises(ValueError, match="no member suites"):
        experiments.register_group(experiments.SuiteGroup("empty", "", members=()))
    with pytest.raises(ValueError, match=r"unknown member suites \['nope'\]"):
        experiments.register_group(experiments.SuiteGroup("g", "", members=("table1-lenet300", "nope")))
    assert "g" not in experiments.GROUPS


def test_table1_group_covers_exactly_the_folders_the_chapter_reads():
    group = experiments.GROUPS["table1"]
    assert group.members == suites_lenet.TABLE1_SUITES
    assert {experiments.SUITES[m].results_folder for m in group.members} == set(suites_lenet.TABLE1_FOLDERS)
    rows = {(r["arch"], r["sparsity"]) for m in group.members for r in experiments.SUITES[m].runs}
    assert rows == set(suites_lenet.PAPER_TABLE1)   # every row of the paper's Table 1, nothing else


def test_reproduce_table1_runs_the_missing_runs_and_prints_the_table(tmp_path, monkeypatch, capsys):
    from snip_lib import cli

    calls = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake_prune_and_train(calls))
    one = {m: dataclasses.replace(experiments.SUITES[m], seeds=(0,)) for m in suites_lenet.TABLE1_SUITES}
    for name, suite in one.items():
        monkeypatch.setitem(experiments.SUITES, name, suite)
    # a run recorded before: skipped, and its number is in the table
    done = tmp_path / "lenet" / "lenet300-sp0.95-seed0.json"
    run = suites_lenet.expected_run("table1-lenet300", "lenet300", 0.95)
    results.write_result(done, kind="prune_and_train", seed=0, wall_time=60.0, device="cpu",
                         config=_planned(dict(run, seed=0, epochs=experiments.suite_epochs(run))),
                         metrics={"final_test_error": 1.7, "test_error_at_best_val": 1.7, "best_test_error": 1.65})
    assert cli.main(["reproduce", "table1", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    expected_runs = sum(len(s.runs) for s in one.values())
    assert len(calls) == expected_runs - 1 and ("lenet300", 0.95, 0) not in calls
    assert len(list(tmp_path.rglob("*.json"))) == expected_runs
    table = out[out.rindex("\n", 0, out.index("Table 1 (MNIST)")) + 1:]   # from the start of its heading line
    line_95 = next(line for line in table.splitlines() if "LeNet-300-100" in line and " 95 " in line)
    assert "1.6" in line_95 and "1.70" in line_95 and "+0.10" in line_95   # paper, ours, ours - paper
    assert f"{expected_runs} runs" in table
    assert ("QUICK-MODE" in table) == (experiments._config.mode_name() == "quick")


def test_table1_report_rejects_a_bad_mode_and_says_how_to_get_runs(tmp_path):
    with pytest.raises(ValueError, match="'fast'"):
        suites_lenet.table1_report(tmp_path, mode="fast")
    with pytest.raises(FileNotFoundError, match="reproduce table1"):
        suites_lenet.table1_report(tmp_path)


def test_mean_std_cells_show_the_mean_alone_for_one_seed_and_a_dash_for_no_number():
    from snip_lib.display import MISSING, mean_std

    assert mean_std(1.987, 0.114) == "1.99 ± 0.11"
    assert mean_std(1.987, float("nan")) == mean_std(1.987, None) == "1.99"
    assert mean_std(float("nan"), 0.1) == mean_std(None, None) == MISSING
    assert mean_std(0.8, 0.05, digits=1) == "0.8 ± 0.1"


def test_expected_run_refuses_a_suite_with_several_runs_of_one_network_and_sparsity():
    with pytest.raises(ValueError, match=r"suite 'table1-lenet300-diagnosis' has \d+ runs for arch='lenet300', "
                                         r"sparsity=0.98"):
        suites_lenet.expected_run("table1-lenet300-diagnosis", "lenet300", 0.98)
    assert suites_lenet.expected_run("table1-lenet300", "lenet300", 0.98)["sparsity"] == 0.98
    with pytest.raises(KeyError, match="no run"):
        suites_lenet.expected_run("table1-lenet300", "lenet300", 0.5)


@pytest.mark.parametrize("mode, expected", [("1", [1, 1, 1, 7]), ("0", [10, 100, 50, 7])])
def test_quick_mode_shortens_suites_that_pin_their_epochs(tmp_path, monkeypatch, mode, expected):
    """Quick mode trains every suite run for the family's quick epochs: a pinned 100-epoch run was
    not shortened (and outlasted the 'full' 50-epoch suite); --epochs still wins in both modes."""
    monkeypatch.setenv("SNIP_QUICK", mode)
    calls, fake = [], _fake_prune_and_train([])
    monkeypatch.setattr(experiments, "prune_and_train", lambda **kw: (calls.append(kw), fake(**kw))[1])
    suite = experiments.Suite("fake-e", "", runs=({"arch": "lenet5", "sparsity": 0.5, "epochs": 10},
                                                  {"arch": "lenet5", "sparsity": 0.9, "epochs": 100},
                                                  {"arch": "lenet300", "sparsity": 0.5}), seeds=(0,))
    monkeypatch.setitem(experiments.SUITES, suite.name, suite)
    experiments.run_suite("fake-e", tmp_path / "a", log=lambda line: None)
    experiments.run_suite("fake-e", tmp_path / "b", epochs=7, archs=["lenet300"], log=lambda line: None)
    assert [c["epochs"] for c in calls] == expected
    assert [experiments.requested_settings(r)["epochs"] for r in suite.runs] == expected[:3]
