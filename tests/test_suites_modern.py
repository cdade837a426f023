"""Chapter 6 helpers of snip_lib.suites_modern: the twelve networks, their masks, and the recorded runs.

The recorded-run tests write synthetic result files into ``tmp_path`` (the real ones arrive
from long background runs), so they check the loader and the tables, not any number of the
paper. The model tests use the small recurrent networks and FakeData, so the file stays fast.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from snip_lib import data, experiments, masking, models, results, suites_modern


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny nets: see conftest.py


@pytest.fixture
def no_cifar(monkeypatch):
    """Make CIFAR-10 unavailable, as on a machine without internet, whatever this one has."""
    real = data.available
    monkeypatch.setattr(data, "available", lambda name, root=None: False if name == "cifar10" else real(name, root))


# ----------------------------------------------------------------------------- the twelve networks


def test_parameter_table_counts_every_network_of_table2():
    table = suites_modern.parameter_table().set_index("arch")
    assert list(table.index) == list(suites_modern.TABLE2_ARCHS) and len(table) == 12
    # exact counts (weights + biases, batch norm excluded), as derived in snip_lib.models
    assert table.loc["alexnet-s", "params"] == 5_070_218
    assert table.loc["gru-s", "params"] == 103_690
    assert table.loc["wrn-22-8", "params"] == 17_147_322
    # only WRN-16-8 is far from the printed number (Table 2's "10.0m" for 10.95M)
    far = table[table["difference %"].abs() > 1.0]
    assert list(far.index) == ["wrn-16-8"], table
    row = table.loc["vgg-d"]
    assert row["kept"] == round(0.05 * row["prunable"]) and row["prunable"] < row["params"]


def test_parameter_table_reuses_networks_it_is_given():
    small = models.build("lstm-s")
    table = suites_modern.parameter_table({"lstm-s": small}).set_index("arch")
    assert table.loc["lstm-s", "params"] == models.count_parameters(small)


def test_snip_architecture_prunes_at_table2_sparsity_on_real_data():
    res = suites_modern.snip_architecture("gru-s", n=50)
    assert res.arch == "gru-s" and res.dataset == "mnist" and not res.smoke and res.batch_size == 50
    assert res.sparsity == suites_modern.PAPER_TABLE2["gru-s"][0]
    total = sum(m.numel() for m in res.masks.values())
    assert sum(int(m.sum()) for m in res.masks.values()) == round(0.05 * total)
    assert all(m.dtype == torch.bool and m.device.type == "cpu" for m in res.masks.values())
    assert masking.is_masked(res.model)
    assert masking.get_masks(res.model).keys() == res.masks.keys()


def test_snip_architecture_needs_a_sparsity_outside_table2():
    with pytest.raises(ValueError, match="not in Table 2"):
        suites_modern.snip_architecture("lenet300")
    res = suites_modern.snip_architecture("lenet300", sparsity=0.9, n=20)
    assert abs(masking.global_sparsity(res.masks) - 0.9) < 1e-4
    with pytest.raises(ValueError, match="n must be"):
        suites_modern.snip_architecture("gru-s", n=0)


def test_scoring_batch_falls_back_to_labelled_fakedata_without_cifar(no_cifar):
    x, y, name = suites_modern.scoring_batch("alexnet-s", 6, seed=1)
    assert name == "cifar10-fake" and x.shape == (6, 3, 32, 32) and y.shape == (6,)
    x, y, name = suites_modern.scoring_batch("lstm-s", 6)
    assert name == "mnist" and x.shape == (6, 28, 28)


def _masks(**layers):
    return {name: torch.tensor(values, dtype=torch.bool) for name, values in layers.items()}


def test_density_frame_and_collapse_table_find_a_disconnected_layer():
    healthy = _masks(**{"conv1.weight": [[[[True, False]]]], "fc.weight": [[True, True], [False, True]]})
    broken = _masks(**{"input_proj.weight": [[True, True]], "cell.gates.weight": [[False, False], [False, False]],
                       "classifier.weight": [[True, False]]})
    frame = suites_modern.density_frame({"a": healthy, "b": broken})
    b = frame[frame["arch"] == "b"].set_index("layer")
    assert list(b["position"]) == [1, 2, 3]
    assert list(b["kind"]) == ["fc", "recurrent", "fc"]
    assert b.loc["classifier", "density"] == 0.5 and b.loc["cell.gates", "kept"] == 0
    assert frame[frame["arch"] == "a"].set_index("layer").loc["conv1", "kind"] == "conv"
    table = suites_modern.collapse_table({"a": healthy, "b": broken}).set_index("arch")
    assert table.loc["a", "collapsed"] == [] and table.loc["b", "collapsed"] == ["cell.gates"]
    assert table.loc["b", "sparsest layer"] == "cell.gates" and table.loc["b", "sparsest kept"] == 0
    assert table.loc["a", "sparsity %"] == pytest.approx(100 * 2 / 6, abs=0.01)
    with pytest.raises(TypeError, match="ArchitectureMask"):
        suites_modern.density_frame({"a": [1, 2]})


def test_gate_table_splits_a_cell_into_gates_and_their_inputs():
    h = 3
    lstm = {"input_proj.weight": torch.ones(h, 28, dtype=torch.bool),
            "cell.gates.weight": torch.zeros(4 * h, 2 * h, dtype=torch.bool),
            "classifier.weight": torch.ones(10, h, dtype=torch.bool)}
    lstm["cell.gates.weight"][h:2 * h, h:] = True          # forget gate, state columns only
    lstm["cell.gates.weight"][2 * h, 0] = True             # one input weight of the candidate g
    gru = {"cell.gates.weight": torch.zeros(2 * h, 2 * h, dtype=torch.bool),
           "cell.candidate.weight": torch.ones(h, 2 * h, dtype=torch.bool)}
    gru["cell.gates.weight"][h:, :h] = True                # update gate, input columns only
    cnn = {"fc.weight": torch.ones(2, 2, dtype=torch.bool)}
    table = suites_modern.gate_table({"lstm": lstm, "gru": gru, "cnn": cnn})
    assert set(table["arch"]) == {"lstm", "gru"}  # networks without a cell are left out
    kept = table.set_index(["arch", "gate", "reads"])["kept"]
    assert kept[("lstm", "forget gate f", "state h_t-1")] == h * h and kept[("lstm", "forget gate f", "input x_t")] == 0
    assert kept[("lstm", "candidate g", "input x_t")] == 1 and kept[("lstm", "output gate o", "state h_t-1")] == 0
    assert kept[("gru", "reset gate r", "input x_t")] == 0 and kept[("gru", "update gate u", "input x_t")] == h * h
    assert kept[("gru", "candidate c", "state h_t-1")] == h * h
    assert (table["weights"] == h * h).all() and len(table) == (4 + 3) * 2
    with pytest.raises(ValueError, match="no recurrent"):
        suites_modern.gate_table({"cnn": cnn})


# ----------------------------------------------------------------------------- training


def test_train_check_trains_a_pruned_recurrent_network_and_keeps_it_pruned():
    res = suites_modern.snip_architecture("lstm-s", n=50)
    kept = sum(int(m.sum()) for m in res.masks.values())
    before = {n: p.detach().clone() for n, p in res.model.named_parameters()}
    out = suites_modern.train_check(res.model, batches=3, batch_size=20, test_examples=40)
    assert out["arch"] == "lstm-s" and out["dataset"] == "mnist" and out["iterations"] == 3
    assert out["kept"] == kept and out["revived"] == 0
    assert math.isfinite(out["train_loss"]) and 0 <= out["test_error"] <= 100
    changed = [n for n, p in res.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert "cell.gates.weight" in changed  # it really trained


def test_train_check_runs_a_cifar_network_on_fakedata(no_cifar):
    model = models.build("alexnet-s")
    out = suites_modern.train_check(model, batches=1, batch_size=4)
    assert out["dataset"] == "cifar10-fake" and out["kept"] is None and out["iterations"] == 1


def test_train_check_rejects_a_model_not_built_by_the_library():
    with pytest.raises(ValueError, match="snip_arch"):
        suites_modern.train_check(torch.nn.Linear(2, 2), batches=1)
    with pytest.raises(ValueError, match="batches"):
        suites_modern.train_check(models.build("gru-s"), batches=0)


def test_time_epochs_compares_dense_and_pruned_side_by_side():
    frame = suites_modern.time_epochs(["gru-s"], device="cpu", n_examples=40, batch_size=20, epochs=1,
                                      settings=[(False, False)])
    assert list(frame["variant"]) == ["dense", "SNIP 95 %"]
    assert frame.loc[0, "vs dense"] == 1.0 and frame.loc[1, "vs dense"] > 0
    assert (frame["seconds per epoch"] > 0).all() and set(frame["dataset"]) == {"mnist"}
    with pytest.raises(ValueError, match="archs"):
        suites_modern.time_epochs("vgg-d")
    with pytest.raises(ValueError, match="settings"):
        suites_modern.time_epochs(["gru-s"], settings=[(True,)])
    with pytest.raises(ValueError, match="'lenet300' is not one of"):   # no Table 2 sparsity to prune at
        suites_modern.time_epochs(["gru-s", "lenet300"], n_examples=40, batch_size=20, epochs=1)


# ----------------------------------------------------------------------------- recorded runs


def _record(root, suite, run, seed, error, monkeypatch, mode="full"):
    """One synthetic result file where `python -m snip_lib reproduce` would write it."""
    monkeypatch.setenv("SNIP_QUICK", "1" if mode == "quick" else "0")
    path = root / suite / experiments.result_name(experiments.SUITES[suite], run, seed)
    history = {"test_error": [error + 1.0, error], "val_error": [error + 0.5, error + 0.2]}
    results.write_result(
        path, kind="prune_and_train", seed=seed, wall_time=60.0 + seed,
        config={"arch": run["arch"], "sparsity": run["sparsity"], "scoring_init": run.get("scoring_init"),
                "device": "cpu", "train": {"epochs": run.get("epochs", 5)}},
        metrics={"final_test_error": error, "best_test_error": error - 0.1, "test_error_at_best_val": error,
                 "history": history})
    return path


def _run(suite, arch, sparsity, scoring_init=None):
    return next(r for r in experiments.SUITES[suite].runs
                if r["arch"] == arch and r["sparsity"] == sparsity and r.get("scoring_init") == scoring_init)


def test_recorded_results_explains_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="reproduce table2-rnn"):
        suites_modern.recorded_results("table2-rnn")
    _record(tmp_path, "table2-rnn", _run("table2-rnn", "lstm-s", 0.0), 0, 1.0, monkeypatch, mode="quick")
    with pytest.raises(FileNotFoundError, match="no recorded full"):
        suites_modern.recorded_results("table2-rnn")
    assert len(suites_modern.recorded_results("table2-rnn", mode=None)) == 1
    with pytest.raises(ValueError, match="suite must be"):
        suites_modern.recorded_results("../lenet")


def test_run_status_lists_what_is_still_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    status = suites_modern.run_status("table2-rnn")
    assert len(status) == 8 * 2 and not status["recorded"].any()  # 4 nets x (dense, SNIP) x 2 seeds
    path = _record(tmp_path, "table2-rnn", _run("table2-rnn", "gru-s", 0.95), 1, 2.0, monkeypatch)
    status = suites_modern.run_status("table2-rnn")
    assert list(status.loc[status["recorded"], "file"]) == [path.name] == ["gru-s-sp0.95-seed1.json"]
    t3 = suites_modern.run_status("table3-rnn")
    assert len(t3) == 2 * 4 * 2 and set(t3["scoring init"]) == {"RN", "TN", "VS-X", "VS-H"}
    assert t3["file"].is_unique


def test_run_status_plans_a_runs_own_seeds_as_reproduce_does(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    spec = experiments.SUITES["table2-rnn"]
    runs = tuple(dict(r, seeds=(0, 1, 2)) if r["arch"] == "gru-s" else r for r in spec.runs)
    monkeypatch.setitem(experiments.SUITES, "table2-rnn", dataclasses.replace(spec, runs=runs))
    status = suites_modern.run_status("table2-rnn")
    assert len(status) == len(experiments.planned_runs(experiments.SUITES["table2-rnn"])) == 6 * 2 + 2 * 3
    assert sorted(status.loc[status["arch"] == "gru-s", "seed"]) == [0, 0, 1, 1, 2, 2]


def test_summarize_table2_puts_our_seeds_next_to_the_paper(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    for seed, err in ((0, 1.0), (1, 2.0)):
        _record(tmp_path, "table2-rnn", _run("table2-rnn", "lstm-s", 0.95), seed, err, monkeypatch)
    _record(tmp_path, "table2-rnn", _run("table2-rnn", "gru-s", 0.0), 0, 1.5, monkeypatch)
    _record(tmp_path, "table2-rnn", _run("table2-rnn", "lstm-s", 0.0), 0, 0.9, monkeypatch)
    table = suites_modern.summarize_table2(suites_modern.recorded_results("table2-rnn"))
    assert list(zip(table["arch"], table["sparsity"])) == [("lstm-s", 0.0), ("lstm-s", 95.0), ("gru-s", 0.0)]
    row = table.iloc[1]
    assert row["paper"] == 1.57 and row["n"] == 2 and row["seeds"] == [0, 1]
    assert row["final_mean"] == pytest.approx(1.5) and row["final_std"] == pytest.approx(math.sqrt(0.5))
    assert row["best_test_mean"] == pytest.approx(1.4) and row["wall_time_mean"] == pytest.approx(60.5)
    assert (row["wall_time_min"], row["wall_time_max"]) == (60.0, 61.0)  # runs of one row can differ a lot
    assert row["machine"] != "?" and len(row["recorded"]) == 10              # written today: one date
    assert table.iloc[0]["paper"] == 1.88 and math.isnan(table.iloc[0]["final_std"])
    assert table.iloc[2]["paper"] == 1.87 and isinstance(row["commit"], str) and row["device"]
    with pytest.raises(ValueError, match="non-empty"):
        suites_modern.summarize_table2(pd.DataFrame())


def test_summarize_table2_refuses_to_average_budgets(tmp_path, monkeypatch):
    """A 50-epoch seed (reproduce ... --epochs 50 --overwrite) is not averaged with a 10-epoch one."""
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    run = _run("table2-rnn", "lstm-s", 0.95)
    _record(tmp_path, "table2-rnn", run, 0, 5.0, monkeypatch)
    _record(tmp_path, "table2-rnn", dict(run, epochs=50), 1, 2.0, monkeypatch)
    with pytest.raises(ValueError, match=r"runs of lstm-s at 95 % were not trained the same way \(config.train.epochs"):
        suites_modern.summarize_table2(suites_modern.recorded_results("table2-rnn"))


def test_summarize_table3_keeps_sparsities_apart_and_gives_the_paper_only_at_90(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    run = _run("table3-rnn", "gru-s", 0.9, suites_modern.TABLE3_SCHEMES["VS-H"])
    _record(tmp_path, "table3-rnn", run, 0, 3.0, monkeypatch)
    _record(tmp_path, "table3-rnn", dict(run, sparsity=0.99), 1, 7.5, monkeypatch)
    table = suites_modern.summarize_table3(suites_modern.recorded_results("table3-rnn"))
    assert table[["sparsity", "n", "final_mean"]].values.tolist() == [[90.0, 1, 3.0], [99.0, 1, 7.5]]
    assert table["paper_mean"].iloc[0] == suites_modern.PAPER_TABLE3_RNN["gru-s"]["VS-H"][0]
    assert math.isnan(table["paper_mean"].iloc[1])


def test_summarize_table3_orders_the_scoring_initialisations_as_the_paper(tmp_path, monkeypatch):
    monkeypatch.setattr(suites_modern, "results_dir", lambda: tmp_path)
    for label in ("VS-H", "RN", "VS-X"):
        scheme = suites_modern.TABLE3_SCHEMES[label]
        _record(tmp_path, "table3-rnn", _run("table3-rnn", "gru-s", 0.9, scheme), 0, 3.0, monkeypatch)
    _record(tmp_path, "table3-rnn", _run("table3-rnn", "lstm-s", 0.9, "truncated_normal"), 0, 2.0, monkeypatch)
    frame = suites_modern.recorded_results("table3-rnn")
    table = suites_modern.summarize_table3(frame)
    assert list(zip(table["arch"], table["scoring init"])) == [
        ("lstm-s", "TN"), ("gru-s", "RN"), ("gru-s", "VS-X"), ("gru-s", "VS-H")]
    rn = table.iloc[1]
    assert (rn["paper_mean"], rn["paper_std"]) == (47.61, 20.49) and rn["final_mean"] == 3.0
    curves = suites_modern.history_frame(frame)
    assert len(curves) == 4 * 2 * 2 and set(curves["scoring init"]) == {"RN", "TN", "VS-X", "VS-H"}
    assert set(curves["split"]) == {"test", "val"} and curves["epoch"].max() == 2


def test_summaries_leave_out_smoke_runs_unless_asked(tmp_path):
    """A FakeData smoke run (no CIFAR-10 here) recorded in full mode is not a Table 2 row."""
    def write(name, seed, error, smoke):
        dataset = "cifar10-fake" if smoke else "cifar10"
        results.write_result(tmp_path / name, kind="prune_and_train", seed=seed, wall_time=5.0, device="cpu",
                             config={"arch": "vgg-d", "sparsity": 0.95, "dataset": dataset, "mode": "full",
                                     "train": {"epochs": 1, "lr": 0.1}},
                             metrics={"final_test_error": error, "best_test_error": error,
                                      "test_error_at_best_val": error, "smoke": smoke})

    write("smoke0.json", 0, 90.0, True)
    write("smoke1.json", 1, 90.0, True)
    frame = results.load_results(tmp_path)
    with pytest.raises(ValueError, match=r"only smoke runs .*include_smoke=True"):
        suites_modern.summarize_table2(frame)
    smoke = suites_modern.summarize_table2(frame, include_smoke=True)
    assert smoke["n"].tolist() == [2] and smoke["smoke"].tolist() == [True]
    write("real.json", 2, 7.0, False)
    table = suites_modern.summarize_table2(results.load_results(tmp_path))
    assert table[["arch", "n", "final_mean"]].values.tolist() == [["vgg-d", 1, 7.0]]
    assert "smoke" not in table.columns
    with pytest.raises(ValueError, match="include_smoke must be True or False, got 1"):
        suites_modern.summarize_table2(frame, include_smoke=1)
