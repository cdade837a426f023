"""Tests for snip_lib.results: result files, their schema and provenance."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch

from snip_lib import results
from snip_lib.results import SCHEMA, load_results, provenance, validate_result, write_result


def _write(path, seed=0, kind="prune_and_train", **metrics):
    return write_result(
        path,
        kind=kind,
        config={"arch": "lenet300", "sparsity": 0.9, "boundaries": (0.2, 0.4)},
        metrics={"final_test_error": 2.5, "best_test_error": 2.1, "per_layer_density": {"fc1.weight": 0.1}, **metrics},
        seed=seed,
        wall_time=1.5,
        extra={"note": "test"},
    )


def test_provenance_fields():
    p = provenance()
    only_with_a_start_state = {"git_changed_during_run", "git_commit_at_write"}   # write_result(started=...)
    assert set(SCHEMA["provenance"]["fields"]) - only_with_a_start_state == set(p)
    assert "git_commit" in p and (p["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", p["git_commit"]))
    assert (p["git_dirty"] is None) == (p["git_commit"] is None)
    assert p["torch"] == torch.__version__ and p["numpy"] == np.__version__
    assert p["mode"] in ("quick", "full")
    assert p["timestamp_utc"].endswith("+00:00")
    assert p["device"] == "cpu" and p["device_name"]
    assert p["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_an_optional_provenance_field_may_be_missing_but_not_wrong(tmp_path):
    obj = _write(tmp_path / "r.json")
    del obj["provenance"]["cpu_capability"]  # files written before the field existed
    validate_result(obj)
    obj["provenance"]["cpu_capability"] = 2
    with pytest.raises(ValueError, match="field 'provenance.cpu_capability' must be str or null, got int"):
        validate_result(obj)
    del obj["provenance"]["cpu_capability"], obj["provenance"]["num_threads"]
    with pytest.raises(ValueError, match="missing field 'provenance.num_threads'"):
        validate_result(obj)


def test_provenance_has_no_host_name():
    import socket

    host = socket.gethostname()
    text = json.dumps(provenance())
    if len(host) >= 4:  # a very short host name could appear by chance in version strings
        assert host not in text


def test_provenance_mode_follows_snip_quick(monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "1")
    assert provenance()["mode"] == "quick"
    monkeypatch.setenv("SNIP_QUICK", "0")
    assert provenance()["mode"] == "full"


def test_provenance_mode_is_the_runs_mode_not_the_sessions(tmp_path, monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "1")  # a full run saved from a quick-mode session
    cfg = {"arch": "lenet300", "sparsity": 0.9, "mode": "full"}
    obj = write_result(tmp_path / "full.json", kind="prune_and_train", config=cfg, metrics={}, seed=0, wall_time=1.0)
    assert obj["provenance"]["mode"] == "full"
    assert results.load_recorded(tmp_path, label="runs", how="-")["path"].tolist() == [str(tmp_path / "full.json")]
    no_mode = {"arch": "lenet300"}  # benchmarks, replay reports: the session's mode, or the caller's
    assert write_result(tmp_path / "q.json", kind="k", config=no_mode, metrics={}, seed=0,
                        wall_time=1.0)["provenance"]["mode"] == "quick"
    assert write_result(tmp_path / "f.json", kind="k", config=no_mode, metrics={}, seed=0, wall_time=1.0,
                        mode="full")["provenance"]["mode"] == "full"
    assert write_result(tmp_path / "same.json", kind="k", config=cfg, metrics={}, seed=0, wall_time=1.0,
                        mode="full")["provenance"]["mode"] == "full"
    for bad_cfg, bad_mode, message in ((cfg, "quick", r"mode='quick' disagrees with config\['mode'\]='full'"),
                                       ({"mode": "fast"}, None, r"config\['mode'\] must be 'quick' or 'full'.*'fast'"),
                                       (no_mode, "medium", r"mode must be 'quick', 'full' or None.*'medium'")):
        with pytest.raises(ValueError, match=message):
            write_result(tmp_path / "bad.json", kind="k", config=bad_cfg, metrics={}, seed=0, wall_time=1.0,
                         mode=bad_mode)
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".*.tmp"))


def test_write_validate_load_round_trip(tmp_path):
    obj = _write(tmp_path / "a" / "run0.json", seed=0)
    _write(tmp_path / "a" / "run1.json", seed=1, final_test_error=float("nan"))
    _write(tmp_path / "b.json", seed=2, kind="other")
    on_disk = json.loads((tmp_path / "a" / "run0.json").read_text())
    assert on_disk == obj
    validate_result(on_disk)
    assert on_disk["config"]["boundaries"] == [0.2, 0.4]  # tuples stored as lists
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic write left no temporary file

    df = load_results(tmp_path)
    assert len(df) == 3
    assert {"config.arch", "metrics.final_test_error", "provenance.git_commit", "seed", "path"} <= set(df.columns)
    assert sorted(df["seed"]) == [0, 1, 2]
    nan_row = df[df["seed"] == 1].iloc[0]
    assert nan_row["metrics.final_test_error"] is None or math.isnan(nan_row["metrics.final_test_error"])
    assert df[df["seed"] == 0].iloc[0]["metrics.per_layer_density"] == {"fc1.weight": 0.1}

    only = load_results(tmp_path, kind="other")
    assert list(only["seed"]) == [2]
    globbed = load_results(str(tmp_path / "a" / "*.json"))
    assert sorted(globbed["seed"]) == [0, 1]
    assert len(load_results(tmp_path, kind="nothing")) == 0


def test_load_results_skips_invalid_files_with_a_warning(tmp_path):
    _write(tmp_path / "good.json")
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "x"}))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.warns(UserWarning) as record:
        df = load_results(tmp_path)
    assert len(df) == 1
    messages = " ".join(str(w.message) for w in record)
    assert "bad.json" in messages and "broken.json" in messages


def test_load_results_nothing_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        load_results(tmp_path / "nothing_here" / "*.json")


def test_validate_lists_every_problem(tmp_path):
    obj = _write(tmp_path / "r.json")
    broken = json.loads(json.dumps(obj))
    del broken["metrics"]
    broken["seed"] = "zero"
    del broken["provenance"]["git_commit"]
    broken["provenance"]["mode"] = "medium"
    broken["surprise"] = 1
    with pytest.raises(ValueError) as info:
        validate_result(broken)
    msg = str(info.value)
    for needle in ("'metrics'", "'seed'", "provenance.git_commit", "medium", "surprise"):
        assert needle in msg, needle


@pytest.mark.parametrize("bad", [[], "text", None])
def test_validate_rejects_non_objects(bad):
    with pytest.raises(ValueError, match="dict"):
        validate_result(bad)


def test_validate_rejects_bool_as_number(tmp_path):
    obj = json.loads(json.dumps(_write(tmp_path / "r.json")))
    obj["wall_time"] = True
    with pytest.raises(ValueError, match="wall_time"):
        validate_result(obj)
    obj["wall_time"] = -3
    with pytest.raises(ValueError, match="-3"):
        validate_result(obj)


def test_write_result_converts_numpy_and_torch(tmp_path):
    obj = write_result(
        tmp_path / "r.json",
        kind="k",
        config={"x": np.float32(0.5), "n": np.int64(3), "t": torch.tensor([1, 2])},
        metrics={"err": torch.tensor(1.25)},
        seed=np.int64(4),
        wall_time=np.float64(2.0),
    )
    assert obj["config"] == {"x": 0.5, "n": 3, "t": [1, 2]}
    assert obj["metrics"]["err"] == 1.25 and obj["seed"] == 4


def test_write_result_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_result(tmp_path / "r.json", kind="k", config={"f": object()}, metrics={}, seed=0, wall_time=1.0)
    with pytest.raises(ValueError, match=r"\.json"):
        write_result(tmp_path / "r.txt", kind="k", config={}, metrics={}, seed=0, wall_time=1.0)
    with pytest.raises(ValueError, match="kind"):
        write_result(tmp_path / "r.json", kind=3, config={}, metrics={}, seed=0, wall_time=1.0)
    assert not (tmp_path / "r.json").exists()


def test_git_commit_is_none_outside_git(monkeypatch, tmp_path):
    monkeypatch.setattr(results, "_repo_dir", lambda: tmp_path)
    p = provenance()
    assert p["git_commit"] is None and p["git_dirty"] is None


def test_git_commit_is_read_from_the_package_checkout(monkeypatch, tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    (repo / "snip_lib").mkdir(parents=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    try:
        for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(results, "_repo_dir", lambda: repo)
    p = provenance()
    assert p["git_commit"] == head and p["git_dirty"] is False
    (repo / "tracked.txt").write_text("x")
    subprocess.run(["git", "add", "tracked.txt"], cwd=repo, env=env, check=True)
    assert provenance()["git_dirty"] is True
    # a package that is only a sub-folder of some other repository reports no commit
    monkeypatch.setattr(results, "_repo_dir", lambda: repo / "snip_lib")
    assert provenance()["git_commit"] is None


def test_provenance_line_says_where_a_tables_numbers_come_from(tmp_path):
    for seed in (0, 1, 2, 5):
        results.write_result(tmp_path / f"r{seed}.json", kind="prune_and_train", seed=seed, wall_time=120.0,
                             device="cpu", config={"arch": "lenet300", "sparsity": 0.9}, metrics={"final_test_error": 2.0})
    line = results.provenance_line(results.load_results(tmp_path))
    assert line.startswith("recorded: 4 run(s), seed(s) 0-2, 5, ")
    today = results.provenance()["timestamp_utc"][:10]
    assert f"{today} (UTC)" in line and "2.0 min per run" in line and "commit(s) " in line
    assert results.provenance_line(None) == "no recorded runs"


def test_provenance_line_counts_runs_without_a_seed(tmp_path):
    def record(name, seed):
        results.write_result(tmp_path / name, kind="replay_report", seed=seed, wall_time=60.0, device="cpu",
                             config={"targets": []}, metrics={})

    record("report.json", None)  # replay reports have seed null
    assert ", no seed, " in results.provenance_line(results.load_results(tmp_path))  # a column of None
    record("r0.json", 0)
    record("r1.json", 1)
    frame = results.load_results(tmp_path)  # the seed column is now float, with NaN for the report
    assert results.provenance_line(frame).startswith("recorded: 3 run(s), seed(s) 0-1 and no seed for 1 run(s), ")
    with pytest.raises(ValueError, match="a seed must be an int or missing.*'x'"):
        results.provenance_line(frame.assign(seed=["x", 0, 1]))


def test_commit_label_is_the_same_under_a_table_and_in_its_columns(tmp_path):
    from snip_lib import suites_lenet

    assert results.commit_label("0123456789abcdef", False) == "01234567"
    assert results.commit_label("0123456789abcdef", np.bool_(True)) == "01234567+dirty"
    for missing in (None, float("nan"), ""):
        assert results.commit_label(missing, float("nan")) == "none"
    # three runs: clean, dirty and one recorded outside git (null commit and null dirty flag)
    for seed, (commit, dirty) in enumerate([("a" * 40, False), ("b" * 40, True), (None, None)]):
        path = tmp_path / f"r{seed}.json"
        results.write_result(path, kind="prune_and_train", seed=seed, wall_time=60.0, device="cpu",
                             config={"arch": "lenet300", "sparsity": 0.9, "train": {"lr": 0.1, "epochs": 50}},
                             metrics={"final_test_error": 2.0, "best_test_error": 1.9, "test_error_at_best_val": 2.0})
        data = json.loads(path.read_text())
        data["provenance"]["git_commit"], data["provenance"]["git_dirty"] = commit, dirty
        path.write_text(json.dumps(data))
    frame = results.load_results(tmp_path)
    expected = "aaaaaaaa, bbbbbbbb+dirty, none"
    assert f"commit(s) {expected}," in results.provenance_line(frame)
    assert suites_lenet.summarize(frame)["commit"].tolist() == [expected]


def test_mean_ci_is_the_student_t_interval_of_the_mean():
    mean, low, high = results.mean_ci([1.0, 2.0, 3.0, 4.0, float("nan")])     # the NaN is a missing run
    assert mean == pytest.approx(2.5)
    # t(0.975, 3) = 3.182446, sd = 1.290994, n = 4: half-width 2.05426
    assert (low, high) == (pytest.approx(2.5 - 2.054260, abs=1e-5), pytest.approx(2.5 + 2.054260, abs=1e-5))
    _, lo90, hi90 = results.mean_ci([1.0, 2.0, 3.0, 4.0], level=0.90)
    assert low < lo90 < mean < hi90 < high                                     # a lower level, a narrower interval
    two = results.mean_ci([1.0, 3.0])
    assert two[0] == 2.0 and all(math.isnan(v) for v in two[1:])                # too few seeds for an interval
    assert all(math.isnan(v) for v in results.mean_ci([]))
    with pytest.raises(ValueError, match="level must be a fraction .* got 95"):
        results.mean_ci([1.0, 2.0, 3.0], level=95)


def _installed_elsewhere(monkeypatch, tmp_path):
    """snip_lib as a regular install: its file in a site-packages with no results/ beside it."""
    site = tmp_path / "site-packages" / "snip_lib"
    site.mkdir(parents=True)
    monkeypatch.setattr(results, "__file__", str(site / "results.py"))


def test_results_dir_of_an_install_falls_back_to_the_clone_around_the_current_folder(monkeypatch, tmp_path):
    _installed_elsewhere(monkeypatch, tmp_path)
    clone = tmp_path / "clone"
    (clone / "results").mkdir(parents=True)
    (clone / "_toc.yml").write_text("root: index\n")
    (clone / "book").mkdir()
    monkeypatch.chdir(clone / "book")                       # a notebook runs in book/
    assert results.results_dir() == (clone / "results").resolve()


def test_results_dir_outside_a_clone_says_how_to_get_the_files(monkeypatch, tmp_path):
    _installed_elsewhere(monkeypatch, tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    missing = results.results_dir()
    assert missing == tmp_path / "site-packages" / "results"
    with pytest.raises(FileNotFoundError, match=r"pip install -e \.") as info:
        results.load_recorded(missing / "lenet", label="LeNet results", how="run the suites")
    assert str(missing) in str(info.value) and "run the suites" in str(info.value)


# ----------------------------------------------------------------------------- file mode, provenance at the start


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)],
                         ids=["umask022", "umask027", "umask002"])
def test_write_result_files_follow_the_umask(tmp_path, umask, expected):
    """A result file is shared like any file the user writes, not private (mkstemp's 0600)."""
    old = os.umask(umask)
    try:
        _write(tmp_path / "r.json")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == expected


def test_write_result_records_the_git_state_the_run_started_with(tmp_path, monkeypatch):
    """The code a run ran is the code at its start; a commit or an edit during the run is said, not claimed."""
    now = {"git_commit": "b" * 40, "git_dirty": False}
    monkeypatch.setattr(results, "git_state", lambda: dict(now))
    same = _write_started(tmp_path / "same.json", {"git_commit": "b" * 40, "git_dirty": False})["provenance"]
    assert (same["git_commit"], same["git_dirty"], same["git_changed_during_run"]) == ("b" * 40, False, False)
    assert "git_commit_at_write" not in same
    moved = _write_started(tmp_path / "moved.json", {"git_commit": "a" * 40, "git_dirty": False})["provenance"]
    assert (moved["git_commit"], moved["git_dirty"], moved["git_changed_during_run"]) == ("a" * 40, True, True)
    assert moved["git_commit_at_write"] == "b" * 40
    now["git_dirty"] = True                                              # an uncommitted edit during the run
    edited = _write_started(tmp_path / "edited.json", {"git_commit": "b" * 40, "git_dirty": False})["provenance"]
    assert (edited["git_commit"], edited["git_dirty"], edited["git_changed_during_run"]) == ("b" * 40, True, True)
    validate_result(results.read_result(tmp_path / "moved.json"))
    plain = _write(tmp_path / "plain.json")["provenance"]                 # no start state: taken at writing
    assert plain["git_commit"] == "b" * 40 and "git_changed_during_run" not in plain


@pytest.mark.parametrize("started, message", [
    ("abc", r"started must be a mapping .* got 'abc'"),
    ({"git_commit": "a" * 40}, r"started lacks 'git_dirty'"),
    ({"git_commit": 5, "git_dirty": False}, r"started\['git_commit'\] must be a str or None, got 5"),
    ({"git_commit": None, "git_dirty": "no"}, r"started\['git_dirty'\] must be True, False or None, got 'no'"),
])
def test_write_result_refuses_a_bad_start_state(tmp_path, started, message):
    with pytest.raises(ValueError, match=message):
        _write_started(tmp_path / "r.json", started)
    assert not (tmp_path / "r.json").exists()


def _write_started(path, started):
    return write_result(path, kind="prune_and_train", config={"arch": "lenet300"}, metrics={}, seed=0,
                        wall_time=1.0, started=started)


def test_git_state_is_the_provenance_s_git_fields():
    state = results.git_state()
    p = provenance()
    assert state == {"git_commit": p["git_commit"], "git_dirty": p["git_dirty"]}


# ----------------------------------------------------------------------------- one recipe, each seed once


def _record(path, seed, train=None, **config):
    train = {"epochs": 50, "lr": 0.1, **(train or {})}
    results.write_result(path, kind="prune_and_train", seed=seed, wall_time=60.0, device="cpu",
                         config={"arch": "lenet300", "sparsity": 0.98, "train": train, **config},
                         metrics={"final_test_error": 2.0 + seed, "best_test_error": 1.9,
                                  "test_error_at_best_val": 2.0})


def test_mixed_settings_sees_a_train_setting_that_one_file_lacks(tmp_path):
    """An older file without warm-up recorded ran with none (0), which the other runs' 500 is not."""
    for seed in (0, 1):
        _record(tmp_path / f"r{seed}.json", seed, {"warmup_iterations": 500, "clip_grad_norm": None, "momentum": 0.9})
    _record(tmp_path / "r2.json", 2, {"momentum": 0.9})                   # no warmup_iterations, no clip_grad_norm
    assert results.mixed_settings(results.load_results(tmp_path)) == {
        "config.train.warmup_iterations": ["0", "500"]}                   # clipping: None either way, not mixed
    _record(tmp_path / "r2.json", 2, {"warmup_iterations": 500})        # momentum has no default a file may lack
    assert results.mixed_settings(results.load_results(tmp_path)) == {"config.train.momentum": ["0.9", "not recorded"]}


def test_check_one_recipe_refuses_a_seed_recorded_twice(tmp_path):
    """A copy of a run in a subfolder must not count that seed twice in a mean."""
    from snip_lib import suites_lenet

    for seed in (0, 1, 2):
        _record(tmp_path / f"lenet300-sp0.98-seed{seed}.json", seed)
    (tmp_path / "old").mkdir()
    copy = tmp_path / "old" / "lenet300-sp0.98-seed2.json"
    copy.write_text((tmp_path / "lenet300-sp0.98-seed2.json").read_text())
    frame = results.load_results(tmp_path)
    assert results.mixed_settings(frame) == {}                            # one recipe, but seed 2 twice
    pattern = (r"(?s)lenet300 at 98 %.*seed 2 is recorded 2 times: "
               + re.escape(f"{tmp_path / 'lenet300-sp0.98-seed2.json'}, {copy}"))
    with pytest.raises(ValueError, match=pattern):
        results.check_one_recipe(frame, "lenet300 at 98 %")
    with pytest.raises(ValueError, match=r"seed 2 is recorded 2 times"):
        suites_lenet.summarize(frame)
    results.check_one_recipe(frame[frame["path"] != str(copy)], "lenet300 at 98 %")   # each seed once: fine


# ----------------------------------------------------------------------------- smoke runs are no rows


def test_load_recorded_leaves_out_smoke_runs_unless_asked(tmp_path):
    """A FakeData smoke run (metrics.smoke, or a '-fake' dataset) is not a result, even in full mode."""
    for name, dataset, smoke in (("real", "cifar10", False), ("smoke", "cifar10-fake", True),
                                 ("fake", "cifar10-fake", None), ("flagged", "cifar10", True)):
        metrics = {"final_test_error": 90.0} if smoke is None else {"final_test_error": 90.0, "smoke": smoke}
        write_result(tmp_path / f"{name}.json", kind="prune_and_train", seed=0, wall_time=1.0,
                     config={"arch": "vgg-d", "dataset": dataset, "mode": "full"}, metrics=metrics)
    frame = results.load_recorded(tmp_path, label="runs", how="-")
    assert [os.path.basename(p) for p in frame["path"]] == ["real.json"]
    assert len(results.load_recorded(tmp_path, label="runs", how="-", include_smoke=True)) == 4
    (tmp_path / "real.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"only smoke runs .*include_smoke=True"):
        results.load_recorded(tmp_path, label="runs", how="-")
    with pytest.raises(ValueError, match="include_smoke must be True or False, got 'yes'"):
        results.load_recorded(tmp_path, label="runs", how="-", include_smoke="yes")
