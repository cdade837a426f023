#!/usr/bin/env bash
# Install what the browser test (browser_tests/, `make book-test`) needs; a second run is a no-op.
#   - Debian's chromium and npm (apt-get), where missing. The test drives /usr/bin/chromium; no
#     test tool ever downloads a browser (`playwright install` is never run).
#   - playwright, the Python client only (PyPI; its version range is in requirements.txt, "# Browser test").
#   - MathJax 3, require.js and @jupyter-widgets/html-manager from the npm registry into
#     _build/vendor-js (tools/vendor_js.py): the test answers the book's CDN requests with
#     these copies, because no CDN is reachable on CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# apt-get install, as root or through sudo; a clear error where neither works.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup_browser: $* missing and there is no apt-get to install it (Debian/Ubuntu packages: $*)." >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "setup_browser: installing $* needs root; run as root or install sudo" >&2
            echo "  (or: apt-get install $*, as root, then rerun)." >&2
            exit 1
        fi
        SUDO="sudo"
    fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@"
}

# The test drives exactly /usr/bin/chromium (browser_tests/book_browser.py), so that is what is checked.
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium fonts-dejavu-core
fi
# tools/vendor_js.py fetches the CDN scripts with npm (from the npm registry)
if ! command -v npm >/dev/null 2>&1; then
    apt_install npm
fi
/usr/bin/chromium --version

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "$(grep -E '^playwright' requirements.txt || echo playwright)"
fi

"$PYTHON" tools/vendor_js.py
