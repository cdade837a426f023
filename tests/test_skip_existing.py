"""A suite skips a recorded file only if it is the run the suite would make now, in every setting.

A suite resumes by skipping the files that exist; a file recorded with another initialisation,
method, learning rate, dataset, mode or a FakeData smoke run must not be counted as done.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from snip_lib import experiments, results

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "results" / "lenet" / "lenet300-sp0.98-seed0.json"


def _table1_run() -> dict[str, Any]:
    return next(r for r in experiments.SUITES["table1-lenet300"].runs if r["sparsity"] == 0.98)


def _copy_edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The recorded Table 1 file at 98 %, seed 0, changed by ``edit``, in ``tmp_path``."""
    obj = json.loads(RECORDED.read_text(encoding="utf-8"))
    edit(obj)
    path = tmp_path / RECORDED.name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _quick_file(obj: dict[str, Any]) -> None:
    obj["config"].update(mode="quick", limit_train=5000, train_examples=5000)
    obj["config"]["train"]["epochs"] = 1
    obj["provenance"]["mode"] = "quick"


EDITS = {
    "init": lambda o: o["config"].update(init="glorot_uniform"),
    "method": lambda o: o["config"].update(method="random"),
    "shuffle": lambda o: o["config"].update(shuffle=True),
    "lr": lambda o: o["config"]["train"].update(lr=0.01),
    "optimizer": lambda o: o["config"]["train"].update(optimizer="adam"),
    "include_bias": lambda o: o["config"].update(include_bias=True),
    "scoring_init": lambda o: o["config"].update(scoring_init="glorot_uniform"),
    "dataset": lambda o: o["config"].update(dataset="fashion_mnist"),
    "warmup_iterations": lambda o: o["config"]["train"].pop("warmup_iterations"),  # an older file: no warm-up
    "model_options": lambda o: o["config"]["model_options"].update(num_classes=11),
    "method_options": lambda o: o["config"].update(method_options={"iterations": 3}),
}


@pytest.mark.parametrize("key", sorted(EDITS))
def test_a_file_recorded_with_another_setting_is_not_skipped(tmp_path, monkeypatch, key):
    monkeypatch.setenv("SNIP_QUICK", "0")
    requested = dict(experiments.requested_settings(_table1_run()), seed=0)
    experiments.check_existing([(_copy_edited(tmp_path, lambda o: None), requested)])   # as recorded: skipped
    path = _copy_edited(tmp_path, EDITS[key])
    with pytest.raises(ValueError, match=rf"(?s)other settings.*{path.name}: .*(?<!\w){key}\b"):
        experiments.check_existing([(path, requested)])


def test_a_quick_mode_file_is_not_a_full_mode_run_of_the_same_size(tmp_path, monkeypatch):
    """Even with the quick run's epochs and training set asked for, the mode differs."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    path = _copy_edited(tmp_path, _quick_file)
    requested = dict(experiments.requested_settings(_table1_run(), epochs=1, limit_train=5000), seed=0)
    with pytest.raises(ValueError, match=r"mode: recorded 'quick', now 'full'"):
        experiments.check_existing([(path, requested)])


@pytest.mark.parametrize("change", [{"method": "random"}, {"shuffle": True}])
def test_an_older_file_without_method_or_shuffle_counts_as_snip_unshuffled(tmp_path, monkeypatch, change):
    monkeypatch.setenv("SNIP_QUICK", "0")
    path = _copy_edited(tmp_path, lambda o: None)
    assert "method" not in results.read_result(path)["config"]          # as recorded: the older layout
    run = dict(_table1_run(), **change)
    with pytest.raises(ValueError, match=f"{next(iter(change))}: recorded"):
        experiments.check_existing([(path, dict(experiments.requested_settings(run), seed=0))])


@pytest.mark.parametrize("smoke, dataset", [(True, "mnist-fake"), (True, "mnist"), (False, "mnist-fake")])
def test_a_smoke_file_is_never_skipped_as_done(tmp_path, monkeypatch, smoke, dataset):
    """A FakeData run (metrics.smoke, or a '-fake' dataset) is no result, whatever else it matches."""
    monkeypatch.setenv("SNIP_QUICK", "0")

    def as_smoke(obj: dict[str, Any]) -> None:
        obj["metrics"]["smoke"] = smoke
        obj["config"]["dataset"] = dataset

    path = _copy_edited(tmp_path, as_smoke)
    with pytest.raises(ValueError, match=rf"(?s){path.name}: a smoke run on FakeData"):
        experiments.check_existing([(path, dict(experiments.requested_settings(_table1_run()), seed=0))])


def test_requested_settings_are_the_config_prune_and_train_records(monkeypatch):
    """One source for both: every setting a run records is compared, resolved as the run resolves it."""
    monkeypatch.setenv("SNIP_QUICK", "1")
    run = {"arch": "lenet300", "sparsity": 0.9, "train_options": {"warmup_iterations": 5}}
    res = experiments.prune_and_train(**run, seed=0, limit_train=100, device="cpu", progress=False)
    requested = dict(experiments.requested_settings(run, limit_train=100), seed=0)
    assert experiments.recorded_differences(res["config"], requested) == []
    for key in ("init", "method", "shuffle", "dataset", "mode", "lr", "optimizer", "model_options"):
        assert key in requested, key


# ----------------------------------------------------------------------------- out checked first


def _fake(calls: list[int]) -> Callable[..., dict[str, Any]]:
    def fake(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["seed"])
        return {"kind": "prune_and_train", "seed": kwargs["seed"], "wall_time": 1.0,
                "config": {"arch": kwargs["arch"], "sparsity": kwargs["sparsity"], "device": "cpu", "train": {}},
                "metrics": {"final_test_error": 2.0, "test_error_at_best_val": 2.0, "kept_parameters": 1,
                            "prunable_parameters": 2, "smoke": False}}
    return fake


@pytest.mark.parametrize("where", ["out", "above"])
def test_run_suite_checks_its_folder_before_training(tmp_path, monkeypatch, where):
    calls: list[int] = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake(calls))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker if where == "out" else blocker / "results"
    with pytest.raises(ValueError, match=rf"{blocker}.* is a file"):
        experiments.run_suite("table1-lenet300", out, seeds=[0], sparsities=[0.98], log=lambda line: None)
    assert calls == []


def test_run_group_checks_every_members_folder_before_training(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake(calls))
    group = experiments.GROUPS["table1"]
    last = experiments.SUITES[group.members[-1]].results_folder
    (tmp_path / last).write_text("not a folder")                       # only the last member's folder is bad
    with pytest.raises(ValueError, match=rf"{tmp_path / last}.* is a file"):
        experiments.run_group("table1", tmp_path, seeds=[0], log=lambda line: None)
    assert calls == []


def test_run_suite_refuses_a_read_only_folder_before_training(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(experiments, "prune_and_train", _fake(calls))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # as if the folder were read-only (chmod does not stop root, who may run the tests)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw))
    with pytest.raises(ValueError, match=rf"the folder {locked} is not writable"):
        experiments.run_suite("table1-lenet300", locked / "out", seeds=[0], sparsities=[0.98], log=lambda line: None)
    assert calls == []


# ----------------------------------------------------------------------------- provenance taken at the start


def test_run_suite_records_the_commit_the_run_started_at(tmp_path, monkeypatch):
    """A commit made while a run trains is not the run's code: the file keeps the start and says it changed."""
    state = {"git_commit": "a" * 40, "git_dirty": False}
    monkeypatch.setattr(results, "git_state", lambda: dict(state))

    def fake(**kwargs: Any) -> dict[str, Any]:
        out = _fake([])(**kwargs)
        state.update(git_commit="b" * 40)                               # someone commits during training
        return out

    monkeypatch.setattr(experiments, "prune_and_train", fake)
    [path] = experiments.run_suite("table1-lenet300", tmp_path, seeds=[0], sparsities=[0.98], log=lambda line: None)
    prov = results.read_result(path)["provenance"]
    assert prov["git_commit"] == "a" * 40 and prov["git_dirty"] is True
    assert prov["git_changed_during_run"] is True and prov["git_commit_at_write"] == "b" * 40


# ----------------------------------------------------------------------------- bad input refused up front


@pytest.mark.parametrize("key", ["amp", "channels_last"])
def test_non_bool_amp_and_channels_last_are_refused_before_any_work(monkeypatch, key):
    def no_data(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loaded data despite bad input")

    monkeypatch.setattr(experiments, "_datasets", no_data)
    with pytest.raises(TypeError, match=rf"{key} must be True or False, got 'no'"):
        experiments.prune_and_train("lenet300", 0.9, epochs=1, limit_train=100, device="cpu", progress=False,
                                    **{key: "no"})


def _committing(state: dict[str, Any], result: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """A stand-in run during which someone commits."""
    def fake(**kwargs: Any) -> dict[str, Any]:
        state.update(git_commit="b" * 40)
        return result
    return fake


def test_the_command_line_run_records_the_commit_the_run_started_at(tmp_path, monkeypatch, capsys):
    from snip_lib import cli

    state = {"git_commit": "a" * 40, "git_dirty": False}
    monkeypatch.setattr(results, "git_state", lambda: dict(state))
    result = _fake([])(arch="lenet300", sparsity=0.9, seed=0)
    result["metrics"].update(best_test_error=2.0, best_epoch=1)
    monkeypatch.setattr(experiments, "prune_and_train", _committing(state, result))
    out = tmp_path / "run.json"
    assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--seeds", "0", "--out", str(out),
                     "--device", "cpu"]) == 0
    prov = results.read_result(out)["provenance"]
    assert prov["git_commit"] == "a" * 40 and prov["git_dirty"] is True
    assert prov["git_changed_during_run"] is True and prov["git_commit_at_write"] == "b" * 40


def test_the_keeps_suites_record_the_commit_the_run_started_at(tmp_path, monkeypatch):
    from snip_lib import suites_keeps

    state = {"git_commit": "a" * 40, "git_dirty": False}
    monkeypatch.setattr(results, "git_state", lambda: dict(state))
    result = {"kind": "label_fitting", "seed": 0, "wall_time": 1.0,
              "config": {"arch": "lenet5", "sparsity": 0.99, "device": "cpu"},
              "metrics": {"final_test_error": 2.0, "final_train_loss": 0.1}}
    runner = _committing(state, result)
    suite = suites_keeps.KEEPS_SUITES["figure4"]
    monkeypatch.setitem(suites_keeps.KEEPS_SUITES, "figure4", dataclasses.replace(suite, runner=runner))
    [path] = suites_keeps._run_planned("figure4", [(tmp_path / "one.json", {}, 0)], epochs=None, device="cpu",
                                       progress=False, overwrite=False)
    prov = results.read_result(path)["provenance"]
    assert prov["git_commit"] == "a" * 40 and prov["git_changed_during_run"] is True
