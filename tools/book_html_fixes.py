"""Sphinx extension: repairs three faults in the scripts that the book's toolchain writes into pages.

The browser test (browser_tests/) found each fault as a console error. It now asserts that each fix
holds, so a fault that returns makes a test fail:

- Duplicate inline scripts. In Sphinx 7.4, an ``app.add_js_file(None, body=...)`` call made after
  the builder has started is recorded twice: once on the builder as ``None`` and once in the
  registry as ``""``. The two entries compare unequal, so both are written. As a result, every page
  declared sphinx-thebe's ``const THEBE_JS_URL`` twice, and the second declaration threw
  "Identifier 'THEBE_JS_URL' has already been declared". The fix keeps the first of any equal
  scripts on a page.
- The widget manager's own files. @jupyter-widgets/html-manager (embed-amd.js) loads its fonts and
  chunks relative to its AMD module URL. require.js builds that URL from the page's folder, not from
  the CDN that served the script, so the FontAwesome fonts returned 404 for every reader. The fix is
  a ``require.config`` that points the module at the CDN folder the page loads it from.
- MathJax 2's API. The widget manager typesets widget labels with ``MathJax.Hub.Queue``, which only
  exists in MathJax 2. Sphinx loads MathJax 3, so the call threw "Cannot read properties of
  undefined (reading 'Queue')". The fix is a shim that passes ``Queue(["Typeset", Hub, el])`` to
  MathJax 3's ``typesetPromise([el])``.

The last two fixes go only on pages that load the widget manager. Loaded from _config.yml
(``sphinx.local_extensions``).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The widget manager script MyST-NB puts in a page (``nb_ipywidgets_js``); ``dist`` is its folder.
WIDGET_MANAGER = re.compile(r"^(?P<dist>https?://\S+/@jupyter-widgets/html-manager@[^/]+/dist)/embed-amd\.js$")

#: The AMD module whose URL decides where the widget manager looks for its fonts and chunks.
WIDGET_MANAGER_MODULE_DIR = "@jupyter-widgets/html-manager/dist"

# Runs at DOMContentLoaded: after the deferred MathJax 3 script has replaced window.MathJax and
# before the widget manager renders (it waits for the window's load event).
MATHJAX2_HUB_SHIM = """\
// MathJax 2's MathJax.Hub.Queue for the ipywidgets manager, on MathJax 3 (tools/book_html_fixes.py).
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) return;
  mj.Hub = {Queue: function () {
    var jobs = Array.prototype.slice.call(arguments), all = false, elements = [];
    jobs.forEach(function (job) {
      if (Array.isArray(job) && job[0] === "Typeset") { if (job[2]) elements.push(job[2]); else all = true; }
    });
    return mj.startup.promise.then(function () {
      if (all || elements.length) return mj.typesetPromise(all ? undefined : elements);
    }).then(function () {
      jobs.forEach(function (job) { if (typeof job === "function") job(); });
    });
  }};
});"""


def require_paths_script(dist: str) -> str:
    """require.js configuration that resolves the widget manager's module inside ``dist``."""
    paths = json.dumps({WIDGET_MANAGER_MODULE_DIR: dist})
    return ("// The widget manager finds its fonts next to its module URL (tools/book_html_fixes.py).\n"
            f"if (window.require && window.require.config) {{ window.require.config({{paths: {paths}}}); }}")


def _script_key(script: Any) -> tuple:
    """What makes two page scripts the same: file (``None`` and ``""`` alike), priority, attributes."""
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", script) or "", getattr(script, "priority", None),
            tuple(sorted((str(k), str(v)) for k, v in attributes.items())))


def unique_scripts(scripts: list) -> list:
    """``scripts`` with only the first of each group of equal scripts, in their order."""
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    return unique


def fix_page_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """``html-page-context`` handler: remove duplicate scripts, then set up the widget manager."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    scripts[:] = unique_scripts(scripts)
    for index, script in enumerate(scripts):
        match = WIDGET_MANAGER.match(getattr(script, "filename", "") or "")
        if match:
            break
    else:
        return
    # The new scripts use the manager's class and priority and go right before it. Sphinx's sort
    # by priority is stable, so they stay there, after require.js.
    make = type(script)
    scripts[index:index] = [make("", priority=script.priority, body=body)
                            for body in (require_paths_script(match["dist"]), MATHJAX2_HUB_SHIM)]


def setup(app: Any) -> dict[str, Any]:
    # After the handlers that add scripts to the page (MathJax, MyST-NB's widget files): priority 500.
    app.connect("html-page-context", fix_page_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
