"""Build the HTML book with every notebook executed, failing on any error.

Jupyter Book caches executed notebooks keyed on their code cells only, so a change to
``snip_lib`` (or to quick/full mode) would otherwise leave stale outputs in the book. This
script keys the cache on a hash of the library sources, the recorded results the chapters load
(``results/``, ``benchmarks/results/``) and the mode, then runs
``jupyter-book build . --all -W -n --keep-going`` (``execute.raise_on_error`` is set in _config.yml).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"
STAMP = BUILD / ".snip_lib_cache_key"


def cache_key() -> str:
    """Hash of the library sources, the recorded results, the dependency list and the execution mode."""
    h = hashlib.sha256()
    files = (sorted((ROOT / "snip_lib").rglob("*.py")) + sorted((ROOT / "results").rglob("*.json"))
             + sorted((ROOT / "benchmarks" / "results").glob("*.json"))
             + [ROOT / "requirements.txt", ROOT / "_config.yml"])
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    h.update(os.environ.get("SNIP_QUICK", "").encode())
    return h.hexdigest()


def main() -> int:
    key = cache_key()
    if STAMP.exists() and STAMP.read_text().strip() == key:
        print("build_book: library, recorded results and mode unchanged, reusing the execution cache")
    else:
        if CACHE.exists():
            print("build_book: snip_lib, the recorded results or the mode changed, clearing the execution cache")
            shutil.rmtree(CACHE)
        BUILD.mkdir(exist_ok=True)
    # --all: a fresh Sphinx environment, so no page keeps a stale sidebar or old outputs; unchanged
    # notebooks still come from the execution cache.
    # The jupyter-book of this interpreter (make book PYTHON=.venv/bin/python works without activating it).
    beside = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(beside) if beside.exists() else "jupyter-book", "build", str(ROOT), "--all", "-W", "-n", "--keep-going"]
    print("build_book:", " ".join(cmd), f"(SNIP_QUICK={os.environ.get('SNIP_QUICK', '')!r})", flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 0:
        STAMP.write_text(key)
        print(f"build_book: open {BUILD / 'html' / 'index.html'}")
    else:
        reports = BUILD / "html" / "reports"
        if reports.exists():
            for log in sorted(reports.glob("*.log")):
                print(f"--- {log.name} ---\n{log.read_text()[-4000:]}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
