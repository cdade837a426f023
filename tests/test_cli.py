"""Tests for the command line (python -m snip_lib) and the prune_and_train recipe behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snip_lib import cli, experiments
from snip_lib.results import validate_result

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny nets: see conftest.py


def _run_cli(*args: str, cwd: Path, quick: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["SNIP_QUICK"] = "1" if quick else "0"
    return subprocess.run(
        [sys.executable, "-m", "snip_lib", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_run_on_real_mnist_writes_a_valid_result(tmp_path):
    proc = _run_cli(
        "run", "--arch", "lenet300", "--sparsity", "0.9", "--seeds", "0", "--epochs", "1",
        "--limit-train", "1000", "--out", "out", "--device", "cpu", "--no-progress", "--threads", "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    files = list((tmp_path / "out").glob("*.json"))
    assert [f.name for f in files] == ["lenet300-sp0.9-seed0.json"]
    obj = json.loads(files[0].read_text())
    validate_result(obj)
    assert obj["kind"] == "prune_and_train" and obj["seed"] == 0
    assert obj["config"]["arch"] == "lenet300" and obj["config"]["dataset"] == "mnist"
    assert obj["config"]["train_examples"] == 1000 and obj["config"]["train"]["epochs"] == 1
    assert obj["provenance"]["mode"] == "quick" and "git_commit" in obj["provenance"]
    m = obj["metrics"]
    assert m["prunable_parameters"] == 266_200
    assert m["kept_parameters"] == round(0.1 * 266_200)
    assert m["smoke"] is False
    assert 0 <= m["final_test_error"] < 50  # 10 iterations on real MNIST already beat chance (90%)
    assert m["best_test_error"] <= m["final_test_error"]
    assert len(m["history"]["test_error"]) == 1
    assert set(m["per_layer_density"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert "final test error" in proc.stdout


# Tests that expect an exit before any work also bound the work: should the check they test break,
# they train one epoch on a few hundred examples instead of the full recipe inside a unit test.
SMALL = ["--epochs", "1", "--limit-train", "200"]


def test_unknown_arch_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--arch", "resnet9000", "--sparsity", "0.9"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "resnet9000" in err and "lenet300" in err
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["run", "--arch", "lenet300", "--sparsity", "1.5", *SMALL], "1.5"),
        (["run", "--arch", "lenet300", "--sparsity", "0.9", "--init", "magic", *SMALL], "magic"),
        (["run", "--arch", "lenet300", "--sparsity", "0.9", "--epochs", "0"], "'0'"),
        (["run", "--arch", "lenet300", "--sparsity", "0.9", "--optimizer", "rmsprop", *SMALL], "rmsprop"),
        (["run", "--arch", "lenet300", "--sparsity", "0.9", "--seeds", "-3", *SMALL], "-3"),
        (["run", "--arch", "lenet300", "--sparsity", "0.9", "--scoring-init", "vs", "--scoring-bias", "ones", *SMALL], "ones"),
        (["info", "--arch", "nope"], "nope"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_exits_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_missing_device_exits_2(capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--device", "cuda", *SMALL]) == 2
    assert "cuda" in capsys.readouterr().err


def test_list_names_every_architecture(capsys):
    from snip_lib import models

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in models.available_models():
        assert name in out


def test_info_prints_counts(capsys):
    assert cli.main(["info", "--arch", "lenet300", "--sparsity", "0.98"]) == 0
    out = capsys.readouterr().out
    assert "266,610" in out  # the paper's 267k (weights and biases)
    assert "266,200" in out  # prunable weights
    assert "5,324" in out  # round(0.02 * 266,200) kept at 98 %
    assert cli.main(["info", "--arch", "lenet300", "--include-bias"]) == 0
    assert "prunable (weights and biases): 266,610" in capsys.readouterr().out


def test_run_refuses_to_overwrite_a_result_unless_asked(capsys, tmp_path, monkeypatch):
    from snip_lib import experiments

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("stop after the checks")  # nothing is trained in this test

    monkeypatch.setattr(experiments, "prune_and_train", fake)
    existing = tmp_path / "lenet300-sp0.9-seed1.json"
    existing.write_text("{}")
    argv = ["run", "--arch", "lenet300", "--sparsity", "0.9", "--seeds", "0", "1", "--out", str(tmp_path),
            "--device", "cpu"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "exist" in err and str(existing) in err and "--overwrite" in err
    assert calls == [] and existing.read_text() == "{}"          # refused before seed 0 ran
    with pytest.raises(RuntimeError, match="stop after the checks"):
        cli.main(argv + ["--overwrite"])
    assert len(calls) == 1


@pytest.mark.parametrize("values, needle", [
    (["--seeds", "0", "1", "0"], "--seeds 0 1 0 gives 0 twice: both runs would write {out}/lenet300-sp0.9-seed0.json"),
    (["--sparsity", "0.9", "0.95", "0.9"], "--sparsity 0.9 0.95 0.9 gives 0.9 twice: both runs would write "
                                           "{out}/lenet300-sp0.9-seed0.json"),
    (["--sparsity", "0.9", "0.9000001"],
     "sparsities 0.9 and 0.9000001 would both write {out}/lenet300-sp0.9-seed0.json"),
])
def test_run_refuses_two_runs_that_would_write_one_file(capsys, tmp_path, monkeypatch, values, needle):
    """The second run would overwrite the first one's result without a word: refused before anything runs."""
    monkeypatch.setattr(experiments, "prune_and_train", lambda **kw: pytest.fail("nothing may run"))
    argv = ["run", "--arch", "lenet300", "--sparsity", "0.9", "--out", str(tmp_path), "--device", "cpu", *values]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert needle.format(out=tmp_path) in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


def test_run_refuses_an_empty_mask_before_training_the_other_sparsities(capsys, tmp_path, monkeypatch):
    from snip_lib import experiments

    monkeypatch.setattr(experiments, "prune_and_train", lambda **kw: pytest.fail("nothing may run"))
    code = cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "0.99999999", "--out", str(tmp_path),
                     "--device", "cpu"])
    assert code == 2
    assert "sparsity 0.99999999 leaves no connection" in capsys.readouterr().err
    assert cli.main(["info", "--arch", "lenet300", "--sparsity", "0.99999999"]) == 0
    assert "sparsity 0.99999999: keeps 0 of 266,200; refused" in capsys.readouterr().out


def test_a_bad_snip_quick_value_is_an_error_message_not_a_traceback(tmp_path):
    env = dict(os.environ, SNIP_QUICK="maybe", PYTHONPATH=str(REPO))
    help_run = subprocess.run([sys.executable, "-m", "snip_lib", "--help"], env=env, cwd=tmp_path,
                              capture_output=True, text=True)
    assert help_run.returncode == 0, help_run.stderr                    # --help needs no mode
    run = subprocess.run([sys.executable, "-m", "snip_lib", "run", "--arch", "lenet300", "--sparsity", "0.9",
                          "--device", "cpu"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "SNIP_QUICK='maybe' is not understood" in run.stderr


def test_output_names():
    assert cli._out_path("res", "lenet5", 0.99, 3, several=True) == Path("res/lenet5-sp0.99-seed3.json")
    assert cli._out_path("res/x.json", "lenet5", 0.99, 3, several=False) == Path("res/x.json")
    assert cli._out_path("res/x.json", "lenet5", 0.99, 3, several=True) == Path("res/x-sp0.99-seed3.json")


def test_reproduce_lists_suites(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "table1-lenet300:" in listed and "table1: " in listed and "(group of 5 suites: table1-lenet300, " in listed
    assert "-> results/keeps/figure3/)" in listed                      # where each suite writes
    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", "no-such-suite"])
    assert info.value.code == 2
    assert cli.main(["reproduce", "--list", "figure3"]) == 0           # one suite
    assert capsys.readouterr().out.strip().splitlines()[0].startswith("figure3: ")
    assert cli.main(["reproduce", "--list", "table1"]) == 0            # a group and its members
    names = [line.split(":")[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == [*experiments.GROUPS["table1"].members, "table1"]
    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", "--list", "no-such-suite"])
    assert info.value.code == 2


def test_suite_registry_rejects_bad_suites():
    with pytest.raises(ValueError, match="table1-lenet300"):
        experiments.register_suite(experiments.SUITES["table1-lenet300"])
    with pytest.raises(ValueError, match="'table1' is already registered"):  # a group's name is taken too
        experiments.register_suite(experiments.Suite("table1", "clash", runs=({"arch": "lenet300", "sparsity": 0.5},)))
    with pytest.raises(ValueError, match="sparsity"):
        experiments.register_suite(experiments.Suite("x", "bad", runs=({"arch": "lenet300"},)))


# --------------------------------------------------------------------------- the recipe in-process


def test_prune_and_train_dense_reference_and_quick_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("SNIP_QUICK", "1")
    res = experiments.prune_and_train("lenet300", 0.0, seed=1, limit_train=300, progress=False, device="cpu")
    cfg, m = res["config"], res["metrics"]
    assert cfg["train"]["epochs"] == 1  # quick-mode epochs
    assert cfg["saliency_batch"] is None  # no scoring for the dense reference
    assert m["kept_parameters"] == m["prunable_parameters"] == 266_200
    assert m["achieved_sparsity"] == 0.0 and set(m["per_layer_density"].values()) == {1.0}
    json.dumps({k: v for k, v in res.items()})  # JSON-ready


def test_prune_and_train_masks_and_returns_model(monkeypatch):
    from snip_lib import masking

    monkeypatch.setenv("SNIP_QUICK", "1")
    res = experiments.prune_and_train(
        "lenet300", 0.95, seed=0, limit_train=200, epochs=1, progress=False, device="cpu", return_model=True,
        scoring_init="vs-x",
    )
    model = res.pop("model")
    assert masking.global_sparsity(model) == pytest.approx(0.95, abs=1e-5)
    kept = sum(int((p != 0).sum()) for n, p in model.named_parameters() if n.endswith("weight"))
    assert kept <= res["metrics"]["kept_parameters"]  # pruned weights stayed at zero through training
    assert res["config"]["scoring_init"] == "vs-x"


def test_prune_and_train_names_the_run_whose_mask_collapsed_a_layer(monkeypatch, capsys):
    monkeypatch.setenv("SNIP_QUICK", "1")
    res = experiments.prune_and_train("lenet300", 0.999, method="magnitude", seed=2, limit_train=200, epochs=1,
                                      progress=False, device="cpu")
    assert res["metrics"]["collapsed_layers"] == ["fc1.weight"]   # the smallest-scale layer goes first
    out = capsys.readouterr().out
    assert "warning: layer collapse in lenet300, magnitude at sparsity 0.999, seed 2: no connection kept in fc1.weight" in out


def test_prune_and_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1.0"):
        experiments.prune_and_train("lenet300", 1.0)
    with pytest.raises(ValueError, match="nonet"):
        experiments.prune_and_train("nonet", 0.5)
    with pytest.raises(ValueError, match="sideways"):
        experiments.prune_and_train("lenet300", 0.5, bn_mode="sideways")
    with pytest.raises(ValueError, match="epochs"):
        experiments.prune_and_train("lenet300", 0.5, epochs=0)


def test_defaults_table():
    assert experiments.family_of("lenet5") == "lenet"
    assert experiments.family_of("gru-s") == "rnn"
    assert experiments.family_of("vgg-d") == "cifar"
    assert experiments.FAMILY_DEFAULTS["cifar"]["saliency_batch"] == 128
    assert experiments.FAMILY_DEFAULTS["lenet"]["saliency_batch"] == 100


@pytest.mark.slow
def test_cifar_smoke_run_is_labelled(monkeypatch, capsys):
    from snip_lib import data

    if data.available("cifar10"):
        pytest.skip("CIFAR-10 is available here, so there is no smoke run")
    monkeypatch.setenv("SNIP_QUICK", "1")
    res = experiments.prune_and_train(
        "alexnet-s", 0.9, limit_train=32, saliency_batch=16, epochs=1, progress=False, device="cpu", smoke_ok=True
    )
    assert res["metrics"]["smoke"] is True and res["config"]["dataset"] == "cifar10-fake"
    assert "SMOKE RUN on FakeData: not a result" in capsys.readouterr().out
    with pytest.raises(data.DatasetUnavailableError):
        experiments.prune_and_train("alexnet-s", 0.9, epochs=1, progress=False, device="cpu")


def test_schedule_options_reach_the_train_config():
    args = cli.build_parser().parse_args(
        ["run", "--arch", "lenet5", "--sparsity", "0.9", "--schedule", "official", "--boundaries", "30000", "60000",
         "--weight-decay", "0"]
    )
    assert cli._train_options(args) == {"boundaries": (30000, 60000), "weight_decay": 0.0}
    args = cli.build_parser().parse_args(["run", "--arch", "lenet5", "--sparsity", "0.9", "--decay-every", "100"])
    assert cli._train_options(args) == {"decay_every": 100}
    args = cli.build_parser().parse_args(["run", "--arch", "lenet300", "--sparsity", "0.98",
                                          "--warmup-iterations", str(experiments.LENET_WARMUP_ITERATIONS)])
    suite_run = experiments.SUITES["table1-lenet300"].runs[2]   # the run command can give a suite's recipe
    assert cli._train_options(args) == suite_run["train_options"]


def test_negative_warmup_exits_2_naming_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--warmup-iterations", "-5", "--device", "cpu",
                  *SMALL])
    assert info.value.code == 2
    assert "--warmup-iterations must be >= 0" in capsys.readouterr().err and not list(tmp_path.rglob("*.json"))


def test_inconsistent_schedule_exits_2_before_any_work(capsys):
    code = cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--schedule", "official",
                     "--boundaries", "0.5", "3000", "--device", "cpu", *SMALL])
    assert code == 2
    assert "boundaries" in capsys.readouterr().err


def test_train_options_are_checked():
    with pytest.raises(ValueError, match="warmup"):
        experiments.prune_and_train("lenet300", 0.5, train_options={"warmup": 3})
    with pytest.raises(ValueError, match="lr"):
        experiments.prune_and_train("lenet300", 0.5, train_options={"lr": 3})


def test_reproduce_passes_its_filters_to_the_suite_and_checks_the_sparsity(monkeypatch, tmp_path, capsys):
    seen = {}
    monkeypatch.setattr(experiments, "run_suite", lambda name, out, **kw: seen.update(name=name, out=out, **kw))
    assert cli.main(["reproduce", "table1-lenet5-lr0.1-100ep", "--sparsity", "0.99", "--seeds", "2",
                     "--out", str(tmp_path)]) == 0
    assert (seen["name"], seen["out"], seen["sparsities"], seen["seeds"]) == (
        "table1-lenet5-lr0.1-100ep", str(tmp_path), [0.99], [2])
    with pytest.raises(SystemExit) as info:
        cli.main(["reproduce", "table1-lenet300", "--sparsity", "1.5"])
    assert info.value.code == 2 and "sparsity must be in [0, 1)" in capsys.readouterr().err


# --------------------------------------------------------------------------- errors in terms of flags, before any work


@pytest.mark.parametrize("argv, needles", [
    (["--optimizer", "adam", "--momentum", "0.5"], ["--momentum 0.5 is an SGD setting", "--optimizer adam"]),
    (["--scoring-bias", "scheme"], ["--scoring-bias scheme", "needs --scoring-init"]),
    (["--saliency-batch", "100000"], ["--saliency-batch 100000 exceeds the 54,000 examples"]),
    (["--schedule", "constant", "--decay-every", "7"], ["--decay-every 7 applies to --schedule step only",
                                                         "--schedule constant"]),
    (["--schedule", "cosine", "--decay-every", "7"], ["--decay-every 7", "--schedule cosine"]),
    (["--schedule", "official", "--decay-every", "7"], ["--decay-every 7", "--schedule official"]),
    (["--seeds", "1", "1"], ["--seeds 1 1 gives 1 twice"]),
])
def test_run_refuses_bad_flag_combinations_naming_the_flags(argv, needles, capsys, tmp_path, monkeypatch):
    """The message names the flags the user typed, under `run`'s usage, and nothing is built, loaded or trained."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiments, "prune_and_train", lambda **kw: pytest.fail("nothing may run"))
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--device", "cpu", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m snip_lib run " in err and "TrainConfig" not in err
    for needle in needles:
        assert needle in err
    assert not list(tmp_path.rglob("*.json"))


def test_decay_every_with_the_step_schedule_reaches_the_run(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_run_one", lambda kwargs, path: seen.append(kwargs["train_options"]))
    assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--decay-every", "7", "--device", "cpu",
                     "--out", str(tmp_path)]) == 0            # lenet300's default schedule is step
    assert seen == [{"decay_every": 7}]


@pytest.mark.parametrize("argv, needles", [
    (["reproduce", "nosuch"], ["usage: python -m snip_lib reproduce", "unknown suite 'nosuch'"]),
    (["reproduce", "figure4"], ["python -m snip_lib.suites_keeps figure4"]),
    (["reproduce", "figure2"], ["book/07_what_snip_keeps.ipynb"]),
])
def test_reproduce_errors_show_its_usage_and_where_a_figure_runs(argv, needles, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err


def test_run_writes_under_runs_in_the_current_folder_by_default(tmp_path, monkeypatch):
    """Ad-hoc runs never land in results/, the recorded tree the book hashes, tests and replays."""
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(cli, "_run_one", lambda kwargs, path: seen.append(path))
    assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--device", "cpu"]) == 0
    assert seen == [Path("runs") / "lenet300-sp0.9-seed0.json"]
    assert "runs/" in (REPO / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("command", ["run", "verify", "reproduce", "reproduce-group"])
def test_an_unwritable_output_is_refused_before_any_work(command, capsys, tmp_path, monkeypatch):
    from snip_lib import replay

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(experiments, "prune_and_train", lambda **kw: pytest.fail("nothing may train"))
    monkeypatch.setattr(replay, "verify", lambda *a, **kw: pytest.fail("nothing may replay"))
    monkeypatch.setattr(experiments, "run_suite", lambda *a, **kw: pytest.fail("no suite may run"))
    monkeypatch.setattr(experiments, "run_group", lambda *a, **kw: pytest.fail("no group may run"))
    if command == "reproduce":
        argv = ["reproduce", "table1", "--out", str(blocker / "table1")]
    elif command == "reproduce-group":
        argv = ["reproduce", next(iter(experiments.GROUPS)), "--out", str(blocker)]
    elif command == "run":
        argv = ["run", "--arch", "lenet300", "--sparsity", "0.9", "--device", "cpu", "--out", str(blocker / "out")]
    else:
        recorded = REPO / "results" / "lenet" / "lenet300-sp0.98-seed0.json"
        argv = ["verify", str(recorded), "--epochs", "1", "--report", str(blocker / "report.json")]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_an_os_error_while_working_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    def fail(**kwargs):
        raise NotADirectoryError(20, "Not a directory", str(tmp_path / "x"))

    monkeypatch.setattr(experiments, "prune_and_train", fail)
    assert cli.main(["run", "--arch", "lenet300", "--sparsity", "0.9", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err


# --------------------------------------------------------------------------- program name and version


def test_usage_names_the_program_as_invoked(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/snip", "run", "--arch", "lenet300", "--sparsity", "2"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: snip run ")
    monkeypatch.setattr(sys, "argv", [str(REPO / "snip_lib" / "__main__.py"), "frobnicate"])
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().err.startswith(f"usage: {cli.PROG} ")


def test_version(capsys):
    from importlib import metadata

    import snip_lib

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    try:
        expected = metadata.version("snip_lib")
    except metadata.PackageNotFoundError:
        expected = snip_lib.__version__
    assert capsys.readouterr().out.strip() == f"{cli.PROG} {expected}"
