"""The benchmark runner works end to end on toy settings and writes valid result files.

No timing is asserted (benchmarks are not tests); what is checked is that each benchmark runs,
writes one JSON result with provenance and the fields the book reads, and records failures
instead of hiding them.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat

import pytest
import torch

from snip_lib import benchmarking, results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the benchmarks/ package lives at the repository root

from benchmarks import masked_overhead, run, scoring_vs_step  # noqa: E402


@pytest.fixture
def toy(monkeypatch):
    """One small network per benchmark; the runner's own environment changes are undone afterwards."""
    tiny = [{"arch": "lenet300", "batch": 8, "sparsity": 0.9, "data": "mnist", "repeats": 6}]
    monkeypatch.setattr(scoring_vs_step, "_cases", lambda settings: tiny)
    monkeypatch.setattr(masked_overhead, "_cases", lambda settings: tiny)
    monkeypatch.setenv("SNIP_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_model_benchmarks_write_valid_results(toy, tmp_path: Path):
    assert run.main(["--mode", "quick", "--out", str(tmp_path), "--note", "toy run",
                     "--only", "scoring_vs_step", "masked_overhead", "sparse_inference"]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == ["masked_overhead.json", "scoring_vs_step.json", "sparse_inference.json"]
    for path in tmp_path.glob("*.json"):
        obj = results.read_result(path)  # validates the schema
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path.name}: non-JSON constant {c}"))
        assert obj["kind"] == f"benchmark.{path.stem}"
        assert obj["config"]["benchmark_mode"] == "quick" and obj["provenance"]["mode"] == "quick"
        assert obj["provenance"]["num_threads"] == 1
        assert obj["extra"]["note"] == "toy run"
        assert len(obj["extra"]["machine_load_before"]["loadavg_1_5_15"]) == 3
        assert obj["metrics"]["rows"]

    overhead = results.read_result(tmp_path / "masked_overhead.json")["metrics"]["rows"][0]
    for name in ("ours_fit", "ours_hook", "ours_hook_enforce", "torch_prune"):
        assert overhead[f"{name}_over_dense"] > 0
        assert overhead[f"{name}_pruned_nonzero_after"] == 0
    judged = ("ours_fit_over_dense", "ours_fit_over_dense_masked_sgd")   # fit's variant, against both baselines
    assert overhead["ours_within_target"] == all(overhead[k] <= 1.05 for k in judged)
    for key in judged:
        low, high = overhead[f"{key}_ci95"]                              # 6 rounds: the min-max interval
        assert low <= overhead[key] <= high
    assert overhead["repeats"] == 6
    assert overhead["ours_within_target_ci95"] == all(overhead[f"{k}_ci95"][1] <= 1.05 for k in judged)
    scoring = results.read_result(tmp_path / "scoring_vs_step.json")["metrics"]["rows"][0]
    assert scoring["scores_over_step"] > 0 and scoring["masks_over_step"] > 0

    inference = results.read_result(tmp_path / "sparse_inference.json")["metrics"]
    assert inference["all_outputs_match"] is True
    variants = {(r["arch"], r["variant"], r["batch"]) for r in inference["rows"]}
    assert ("lenet300", "csr", 1) in variants and ("lenet5", "csr_sparse_conv", 256) in variants
    dense = next(r for r in inference["rows"] if r["arch"] == "lenet300" and r["variant"] == "dense")
    assert dense["latency_over_dense"] == pytest.approx(1.0)
    assert dense["storage_over_dense"] == 1.0


def test_notebook_times_records_each_notebook_and_its_failures(toy, tmp_path: Path):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    for path, source in ((good, "import os\nassert os.environ['SNIP_QUICK'] == '1'"), (bad, "1 / 0")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, path)
    before = good.read_bytes()
    out = tmp_path / "out"
    assert run.main(["--mode", "quick", "--out", str(out), "--only", "notebook_times",
                     "--notebooks", str(good), str(bad)]) == 0
    obj = results.read_result(out / "notebook_times.json")
    rows = {r["notebook"]: r for r in obj["metrics"]["rows"]}
    assert rows["01_good.ipynb"]["ok"] and rows["01_good.ipynb"]["error"] is None
    assert not rows["02_bad.ipynb"]["ok"] and "ZeroDivisionError" in rows["02_bad.ipynb"]["error"]
    assert obj["metrics"]["all_ok"] is False
    assert all(r["seconds"] > 0 and r["mode"] == "quick" for r in rows.values())
    assert good.read_bytes() == before  # notebooks are never rewritten
    assert rows["01_good.ipynb"]["code_sha256_12"] == benchmarking.notebook_code_hash(good)


def test_the_code_hash_follows_the_code_and_ignores_the_prose(tmp_path: Path):
    path = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Takes 1 minute."),
                                         nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, path)
    first = benchmarking.notebook_code_hash(path)
    assert len(first) == 12 and int(first, 16) >= 0
    nb.cells[0].source = "Takes 2 minutes."                   # prose: the measured time still applies
    nbformat.write(nb, path)
    assert benchmarking.notebook_code_hash(path) == first
    nb.cells[1].source = "x = 2"                              # code: it does not
    nbformat.write(nb, path)
    assert benchmarking.notebook_code_hash(path) != first


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "no_such_benchmark"])
    with pytest.raises(SystemExit):
        run.parse_args(["--threads", "0"])
    with pytest.raises(FileNotFoundError, match="python -m benchmarks --only nope"):
        benchmarking.load_benchmark("nope")


def test_the_recorded_notebook_times_keep_both_modes(capsys, tmp_path: Path):
    """`make bench` must not replace the recorded chapter times (both modes) by a quick-only file."""
    from benchmarks import common

    assert run.parse_args([]).notebook_modes == ["quick", "full"]              # recorded: both by default
    assert run.parse_args(["--out", str(tmp_path)]).notebook_modes == ["quick"]  # elsewhere: quick
    assert run.parse_args(["--mode", "quick"]).notebook_modes == ["quick"]
    assert run.parse_args(["--mode", "quick"]).out == common.SCRATCH_DIR
    with pytest.raises(SystemExit):
        run.parse_args(["--notebook-modes", "quick"])
    assert "without its other mode" in capsys.readouterr().err
    # ... unless notebook_times is not among the benchmarks run
    assert run.parse_args(["--only", "sparse_inference", "--notebook-modes", "quick"]).out == common.RESULTS_DIR


# --------------------------------------------------------------------------- snip_lib.benchmarking


def test_variants_are_interleaved_in_rotating_order():
    calls: list[str] = []
    frame = benchmarking.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                          repeats=4, warmup=0, min_sample_time=0.0)
    timed = calls[6:]  # after three calibration calls each
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert list(frame.columns) == ["round", "variant", "seconds", "calls"] and len(frame) == 8


def test_a_cuda_device_synchronises_around_every_sample(monkeypatch):
    import torch

    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(f"sync {device}"))
    frame = benchmarking.time_interleaved({"a": lambda: events.append("a")}, repeats=2, warmup=1,
                                          min_sample_time=0.0, device="cuda:0")
    # warm-up, then three calibration calls and two samples, each between two synchronisations
    assert events == ["a"] + ["sync cuda:0", "a", "sync cuda:0"] * 5 and len(frame) == 2
    events.clear()
    benchmarking.time_interleaved({"a": lambda: events.append("a")}, repeats=2, warmup=0,
                                  min_sample_time=0.0, device="cpu")
    assert events == ["a"] * 5                                       # the CPU needs no synchronisation
    with pytest.raises(ValueError, match="device must be .*got 'gpu0'"):
        benchmarking.time_interleaved({"a": lambda: None}, device="gpu0")


def test_one_slow_calibration_call_does_not_shorten_every_sample(monkeypatch):
    """A fake clock: each call advances it by its cost, nothing is really timed. The first call
    after the warm-up takes 1 s, all others 2**-10 s; samples must still last min_sample_time."""
    import types

    clock = [0.0]
    costs = iter([2.0**-10, 1.0])                    # the warm-up call, then one slow timed call

    def fn():
        clock[0] += next(costs, 2.0**-10)

    monkeypatch.setattr(benchmarking, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    frame = benchmarking.time_interleaved({"f": fn}, repeats=3, warmup=1, min_sample_time=2.0**-7)
    assert (frame["calls"] == 8).all()                            # 2**-7 / 2**-10, not 2**-7 / 1 s
    assert (frame["seconds"] * frame["calls"] >= 2.0**-7).all()
    assert (frame["seconds"] == 2.0**-10).all()


def test_median_ci_is_the_order_statistic_interval():
    import math

    # n = 100: the textbook 95 % interval of the median is the 40th to 61st smallest value
    low, high = benchmarking.median_ci(list(range(1, 101)))
    assert (low, high) == (40.0, 61.0)
    assert benchmarking.median_ci([3.0, 1.0, 2.0, float("nan"), 5.0, 4.0, 6.0]) == (1.0, 6.0)  # n = 6: min, max
    assert all(math.isnan(v) for v in benchmarking.median_ci([1.0, 2.0, 3.0, 4.0, 5.0]))   # too few values
    assert all(math.isnan(v) for v in benchmarking.median_ci([]))
    # a wider level never gives a narrower interval
    lo90, hi90 = benchmarking.median_ci(list(range(1, 101)), level=0.90)
    assert low <= lo90 <= hi90 <= high
    with pytest.raises(ValueError, match="level must be"):
        benchmarking.median_ci([1.0], level=95)


def test_median_ci_ranks_agree_with_scipy_and_need_no_scipy(monkeypatch):
    """The ranks come from exact binomial sums, the same as scipy's ppf/cdf rule for every n and
    level tried; scipy is not needed (it is only in the extras)."""
    import builtins

    binom = pytest.importorskip("scipy.stats").binom
    for level in (0.5, 0.9, 0.95, 0.99):
        alpha_half = (1.0 - level) / 2.0
        for n in range(1, 160):
            j = int(binom.ppf(alpha_half, n, 0.5))
            if binom.cdf(j, n, 0.5) > alpha_half:
                j -= 1
            assert benchmarking._lower_rank(n, alpha_half) == j, (n, level)
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name == "scipy" or name.startswith("scipy."):
            raise ModuleNotFoundError(f"import of {name} halted")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert benchmarking.median_ci(list(range(1, 101))) == (40.0, 61.0)


def test_summary_ratios_are_paired_medians():
    import pandas as pd

    # Data on which the paired ratios and the medians tell different stories: x is slower than
    # base in most rounds (paired median 1.05) but has the lower median time (ratio of medians 8/9).
    base, x = [1.0, 2.0, 10.0, 4.0, 5.0, 8.0], [3.0, 2.0, 11.0, 4.0, 10.0, 4.0]
    rows = [(r, name, t) for r, pair in enumerate(zip(base, x)) for name, t in zip(("base", "x"), pair)]
    frame = pd.DataFrame(rows, columns=["round", "variant", "seconds"])
    summary = benchmarking.summarize(frame, "base")
    assert summary.loc["base", "ratio"] == 1.0
    # paired ratios 3, 1, 1.1, 1, 2, 0.5; sorted 0.5, 1, 1, 1.1, 2, 3
    assert summary.loc["x", "ratio"] == pytest.approx(1.05)          # (1 + 1.1) / 2
    assert summary.loc["x", "ratio_p25"] == pytest.approx(1.0)       # linear quantile at position 1.25
    assert summary.loc["x", "ratio_p75"] == pytest.approx(1.775)     # at position 3.75: 1.1 + 0.75 * 0.9
    assert summary.loc["x", "ratio_of_medians"] == pytest.approx(4.0 / 4.5)
    assert (summary.loc["x", "ratio_ci95_low"], summary.loc["x", "ratio_ci95_high"]) == (0.5, 3.0)  # n = 6: min, max
    assert summary.loc["x", "median_s"] == 4.0 and summary.loc["x", "repeats"] == 6
    three = benchmarking.summarize(frame[frame["round"] < 3], "base")
    assert math.isnan(three.loc["x", "ratio_ci95_low"])            # three rounds: too few for an interval
    with pytest.raises(ValueError, match="baseline 'nope'"):
        benchmarking.summarize(frame, "nope")
    with pytest.raises(ValueError, match="non-empty"):
        benchmarking.time_interleaved({})
    with pytest.raises(TypeError, match="not callable"):
        benchmarking.time_interleaved({"a": 1})


#: Each recorded benchmark and the library files whose speed it measures: a recording made before
#: the last change to one of them describes code that no longer runs.
MEASURED_CODE = {
    "masked_overhead": ["snip_lib/optim.py", "snip_lib/masking.py"],
    "sparse_inference": ["snip_lib/sparse.py"],
    "scoring_vs_step": ["snip_lib/snip.py"],
}


@pytest.mark.parametrize("name", sorted(MEASURED_CODE))
def test_a_recorded_benchmark_is_newer_than_the_code_it_measures(name):
    """notebook_times carries each chapter's code hash; the others are checked here through git: the
    commit a benchmark was recorded at must contain the last change to the code it times."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)

    if git("rev-parse", "--is-inside-work-tree").returncode != 0 or git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("needs the repository's full git history")
    recorded = results.read_result(REPO / "benchmarks" / "results" / f"{name}.json")["provenance"]["git_commit"]
    assert recorded, f"{name}.json records no commit"
    if git("cat-file", "-e", f"{recorded}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {recorded[:8]} of {name}.json is not in this clone's history")
    last = git("log", "-1", "--format=%H", "--", *MEASURED_CODE[name]).stdout.strip()
    assert git("merge-base", "--is-ancestor", last, recorded).returncode == 0, (
        f"benchmarks/results/{name}.json was recorded at {recorded[:8]}, before {last[:8]} changed "
        f"{', '.join(MEASURED_CODE[name])}: re-record it (python -m benchmarks --only {name})")
