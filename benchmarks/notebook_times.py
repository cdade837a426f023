"""How long each chapter of the book takes to execute, in quick and in full mode.

Each notebook runs top to bottom in a fresh Jupyter kernel (``nbclient``), as the book build and
nbval run it: working directory ``book/``, ``SNIP_QUICK`` set for the mode, ``OMP_NUM_THREADS``
set to the benchmark's thread count, this checkout's ``snip_lib`` first on ``PYTHONPATH``.
Outputs are discarded (notebooks are never rewritten). Recorded per notebook: wall time
(kernel start included), whether it ran without error (else the first error), its number of
code cells, the slowest cells and a hash of its code cells
(:func:`snip_lib.benchmarking.notebook_code_hash`), so a time can be matched to the version of
the code it measured; prose edits do not change it. Full mode repeats each chapter's experiments
at their real size and takes much longer. Into ``benchmarks/results/`` (whose file feeds chapter 10
and the introduction's time table) both modes are recorded; anywhere else quick mode only, unless
``--notebook-modes`` says otherwise (:mod:`benchmarks.run`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import nbformat

from benchmarks.common import REPO, Settings
from snip_lib.benchmarking import notebook_code_hash

CELL_TIMEOUT = 3600


def default_notebooks() -> list[Path]:
    return sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb"))


@contextmanager
def _kernel_env(mode: str, threads: int) -> Iterator[None]:
    """Environment the kernel inherits; restored afterwards."""
    wanted = {
        "SNIP_QUICK": "1" if mode == "quick" else "0",
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    from datetime import datetime

    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def time_notebook(path: Path, mode: str, threads: int) -> dict[str, Any]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    digest = notebook_code_hash(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}})
    error = None
    with _kernel_env(mode, threads):
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
        except Exception as exc:  # a dead kernel, a timeout: record it, go on with the next notebook
            error = f"{type(exc).__name__}: {exc}"[:300]
        seconds = time.perf_counter() - start
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    cell_times = sorted(((_cell_seconds(c), i) for i, c in code if _cell_seconds(c) is not None), reverse=True)
    return {
        "notebook": path.name, "mode": mode, "seconds": seconds, "ok": error is None, "error": error,
        "code_cells": len(code), "slowest_cells": [{"cell": i, "seconds": s} for s, i in cell_times[:3]],
        "code_sha256_12": digest,
    }


def run(settings: Settings) -> tuple[dict, dict, dict]:
    notebooks = settings.notebooks or default_notebooks()
    rows = []
    for mode in settings.notebook_modes:
        for path in notebooks:
            row = time_notebook(Path(path), mode, settings.threads)
            print(f"  {row['notebook']} ({mode}): {row['seconds']:.0f} s {'ok' if row['ok'] else 'FAILED: ' + str(row['error'])}",
                  flush=True)
            rows.append(row)
    totals = {mode: sum(r["seconds"] for r in rows if r["mode"] == mode) for mode in settings.notebook_modes}
    config = {"notebooks": [Path(p).name for p in notebooks], "modes": list(settings.notebook_modes),
              "cell_timeout": CELL_TIMEOUT, "runner": "nbclient, one fresh kernel per notebook, sequential"}
    return config, {"rows": rows, "total_seconds": totals, "all_ok": all(r["ok"] for r in rows)}, {}
