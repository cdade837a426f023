"""The book's own Sphinx extensions (tools/book_html_fixes.py, quick_cell_timeout.py, chapter_numbers.py), without a build.

The browser test (browser_tests/) checks their effect on the built pages; these tests check their
logic on the objects Sphinx hands them, so they run in `make test`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixes = _load("book_html_fixes")
qct = _load("quick_cell_timeout")
chapters = _load("chapter_numbers")
JavaScript = pytest.importorskip("sphinx.builders.html._assets")._JavaScript

REQUIRE_JS = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"
MANAGER_DIST = "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist"


def _page_scripts(*, widgets: bool) -> list:
    """The scripts of a page as Sphinx 7.4 lists them, with the duplicate it writes (None vs "")."""
    thebe = 'const THEBE_JS_URL = "https://unpkg.com/thebe@0.8.2/lib/index.js"'
    scripts = [JavaScript("_static/doctools.js", priority=200), JavaScript(None, body=thebe),
               JavaScript("_static/sphinx-thebe.js", **{"async": "async"}), JavaScript("", body=thebe)]
    if widgets:
        scripts += [JavaScript(REQUIRE_JS, crossorigin="anonymous"),
                    JavaScript(f"{MANAGER_DIST}/embed-amd.js", crossorigin="anonymous")]
    scripts += [JavaScript("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", defer="defer")]
    return scripts


def _render(scripts: list, pagename: str = "book/04_snip_algorithm") -> list:
    context = {"script_files": scripts}
    fixes.fix_page_scripts(None, pagename, "page.html", context, None)
    assert context["script_files"] is scripts  # edited in place: Sphinx keeps using its list
    return sorted(scripts, key=lambda js: js.priority)  # what Sphinx does after the event


def test_equal_scripts_are_written_once_none_and_empty_name_alike():
    page = _render(_page_scripts(widgets=False))
    bodies = [js.attributes.get("body") for js in page if js.attributes.get("body")]
    assert len(bodies) == 1 and "THEBE_JS_URL" in bodies[0]
    assert [js.filename for js in page if js.filename] == [
        "_static/doctools.js", "_static/sphinx-thebe.js", "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"]


def test_scripts_that_differ_are_all_kept_in_order():
    scripts = [JavaScript("", body="a"), JavaScript("", body="b"), JavaScript("", body="a", priority=800),
               JavaScript("x.js"), JavaScript("x.js", defer="defer")]
    assert fixes.unique_scripts(scripts) == scripts
    assert fixes.unique_scripts(scripts + scripts[::-1]) == scripts


def test_page_without_the_widget_manager_gets_no_widget_scripts():
    page = _render(_page_scripts(widgets=False))
    assert not any("require.config" in js.attributes.get("body", "") or "MathJax.Hub" in js.attributes.get("body", "")
                   for js in page)


def test_widget_page_points_require_at_the_manager_folder_between_require_and_the_manager():
    page = _render(_page_scripts(widgets=True))
    names = [js.filename or js.attributes.get("body", "")[:40] for js in page]
    require, manager = names.index(REQUIRE_JS), names.index(f"{MANAGER_DIST}/embed-amd.js")
    config, shim = page[manager - 2], page[manager - 1]
    assert require < manager - 2
    assert f'"@jupyter-widgets/html-manager/dist": "{MANAGER_DIST}"' in config.attributes["body"]
    assert "window.require.config({paths:" in config.attributes["body"]
    assert "mj.Hub = {Queue:" in shim.attributes["body"] and "typesetPromise" in shim.attributes["body"]
    assert config.priority == shim.priority == page[manager].priority


def test_require_paths_follow_the_manager_version_the_page_loads():
    other = "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.11/dist"
    scripts = _page_scripts(widgets=True)
    scripts[-2] = JavaScript(f"{other}/embed-amd.js")
    page = _render(scripts)
    assert any(f'"{other}"' in js.attributes.get("body", "") for js in page)


def test_quick_mode_shortens_the_cell_timeout():
    assert qct.cell_timeout(1800, 300, quick=True) == 300
    assert qct.cell_timeout(120, 300, quick=True) == 120  # a shorter full-mode limit stays
    assert qct.cell_timeout(-1, 300, quick=True) == 300   # "no limit" gets one in quick mode
    assert qct.cell_timeout(None, 300, quick=True) == 300
    assert qct.cell_timeout(1800, 300, quick=False) == 1800
    assert qct.cell_timeout(-1, 300, quick=False) == -1


@pytest.mark.parametrize("bad", [0, -5, 2.5, "300", True, None])
def test_quick_timeout_must_be_positive_seconds(bad):
    with pytest.raises(ValueError, match="quick_cell_timeout"):
        qct.cell_timeout(1800, bad, quick=True)


@pytest.mark.parametrize("mode, expected", [("1", 300), ("0", 1800), ("", 1800)])
def test_config_inited_handler_follows_snip_quick(monkeypatch, mode: str, expected: int):
    pytest.importorskip("sphinx.util")
    monkeypatch.setenv("SNIP_QUICK", mode)
    config = SimpleNamespace(nb_execution_timeout=1800, quick_cell_timeout=300)
    qct.apply_quick_timeout(None, config)
    assert config.nb_execution_timeout == expected


def test_numbers_restart_in_each_chapter_in_sphinx_order():
    """Sphinx numbers across the book (Exercise 17); each chapter page gets (chapter, k) instead."""
    fignumbers = {
        "book/intro": {"figure": {"fig-overview": (1,)}},
        "book/04_snip_algorithm": {"exercise": {"ex-04-1": (14,), "ex-04-3": (16,), "ex-04-2": (15,)},
                                   "figure": {"mask-grid": (3,)}},
        "book/05_lenet_results": {"exercise": {"ex-05-1": (17,)}, "table": {"t1": (2,), "t0": (1,)}},
    }
    changed = chapters.by_chapter(fignumbers)
    assert changed == ["book/04_snip_algorithm", "book/05_lenet_results"]
    assert fignumbers["book/04_snip_algorithm"] == {
        "exercise": {"ex-04-1": (4, 1), "ex-04-2": (4, 2), "ex-04-3": (4, 3)}, "figure": {"mask-grid": (4, 1)}}
    assert fignumbers["book/05_lenet_results"] == {"exercise": {"ex-05-1": (5, 1)}, "table": {"t0": (5, 1), "t1": (5, 2)}}
    assert fignumbers["book/intro"] == {"figure": {"fig-overview": (1,)}}  # no chapter number: left as it was
    assert chapters.by_chapter(fignumbers) == []  # a second pass changes nothing


@pytest.mark.parametrize("docname, chapter", [
    ("book/05_lenet_results", 5), ("book/10_performance", 10), ("book/intro", None), ("book/bibliography", None),
    ("05_top_level", 5), ("book/v2_notes", None)])
def test_chapter_comes_from_the_leading_digits_of_the_file_name(docname: str, chapter):
    assert chapters.chapter_of(docname) == chapter


def test_the_book_loads_the_chapter_numbers_extension():
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"].get("chapter_numbers") == "tools"
