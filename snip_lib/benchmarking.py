"""Timing variants side by side on a busy machine, and reading the recorded benchmark files.

Why this exists. The book makes speed claims only as *ratios measured in one run*: the time of
one variant divided by the time of another, both measured on the same machine, minutes apart at
most. On a shared machine (this book's is loaded by long experiments) absolute times drift by tens
of percent within minutes, so the variants are **interleaved**: every round times each variant once,
in an order that rotates from round to round (A B, B A, A B, ...), so slow and fast stretches hit
all of them alike. Each round gives a *paired* ratio (variant / baseline, measured seconds apart);
the reported ratio is the median of those, with the spread between the quartiles. Absolute times
are reported as medians too, never means, which a single preempted sample would distort.

Used by ``benchmarks/`` (the recorded figures) and by the performance appendix of the book
(a small live measurement, labelled as such). The recorded files live in ``benchmarks/results/``
of a checkout; :func:`load_benchmark` reads one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["time_interleaved", "summarize", "median_ci", "machine_load", "benchmarks_dir", "load_benchmark",
           "notebook_code_hash"]


def notebook_code_hash(path: str | os.PathLike) -> str:
    """12 hex digits of SHA-256 over a notebook's code cells, in order.

    What a chapter's execution time depends on is its code, not its prose, so the benchmark
    ``notebook_times`` records this hash and chapter 10 compares it with the chapter as it is:
    editing a sentence leaves a measured time current, editing a cell does not.
    """
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(code, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _one_sample(fn: Callable[[], Any], number: int, sync: Callable[[], None] | None = None) -> float:
    """Seconds per call of ``fn`` over ``number`` calls, with the garbage collector off (like timeit).

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clock starts and before it stops, so
    that asynchronous GPU work is inside the sample, and the previous sample's work outside it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        if sync is not None:
            sync()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if sync is not None:
            sync()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


# Single timed calls after the warm-up from which each variant's calls per sample are chosen.
_CALIBRATION_CALLS = 3


def _calls_per_sample(fn: Callable[[], Any], min_sample_time: float, sync: Callable[[], None] | None) -> int:
    """Calls per sample so that one sample lasts at least ``min_sample_time`` seconds.

    From the *fastest* of ``_CALIBRATION_CALLS`` single calls: one slow call (a preempted core,
    a page fault) would otherwise set a count far too small, and every sample would be shorter
    than ``min_sample_time``, down to timer-resolution noise.
    """
    fastest = min(_one_sample(fn, 1, sync) for _ in range(_CALIBRATION_CALLS))
    return max(1, math.ceil(min_sample_time / fastest)) if fastest > 0 else 1


def _synchronizer(device: Any) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for a CUDA device, nothing for the CPU (its work is synchronous)."""
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be a torch.device or a device string such as 'cpu' or 'cuda:0', "
                         f"got {device!r}") from exc
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return None


def time_interleaved(
    variants: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 30,
    warmup: int = 3,
    min_sample_time: float = 0.005,
    device: Any = None,
) -> pd.DataFrame:
    """Time each callable ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    Each variant gets its own number of calls per sample, chosen after the warm-up from the fastest
    of three timed calls (one slow call must not shorten every sample), so that one sample lasts
    at least ``min_sample_time`` seconds (timer resolution and per-sample noise stop mattering).
    Round ``r`` runs the variants in their given order rotated by ``r``. Returns one row per
    (round, variant): ``round``, ``variant``, ``seconds`` (per call), ``calls`` (per sample).
    ``device``: where the variants run; for a CUDA device every sample waits for the GPU
    (``torch.cuda.synchronize``), otherwise only the kernel launches would be timed.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("variants must be a non-empty mapping {name: callable}")
    for name, fn in variants.items():
        if not callable(fn):
            raise TypeError(f"variant {name!r} is not callable: {fn!r}")
    _check_positive_int("repeats", repeats)
    _check_positive_int("warmup", warmup, minimum=0)
    if not isinstance(min_sample_time, (int, float)) or not min_sample_time >= 0:
        raise ValueError(f"min_sample_time must be a number >= 0, got {min_sample_time!r}")

    sync = _synchronizer(device)

    names = list(variants)
    calls: dict[str, int] = {}
    for name in names:  # warm-up and calibration, one variant after another
        for _ in range(warmup):
            variants[name]()
        calls[name] = _calls_per_sample(variants[name], min_sample_time, sync)
    rows = []
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            rows.append({"round": r, "variant": name, "seconds": _one_sample(variants[name], calls[name], sync),
                         "calls": calls[name]})
    return pd.DataFrame(rows, columns=["round", "variant", "seconds", "calls"])


def summarize(timings: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per variant: median seconds (and quartiles), and the ratio to ``baseline``.

    ``ratio`` is the median over rounds of the paired ratio (variant / baseline in the same
    round), ``ratio_p25``/``ratio_p75`` its quartiles; ``ratio_ci95_low``/``ratio_ci95_high`` a
    distribution-free 95 % confidence interval of that median (:func:`median_ci`), which is what
    says whether a target such as "within 5 %" is met or only met on this draw;
    ``ratio_of_medians`` is the plain ratio of the two medians, for comparison. ``ratio < 1`` means
    faster than the baseline.
    """
    if not isinstance(timings, pd.DataFrame) or not {"round", "variant", "seconds"} <= set(timings.columns):
        raise TypeError("timings must be the DataFrame returned by time_interleaved")
    if baseline not in set(timings["variant"]):
        raise ValueError(f"baseline {baseline!r} is not a variant; variants: {sorted(set(timings['variant']))}")
    wide = timings.pivot(index="round", columns="variant", values="seconds")
    paired = wide.div(wide[baseline], axis=0)
    order = list(dict.fromkeys(timings["variant"]))
    ci = {name: median_ci(paired[name].to_numpy()) for name in paired.columns}
    out = pd.DataFrame({
        "median_s": wide.median(),
        "p25_s": wide.quantile(0.25),
        "p75_s": wide.quantile(0.75),
        "ratio": paired.median(),
        "ratio_p25": paired.quantile(0.25),
        "ratio_p75": paired.quantile(0.75),
        "ratio_ci95_low": pd.Series({k: v[0] for k, v in ci.items()}),
        "ratio_ci95_high": pd.Series({k: v[1] for k, v in ci.items()}),
        "ratio_of_medians": wide.median() / wide[baseline].median(),
        "repeats": wide.count(),
    }).reindex(order)
    out.index.name = "variant"
    return out


def median_ci(values: Any, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median of ``values`` (NaNs dropped).

    The order-statistic interval: with ``n`` values, the ``j``-th smallest and ``j``-th largest,
    where ``j`` is the largest rank with ``P(Binomial(n, 1/2) < j) <= (1 - level) / 2``. It assumes
    only that the rounds are independent draws, which the interleaved, rotating rounds of
    :func:`time_interleaved` approximate; no normality, no resampling (the same data always give
    the same interval). ``(nan, nan)`` when ``n`` is too small for ``level`` (fewer than 6 values
    at 95 %).
    """
    import numpy as np

    if not isinstance(level, float) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be a float in (0, 1), got {level!r}")
    x = np.sort(np.asarray(values, dtype=float).ravel())
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return (math.nan, math.nan)
    j = _lower_rank(n, (1.0 - level) / 2.0)
    if j < 0:
        return (math.nan, math.nan)
    return (float(x[j]), float(x[n - 1 - j]))


def _lower_rank(n: int, alpha_half: float) -> int:
    """The largest ``j`` with ``P(Binomial(n, 1/2) <= j) <= alpha_half``, -1 if there is none.

    Exact, in integers: ``P(B <= j) = sum(C(n, i) for i <= j) / 2**n`` (no scipy needed).
    """
    from fractions import Fraction

    bound = Fraction(alpha_half) * 2**n
    cumulative, j = 0, -1
    for i in range(n + 1):
        cumulative += math.comb(n, i)
        if cumulative > bound:
            break
        j = i
    return j


def machine_load() -> dict[str, Any]:
    """How busy the machine is now: 1/5/15-minute load averages and the number of CPUs.

    A load average near or above the CPU count means other processes compete for every core, and
    absolute times are inflated (ratios much less so, see the module docstring).
    """
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):  # not available on this platform
        load = None
    return {"loadavg_1_5_15": load, "cpu_count": os.cpu_count()}


def benchmarks_dir() -> Path:
    """``benchmarks/results`` of the checkout this package sits in (absent in an installed copy)."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def load_benchmark(name: str) -> dict[str, Any]:
    """The recorded benchmark ``name`` (``benchmarks/results/<name>.json``), validated.

    Raises ``FileNotFoundError`` saying how to produce it when the file is not there (e.g. on
    Colab, where only the notebook is fetched).
    """
    from snip_lib import results

    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be a benchmark name such as 'sparse_inference', got {name!r}")
    path = benchmarks_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no recorded benchmark {name!r} at {path}; run `python -m benchmarks --only {name}` in a "
            "checkout of the repository to record it"
        )
    return results.read_result(path)
