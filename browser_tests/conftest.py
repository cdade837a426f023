"""Fixtures of the browser test: the local server, one Chromium, and one visit per book page.

Kept out of tests/ so that `make test` (library + notebooks) stays fast; run with
`make book-test` (or `python -m pytest browser_tests -p no:cacheprovider` after
`bash tools/setup_browser.sh` and a book build).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright  # a missing playwright fails the run, never skips it

from book_browser import BOOK_HTML, BUILD_COMMAND, SCREENSHOTS, BookBrowser, BookServer, LinkChecker, PageReport, book_pages

PAGES = book_pages()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: opens the built HTML book in headless Chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def book_server():
    missing = [p.html_path for p in PAGES if not (BOOK_HTML / p.html_path).exists()]
    if missing:
        pytest.exit(f"the book is not built (missing {missing} in {BOOK_HTML}): run `{BUILD_COMMAND}` first",
                    returncode=1)
    with BookServer(BOOK_HTML) as server:
        yield server


@pytest.fixture(scope="session")
def chromium():
    with sync_playwright() as pw:
        browser = BookBrowser(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def page_reports(book_server, chromium):
    """docname -> PageReport; each page is opened once, on first use, and screenshotted. The
    screenshots of an earlier run are removed first: the folder holds this run's pages only, as
    its report.json does."""
    reports: dict[str, PageReport] = {}
    for old in SCREENSHOTS.glob("*.png") if SCREENSHOTS.is_dir() else ():
        old.unlink()

    def get(page) -> PageReport:
        if page.docname not in reports:
            reports[page.docname] = chromium.visit(page, book_server.base_url)
        return reports[page.docname]

    yield get
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            "url": r.url, "status": r.status, "seconds": round(r.seconds, 2), "retried": r.retried,
            "errors": r.errors(),
            "console_other": [f'{m["type"]}: {m["text"]}' for m in r.console if m["type"] != "error"],
            "external_requests": r.external,
            "integrity_removed": r.sri_stripped, "math": r.math, "article": r.article,
            "images": len(r.images), "links_checked": len(r.links), "widgets": r.widgets,
            "theme": r.theme, "mathjax2_typeset": r.mathjax2_typeset, "scripts": len(r.scripts),
            "screenshot": str(r.screenshot) if r.screenshot else None,
        }
        for name, r in reports.items()
    }
    (SCREENSHOTS / "report.json").write_text(json.dumps(summary, indent=2) + "\n")


@pytest.fixture(scope="session")
def link_checker() -> LinkChecker:
    return LinkChecker()
