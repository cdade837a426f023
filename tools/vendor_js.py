"""Fetch, from the npm registry, local copies of the scripts the built book loads from CDNs.

Why: the HTML book loads MathJax (Sphinx), require.js and the ipywidgets HTML manager
(MyST-NB) from public CDNs. CI and this machine reach no CDN, only the npm registry, so the
browser test (browser_tests/) answers the browser's CDN requests with these copies. The book
itself is not changed: readers online still get the CDN files.

The CDN addresses are read from the installed Sphinx and MyST-NB, so the copies follow the
versions the book really asks for. Files land in ``_build/vendor-js/<host>/<path>`` (the URL's
own layout; ``_build`` is git-ignored) plus ``manifest.json``. Running it again with the same
addresses does nothing.

    python tools/vendor_js.py            # fetch what is missing
    python tools/vendor_js.py --print    # list the CDN addresses and where they come from
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "_build" / "vendor-js"
MANIFEST = VENDOR / "manifest.json"

# cdnjs paths are not npm paths: which npm package (and file in it) stands for each library.
# cdnjs serves a minified require.js; the npm package ships the same release unminified.
CDNJS_TO_NPM = {"require.js": ("requirejs", {"require.min.js": "require.js"})}
JSDELIVR_NPM = re.compile(r"^/npm/(?P<spec>(?:@[^/]+/)?[^/@]+@[^/]+)/")


def cdn_urls() -> list[str]:
    """The CDN scripts that the installed Sphinx (MathJax) and MyST-NB (widgets) put in pages."""
    from myst_nb.core.config import ipywidgets_js_factory
    from sphinx.ext.mathjax import MATHJAX_URL

    return [MATHJAX_URL, *ipywidgets_js_factory()]


def npm_source(url: str) -> tuple[str, dict[str, str] | None]:
    """npm spec for a CDN URL and, for cdnjs, the file renames {cdn name: npm name}.

    For jsDelivr's /npm/ URLs the whole package is unpacked (MathJax and the widget manager
    load further files, fonts and chunks, relative to their own address).
    """
    parts = urlsplit(url)
    if parts.netloc == "cdn.jsdelivr.net":
        match = JSDELIVR_NPM.match(parts.path)
        if match:
            return match.group("spec"), None
    if parts.netloc == "cdnjs.cloudflare.com":
        # /ajax/libs/<library>/<version>/<file>
        _, _, _, library, version, *_ = parts.path.split("/")
        if library in CDNJS_TO_NPM:
            package, renames = CDNJS_TO_NPM[library]
            return f"{package}@{version}", renames
    raise ValueError(f"no npm source known for CDN URL {url!r}; add it to tools/vendor_js.py")


def target_dir(url: str) -> Path:
    """Folder standing for the URL's package root on its CDN host."""
    parts = urlsplit(url)
    if parts.netloc == "cdn.jsdelivr.net":
        return VENDOR / parts.netloc / "npm" / JSDELIVR_NPM.match(parts.path).group("spec")
    return VENDOR / parts.netloc / parts.path.lstrip("/").rsplit("/", 1)[0]


def npm_pack(spec: str, workdir: Path) -> Path:
    """Download one package tarball from the registry (npm's own client and cache)."""
    done = subprocess.run(
        ["npm", "pack", spec, "--loglevel=error", "--pack-destination", str(workdir)],
        capture_output=True, text=True, cwd=workdir,
    )
    if done.returncode != 0:  # say why: npm's own message names the registry, the network or the spec
        raise SystemExit(f"vendor_js: `npm pack {spec}` failed (exit {done.returncode}):\n"
                         f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return workdir / done.stdout.strip().splitlines()[-1]


def unpack(tarball: Path, dest: Path, renames: dict[str, str] | None) -> None:
    """Extract the package (``package/`` prefix dropped); with renames, only those files."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tarball) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse links and paths out of tmp
            tar.extractall(tmp, filter="data")
        else:
            tar.extractall(tmp)  # noqa: S202 - an npm registry tarball, on an older 3.10/3.11 patch release
        src = Path(tmp) / "package"
        if dest.exists():
            shutil.rmtree(dest)
        if renames is None:
            shutil.copytree(src, dest)
        else:
            dest.mkdir(parents=True)
            for cdn_name, npm_name in renames.items():
                shutil.copyfile(src / npm_name, dest / cdn_name)


def vendor(urls: list[str]) -> dict:
    """Fetch every URL's package unless the manifest says it is already there."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    todo = [u for u in urls if u not in manifest or not (VENDOR / manifest[u]["file"]).is_file()]
    if not todo:
        print(f"vendor_js: {len(urls)} CDN scripts already in {VENDOR.relative_to(ROOT)}")
        return manifest
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for url in todo:
            spec, renames = npm_source(url)
            tarball = npm_pack(spec, Path(tmp))
            dest = target_dir(url)
            unpack(tarball, dest, renames)
            parts = urlsplit(url)
            local = (VENDOR / parts.netloc / parts.path.lstrip("/")).relative_to(VENDOR)
            if not (VENDOR / local).is_file():
                raise FileNotFoundError(f"{spec} has no file for {url} (looked for {local})")
            manifest[url] = {"npm": spec, "tarball": tarball.name, "file": str(local)}
            print(f"vendor_js: {url}\n           <- npm {spec} ({tarball.name})")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="list the CDN URLs and npm specs")
    args = parser.parse_args(argv)
    urls = cdn_urls()
    if args.print:
        for url in urls:
            print(url, "<- npm", npm_source(url)[0])
        return 0
    if shutil.which("npm") is None:
        print("vendor_js: npm not found (install Node.js/npm)", file=sys.stderr)
        return 1
    vendor(urls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
