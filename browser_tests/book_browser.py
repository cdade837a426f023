"""Open the built HTML book in headless Debian Chromium and record what a reader would see.

Why a real browser: Sphinx's checks stop at the HTML files; whether MathJax typesets every
formula, images decode, the widget manager restores the saved slider, and no script throws is
only known once a browser has run the page.

No CDN is reachable on CI, so every request that leaves 127.0.0.1 is intercepted: the CDN
scripts the book names (MathJax, require.js, the ipywidgets HTML manager) are answered from the
npm copies in ``_build/vendor-js`` (``tools/vendor_js.py``); anything else is refused, and the
test fails naming it. The
HTML files are served unchanged, except that a subresource-integrity hash is dropped when the
local copy is not byte-identical to the CDN file it stands for (cdnjs minified require.js
itself; npm ships it unminified); each such edit is recorded in the page report.

Any console error, uncaught exception or failed load fails the test; nothing is tolerated. The
faults the toolchain used to put in every page are repaired in the build
(``tools/book_html_fixes.py``, ``html_context.default_mode`` in _config.yml), and each repair has its
own assertion in test_book_in_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
#: The editions the test can open (``SNIP_BOOK_EDITION``): the book as published (``make book``,
#: solutions folded under each exercise) or the student edition (``make book-student``, no
#: solutions; tools/student_edition.py): (HTML folder, screenshot folder, notebook folder of the
#: Colab button, the command that builds it).
EDITIONS = {
    "book": ("html", "screenshots", "book", "make book"),
    "student": ("student-html", "screenshots-student", "student", "make book-student"),
}
EDITION = os.environ.get("SNIP_BOOK_EDITION", "book")
if EDITION not in EDITIONS:
    raise ValueError(f"SNIP_BOOK_EDITION={EDITION!r} is not an edition; use one of {sorted(EDITIONS)}")
BOOK_HTML = ROOT / "_build" / EDITIONS[EDITION][0]
VENDOR = ROOT / "_build" / "vendor-js"
SCREENSHOTS = ROOT / "_build" / EDITIONS[EDITION][1]
NOTEBOOK_DIR = EDITIONS[EDITION][2]
BUILD_COMMAND = EDITIONS[EDITION][3]
CHROMIUM = Path("/usr/bin/chromium")

# Chromium as the machine notes prescribe for this closed network: no background traffic,
# no component updates, and a name-resolution rule so nothing but loopback can leave.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
CONTENT_TYPES = {
    ".js": "application/javascript", ".css": "text/css", ".json": "application/json",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".eot": "application/vnd.ms-fontobject",
    ".svg": "image/svg+xml", ".png": "image/png", ".map": "application/json",
}
# Plots and widgets are expected where the chapter's code draws them.
PLOT_HINTS = re.compile(r"plt\.|sns\.|\bviz\.|\.plot\(|imshow\(")
WIDGET_HINTS = re.compile(r"ipywidgets|\binteract\(|sparsity_explorer")
FIGURE_HINTS = re.compile(r"!\[|\{figure\}|\{image\}|<img")
SOLUTION_DIRECTIVE = re.compile(r"^[`:]{3,}\{solution(?:-start)?\}", re.MULTILINE)
MATH_HINTS = re.compile(r"\$|\{math\}|\\begin\{")
TITLE = re.compile(r"^# .+$", re.MULTILINE)


# --------------------------------------------------------------------------- the book's pages
@dataclass(frozen=True)
class BookPage:
    """One page of _toc.yml and what its source says the HTML must show."""

    docname: str            # "book/04_snip_algorithm"
    source: Path
    has_math: bool
    has_plots: bool
    has_widgets: bool
    figures: tuple[str, ...] = ()   # names of the numbered figures its code cells carry (mystnb.figure.name)
    solutions: int = 0              # sphinx-exercise solutions (gated or not) in its markdown
    title: str = ""                 # its first "# " heading: the page's h1

    @property
    def html_path(self) -> str:
        return f"{self.docname}.html"

    @property
    def slug(self) -> str:
        return self.docname.replace("/", "__")


def toc_docnames(toc_file: Path = ROOT / "_toc.yml") -> list[str]:
    """Every file of a jb-book _toc.yml, root first, in reading order."""
    toc = yaml.safe_load(toc_file.read_text())
    names = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections", []) + entry.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []) + toc.get("sections", []))
    return [re.sub(r"\.(md|ipynb)$", "", n) for n in names]


def book_page(docname: str) -> BookPage:
    """Read the page's source (.ipynb or .md) to know what its HTML must contain."""
    for suffix in (".ipynb", ".md"):
        source = ROOT / f"{docname}{suffix}"
        if source.exists():
            break
    else:
        raise FileNotFoundError(f"_toc.yml lists {docname!r} but neither .ipynb nor .md exists")
    figures: tuple[str, ...] = ()
    if source.suffix == ".ipynb":
        cells = json.loads(source.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        figures = tuple(c["metadata"]["mystnb"]["figure"]["name"] for c in cells if c["cell_type"] == "code"
                        and c.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name"))
    else:
        code, text = "", source.read_text()
    return BookPage(
        docname=docname, source=source,
        has_math=bool(MATH_HINTS.search(text)),
        has_plots=bool(PLOT_HINTS.search(code) or FIGURE_HINTS.search(text)),
        has_widgets=bool(WIDGET_HINTS.search(code)),
        figures=figures,
        solutions=len(SOLUTION_DIRECTIVE.findall(text)),
        title=_title(text),
    )


def _title(markdown: str) -> str:
    """The first level-1 heading of a page's markdown ('' when it has none)."""
    match = TITLE.search(markdown)
    return match.group(0).removeprefix("# ").strip() if match else ""


def book_pages() -> list[BookPage]:
    """The pages of _toc.yml, in reading order."""
    return [book_page(name) for name in toc_docnames()]


# --------------------------------------------------------------------------- local web server
class BookServer:
    """``python -m http.server`` on 127.0.0.1 and a free port (port 0: the OS picks it)."""

    def __init__(self, directory: Path = BOOK_HTML) -> None:
        self.directory = directory
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> "BookServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
             "--directory", str(self.directory)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://...) ..."
        match = re.search(r"port (\d+)", line)
        if not match:
            self.__exit__()
            raise RuntimeError(f"http.server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{match.group(1)}/"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc.stdout.close()
            self.proc = None


class _Anchors(HTMLParser):
    """Collects every id= and name= of a page (link targets)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


class LinkChecker:
    """Fetches each local URL once (with urllib, outside the browser) and checks fragments."""

    def __init__(self) -> None:
        self._pages: dict[str, tuple[int, set[str]]] = {}

    def fetch(self, url: str) -> tuple[int, set[str]]:
        if url not in self._pages:
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    status, body = resp.status, resp.read()
            except urllib.error.HTTPError as err:
                status, body = err.code, b""
            parser = _Anchors()
            if body and url.endswith((".html", "/")):
                parser.feed(body.decode("utf-8", "replace"))
            self._pages[url] = (status, parser.ids)
        return self._pages[url]

    def problem(self, link: str) -> str | None:
        """None when the link resolves; else why not."""
        url, fragment = urldefrag(link)
        status, ids = self.fetch(url)
        if status != 200:
            return f"{link}: HTTP {status}"
        if fragment and fragment not in ids and unquote(fragment) not in ids:
            return f"{link}: no element with id {fragment!r} in {url}"
        return None


# --------------------------------------------------------------------------- CDN stand-ins
def _sri_matches(path: Path, integrity: str) -> bool:
    algo, _, digest = integrity.partition("-")
    if algo not in ("sha256", "sha384", "sha512"):
        return False
    return base64.b64encode(hashlib.new(algo, path.read_bytes()).digest()).decode() == digest


def vendored_file(url: str) -> Path | None:
    """The local copy standing for an external URL, if tools/vendor_js.py fetched one."""
    parts = urlsplit(url)
    path = VENDOR / parts.netloc / parts.path.lstrip("/")
    return path if path.is_file() and VENDOR in path.resolve().parents else None


SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)


def strip_mismatched_sri(page: str) -> tuple[str, list[str]]:
    """Remove integrity="..." from CDN scripts whose local stand-in has other bytes."""
    stripped: list[str] = []

    def fix(match: re.Match) -> str:
        tag = match.group(0)
        src = re.search(r'\bsrc="([^"]+)"', tag)
        sri = re.search(r'\s+integrity="([^"]+)"', tag)
        if not (src and sri):
            return tag
        local = vendored_file(html.unescape(src.group(1)))
        if local is None or _sri_matches(local, sri.group(1)):
            return tag
        stripped.append(src.group(1))
        return tag.replace(sri.group(0), "")

    return SCRIPT_TAG.sub(fix, page), stripped


# --------------------------------------------------------------------------- the page report
@dataclass
class PageReport:
    """Everything one page load showed; the tests assert on it, the summary prints it."""

    page: BookPage | None          # None: a tab opened by a test (BookBrowser.tab)
    url: str
    status: int | None = None
    console: list[dict] = field(default_factory=list)        # {"type", "text", "location"}
    page_errors: list[str] = field(default_factory=list)     # uncaught exceptions
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)   # "404 http://..."
    external: dict[str, str] = field(default_factory=dict)   # url -> "vendored" | "blocked"
    sri_stripped: list[str] = field(default_factory=list)
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)         # {"id", "images": [decoded?], "caption"}
    links: list[str] = field(default_factory=list)
    sidebar_links: list[str] = field(default_factory=list)
    colab_links: list[str] = field(default_factory=list)     # the launch button's
    widgets: dict = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)         # executable <script>s as served
    theme: dict = field(default_factory=dict)
    mathjax2_typeset: bool | None = None                     # None: no widget manager on the page
    retried: str | None = None                               # why the first visit was repeated
    first_visit_errors: list[str] = field(default_factory=list)  # what went wrong before it stalled
    article: dict = field(default_factory=dict)              # {"h1", "text_length"}
    screenshot: Path | None = None
    seconds: float = 0.0

    def errors(self) -> list[str]:
        """Console errors (Chrome's SEVERE), uncaught exceptions, failed loads and HTTP >= 400."""
        errors = [f'console: {m["text"]} ({m["location"]})' for m in self.console if m["type"] == "error"]
        errors += [f"exception: {e}" for e in self.page_errors]
        errors += [f"HTTP {r}" for r in self.bad_responses]
        errors += [f"failed: {r}" for r in self.failed_requests]
        errors += [f"first visit: {e}" for e in self.first_visit_errors]
        return errors


class _Scripts(HTMLParser):
    """The scripts a browser runs, as served: ``src:URL`` or ``inline:BODY`` (data blocks left out)."""

    EXECUTABLE = {"", "text/javascript", "application/javascript", "module"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self._inline: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "script":
            return
        attributes = dict(attrs)
        if (attributes.get("type") or "").strip().lower() not in self.EXECUTABLE:
            return
        if attributes.get("src"):
            self.scripts.append(f'src:{attributes["src"]}')
        else:
            self._inline = []

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline is not None:
            self.scripts.append("inline:" + "".join(self._inline).strip())
            self._inline = None


def page_scripts(page: str) -> list[str]:
    """Every executable script of an HTML page, in order (see :class:`_Scripts`)."""
    parser = _Scripts()
    parser.feed(page)
    return parser.scripts


JS_MATH = r"""() => {
  const article = document.querySelector('article') || document.body;
  const maths = [...article.querySelectorAll('.math')];
  const unrendered = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 120));
  const errors = [...article.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent);
  // MathJax's noundefined package draws an unknown macro (\kapa) in red instead of raising an error.
  errors.push(...[...article.querySelectorAll('mjx-container mjx-mtext[style*="color: red"]')]
    .map(e => 'undefined macro: ' + [...e.querySelectorAll('mjx-c')]  // CHTML keeps each character in a class
      .map(c => String.fromCodePoint(parseInt((/mjx-c([0-9A-F]+)/.exec(c.className) || [0, '3F'])[1], 16))).join('')));
  // Text a reader sees outside code: raw TeX left there means MathJax (or the parser) missed it.
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .cell_input';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode: n => n.parentElement && n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = [];
  // $ then, within the line, a macro, a sub- or superscript: "$\kappa$", "$x^2$", "$w_{ij}$" (not "$5" or "$HOME")
  const pattern = /\$\$|\\begin\{|\\end\{|\\\(|\\\)|\\\[|\\\]|\$(?=[^$\s])[^$\n]{0,80}?(?:\\[a-zA-Z]+|[\^_])/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const m = n.textContent.match(pattern);
    if (m) raw.push(n.textContent.slice(Math.max(0, m.index - 40), m.index + 60));
  }
  return {elements: maths.length, containers: article.querySelectorAll('mjx-container').length,
          unrendered, errors, raw,
          mathjax_version: window.MathJax && window.MathJax.version || null};
}"""

# The article a reader came for: its title and how much text it holds (a page whose content failed
# to build keeps the sidebar and header, and its screenshot still has some weight).
JS_ARTICLE = r"""() => {
  const article = document.querySelector('article');
  const h1 = article && article.querySelector('h1');
  return {h1: h1 ? h1.textContent.replace(/[#¶]\s*$/, '').trim() : '', text_length: article ? article.innerText.length : 0};
}"""

JS_IMAGES = r"""() => [...document.querySelectorAll('img')].map(img => ({
  src: img.currentSrc || img.src, complete: img.complete, naturalWidth: img.naturalWidth,
  naturalHeight: img.naturalHeight, alt: img.alt || '',
  inArticle: !!img.closest('article'), inWidget: !!img.closest('.jupyter-widgets, .widget-output')}))"""

# Every numbered figure of the article: its id, whether each of its images decoded, and its caption.
JS_FIGURES = r"""() => [...document.querySelectorAll('article figure')].map(f => ({
  id: f.id || (f.querySelector('[id]') || {}).id || '',
  images: [...f.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0),
  caption: ((f.querySelector('figcaption') || {}).textContent || '').trim()}))"""

JS_LINKS = r"""() => {
  const hrefs = sel => [...document.querySelectorAll(sel)].map(a => a.href);
  return {
    sidebar: hrefs('nav.bd-docs-nav a[href]'),
    colab: hrefs('a[href^="https://colab.research.google.com/"]'),
    all: hrefs('nav.bd-docs-nav a[href], .bd-sidebar-secondary a[href], article a.reference.internal[href], ' +
               '.prev-next-area a[href], .navbar-brand[href]'),
  };
}"""

JS_WIDGETS = r"""() => {
  const parse = s => { try { return JSON.parse(s.textContent); } catch (e) { return {error: String(e)}; } };
  const states = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]')].map(parse);
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')].map(parse);
  const models = Object.assign({}, ...states.map(s => s.state || {}));
  const sliders = Object.entries(models).filter(([id, m]) => /SliderModel$/.test(m.model_name) && !/Style/.test(m.model_name)).map(([id, m]) => ({
    id, model: m.model_name,
    label: m.state._options_labels ? m.state._options_labels[m.state.index] : String(m.state.value),
    description: m.state.description || ''}));
  const outputs = Object.values(models).filter(m => m.model_name === 'OutputModel')
    .map(m => (m.state.outputs || []).map(o => Object.keys(o.data || {})).flat());
  const rendered = [...document.querySelectorAll('.widget-slider, .widget-hslider, .widget-vslider')]
    .map(el => ({readout: (el.querySelector('.widget-readout') || {}).textContent || '',
                 label: (el.querySelector('.widget-label') || {}).textContent || ''}));
  return {state_scripts: states.length, view_scripts: views.length, models: Object.keys(models).length,
          model_names: [...new Set(Object.values(models).map(m => m.model_name))].sort(),
          sliders, outputs, rendered_sliders: rendered,
          rendered_views: document.querySelectorAll('.jupyter-widgets').length,
          rendered_output_images: document.querySelectorAll('.widget-output img').length};
}"""


JS_THEME = r"""() => ({
  default_mode: document.body.dataset.defaultMode || '',
  mode: document.documentElement.dataset.mode || '',
  // Where require.js places the widget manager's module: its fonts and chunks are looked up there.
  widget_manager_module: window.require && window.require.toUrl
    ? window.require.toUrl('@jupyter-widgets/html-manager/dist/libembed-amd.js') : null,
  fonts: [...document.fonts].map(f => ({family: f.family.replace(/["']/g, ''), status: f.status})),
})"""

# MathJax 2's API as the widget manager calls it (MathJax.Hub.Queue(["Typeset", MathJax.Hub, el])),
# on a formula added for the probe; true when MathJax 3 typeset it.
JS_MATHJAX2_TYPESET = r"""async () => {
  if (!(window.MathJax && window.MathJax.Hub && typeof window.MathJax.Hub.Queue === 'function')) return false;
  const el = document.createElement('span');
  el.textContent = '\\(\\kappa = x^2\\)';
  document.body.appendChild(el);
  try {  // bounded: a stuck typeset must fail this probe, not hang the test run
    await Promise.race([window.MathJax.Hub.Queue(['Typeset', window.MathJax.Hub, el]),
                        new Promise(resolve => setTimeout(resolve, 30000))]);
    return !!el.querySelector('mjx-container');
  } finally { el.remove(); }
}"""

WIDGET_MANAGER_SCRIPT = re.compile(
    r"^src:(?P<dist>https?://\S+/@jupyter-widgets/html-manager@[^/]+/dist)/embed-amd\.js$")


class PageNotSettled(RuntimeError):
    """The page did not load, or its scripts, images and network did not come to rest, in time.

    ``report`` holds what the visit saw until then (its console errors count against the page)."""

    def __init__(self, message: str, report: "PageReport") -> None:
        super().__init__(message)
        self.report = report


class BookBrowser:
    """One headless Chromium, one context per page (fresh console and cache each time)."""

    def __init__(self, playwright, width: int = 1280, height: int = 900) -> None:
        if not CHROMIUM.exists():
            raise FileNotFoundError(f"{CHROMIUM} missing: run `bash tools/setup_browser.sh`")
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        self.viewport = {"width": width, "height": height}

    def close(self) -> None:
        self.browser.close()

    def visit(self, page: BookPage, base_url: str, screenshot_dir: Path | None = SCREENSHOTS) -> PageReport:
        """Open the page once more if it did not settle the first time (a stall on a busy 2-core
        machine); the report says so. A page that never settles fails with what it waited for."""
        try:
            return self._visit(page, base_url, screenshot_dir)
        except PageNotSettled as first:
            report = self._visit(page, base_url, screenshot_dir)
            report.retried = str(first)
            report.first_visit_errors = first.report.errors()  # a page that threw, then settled, still fails
            return report

    def _open(self, base_url: str, report: PageReport) -> tuple[Any, Any]:
        """A fresh context (own console and cache) and tab, routed through :meth:`_route`, whose
        console errors, exceptions, failed loads and HTTP errors go to ``report``."""
        context = self.browser.new_context(viewport=self.viewport, service_workers="block")
        context.route("**/*", lambda route: self._route(route, base_url, report))
        tab = context.new_page()
        tab.on("console", lambda m: report.console.append(
            {"type": m.type, "text": m.text, "location": m.location.get("url", "")}))
        tab.on("pageerror", lambda err: report.page_errors.append(str(err)))
        tab.on("requestfailed", lambda r: report.failed_requests.append(f"{r.url} ({r.failure})"))
        tab.on("response", lambda r: r.status >= 400 and report.bad_responses.append(f"{r.status} {r.url}"))
        return context, tab

    def _visit(self, page: BookPage, base_url: str, screenshot_dir: Path | None) -> PageReport:
        report = PageReport(page=page, url=urljoin(base_url, page.html_path))
        started = time.monotonic()
        in_flight: dict[int, str] = {}
        context, tab = self._open(base_url, report)
        tab.on("request", lambda r: in_flight.__setitem__(id(r), r.url))
        tab.on("requestfinished", lambda r: in_flight.pop(id(r), None))
        tab.on("requestfailed", lambda r: in_flight.pop(id(r), None))
        try:
            try:
                response = tab.goto(report.url, wait_until="load", timeout=60_000)
                report.status = response.status if response else None
                self._settle(tab, page)
            except PlaywrightTimeout as err:
                raise PageNotSettled(f"{page.docname}: {err.message.splitlines()[0]}; "
                                     f"requests still open: {sorted(in_flight.values())}", report) from err
            report.math = tab.evaluate(JS_MATH)
            report.article = tab.evaluate(JS_ARTICLE)
            report.images = tab.evaluate(JS_IMAGES)
            report.figures = tab.evaluate(JS_FIGURES)
            links = tab.evaluate(JS_LINKS)
            report.sidebar_links = links["sidebar"]
            report.colab_links = links["colab"]
            report.links = sorted({h for h in links["all"] if h.startswith(base_url)})
            report.widgets = tab.evaluate(JS_WIDGETS)
            report.theme = tab.evaluate(JS_THEME)
            if screenshot_dir is not None:
                screenshot_dir.mkdir(parents=True, exist_ok=True)
                report.screenshot = screenshot_dir / f"{page.slug}.png"
                tab.screenshot(path=str(report.screenshot), full_page=True, animations="disabled")
            if any(WIDGET_MANAGER_SCRIPT.match(s) for s in report.scripts):  # after the screenshot: it edits the page
                report.mathjax2_typeset = tab.evaluate(JS_MATHJAX2_TYPESET)
        finally:
            context.close()
        report.seconds = time.monotonic() - started
        return report

    @contextmanager
    def tab(self, base_url: str, path: str) -> Iterator[tuple[Any, PageReport]]:
        """An open tab on ``path`` (served and routed as in :meth:`visit`) for a test that acts on
        the page (clicks, types); the report collects its console errors and failed loads."""
        report = PageReport(page=None, url=urljoin(base_url, path))
        context, tab = self._open(base_url, report)
        try:
            response = tab.goto(report.url, wait_until="load", timeout=60_000)
            report.status = response.status if response else None
            tab.wait_for_load_state("networkidle", timeout=30_000)
            yield tab, report
        finally:
            context.close()

    @staticmethod
    def _settle(tab, page: BookPage) -> None:
        """Wait for MathJax's typesetting, the widget manager, lazy images and the network."""
        tab.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
        tab.wait_for_function("() => !window.MathJax || !window.MathJax.startup || !!window.MathJax.startup.promise",
                              timeout=30_000)
        # Bounded like every other wait: if MathJax never finishes, the math check reports what is
        # left untypeset instead of the run hanging until CI's limit.
        tab.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise ? Promise.race(["
                     "MathJax.startup.promise.then(() => true), new Promise(r => setTimeout(() => r(false), 30000))"
                     "]) : false")
        if page.has_widgets or tab.query_selector('script[type="application/vnd.jupyter.widget-view+json"]'):
            try:  # the manager replaces each view script by a rendered widget
                tab.wait_for_function(
                    "() => document.querySelectorAll('.jupyter-widgets').length >= "
                    "document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length"
                    " && document.querySelectorAll('.jupyter-widgets').length > 0"
                    # and the boxes have rendered their children (the slider and the output), not just themselves
                    " && [...document.querySelectorAll('.jupyter-widgets.widget-box')].every(b => b.children.length > 0)",
                    timeout=30_000)
            except Exception:  # reported by the widget test, with what did render
                pass
        tab.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
        tab.wait_for_load_state("networkidle", timeout=30_000)

    def _route(self, route, base_url: str, report: PageReport) -> None:
        request = route.request
        url = request.url
        if url.startswith(base_url):
            if request.resource_type == "document":
                response = route.fetch()
                if request.is_navigation_request() and request.frame == request.frame.page.main_frame:
                    report.scripts = page_scripts(response.text())
                body, stripped = strip_mismatched_sri(response.text())
                report.sri_stripped += stripped
                route.fulfill(response=response, body=body)
            else:
                route.continue_()
            return
        local = vendored_file(url)
        if local is not None:
            report.external[url] = "vendored"
            route.fulfill(path=str(local), status=200, headers={
                "Content-Type": CONTENT_TYPES.get(local.suffix, "application/octet-stream"),
                "Access-Control-Allow-Origin": "*"})
        elif url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            report.external[url] = "blocked"
            route.abort("blockedbyclient")
