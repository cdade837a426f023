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

# run-dict key of a suite -> where prune_and_train records it in the result's config
_TRAIN_KEYS = {"epochs", "optimizer", "lr", "schedule", "batch_size"}
_CONFIG_KEYS = {"arch", "sparsity", "saliency_batch", "init", "scoring_init", "scoring_bias", "include_bias", "bn_mode",
                "limit_train"}


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


def _mismatches(run: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    out = []
    for key, want in run.items():
        if key in _CONFIG_KEYS:
            got = cfg.get(key)
        elif key in _TRAIN_KEYS:
            got = cfg["train"].get(key)
        elif key == "train_options":
            for k, v in want.items():
                if cfg["train"].get(k) != (list(v) if isinstance(v, tuple) else v):
                    out.append(f"train.{k}: suite {v!r}, file {cfg['train'].get(k)!r}")
            continue
        elif key == "model_options":
            got = {k: cfg["model_options"].get(k) for k in want}
        else:
            continue  # a run key that is not recorded in the config (e.g. progress)
        if got != want and not (isinstance(want, float) and isinstance(got, (int, float)) and abs(got - want) < 1e-12):
            out.append(f"{key}: suite {want!r}, file {got!r}")
    return out


def test_there_are_recorded_lenet_results():
    assert LENET_FILES, f"no recorded LeNet result in {RESULTS / suites_lenet.RESULTS_SUBDIR}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_recorded_file_is_a_valid_result(path):
    obj = json.loads(path.read_text(encoding="utf-8"))
    results.validate_result(obj)  # raises with every problem listed


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_recorded_file_matches_its_suite(path):
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
    problems = [_mismatches(r, cfg) for r in candidates]
    assert any(not p for p in problems), f"{path.name} differs from suite {name!r}: {problems}"


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

