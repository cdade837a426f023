"""Result files with provenance: one JSON file per run, and a loader that tabulates them.

Every number the book shows comes from such a file, and every file says where it came
from: the git commit (and whether the working tree had uncommitted changes), library
versions, the device, quick or full mode and when it ran. No host name is recorded.

Layout of a result file (checked by :func:`validate_result`, described by :data:`SCHEMA`)::

    {"schema_version": 1, "kind": "prune_and_train", "seed": 0,
     "config": {...}, "metrics": {...}, "wall_time": 12.3,
     "provenance": {"git_commit": "...", "git_dirty": false, ...}, "extra": {...}}

Non-finite floats (NaN, inf) are written as ``null`` so the files are strict JSON.
"""

from __future__ import annotations

import datetime as _dt
import glob as _glob
import json
import math
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # only for annotations: pandas is imported where a frame is built
    import pandas as pd

__all__ = ["NOT_RECORDED", "SCHEMA", "SCHEMA_VERSION", "check_one_recipe", "commit_label", "drop_smoke", "git_state",
           "is_smoke", "load_results", "mean_ci", "mixed_settings", "provenance", "provenance_line", "load_recorded",
           "read_result", "results_dir", "smoke_rows", "validate_result", "with_setting_defaults", "write_result"]

#: Version of the result-file layout written by :func:`write_result`.
SCHEMA_VERSION = 1

# A plain description of a result file: field -> {"type": allowed JSON types, "doc": meaning,
# optional "fields": nested description, optional "values": allowed values, "optional": True for a
# field that files written before it existed may lack}.
# Types: "str", "int", "number" (int or float), "bool", "dict", "list", "null".
#: The layout of a result file, checked by :func:`validate_result` (see the comment above it in the source).
SCHEMA: dict[str, dict[str, Any]] = {
    "schema_version": {"type": ["int"], "values": [SCHEMA_VERSION], "doc": "version of this layout"},
    "kind": {"type": ["str"], "doc": "what produced the file, e.g. 'prune_and_train'"},
    "seed": {"type": ["int", "null"], "doc": "the run's random seed"},
    "config": {"type": ["dict"], "doc": "every setting needed to rerun the experiment"},
    "metrics": {"type": ["dict"], "doc": "measured numbers; errors in percent"},
    "wall_time": {"type": ["number"], "doc": "seconds the run took"},
    "extra": {"type": ["dict"], "doc": "anything else (free form)"},
    "provenance": {
        "type": ["dict"],
        "doc": "where the numbers came from",
        "fields": {
            "git_commit": {"type": ["str", "null"],
                           "doc": "HEAD of the snip_lib repository (when the run started if git_changed_during_run "
                                  "is present, else when the file was written); null outside git"},
            "git_dirty": {"type": ["bool", "null"],
                          "doc": "uncommitted changes in the repository (then too; true also when the state changed "
                                 "during the run); null outside git"},
            "snip_lib": {"type": ["str"], "doc": "snip_lib version"},
            "python": {"type": ["str"], "doc": "Python version"},
            "torch": {"type": ["str"], "doc": "PyTorch version"},
            "numpy": {"type": ["str"], "doc": "NumPy version"},
            "platform": {"type": ["str"], "doc": "OS and machine architecture"},
            "device": {"type": ["str"], "doc": "torch device the run used ('cpu', 'cuda', ...)"},
            "device_name": {"type": ["str"], "doc": "CPU model or CUDA device name"},
            "cpu": {"type": ["str"], "doc": "CPU model"},
            "cpu_count": {"type": ["int", "null"], "doc": "logical CPUs of the machine"},
            "cpu_capability": {"type": ["str", "null"], "optional": True,
                               "doc": "vector instructions of torch's CPU kernels (torch.backends.cpu."
                                      "get_cpu_capability(), e.g. 'AVX2'); it decides the order of floating-point "
                                      "sums, so a bit-for-bit replay needs the same; absent in files written "
                                      "before 2026-12-06"},
            "num_threads": {"type": ["int"], "doc": "torch intra-op threads"},
            "cuda": {"type": ["str", "null"], "doc": "CUDA version torch was built with"},
            "timestamp_utc": {"type": ["str"], "doc": "ISO 8601 time the file was written (UTC)"},
            "mode": {"type": ["str"], "values": ["quick", "full"],
                     "doc": "the run's mode: config.mode when the config has one, else snip_lib.config.mode_name() "
                            "when the file was written"},
            "git_changed_during_run": {
                "type": ["bool"], "optional": True,
                "doc": "written when the writer passed the git state taken at the run's start (write_result's "
                       "started): then git_commit and git_dirty are that start state, and this says whether HEAD or "
                       "the dirty flag differed when the file was written (if so, git_dirty is true: the recorded "
                       "commit alone does not describe the code any more); absent in older files"},
            "git_commit_at_write": {
                "type": ["str", "null"], "optional": True,
                "doc": "HEAD when the file was written; present only when git_changed_during_run is true"},
        },
    },
}

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
    "null": (type(None),),
}


# --------------------------------------------------------------------------- provenance


def _repo_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=_repo_dir(), capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _is_own_checkout() -> bool:
    """Whether the package sits at the top of its own git work tree.

    An installed copy inside some other repository (a virtualenv in a user's project) must not
    report that project's commit.
    """
    top = _git("rev-parse", "--show-toplevel")
    return top is not None and Path(top).resolve() == _repo_dir().resolve()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_capability() -> str | None:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # torch < 2.1
        return None


def git_state() -> dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` now: the code a run starts with, to pass to :func:`write_result`.

    Why: the file is written after training, maybe hours later; a commit or an edit made
    meanwhile is not the code that ran. ``git_commit`` is ``git rev-parse HEAD`` of the repository
    holding this package (None when the package is not the top of a git checkout, e.g. an
    installed copy, or the repository has no commit yet); ``git_dirty`` tells whether the working
    tree had uncommitted changes to tracked files (None outside git).
    """
    commit = _git("rev-parse", "--verify", "HEAD") if _is_own_checkout() else None
    dirty: bool | None = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"git_commit": commit, "git_dirty": dirty}


def _check_started(started: Any) -> dict[str, Any]:
    """The git state a run started with, checked: a bad one would be recorded as the run's code."""
    if not isinstance(started, Mapping):
        raise ValueError("started must be a mapping with 'git_commit' and 'git_dirty' (what results.git_state() "
                         f"returns), got {started!r}")
    for key in ("git_commit", "git_dirty"):
        if key not in started:
            raise ValueError(f"started lacks {key!r}; pass what results.git_state() returned at the run's start")
    commit, dirty = started["git_commit"], started["git_dirty"]
    if commit is not None and not isinstance(commit, str):
        raise ValueError(f"started['git_commit'] must be a str or None, got {commit!r}")
    if dirty is not None and not isinstance(dirty, bool):
        raise ValueError(f"started['git_dirty'] must be True, False or None, got {dirty!r}")
    return {"git_commit": commit, "git_dirty": dirty}


def provenance(device: Any = None, started: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where a result comes from: code version, library versions, hardware, mode, time.

    ``git_commit`` and ``git_dirty`` are :func:`git_state` now, or ``started`` (the state taken
    when the run started) if given; then ``git_changed_during_run`` says whether the state now
    differs, and if it does ``git_dirty`` is True and ``git_commit_at_write`` is HEAD now.
    ``device`` is the torch device the run used (default: CPU). No host name or user name is recorded.
    """
    import torch

    import snip_lib
    from snip_lib import config

    start = None if started is None else _check_started(started)
    now = git_state()
    git: dict[str, Any] = dict(now if start is None else start)
    if start is not None:
        changed = start != now
        git["git_changed_during_run"] = changed
        if changed:
            git["git_dirty"] = True
            git["git_commit_at_write"] = now["git_commit"]
    dev = torch.device("cpu") if device is None else torch.device(device)
    cpu = _cpu_name()
    if dev.type == "cuda" and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(dev)
    elif dev.type == "mps":
        device_name = f"Apple MPS ({cpu})"
    else:
        device_name = cpu
    return {
        "git_commit": git["git_commit"],
        "git_dirty": git["git_dirty"],
        "snip_lib": snip_lib.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "device": str(dev),
        "device_name": device_name,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_capability": _cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": config.mode_name(),
        **{k: v for k, v in git.items() if k not in ("git_commit", "git_dirty")},
    }


# --------------------------------------------------------------------------- validation


def _type_names(value: Any) -> str:
    return type(value).__name__


def _check(obj: Mapping[str, Any], schema: Mapping[str, dict[str, Any]], prefix: str, problems: list[str]) -> None:
    for name, spec in schema.items():
        where = f"{prefix}{name}"
        if name not in obj:
            if not spec.get("optional"):
                problems.append(f"missing field {where!r}")
            continue
        value = obj[name]
        allowed = spec["type"]
        ok = any(
            isinstance(value, _TYPES[t]) and not (t in ("int", "number") and isinstance(value, bool))
            for t in allowed
        )
        if not ok:
            problems.append(f"field {where!r} must be {' or '.join(allowed)}, got {_type_names(value)} {value!r:.60}")
            continue
        if "values" in spec and value not in spec["values"]:
            problems.append(f"field {where!r} must be one of {spec['values']}, got {value!r}")
        if "fields" in spec and isinstance(value, dict):
            _check(value, spec["fields"], f"{where}.", problems)


def validate_result(obj: Any) -> None:
    """Raise ``ValueError`` listing every way ``obj`` departs from :data:`SCHEMA`."""
    if not isinstance(obj, dict):
        raise ValueError(f"a result must be a JSON object (dict), got {_type_names(obj)}")
    problems: list[str] = []
    _check(obj, SCHEMA, "", problems)
    if isinstance(obj.get("wall_time"), (int, float)) and not isinstance(obj["wall_time"], bool):
        if not math.isfinite(obj["wall_time"]) or obj["wall_time"] < 0:
            problems.append(f"field 'wall_time' must be a finite number >= 0, got {obj['wall_time']!r}")
    unknown = sorted(set(obj) - set(SCHEMA))
    if unknown:
        problems.append(f"unknown top-level field(s) {unknown} (put free-form data under 'extra')")
    if problems:
        raise ValueError("invalid result: " + "; ".join(problems))


# --------------------------------------------------------------------------- writing


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars and arrays to Python, tuples to lists, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return _jsonable(value.detach().cpu().tolist())
        if isinstance(value, (torch.device, torch.dtype)):
            return str(value)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    raise TypeError(f"cannot store {value!r} ({type(value).__name__}) in a result file")


_MODES = tuple(SCHEMA["provenance"]["fields"]["mode"]["values"])  # ("quick", "full")


def _run_mode(config: Mapping[str, Any], mode: Any) -> str | None:
    """The mode a result records: ``config["mode"]`` or ``mode`` (they must agree); None: use SNIP_QUICK."""
    if mode is not None and mode not in _MODES:
        raise ValueError(f"mode must be 'quick', 'full' or None (the current SNIP_QUICK setting), got {mode!r}")
    if "mode" not in config:
        return mode
    recorded = config["mode"]
    if recorded not in _MODES:
        raise ValueError(f"config['mode'] must be 'quick' or 'full' (the mode the run was made in), got {recorded!r}")
    if mode is not None and mode != recorded:
        raise ValueError(f"mode={mode!r} disagrees with config['mode']={recorded!r}, the mode the run was made in; "
                         "a result file records one mode")
    return recorded


def _umask() -> int:
    """The process's umask: from /proc on Linux (no window in which another thread sees another umask), else by
    setting it and putting it back (there is no portable getter)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_result(
    path: str | os.PathLike,
    *,
    kind: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    seed: int | None,
    wall_time: float,
    extra: Mapping[str, Any] | None = None,
    device: Any = None,
    mode: str | None = None,
    started: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one result file (atomically: a temporary file then a rename) and return its content.

    ``started`` is :func:`git_state` taken when the run started: the provenance then records the
    code the run started with, and whether it changed before the file was written (see
    :func:`provenance`); without it, the git state when the file is written. The file gets the
    permissions of any file the user creates (``0o666`` less the umask), not the temporary
    file's private ``0o600``.

    ``device`` is the torch device the run used, recorded in the provenance. ``mode`` ("quick"
    or "full") is the mode the run was made in; by default ``config["mode"]`` when the config has
    one, else the current SNIP_QUICK setting. The run's own mode wins over SNIP_QUICK because
    :func:`load_recorded` filters on ``provenance.mode``: a full run saved from a quick-mode
    session must still count as full. Parent folders are created. The object is validated
    before anything is written.
    """
    run_mode = _run_mode(config, mode)
    prov = provenance(device, started)
    if run_mode is not None:
        prov["mode"] = run_mode
    obj = _jsonable(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "seed": seed,
            "config": dict(config),
            "metrics": dict(metrics),
            "wall_time": wall_time,
            "provenance": prov,
            "extra": dict(extra or {}),
        }
    )
    validate_result(obj)
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise ValueError(f"result files end in .json, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return obj


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate one result file."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a JSON result file ({exc})") from None
    try:
        validate_result(obj)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None
    return obj


# --------------------------------------------------------------------------- loading


def _matching_files(folder_or_glob: str | os.PathLike) -> list[Path]:
    target = Path(folder_or_glob).expanduser()
    if target.is_dir():
        return sorted(p for p in target.rglob("*.json") if p.is_file())
    if target.is_file():
        return [target]
    matches = sorted(Path(p) for p in _glob.glob(os.fspath(target), recursive=True))
    return [p for p in matches if p.is_file()]


def load_results(folder_or_glob: str | os.PathLike, kind: str | None = None) -> pd.DataFrame:
    """All result files under a folder (recursively) or matching a glob, as a DataFrame.

    One row per file. Columns: ``path``, ``kind``, ``seed``, ``wall_time``, and one column
    per entry of ``config``, ``metrics``, ``provenance`` and ``extra``, prefixed with the section
    name (``config.arch``, ``metrics.final_test_error``, ``provenance.git_commit``) and not
    flattened further (a per-layer dict stays one cell). ``kind`` keeps only that kind.
    JSON files that are not valid results are skipped with a warning. Smoke runs on FakeData
    are kept (this is the raw loader; :func:`load_recorded` and the summaries leave them out).
    Raises ``FileNotFoundError`` when nothing matches at all.
    """
    import pandas as pd

    files = _matching_files(folder_or_glob)
    if not files:
        raise FileNotFoundError(f"no result files match {os.fspath(folder_or_glob)!r}")
    rows = []
    for f in files:
        try:
            obj = read_result(f)
        except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
            warnings.warn(f"skipping {f}: {exc}", stacklevel=2)
            continue
        if kind is not None and obj["kind"] != kind:
            continue
        row: dict[str, Any] = {"path": str(f), "kind": obj["kind"], "seed": obj["seed"], "wall_time": obj["wall_time"]}
        for section in ("config", "metrics", "provenance", "extra"):
            for key, value in obj[section].items():
                row[f"{section}.{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["path", "kind", "seed", "wall_time"])


#: Settings that files written before they existed lack, and the value those runs used (SNIP, unshuffled,
#: zero scoring biases, no warm-up, no gradient clipping: the defaults of prune_and_train and TrainConfig).
_SETTING_DEFAULTS: dict[str, Any] = {"config.method": "snip", "config.method_options": {}, "config.shuffle": False,
                                     "config.scoring_bias": "zeros", "config.scoring_init": None,
                                     "config.train.warmup_iterations": 0, "config.train.clip_grad_norm": None}
#: Recorded settings that do not change what a run computes: where it ran and what it is called.
_NOT_SETTINGS = {"config.seed", "config.device"}
#: How :func:`mixed_settings` shows a ``train`` setting that a file lacks and that has no documented default:
#: it differs from any value.
NOT_RECORDED = "not recorded"


def with_setting_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a recorded ``config`` with the settings older files lack filled in as those runs ran.

    Why: a file written before ``method`` or ``warmup_iterations`` were recorded ran SNIP without
    warm-up; comparing it with a run of today must see that value, not skip the setting.
    """
    filled = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in config.items()}
    train = filled.get("train")
    for column, value in _SETTING_DEFAULTS.items():
        key = column.split(".")[-1]
        if column.startswith("config.train."):
            if isinstance(train, dict):
                train.setdefault(key, value)
        else:
            filled.setdefault(key, dict(value) if isinstance(value, dict) else value)
    return filled


def is_smoke(obj: Mapping[str, Any]) -> bool:
    """Whether a result is a smoke run on FakeData (``metrics.smoke`` true, or a ``'-fake'`` dataset): no result."""
    dataset = (obj.get("config") or {}).get("dataset")
    return (obj.get("metrics") or {}).get("smoke") is True or (isinstance(dataset, str) and dataset.endswith("-fake"))


def smoke_rows(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a :func:`load_results` frame are smoke runs (see :func:`is_smoke`), as a bool Series."""
    import pandas as pd

    flagged = (frame["metrics.smoke"].map(lambda v: v is True or (isinstance(v, (bool, np.bool_)) and bool(v)))
               if "metrics.smoke" in frame else pd.Series(False, index=frame.index))
    fake = (frame["config.dataset"].map(lambda d: isinstance(d, str) and d.endswith("-fake"))
            if "config.dataset" in frame else pd.Series(False, index=frame.index))
    return (flagged | fake).astype(bool)


def _check_include_smoke(include_smoke: Any) -> bool:
    if not isinstance(include_smoke, bool):
        raise ValueError(f"include_smoke must be True or False, got {include_smoke!r}")
    return include_smoke


def drop_smoke(frame: pd.DataFrame, include_smoke: bool = False, *, what: str = "the frame") -> pd.DataFrame:
    """``frame`` without its smoke runs (unless ``include_smoke``); ``ValueError`` if it holds only smoke runs.

    Why: a FakeData run recorded in full mode is marked "not a result"; it must not become a table row.
    """
    if not _check_include_smoke(include_smoke) and len(frame):
        smoke = smoke_rows(frame)
        if smoke.all():
            raise ValueError(f"{what} holds only smoke runs on FakeData ({len(frame)}), which are not results; pass "
                             "include_smoke=True to show them anyway")
        frame = frame[~smoke]
    return frame


def mixed_settings(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The recorded settings on which the runs of ``frame`` differ: ``{setting: [values]}``.

    Why: a mean over seeds is a result only if every seed ran the same recipe. Every ``config``
    entry counts (``config.train``'s one by one, as ``config.train.lr``, over every key any
    file records), and so does ``provenance.mode``; the seed and the device do not. A setting a
    file lacks counts as the value runs used before it was recorded (``method`` ``"snip"``,
    ``shuffle`` False, ``train.warmup_iterations`` 0, ...); a ``train`` setting without such a
    default is shown as ``not recorded``, which differs from every value. Values are shown as
    JSON. An empty dict means one recipe.
    """
    import pandas as pd

    missing = object()

    def shown(value: Any) -> str:
        if value is missing:
            return NOT_RECORDED
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)  # a frame stores 5000 as 5000.0 in a column that also holds None
        return json.dumps(value, sort_keys=True, default=str)

    seen: dict[str, set[str]] = {}
    columns = [c for c in frame.columns if (c.startswith("config.") or c == "provenance.mode")
               and c not in _NOT_SETTINGS]
    train_keys = sorted({k for t in (frame["config.train"] if "config.train" in frame else [])
                         if isinstance(t, Mapping) for k in t})
    for _, row in frame.iterrows():
        values: dict[str, Any] = {}
        for column in columns:
            value = row[column]
            if column == "config.train":
                train = value if isinstance(value, Mapping) else {}
                for k in train_keys:
                    name = f"config.train.{k}"
                    values[name] = train[k] if k in train else _SETTING_DEFAULTS.get(name, missing)
                continue
            if not isinstance(value, (Mapping, list)) and pd.isna(value):
                value = _SETTING_DEFAULTS.get(column)  # a file that lacks the setting (NaN in the frame)
            values[column] = value
        for column, value in values.items():
            seen.setdefault(column, set()).add(shown(value))
    return {column: sorted(values) for column, values in sorted(seen.items()) if len(values) > 1}


def check_one_recipe(group: pd.DataFrame, what: str) -> None:
    """``ValueError`` naming the settings that differ when the runs of ``group`` are not one recipe.

    ``what`` names the row being summarised in the message ("lenet300 at 95 %, lr 0.1, 50 epochs").
    A seed recorded twice (a copy of a file in a subfolder) is refused too, naming every copy: it
    would count twice in the mean.
    """
    mixed = mixed_settings(group)
    if mixed:
        details = "; ".join(f"{setting}: {' vs '.join(values)}" for setting, values in mixed.items())
        files = ", ".join(Path(p).name for p in group["path"]) if "path" in group else "?"
        raise ValueError(
            f"the runs of {what} were not trained the same way ({details}), so their mean would be no "
            f"result; summarise each recipe on its own (load one folder, or filter the frame). Files: {files}"
        )
    if "seed" not in group:
        return
    paths = list(group["path"]) if "path" in group else ["?"] * len(group)
    by_seed: dict[Any, list[str]] = {}
    for seed, path in zip(group["seed"], paths):
        if seed is None or (isinstance(seed, (float, np.floating)) and math.isnan(seed)):
            continue  # runs without a seed (replay reports) are not seeds of a recipe
        if isinstance(seed, (float, np.floating)) and float(seed).is_integer():
            seed = int(seed)  # NaNs elsewhere in the column make pandas store seeds as floats
        by_seed.setdefault(int(seed) if isinstance(seed, np.integer) else seed, []).append(str(path))
    twice = {seed: files for seed, files in by_seed.items() if len(files) > 1}
    if twice:
        details = "; ".join(f"seed {seed} is recorded {len(files)} times: {', '.join(files)}"
                            for seed, files in sorted(twice.items()))
        raise ValueError(f"the runs of {what} count a seed more than once ({details}), so their mean would weigh "
                         "it double; keep one file per seed (move the copies out of the folder)")


def _id_ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5': seed numbers, compactly."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _seed_text(values) -> str:
    """'seed(s) 0-2, 5' and how many runs have no seed (``null`` in replay reports; None or NaN in a frame)."""
    import pandas as pd

    seeds: set[int] = set()
    missing = 0
    for s in values:
        if s is None or (pd.api.types.is_scalar(s) and pd.isna(s)):
            missing += 1
        elif isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            seeds.add(int(s))
        elif isinstance(s, (float, np.floating)) and float(s).is_integer():  # NaNs make pandas store floats
            seeds.add(int(s))
        else:
            raise ValueError(f"a seed must be an int or missing (None/NaN), got {s!r}")
    if not seeds:
        return "no seed" if missing else "seed(s) ?"
    text = f"seed(s) {_id_ranges(sorted(seeds))}"
    return f"{text} and no seed for {missing} run(s)" if missing else text


def _date_range(stamps) -> str:
    """'2026-11-23' or '2026-11-23 to 2026-12-06' from ISO timestamps (non-strings ignored); '?' if none."""
    days = sorted(t[:10] for t in stamps if isinstance(t, str))
    return "?" if not days else days[0] if days[0] == days[-1] else f"{days[0]} to {days[-1]}"


def _machine_names(platforms) -> list[str]:
    """The kernel builds in ``platform`` strings ('Linux 6.18.44-fc-v657 x86_64' -> '6.18.44-fc-v657'), sorted."""
    return sorted({str(m).split()[1] if len(str(m).split()) > 2 else str(m) for m in platforms})


def commit_label(commit: Any, dirty: Any = False) -> str:
    """How every table names a run's commit: ``'1a2b3c4d'``, ``'1a2b3c4d+dirty'`` or ``'none'``.

    ``'none'`` is a run recorded outside a git checkout (``git_commit`` null, or missing, which a
    DataFrame shows as NaN); ``+dirty`` marks a working tree with uncommitted changes. One
    function, so the line under a table and the table's own column always agree.
    """
    if not isinstance(commit, str) or not commit:
        return "none"
    return commit[:8] + ("+dirty" if isinstance(dirty, (bool, np.bool_)) and bool(dirty) else "")


def provenance_line(frame: pd.DataFrame | None) -> str:
    """Where a table's recorded numbers come from, in one line, for printing under the table.

    ``frame`` is a :func:`load_results` frame (one row per result file). The line gives the
    number of runs, the seeds (and how many runs have none), the recording dates (UTC), device
    and machine (kernel build, which tells apart machines with the same CPU), the commits
    (``+dirty`` for a working tree with uncommitted changes) and the mean wall time per run.
    """
    if frame is None or len(frame) == 0:
        return "no recorded runs"

    def column(name):
        return [v for v in frame[name] if isinstance(v, str)] if name in frame else []

    seeds = _seed_text(frame["seed"]) if "seed" in frame else "seed(s) ?"
    dates = _date_range(column("provenance.timestamp_utc"))
    machines = _machine_names(column("provenance.platform"))
    devices = sorted(set(column("provenance.device_name"))) or ["?"]
    dirty = frame["provenance.git_dirty"] if "provenance.git_dirty" in frame else [False] * len(frame)
    commits = sorted({commit_label(c, d) for c, d in zip(frame.get("provenance.git_commit", [None] * len(frame)), dirty)})
    minutes = float(frame["wall_time"].mean()) / 60 if "wall_time" in frame else float("nan")
    return (f"recorded: {len(frame)} run(s), {seeds}, {dates} (UTC), "
            f"{', '.join(devices)} ({', '.join(machines) or '?'}), commit(s) {', '.join(commits) or '?'}, "
            f"{minutes:.1f} min per run")


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-seed numbers and the Student-t confidence interval of that mean.

    Returns ``(mean, low, high)``. Below three finite values the interval is ``(nan, nan)``: two
    seeds give an interval too wide to say anything. NaNs (runs not recorded) are ignored. The
    t-interval assumes the seeds' results are roughly normal, which errors over seeds of one
    recipe are; it answers "does the paper's number lie inside the plausible range of our mean?".

    Example: three seeds' test errors (%).

    >>> from snip_lib import results
    >>> [round(v, 3) for v in results.mean_ci([1.9, 2.0, 2.1])]
    [2.0, 1.752, 2.248]
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be a fraction strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    x = np.asarray(values, dtype=float).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 3:
        return mean, float("nan"), float("nan")
    try:
        from scipy import stats
    except ImportError as exc:  # scipy is in the book and test extras, not in the core library
        raise ImportError("mean_ci needs scipy: pip install scipy") from exc
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def results_dir() -> Path:
    """The repository's ``results/`` folder, next to the ``snip_lib`` package in a checkout.

    A regular install (``pip install`` on Colab) lives in site-packages, away from any clone, so
    there the nearest folder at or above the current one holding the book (``_toc.yml``) and
    ``results/`` is used: a notebook run inside a clone finds the clone's results. Where neither
    exists, the package-relative path is returned and :func:`load_recorded` says how to get the files.
    """
    beside = Path(__file__).resolve().parent.parent / "results"
    if beside.is_dir():
        return beside
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "results").is_dir():
            return folder / "results"
    return beside


def _missing_hint(folder: Path) -> str:
    """Why a folder under :func:`results_dir` may be missing: an install that is not the clone."""
    if results_dir() in (folder, *folder.parents) and not results_dir().is_dir():
        return (f" (snip_lib looked in {results_dir()}, beside the installed package: run from inside a clone "
                "of the book's repository, or `pip install -e .` there)")
    return ""


def load_recorded(
    folder: str | Path, *, label: str, how: str, kind: str | None = None, mode: str | None = "full",
    noun: str = "results", include_smoke: bool = False,
):
    """Recorded runs in ``folder`` (a subfolder of :func:`results_dir`) as a DataFrame (see :func:`load_results`).

    The one loader behind the chapters' ``recorded_results`` helpers. ``mode`` keeps only runs
    made in that mode (default ``"full"``: a quick run is not a result); ``None`` keeps all.
    Smoke runs on FakeData (:func:`is_smoke`) are left out unless ``include_smoke``: they say
    "not a result" even when made in full mode. Raises ``FileNotFoundError`` naming ``label``
    and ``how`` to produce the files when there are none.
    """
    _check_include_smoke(include_smoke)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no recorded {label}: {folder} does not exist{_missing_hint(folder)}; {how}")
    try:
        frame = load_results(folder, kind=kind)
    except FileNotFoundError:
        raise FileNotFoundError(f"no recorded {label}: {folder} holds no result file; {how}") from None
    if mode is not None:
        if mode not in ("quick", "full"):
            raise ValueError(f"mode must be 'quick', 'full' or None, got {mode!r}")
        frame = frame[frame["provenance.mode"] == mode] if "provenance.mode" in frame else frame.iloc[:0]
    if not include_smoke and not frame.empty:
        smoke = smoke_rows(frame)
        if smoke.all():
            raise FileNotFoundError(f"{folder} holds only smoke runs on FakeData ({int(smoke.sum())}), which are not "
                                    f"results; {how} (or pass include_smoke=True to load them anyway)")
        frame = frame[~smoke]
    if frame.empty:
        what = f"{mode or ''} {noun}{f' of kind {kind!r}' if kind else ''}"
        raise FileNotFoundError(f"no recorded {what} in {folder}; {how}")
    return frame.reset_index(drop=True)
