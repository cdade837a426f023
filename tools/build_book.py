"""Build the HTML book with every notebook executed, failing on any error.

Jupyter Book caches executed notebooks keyed on their code cells only, so a change to
``snip_lib`` (or to quick/full mode) would otherwise leave stale outputs in the book. This
script keys the cache on what else the outputs depend on (:func:`cache_key`), then runs
``jupyter-book build . --all -W -n --keep-going`` (``execute.raise_on_error`` is set in _config.yml).
``tools/student_edition.py --html`` uses the same key and the same cache rule for its own cache.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"
STAMP = BUILD / ".snip_lib_cache_key"

#: Installed packages whose version changes what the notebooks print and plot.
VERSIONED = ("torch", "numpy", "pandas", "matplotlib", "seaborn", "scipy", "ipywidgets")


def mode() -> str:
    """'quick' or 'full', read where the library reads it (``SNIP_QUICK``; a bad value raises here)."""
    from snip_lib.config import mode_name

    return mode_name()


def cache_key() -> str:
    """Hash of everything a chapter's outputs depend on besides its own code cells.

    The library sources, the recorded results, the dependency list and the book's config, the
    execution mode, the versions of the numerical packages, and the code cells of *every*
    chapter (chapter 10 reports, for each chapter, whether its recorded run time is still current),
    which datasets are on disk and the device the chapters train on (chapter 6 trains on CIFAR-10
    when it is there, and longer on a GPU).
    """
    h = hashlib.sha256()
    files = (sorted((ROOT / "snip_lib").rglob("*.py")) + sorted((ROOT / "results").rglob("*.json"))
             + sorted((ROOT / "benchmarks" / "results").glob("*.json"))
             + [ROOT / "requirements.txt", ROOT / "_config.yml"])
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    from snip_lib.benchmarking import notebook_code_hash  # the hash chapter 10 compares with

    for path in sorted((ROOT / "book").glob("*.ipynb")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(notebook_code_hash(path).encode())
    for name in VERSIONED:
        try:
            h.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name} missing".encode())
    h.update(mode().encode())
    from snip_lib import data, train

    for name in data.DATASETS:
        h.update(f"{name} {'on disk' if data.available(name) else 'missing'}".encode())
    h.update(f"device {train.default_device().type}".encode())
    return h.hexdigest()


def prepare_cache(cache: Path, stamp: Path, key: str, label: str) -> None:
    """Keep ``cache`` if ``stamp`` holds ``key``; otherwise clear it and write ``key`` at once.

    The stamp is written *before* the build, not after a successful one: jupyter-cache stores each
    notebook as soon as it has run, so after an interrupted or failed build the entries already in
    the cache belong to the new key, and the stamp must say so (else going back to the old mode
    would serve these entries as if they were the old mode's).
    """
    if stamp.exists() and stamp.read_text().strip() == key:
        print(f"{label}: library, recorded results, chapters' code and mode unchanged, reusing the execution cache")
        return
    if cache.exists():
        print(f"{label}: snip_lib, the recorded results, a chapter's code, a package version or the mode "
              "changed, clearing the execution cache")
        shutil.rmtree(cache)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


def jupyter_book() -> str:
    """The jupyter-book of this interpreter (``make book PYTHON=.venv/bin/python`` works without activating it)."""
    beside = Path(sys.executable).with_name("jupyter-book")
    if beside.exists():
        return str(beside)
    found = shutil.which("jupyter-book")
    if found is None:
        raise SystemExit(f"jupyter-book is not installed for {sys.executable}; run `make install` "
                         f"(or `{sys.executable} -m pip install -r requirements.txt`)")
    return found


def main() -> int:
    key = cache_key()
    prepare_cache(CACHE, STAMP, key, "build_book")
    # --all: a fresh Sphinx environment, so no page keeps a stale sidebar or old outputs; unchanged
    # notebooks still come from the execution cache.
    cmd = [jupyter_book(), "build", str(ROOT), "--all", "-W", "-n", "--keep-going"]
    print("build_book:", " ".join(cmd), f"({mode()} mode)", flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 0:
        print(f"build_book: open {BUILD / 'html' / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
