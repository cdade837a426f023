"""Every page of _toc.yml, opened in headless Chromium from a local server, as a reader sees it.

Per page: it loads (HTTP 200) with no console error, uncaught exception or failed load (on a
first visit that stalled, too), and asks for nothing that is not served locally; its article
shows its title and its text; no script is written twice; the colour mode of a first
visit is set; exercises, figures and tables carry their chapter's number ("Exercise 5.2", as
the notebooks and the student edition say) and cross-references to them agree; every image has
a description, in the HTML and as the browser shows it (widgets included); every formula is
typeset by MathJax, with no undefined macro and no TeX left as text; every image decodes and a chapter that plots
shows a picture; every navigation and cross-reference link resolves; a notebook's page has a
Colab button that opens its committed .ipynb. On a page with ipywidgets
the saved widget state is restored, the widget manager finds its fonts next to its CDN copy, and
its MathJax 2 calls typeset. A reader's actions work: each solution stays folded until its title
is clicked, the sparsity slider changes the picture without a kernel, and the search page finds
the chapters. The library reference shows a section for
every command of `python -m snip_lib` with its usage and all its options. The pages come from
_toc.yml, so a new chapter is tested as soon as `python tools/nbtools.py toc` lists it. Full-page
screenshots and a JSON report land in _build/screenshots/.

SNIP_BOOK_EDITION=student (`make book-student-test`) runs all of it on the student edition
(_build/student-html), where the Colab button opens student/ and no solution, nor any line of one,
is on any page.
"""

from __future__ import annotations

import collections
import json
import re
import urllib.request
from urllib.parse import quote, urlsplit

import pytest
import yaml

from book_browser import BOOK_HTML, EDITION, NOTEBOOK_DIR, ROOT, WIDGET_MANAGER_SCRIPT, book_pages, toc_docnames

PAGES = book_pages()
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def shows_widgets(page) -> bool:
    """The source makes widgets, or the built page carries saved widget state."""
    html = BOOK_HTML / page.html_path
    return page.has_widgets or (html.exists() and WIDGET_STATE in html.read_text(encoding="utf-8"))


WIDGET_PAGES = [p for p in PAGES if shows_widgets(p)]
NOTEBOOK_PAGES = [p for p in PAGES if p.source.suffix == ".ipynb"]


def by_name(pages):
    return pytest.mark.parametrize("page", pages, ids=[p.docname for p in pages])


def test_every_page_of_the_book_is_tested():
    """Each page in book/ is in _toc.yml, and so here, and was built. Nothing is listed by hand."""
    tested = [p.docname for p in PAGES]
    assert tested == toc_docnames() and len(set(tested)) == len(tested)
    sources = {f"book/{p.stem}" for p in (ROOT / "book").iterdir() if p.suffix in (".ipynb", ".md")}
    assert sources - set(tested) == set(), "pages in book/ that the book (and this test) leaves out"
    unbuilt = [p.html_path for p in PAGES if not (BOOK_HTML / p.html_path).is_file()]
    assert unbuilt == []
    assert len(WIDGET_PAGES) >= 1, "no page with ipywidgets: the widget checks below test nothing"


def test_root_url_redirects_to_the_first_page(book_server):
    with urllib.request.urlopen(book_server.base_url, timeout=30) as resp:
        assert resp.status == 200
        assert PAGES[0].html_path in resp.read().decode()  # jupyter-book's index.html redirect


@by_name(PAGES)
def test_page_loads_without_console_errors(page, page_reports):
    report = page_reports(page)
    assert report.status == 200, f"{report.url}: HTTP {report.status}"
    blocked = [url for url, how in report.external.items() if how == "blocked"]
    assert blocked == [], f"the page needs resources that are neither local nor vendored: {blocked}"
    errors = report.errors()
    assert errors == [], "errors in the browser:\n" + "\n".join(errors)
    assert report.screenshot is not None and report.screenshot.stat().st_size > 10_000


#: The least text a page's article holds (the references, the shortest page, have about 6,700
#: characters; a page whose content failed to build keeps only its header and sidebar).
MIN_ARTICLE_TEXT = 2_000


@by_name(PAGES)
def test_page_shows_its_title_and_its_text(page, page_reports):
    """The screenshot's size alone passes a page with an empty article: its title and text must be there."""
    article = page_reports(page).article
    assert page.title, f"{page.source.name} has no '# ' title"
    assert article["h1"] == page.title, f"the page's heading is {article['h1']!r}, its source says {page.title!r}"
    assert article["text_length"] >= MIN_ARTICLE_TEXT, f"the article holds only {article['text_length']} characters"


@by_name(PAGES)
def test_no_script_is_written_twice(page, page_reports):
    """Sphinx 7.4 wrote late inline scripts twice (`const THEBE_JS_URL` then threw): book_html_fixes."""
    scripts = page_reports(page).scripts
    assert len(scripts) > 5, f"the page's scripts were not recorded: {scripts}"
    twice = [s[:120] for s, n in collections.Counter(scripts).items() if n > 1]
    assert twice == [], f"scripts written more than once: {twice}"
    assert sum("THEBE_JS_URL =" in s for s in scripts) <= 1


CAPTION_NUMBER = re.compile(r'class="caption-number">(Exercise|Fig\.|Table|Listing) ([\d.]+) ')
EXERCISE_TITLE = re.compile(r'id="ex-(\d+)-(\d+)">\s*<p class="admonition-title"><span class="caption-number">Exercise ([\d.]+) ')
EXERCISE_LINK = re.compile(r'href="[^"]*#ex-(\d+)-(\d+)"><span class="std std-numref">Exercise ([\d.]+)<')
CHAPTER_PAGES = [p for p in PAGES if re.match(r"\d+_", p.docname.rsplit("/", 1)[-1])]


@by_name(CHAPTER_PAGES)
def test_numbers_follow_the_chapter(page):
    """tools/chapter_numbers.py: the k-th exercise (figure, table) of chapter C is C.k, not its place in the book."""
    html = (BOOK_HTML / page.html_path).read_text(encoding="utf-8")
    chapter = int(page.docname.rsplit("/", 1)[-1].split("_")[0])
    numbers = collections.defaultdict(list)
    for kind, number in CAPTION_NUMBER.findall(html):
        numbers[kind].append(number)
    for kind, found in numbers.items():
        assert found == [f"{chapter}.{k}" for k in range(1, len(found) + 1)], f"{kind}: {found}"
    titles = EXERCISE_TITLE.findall(html)
    assert len(titles) == len(numbers["Exercise"])
    for label_chapter, k, number in titles + EXERCISE_LINK.findall(html):
        assert number == f"{int(label_chapter)}.{int(k)}", f"ex-{label_chapter}-{k} is shown as Exercise {number}"


def test_chapter_numbering_checks_something():
    """The page checks above must not pass on empty matches: the book has numbered exercises and links."""
    pages = [(BOOK_HTML / p.html_path).read_text(encoding="utf-8") for p in CHAPTER_PAGES]
    assert sum(len(EXERCISE_TITLE.findall(h)) for h in pages) >= 25
    assert sum(len(EXERCISE_LINK.findall(h)) for h in pages) >= 5


IMG_ALT = re.compile(r'<img\b[^>]*?\balt="([^"]*)"[^>]*>|<img\b(?![^>]*\balt=)[^>]*>')


@by_name(PAGES)
def test_every_image_has_a_description(page):
    """A plot without alt text is read out as its file name ('../_images/0bff...png'): each cell that draws
    one carries mystnb image alt text in its metadata, or a figure caption."""
    html = (BOOK_HTML / page.html_path).read_text(encoding="utf-8")
    images = list(IMG_ALT.finditer(html))
    missing = [m.group(0)[:120] for m in images if not (m.group(1) or "").strip()
               or m.group(1).endswith((".png", ".svg", ".jpg")) or "_images/" in m.group(1)]
    assert missing == [], f"{len(missing)} of {len(images)} images have no description: {missing}"


@by_name(PAGES)
def test_every_image_shown_has_a_description(page, page_reports):
    """What the browser shows, widgets included: a widget's picture exists only once the widget
    manager has rendered it from the saved state, so the HTML file alone cannot tell."""
    images = page_reports(page).images
    missing = [i["src"][:80] for i in images if not i["alt"].strip() or i["alt"].endswith((".png", ".svg", ".jpg"))]
    assert missing == [], f"{len(missing)} of {len(images)} images shown without a description: {missing}"


@by_name(PAGES)
def test_colour_mode_of_a_first_visit_is_set(page, page_reports):
    """Unset, pydata-sphinx-theme logs "Got invalid theme mode" (html_context.default_mode)."""
    report = page_reports(page)
    assert report.theme["default_mode"] in ("auto", "light", "dark"), report.theme
    assert report.theme["mode"] == report.theme["default_mode"]  # a fresh browser: nothing stored yet
    invalid = [m["text"] for m in report.console if "invalid theme mode" in m["text"].lower()]
    assert invalid == []


@by_name(PAGES)
def test_math_is_typeset(page, page_reports):
    math = page_reports(page).math
    if page.has_math:
        assert math["mathjax_version"], "MathJax did not load"
        assert math["elements"] > 0, "the source has math but the HTML has no .math element"
        assert math["containers"] >= math["elements"], "fewer MathJax containers than formulas"
    assert math["unrendered"] == [], f"formulas MathJax left as TeX: {math['unrendered'][:5]}"
    assert math["errors"] == [], f"MathJax errors: {math['errors'][:5]}"
    assert math["raw"] == [], f"raw TeX visible in the text: {math['raw'][:5]}"


@by_name(PAGES)
def test_images_are_shown(page, page_reports):
    images = page_reports(page).images
    broken = [i["src"] for i in images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert broken == [], f"images that did not decode: {broken}"
    if page.has_plots:
        assert any(i["inArticle"] for i in images), "the chapter draws plots but the page shows no image"


@by_name(PAGES)
def test_every_numbered_figure_shows_its_image(page, page_reports):
    """One image per page is not enough: each figure the chapter captions is on the page, with a
    decoded image and its caption (a figure cell whose plot failed to render would slip through)."""
    figures = {f["id"]: f for f in page_reports(page).figures}
    missing = [name for name in page.figures if name not in figures]
    assert missing == [], f"captioned figures missing from the page: {missing} (found {sorted(figures)})"
    for name in page.figures:
        shown = figures[name]
        assert shown["images"] and all(shown["images"]), f"{name}: no decoded image ({shown['images']})"
        assert shown["caption"].startswith("Fig."), f"{name}: caption {shown['caption'][:60]!r}"


@by_name(PAGES)
def test_links_resolve(page, page_reports, link_checker):
    report = page_reports(page)
    problems = [p for p in map(link_checker.problem, report.links) if p]
    assert problems == [], "broken links:\n" + "\n".join(problems)
    sidebar = {link.split("#")[0] for link in report.sidebar_links}
    missing = [p.html_path for p in PAGES
               if not any(link.endswith(p.html_path) for link in sidebar) and p.docname != page.docname]
    assert missing == [], f"pages of _toc.yml missing from the sidebar: {missing}"


@by_name(NOTEBOOK_PAGES)
def test_colab_button_opens_the_committed_notebook(page, page_reports):
    """launch_buttons.colab_url + repository (url, branch) of _config.yml + the page's own .ipynb
    (in student/ for the student edition, whose notebooks have no solutions)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]
    repo = urlsplit(repository["url"]).path.strip("/")
    book_path = (repository.get("path_to_book") or "").strip("/")
    name = page.docname.rsplit("/", 1)[-1]
    notebook = "/".join(part for part in (book_path, f"{NOTEBOOK_DIR}/{name}.ipynb") if part)
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    expected = f'{colab}/github/{repo}/blob/{repository["branch"]}/{notebook}'
    assert expected in page_reports(page).colab_links, page_reports(page).colab_links


@by_name(WIDGET_PAGES)
def test_widgets_restore_their_saved_state(page, page_reports):
    widgets = page_reports(page).widgets
    assert widgets["state_scripts"] >= 1, "no application/vnd.jupyter.widget-state+json in the page"
    assert widgets["models"] > 0 and widgets["view_scripts"] >= 1, f"saved state is empty: {widgets}"
    assert widgets["rendered_views"] > 0, "the widget manager rendered no widget from the saved state"
    saved = sorted(s["label"] for s in widgets["sliders"])
    shown = sorted(s["readout"] for s in widgets["rendered_sliders"])
    assert shown == saved, f"sliders show {shown}, the saved state says {saved}"
    if any("image/png" in kinds for kinds in widgets["outputs"]):
        assert widgets["rendered_output_images"] > 0, "the saved output area had a figure; none is shown"


@by_name(WIDGET_PAGES)
def test_widget_manager_finds_its_fonts_next_to_its_cdn_copy(page, page_reports):
    """Left alone it looks for them in the page's folder (404 on any host): book_html_fixes."""
    report = page_reports(page)
    dist = next((m["dist"] for m in map(WIDGET_MANAGER_SCRIPT.match, report.scripts) if m), None)
    assert dist, "the page has widgets but does not load @jupyter-widgets/html-manager"
    assert report.theme["widget_manager_module"] == f"{dist}/libembed-amd.js"
    fetched = [url for url in report.external if url.startswith(f"{dist}/") and url.endswith((".woff", ".woff2"))]
    assert fetched, f"no font was asked for in {dist}/: {sorted(report.external)}"
    assert all(report.external[url] == "vendored" for url in fetched), report.external
    failed = [f["family"] for f in report.theme["fonts"] if f["status"] == "error"]
    assert failed == [], f"fonts that did not load: {failed}"


@by_name(WIDGET_PAGES)
def test_widget_manager_typesets_through_the_mathjax2_api(page, page_reports):
    """The manager calls MathJax.Hub.Queue (MathJax 2); the book loads MathJax 3: book_html_fixes."""
    report = page_reports(page)
    if not report.math.get("mathjax_version"):
        pytest.skip("no MathJax on this page: the widget manager does not typeset")
    assert report.mathjax2_typeset is True, "MathJax.Hub.Queue(['Typeset', ...]) typeset nothing"


# --------------------------------------------------------------------------- what a reader does
SOLUTION_PAGES = [p for p in PAGES if p.solutions]


def test_solution_pages_are_found():
    assert sum(p.solutions for p in SOLUTION_PAGES) >= 25, "the folding test below checks nothing"


def solution_lines(page) -> list[str]:
    """Lines of the page's solution cells that no other cell of the notebook has: what must not
    reach a student."""
    cells = json.loads(page.source.read_text(encoding="utf-8"))["cells"]
    def lines(cell):
        return {line.strip() for line in "".join(cell["source"]).splitlines()}
    solution = [c for c in cells if c["cell_type"] == "code" and "solution" in c["metadata"].get("tags", [])]
    others = set().union(*(lines(c) for c in cells if c not in solution))
    return sorted({line for c in solution for line in lines(c) - others
                   if len(line) > 20 and not line.startswith("#")})


@by_name(SOLUTION_PAGES)
def test_solutions_are_folded_or_absent(page, chromium, book_server):
    """The book (sphinx-exercise's `:class: dropdown` + sphinx-togglebutton): a reader sees the
    exercise, not its answer, until clicking "Solution to Exercise N.k", and the click shows the
    solution's code. The student edition: no solution and none of its code anywhere on the page."""
    with chromium.tab(book_server.base_url, page.html_path) as (tab, report):
        solutions = tab.locator("div.solution")
        if EDITION == "student":
            text = tab.evaluate("() => document.body.textContent")  # folded and hidden parts too
            assert solutions.count() == 0 and tab.locator(".tag_solution").count() == 0
            secret = solution_lines(page)
            assert len(secret) >= page.solutions, "too few solution lines to look for"
            leaked = [line for line in secret if line in text]
            assert leaked == [], f"solution code on the student page: {leaked}"
            assert "Exercise" in text
        else:
            tab.wait_for_function("() => document.querySelectorAll('div.solution.toggle').length > 0",
                                  timeout=30_000)
            assert solutions.count() == page.solutions
            for i in range(solutions.count()):
                solution = solutions.nth(i)
                title = solution.locator(":scope > .admonition-title")
                body = solution.locator(":scope > :not(.admonition-title):not(button)")
                assert title.is_visible(), f"solution {i + 1}: its title is not shown"
                assert body.count() > 0 and not any(body.nth(k).is_visible() for k in range(body.count())), \
                    f"{title.inner_text()!r} is shown before the reader asks for it"
                title.click()
                body.first.wait_for(state="visible", timeout=10_000)
                assert solution.locator("pre").first.is_visible(), f"{title.inner_text()!r} opened without its code"
        assert report.errors() == [], report.errors()


EXPLORER_PAGES = [p for p in NOTEBOOK_PAGES if "sparsity_explorer(" in p.source.read_text(encoding="utf-8")]
#: The slider's readout and the explorer's panels the reader sees (a Stack shows one of them).
JS_EXPLORER = r"""() => {
  const slider = document.querySelector('.widget-slider, .widget-hslider');
  const shown = [...document.querySelectorAll('.jupyter-widgets img')].filter(i => i.getClientRects().length > 0);
  return {readout: slider ? (slider.querySelector('.widget-readout') || {}).textContent.trim() : null,
          shown: shown.map(i => ({alt: i.alt, src: i.src.slice(-300), width: i.naturalWidth}))};
}"""


def test_explorer_pages_are_found():
    assert EXPLORER_PAGES, "no chapter builds viz.sparsity_explorer: the slider test below checks nothing"


@by_name(EXPLORER_PAGES)
def test_moving_the_slider_changes_the_picture(page, chromium, book_server):
    """No kernel runs behind the published page: the explorer's panels are switched in the browser
    (ipywidgets' jslink from the slider to a Stack), so a reader's key press shows the other
    sparsity's picture, and its description says which."""
    with chromium.tab(book_server.base_url, page.html_path) as (tab, report):
        handle = tab.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle").first
        handle.wait_for(state="visible", timeout=30_000)
        tab.wait_for_function("() => [...document.querySelectorAll('.jupyter-widgets img')]"
                              ".some(i => i.getClientRects().length > 0 && i.complete)", timeout=30_000)
        before = tab.evaluate(JS_EXPLORER)
        assert len(before["shown"]) == 1 and before["shown"][0]["width"] > 0, before
        assert before["shown"][0]["alt"].startswith(f"Sparsity {before['readout']}: "), before
        handle.focus()
        for _ in range(2):
            handle.press("ArrowLeft")
        tab.wait_for_function("r => document.querySelector('.widget-readout').textContent.trim() !== r",
                              arg=before["readout"], timeout=10_000)
        after = tab.evaluate(JS_EXPLORER)
        assert len(after["shown"]) == 1 and after["shown"][0]["alt"].startswith(f"Sparsity {after['readout']}: "), after
        assert after["shown"][0]["src"] != before["shown"][0]["src"], "the slider moved but the picture did not change"
        assert report.errors() == [], report.errors()


#: What a reader types into the search box, and a page that must come up.
SEARCHES = {
    "connection sensitivity": "book/02_connection_sensitivity",
    "Glorot": "book/03_variance_scaling",
    "LeNet-5-Caffe": "book/05_lenet_results",
    "MaskedSGD": "book/api",
}


@pytest.mark.parametrize("query", list(SEARCHES))
def test_search_finds_the_page(query, chromium, book_server):
    """Sphinx's search runs in the browser from searchindex.js: no server, and nothing from a CDN."""
    with chromium.tab(book_server.base_url, f"search.html?q={quote(query)}") as (tab, report):
        tab.wait_for_selector("#search-results ul.search li a", timeout=30_000)
        hrefs = tab.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
        found = {urlsplit(h).path.lstrip("/").removesuffix(".html") for h in hrefs}
        assert SEARCHES[query] in found, f"searching {query!r} found {sorted(found)}"
        assert report.errors() == [], report.errors()


def test_reference_page_shows_every_command_line_option(chromium, book_server):
    """The library reference renders `python -m snip_lib`'s parser: a linked list of the commands,
    then a section per command with its usage and a table with every option. (A directive whose reStructuredText MyST reads as Markdown
    builds without a warning but shows the markup as text: only the page tells.)"""
    import argparse

    from snip_lib.cli import PROG, build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    with chromium.tab(book_server.base_url, "book/api.html") as (tab, report):
        shown = tab.eval_on_selector_all("section[id^='cli-']", """sections => sections.map(s => ({
            id: s.id,
            title: s.querySelector('h1, h2, h3, h4').textContent,
            usage: s.querySelector('pre') ? s.querySelector('pre').textContent : '',
            text: s.textContent,
            options: [...s.querySelectorAll('table tbody tr td:first-child code')].map(c => c.textContent)}))""")
        overview = tab.eval_on_selector_all("ul.cli-overview > li", """items => items.map(li => ({
            href: li.querySelector('a').getAttribute('href'), text: li.textContent}))""")
        assert report.errors() == [], report.errors()
    by_id = {s["id"]: s for s in shown}
    assert sorted(by_id) == sorted(f"cli-{name}" for name in commands)
    # the overview at the top: every command once, linked to its section, with its one-line help
    assert [item["href"] for item in overview] == [f"#cli-{name}" for name in commands], overview
    helps = {a.dest: a.help for a in next(a for a in build_parser()._actions
                                          if isinstance(a, argparse._SubParsersAction))._choices_actions}
    for item, name in zip(overview, commands):
        assert item["text"].startswith(f"{PROG} {name}: {helps[name]}"), item["text"]
    for name, parser in commands.items():
        section = by_id[f"cli-{name}"]
        assert section["title"].startswith(f"{PROG} {name}"), section["title"]
        assert section["usage"].startswith(f"{PROG} {name} [-h]"), section["usage"][:80]
        assert ".. " not in section["text"] and "list-table" not in section["text"], f"markup shown as text in {name}"
        flags = [a.option_strings[-1] for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
                 and not isinstance(a, argparse._HelpAction)]
        for flag in flags:
            assert any(o == flag or o.startswith(flag + " ") for o in section["options"]), (name, flag)
