"""Every recorded result file under results/ is a valid result, and says what its suite says.

A recorded file is what the book quotes, so a file edited by hand, written by an older layout,
or produced with settings that differ from the suite it claims to belong to must fail here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from snip_lib import experiments, results, suites_lenet

try:  # registers the figure3/table3 suites of chapter 7, when that module is present
    from snip_lib import suites_keeps  # noqa: F401
except ImportError:  # pragma: no cover
    pass

RESULTS = Path(__file__).resolve().parent.parent / "results"
FILES = sorted(p for p in RESULTS.rglob("*.json")) if RESULTS.is_dir() else []
LENET_FILES = [p for p in FILES if p.parent.name == suites_lenet.RESULTS_SUBDIR]

def _suite_of(path: Path, cfg: dict[str, Any]) -> str | None:
    """The suite a recorded file belongs to: the suite whose results folder holds it and has its arch."""
    folder = path.parent.relative_to(RESULTS).as_posix()
    for name, suite in experiments.SUITES.items():
        if suite.results_folder == folder and any(r["arch"] == cfg.get("arch") for r in suite.runs):
            return name
    return None


def test_suite_folders_do_not_mix_architectures():
    """Two suites may share a folder only if no architecture appears in both (else _suite_of is ambiguous)."""
    seen: dict[tuple[str, str], str] = {}
    for name, suite in experiments.SUITES.items():
        for arch in {r["arch"] for r in suite.runs}:
            key = (suite.results_folder, arch)
            assert key not in seen, f"suites {seen.get(key)!r} and {name!r} both put {arch} runs in results/{key[0]}"
            seen[key] = name


def _mismatches(suite: experiments.Suite, run: dict[str, Any], path: Path, seed: int) -> list[str]:
    """How a recorded file differs from ``run`` of ``suite`` as `reproduce` would run it now (full mode).

    Every setting the run records, defaults included, through the check that decides whether a
    suite skips the file (:func:`snip_lib.experiments.file_differences`), and the file name the
    run would write (:func:`snip_lib.experiments.result_name`).
    """
    problems = experiments.file_differences(path, dict(experiments.requested_settings(run), seed=seed))
    name = experiments.result_name(suite, run, seed)
    if path.name != name:
        problems.append(f"file name: {path.name}, the run writes {name}")
    return problems


def test_there_are_recorded_lenet_results():
    assert LENET_FILES, f"no recorded LeNet result in {RESULTS / suites_lenet.RESULTS_SUBDIR}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_recorded_file_is_a_valid_result(path):
    obj = json.loads(path.read_text(encoding="utf-8"))
    results.validate_result(obj)  # raises with every problem listed


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_recorded_file_matches_its_suite(path, monkeypatch):
    monkeypatch.setenv("SNIP_QUICK", "0")  # what `make reproduce` (full mode) would run
    obj = results.read_result(path)
    if obj["kind"] != "prune_and_train" or obj["provenance"]["mode"] != "full":
        pytest.skip("not a full-mode prune_and_train run: no suite to compare with")
    cfg = obj["config"]
    name = _suite_of(path, cfg)
    if name is None:
        pytest.skip(f"{path.parent.name} is not a registered suite")
    suite = experiments.SUITES[name]
    candidates = [r for r in suite.runs if r["arch"] == cfg["arch"] and abs(r["sparsity"] - cfg["sparsity"]) < 1e-12]
    assert candidates, f"suite {name!r} has no run for {cfg['arch']} at sparsity {cfg['sparsity']}"
    seeds = {s for r in candidates for s in experiments.seeds_of(suite, r)}
    assert obj["seed"] in seeds, f"seed {obj['seed']} not among suite {name!r}'s seeds {sorted(seeds)} for this run"
    problems = [_mismatches(suite, r, path, obj["seed"]) for r in candidates]
    assert any(not p for p in problems), f"{path.name} differs from suite {name!r}: {problems}"


def _edited_copy(tmp_path: Path, source: Path, change: dict[str, Any]) -> Path:
    obj = json.loads(source.read_text(encoding="utf-8"))
    obj["config"].update(change)
    (tmp_path / source.name).write_text(json.dumps(obj), encoding="utf-8")
    return tmp_path / source.name


@pytest.mark.parametrize("change", [{"method": "random"}, {"init": "glorot_uniform"}, {"shuffle": True},
                                    {"dataset": "fashion_mnist"}, {"include_bias": True}])
def test_a_file_that_differs_from_its_suite_in_any_setting_is_caught(tmp_path, monkeypatch, change):
    """Settings the suite leaves at their defaults count too: a Table 1 file trained another way fails."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    suite = experiments.SUITES["table1-lenet300"]
    source = RESULTS / suite.results_folder / "lenet300-sp0.98-seed0.json"
    run = next(r for r in suite.runs if r["sparsity"] == 0.98)
    assert _mismatches(suite, run, source, 0) == []
    problems = _mismatches(suite, run, _edited_copy(tmp_path, source, change), 0)
    assert any(p.startswith(f"{next(iter(change))}: recorded") for p in problems), problems


def test_a_file_whose_name_is_another_runs_is_caught(tmp_path, monkeypatch):
    """A GraSP file holding a random-pruning run matches the suite's random run in its settings, not in its name."""
    monkeypatch.setenv("SNIP_QUICK", "0")
    suite = experiments.SUITES["beyond-lenet300"]
    source = RESULTS / suite.results_folder / "lenet300-sp0.9-mgrasp-seed0.json"
    edited = _edited_copy(tmp_path, source, {"method": "random"})
    candidates = [r for r in suite.runs if r["arch"] == "lenet300" and abs(r["sparsity"] - 0.9) < 1e-12]
    problems = [_mismatches(suite, r, edited, 0) for r in candidates]
    assert all(problems), problems
    assert any(p == [f"file name: {source.name}, the run writes lenet300-sp0.9-mrandom-seed0.json"] for p in problems)


@pytest.mark.parametrize("path", LENET_FILES, ids=lambda p: p.name)
def test_lenet_file_is_named_after_its_run(path):
    obj = results.read_result(path)
    cfg = obj["config"]
    assert path.name == suites_lenet.result_name(cfg["arch"], cfg["sparsity"], obj["seed"])
    assert obj["provenance"]["mode"] == "full" and cfg["dataset"] == "mnist" and not obj["metrics"]["smoke"]
    hist = obj["metrics"]["history"]
    assert len(hist["test_error"]) == cfg["train"]["epochs"]


def test_the_stated_reproduction_time_is_the_sum_of_the_recorded_runs(make_reproduce_suites):
    """README, introduction and chapter 10 say how many CPU-hours `make reproduce` takes."""
    repo = RESULTS.parent
    folders = {experiments.SUITES[name].results_folder for name in make_reproduce_suites}
    folders.add("keeps/figure4")                      # the Makefile's last line
    hours = sum(json.loads(p.read_text())["wall_time"] for f in folders for p in (RESULTS / f).glob("*.json")) / 3600
    chapter10 = json.loads((repo / "book" / "10_performance.ipynb").read_text())
    for text in ((repo / "README.md").read_text(), (repo / "book" / "intro.md").read_text(),
                 "\n".join("".join(c["source"]) for c in chapter10["cells"])):
        stated = [int(n) for n in re.findall(r"about\s+(\d+)\s+CPU-hours", text)]
        assert stated and all(abs(n - hours) <= 0.15 * hours for n in stated), (stated, round(hours, 1))


def test_the_recorded_figure4_runs_are_the_ones_figure4_settings_describe():
    """Figure 4's label-fitting files are not prune_and_train runs, so the suite check above skips
    them; this checks them against suites_keeps.FIGURE4_SETTINGS and the four curves the figure draws."""
    from snip_lib import suites_keeps

    folder = RESULTS / "keeps" / "figure4"
    runs = [results.read_result(p) for p in sorted(folder.glob("*.json"))]
    assert runs, f"no recorded Figure 4 run in {folder}"
    settings = suites_keeps.FIGURE4_SETTINGS
    curves = set()
    for obj in runs:
        cfg = obj["config"]
        assert obj["kind"] == "label_fitting" and obj["provenance"]["mode"] == "full", obj["kind"]
        assert cfg["arch"] == settings["arch"] and cfg["n_train"] == settings["n_train"], cfg
        assert cfg["train"]["epochs"] == settings["epochs"], cfg["train"]
        assert cfg["sparsity"] in (0.0, settings["sparsity"]), cfg
        # a pruned run scored with the true labels; a dense one scored nothing and says so
        scored = ("true", 100) if cfg["sparsity"] > 0 else (None, None)
        assert (cfg["saliency_labels"], cfg["saliency_batch"]) == scored, cfg
        assert cfg["train"]["optimizer"] == "adam" and cfg["train"]["weight_decay"] == 0.0, cfg["train"]
        curves.add((cfg["sparsity"], cfg["labels"]))
    assert curves == {(s, lab) for s in (0.0, settings["sparsity"]) for lab in ("true", "shuffled")}, curves

