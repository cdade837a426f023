"""The book's own Sphinx extensions (tools/book_html_fixes.py, quick_cell_timeout.py, chapter_numbers.py), without a build.

The browser test (browser_tests/) checks their effect on the built pages; these tests check their
logic on the objects Sphinx hands them, so they run in `make test`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
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


# --------------------------------------------------------------------------- cli_reference

cli_ref = _load("cli_reference")


def test_every_option_that_help_prints_is_on_the_page():
    """Each subcommand's options, as argparse's own --help prints them, are in its section."""
    import argparse
    import contextlib
    import io

    from snip_lib.cli import build_parser

    parser = build_parser()
    commands = {c.name: c for c in cli_ref.commands_of(parser)}
    assert list(commands) == ["run", "list", "info", "reproduce", "verify"]
    for name, command in commands.items():
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out.getvalue())) - {"--help"}
        body = cli_ref.command_rst(command)
        labels = [o.label for _, options in command.groups for o in options]
        assert flags or name == "list", name
        for flag in flags:
            assert any(label == flag or label.startswith(flag + " ") for label in labels), (name, flag)
            assert f"``{flag}" in body, (name, flag)
        assert command.summary and command.description, name
    run = commands["run"]
    meaning = {o.label: o.meaning for _, options in run.groups for o in options}
    assert meaning["--sparsity SPARSITY [SPARSITY ...]"].startswith("fraction of prunable")
    assert "(default `sgd`)" in meaning["--optimizer OPTIMIZER"]            # default not in its help text
    assert "one of `eval`, `train`" in meaning["--bn-mode BN_MODE"]          # choices not in its help text
    assert [title for title, _ in run.groups] == ["options", "training (defaults: see `python -m snip_lib info --arch ARCH`)"]
    assert [o.label for _, options in commands["verify"].groups for o in options][0] == "RESULT [RESULT ...]"
    assert isinstance(parser, argparse.ArgumentParser)


def test_usage_is_wrapped_the_same_on_any_terminal(monkeypatch):
    from snip_lib.cli import build_parser

    sub = cli_ref.commands_of(build_parser())[0]
    monkeypatch.setenv("COLUMNS", "300")
    again = cli_ref.commands_of(build_parser())[0]
    assert sub.usage == again.usage
    lines = sub.usage.splitlines()
    assert lines[0].startswith("python -m snip_lib run [-h] --arch ARCH")
    assert len(lines) > 3
    too_long = [line.strip() for line in lines if len(line) > cli_ref.USAGE_WIDTH]
    assert all(" [" not in line for line in too_long), too_long  # only one option that cannot be split


@pytest.mark.parametrize("nargs, label", [
    (None, "--x X"), ("?", "--x [X]"), ("*", "--x [X ...]"), ("+", "--x X [X ...]"), (2, "--x X X")])
def test_option_label_writes_what_a_user_types(nargs, label):
    import argparse

    parser = argparse.ArgumentParser()
    assert cli_ref.option_label(parser.add_argument("--x", nargs=nargs)) == label
    assert cli_ref.option_label(parser.add_argument("--flag", action="store_true")) == "--flag"
    assert cli_ref.option_label(parser.add_argument("-s", "--seed", metavar="N")) == "-s, --seed N"


def test_unsupported_nargs_and_bad_specs_are_named():
    import argparse

    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match=r"nargs='\.\.\.' is not supported; allowed"):
        cli_ref.option_label(parser.add_argument("rest", nargs=argparse.REMAINDER))
    with pytest.raises(ValueError, match="needs 'module:function', not 'snip_lib.cli'"):
        cli_ref.load_parser("snip_lib.cli")
    with pytest.raises(TypeError, match="snip_lib.config:mode_name returned str, not an argparse.ArgumentParser"):
        cli_ref.load_parser("snip_lib.config:mode_name")


CLI_FIXTURE = """
import argparse


def build():
    parser = argparse.ArgumentParser(prog="tool", description="A tool.", epilog="Set X=1 for *quick*.")
    sub = parser.add_subparsers(dest="command")
    go = sub.add_parser("go", help="go somewhere (or --speed)", description="Go, see `list`.")
    go.add_argument("where", help="a place_ or |two|")
    go.add_argument("--speed", choices=["slow", "fast"], default="slow", help="how fast")
    go.add_argument("--with-bias", action="store_true", help="keep *biases*")
    sub.add_parser("list", help="list places", description="List places.")
    return parser


def not_a_parser():
    return 42
"""


def _build_page(tmp_path: Path, directive: str) -> tuple[str, str]:
    """A one-page Sphinx build with the extension, warnings as errors: (HTML, warnings)."""
    import io
    import sys

    from sphinx.application import Sphinx

    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "cli_fixture.py").write_text(CLI_FIXTURE)
    (src / "conf.py").write_text(f"import sys\nsys.path[:0] = [{str(REPO / 'tools')!r}, {str(tmp_path)!r}]\n"
                                 "extensions = ['cli_reference']\nnitpicky = True\n")
    (src / "index.rst").write_text(f"Tool\n====\n\n.. cli-reference:: {directive}\n")
    warnings = io.StringIO()
    try:
        app = Sphinx(str(src), str(src), str(tmp_path / "out"), str(tmp_path / "doctrees"), "html",
                     status=None, warning=warnings, freshenv=True)
        app.build()
    finally:
        sys.modules.pop("cli_fixture", None)
    page = tmp_path / "out" / "index.html"
    return (page.read_text() if page.exists() else ""), warnings.getvalue()


def test_directive_renders_one_section_per_command_and_no_markup_from_help_text(tmp_path: Path):
    html, warnings = _build_page(tmp_path, "cli_fixture:build")
    assert warnings == ""
    assert html.count('<section id="cli-') == 2
    assert '<section id="cli-go">' in html and '<section id="cli-list">' in html
    assert "<h2>tool go" in html and "<h2>tool list" in html
    # the overview comes first: each command's one-line help, linked to its section
    overview = re.search(r'<ul class="cli-overview[^"]*">(.*?)</ul>', html, re.S)
    assert overview and overview.start() < html.index('<section id="cli-go">')
    items = re.findall(r'<li><p><a class="reference internal" href="#(cli-\w+)"><code[^>]*>'
                       r'<span class="pre">tool</span> <span class="pre">(\w+)</span></code></a>: (.*?)</p>',
                       overview.group(1))
    assert [i[:2] for i in items] == [("cli-go", "go"), ("cli-list", "list")], overview.group(1)
    assert items[1][2] == "list places"
    # an option named in a help text is code, so its two hyphens stay two (not Sphinx's en dash)
    assert re.search(r'go somewhere \(or <code[^>]*><span class="pre">--speed</span></code>\)', overview.group(1))
    assert "A tool. Set X=1 for *quick*." in html               # the parser's text, not emphasis
    assert "a place_ or |two|" in html and "keep *biases*" in html
    assert "how fast (one of <code" in html and "default <code" in html
    assert re.search(r"<code[^>]*><span[^>]*>list</span></code>", html)  # `list` became code
    assert re.search(r"tool go \[-h\] \[--speed \{slow,fast\}\]", html.replace("\n", " "))


def test_directive_with_a_bad_spec_fails_the_build_naming_it(tmp_path: Path):
    _, warnings = _build_page(tmp_path, "cli_fixture:not_a_parser")
    assert "cli-reference 'cli_fixture:not_a_parser': cli_fixture:not_a_parser returned int" in warnings


def test_the_library_reference_renders_the_cli_with_the_extension():
    import yaml

    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"].get("cli_reference") == "tools"
    page = (REPO / "book" / "api.md").read_text(encoding="utf-8")
    # in an eval-rst block: the directive's body is reStructuredText, which MyST would read as Markdown
    assert "```{eval-rst}\n.. cli-reference:: snip_lib.cli:build_parser\n```" in page
