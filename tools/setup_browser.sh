#!/usr/bin/env bash
# Install what the browser test (browser_tests/, `make book-test`) needs; a second run is a no-op.
#   - Debian's chromium (apt-get). The test drives /usr/bin/chromium; no test tool ever
#     downloads a browser (`playwright install` is never run).
#   - playwright, the Python client only (PyPI; pinned in requirements.txt, "# Browser test").
#   - MathJax 3, require.js and @jupyter-widgets/html-manager from the npm registry into
#     _build/vendor-js (tools/vendor_js.py): the test answers the book's CDN requests with
#     these copies, because no CDN is reachable on CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
chromium --version

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "$(grep -E '^playwright' requirements.txt || echo playwright)"
fi

"$PYTHON" tools/vendor_js.py
