"""The book's structure rules (tools/nbtools.py), checked on this repository and on scratch books.

The repository tests say "the book is in order right now"; the scratch-book tests build a
small book in ``tmp_path`` and break one rule at a time, so each rule is shown to fail when
it should (a checker that never complains would pass the repository tests too).
"""

from __future__ import annotations

import ast
import json
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("nbtools", REPO / "tools" / "nbtools.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)

# The set-up cell as agreed for the book; a change to nbtools.COLAB_CELL must be deliberate.
EXPECTED_COLAB_CELL = '''\
# Set-up. On Colab this installs snip_lib and the book's dependencies (ranges that keep Colab's
# own torch and numpy); anywhere else it does nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "snip_lib[colab] @ git+https://github.com/snip-book/snip-book@main"'''

EXPECTED_BIB_KEYS = {
    "lee2019snip", "glorot2010understanding", "he2015delving", "lecun1990optimal", "hassibi1993second",
    "han2015learning", "guo2016dynamic", "carreira2018learning", "ullrich2017soft",
    "molchanov2017variational", "dong2017learning", "zagoruyko2016wide", "lecun1998gradient",
    "krizhevsky2009learning", "xiao2017fashion", "zhang2017understanding", "wang2020picking",
    "tanaka2020pruning", "dejorge2021progressive", "frankle2021pruning", "frankle2019lottery",
    "lee2020signal", "blalock2020state", "hochreiter1997long", "cho2014learning",
    "li2020pytorch", "hoefler2021sparsity",
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A scratch copy of the book's skeleton (config, toc, intro, bibliography), no chapters."""
    for name in ("_config.yml", "_toc.yml", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "book").mkdir()
    for name in ("intro.md", "bibliography.md", "references.bib"):
        shutil.copy(REPO / "book" / name, tmp_path / "book" / name)
    nbtools.sync_toc(tmp_path)
    return tmp_path


def add_chapter(root: Path, name: str, extra_cells: list | None = None) -> Path:
    path = nbtools.create_chapter(root / "book" / name, name[3:-6].replace("_", " ").title(), root=root)
    if extra_cells:
        nb = nbformat.read(path, as_version=4)
        nb.cells.extend(extra_cells)
        nbformat.write(nb, path)
    return path


def edit(path: Path, change) -> None:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


def code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source)


# --------------------------------------------------------------------------- this repository


def test_repository_book_passes_every_check():
    assert nbtools.check(REPO) == []


def test_toc_lists_exactly_the_pages_present():
    chapters, strays = nbtools.chapter_files(REPO)
    assert strays == []
    listed = nbtools._toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    expected = ["book/intro"] + [f"book/{p.stem}" for p in chapters] + ["book/api", "book/bibliography"]
    assert listed == expected
    for doc in listed:
        assert any((REPO / f"{doc}{suffix}").exists() for suffix in (".md", ".ipynb")), doc


@pytest.mark.parametrize(
    "path", sorted((REPO / "book").glob("*.ipynb")) or [pytest.param(None, id="no-chapters-yet")],
    ids=lambda p: p.name if isinstance(p, Path) else str(p))
def test_each_committed_notebook(path: Path | None):
    if path is None:  # before the first chapter: the toc must not promise any
        assert nbtools.chapter_files(REPO) == ([], [])
        assert "parts" not in nbtools.expected_toc(REPO) or all(
            p["caption"] == nbtools.BACK_MATTER_CAPTION for p in nbtools.expected_toc(REPO)["parts"])
        return
    assert nbtools.check_notebook(path, nbtools.allowed_modules(REPO / "pyproject.toml")) == []


def test_config_makes_failing_notebooks_fail_the_build():
    jb_config = pytest.importorskip("jupyter_book.config")
    user_yaml = yaml.safe_load((REPO / "_config.yml").read_text())
    jb_config.validate_yaml(user_yaml, raise_on_errors=True)  # only keys Jupyter Book 1.x knows
    sphinx, _ = jb_config.get_final_config(
        user_yaml=REPO / "_config.yml", cli_config={"latex_individualpages": False},
        sourcedir=REPO, raise_on_invalid=True)
    assert sphinx["nb_execution_raise_on_error"] is True
    assert sphinx["nb_execution_show_tb"] is True
    assert sphinx["nb_execution_allow_errors"] is False
    assert sphinx["nb_execution_mode"] == "cache"
    assert sphinx["nb_execution_timeout"] == -1 or sphinx["nb_execution_timeout"] >= 600
    assert sphinx["external_toc_exclude_missing"] is True  # only_build_toc_files
    assert {"sphinx_exercise", "sphinxcontrib.bibtex"} <= set(sphinx["extensions"])
    assert sphinx["bibtex_bibfiles"] == ["book/references.bib"]
    assert sphinx["bibtex_reference_style"] == "author_year"
    assert {"_build", "tools", "student"} <= set(sphinx["exclude_patterns"])
    theme = sphinx["html_theme_options"]
    assert theme["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert theme["repository_url"] == "https://github.com/snip-book/snip-book"
    assert theme["repository_branch"] == "main"


def test_config_loads_the_book_extensions_and_a_short_quick_mode_timeout():
    """tools/book_html_fixes.py and tools/quick_cell_timeout.py are loaded; the theme mode is set."""
    jb_config = pytest.importorskip("jupyter_book.config")
    sphinx, _ = jb_config.get_final_config(
        user_yaml=REPO / "_config.yml", cli_config={"latex_individualpages": False},
        sourcedir=REPO, raise_on_invalid=True)
    assert {"book_html_fixes", "quick_cell_timeout"} <= set(sphinx["extensions"])
    for name, folder in yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]["local_extensions"].items():
        assert (REPO / folder / f"{name}.py").is_file(), name
    assert sphinx["html_context"]["default_mode"] == "auto"  # else "Got invalid theme mode" on each page
    spec = importlib.util.spec_from_file_location("quick_cell_timeout", REPO / "tools" / "quick_cell_timeout.py")
    qct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qct)
    full = sphinx["nb_execution_timeout"]
    quick = qct.cell_timeout(full, sphinx["quick_cell_timeout"], quick=True)
    # The slowest quick-mode cell takes ~60 s on a loaded 2-core machine; a hang must fail in minutes.
    assert 120 <= quick <= 600
    assert qct.cell_timeout(full, sphinx["quick_cell_timeout"], quick=False) == full
    nbval_timeout = re.search(r"^NBVAL_TIMEOUT\s*\??=\s*(\d+)\s*$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert nbval_timeout and 120 <= int(nbval_timeout.group(1)) <= 600


def test_bibliography_has_every_reference_once_and_parses():
    keys = nbtools.bib_keys(REPO / nbtools.BIB_FILE)
    assert len(keys) == len(set(keys))
    assert set(keys) == EXPECTED_BIB_KEYS
    pybtex = pytest.importorskip("pybtex.database")
    data = pybtex.parse_file(str(REPO / nbtools.BIB_FILE), bib_format="bibtex")
    assert set(data.entries) == EXPECTED_BIB_KEYS
    for key, entry in data.entries.items():
        assert entry.fields.get("title") and entry.fields.get("year"), key
        assert entry.persons.get("author"), key


def test_every_citation_in_the_book_resolves():
    cited = nbtools.cited_keys(REPO)
    assert "lee2019snip" in cited  # the intro cites the paper: the extraction itself works
    assert nbtools.check_bibliography(REPO) == []


def test_jupyter_book_is_pinned_below_2():
    assert nbtools.check_requirements(REPO) == []
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    book_extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    assert any(nbtools._requirement_name(r) == "jupyter-book" and "<2" in r.replace(" ", "") for r in book_extra)


def _build_book_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", REPO / "tools" / "build_book.py")
    build_book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_book)
    return build_book


def _chapter(path, code: str, prose: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [{"cell_type": "markdown", "metadata": {}, "source": prose},
             {"cell_type": "code", "metadata": {}, "source": code, "outputs": [], "execution_count": None}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_the_book_cache_follows_the_library_the_recorded_results_and_every_chapters_code(tmp_path, monkeypatch):
    """make book must re-execute when snip_lib, a recorded result, the mode or any chapter's code changes
    (jupyter-cache sees only a notebook's own code cells; chapter 10 reads the others' code hashes)."""
    build_book = _build_book_module()
    for path, text in (("snip_lib/a.py", "x = 1"), ("results/suite/run.json", "{}"),
                       ("benchmarks/results/b.json", "{}"), ("requirements.txt", "torch"), ("_config.yml", "")):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    _chapter(tmp_path / "book" / "01_a.ipynb", "x = 1", "prose")
    monkeypatch.setattr(build_book, "ROOT", tmp_path)
    monkeypatch.setenv("SNIP_QUICK", "1")
    keys = [build_book.cache_key()]
    for path in ("snip_lib/a.py", "results/suite/run.json", "benchmarks/results/b.json"):
        (tmp_path / path).write_text((tmp_path / path).read_text() + " ")
        keys.append(build_book.cache_key())
    _chapter(tmp_path / "book" / "01_a.ipynb", "x = 2", "prose")
    keys.append(build_book.cache_key())
    monkeypatch.setenv("SNIP_QUICK", "0")
    keys.append(build_book.cache_key())
    import torch

    from snip_lib import data, train  # chapter 6 trains on CIFAR-10 when it is on disk, longer on a GPU

    real_available = data.available
    monkeypatch.setattr(data, "available",  # CIFAR-10 appears (or goes)
                        lambda name, root=None: real_available(name, root) != (name == "cifar10"))
    keys.append(build_book.cache_key())
    other = "cpu" if train.default_device().type != "cpu" else "cuda"
    monkeypatch.setattr(train, "default_device", lambda: torch.device(other))
    keys.append(build_book.cache_key())
    assert len(set(keys)) == len(keys), keys
    (tmp_path / "book.md").write_text("prose")  # anything else: the cache stays
    _chapter(tmp_path / "book" / "01_a.ipynb", "x = 2", "other prose")
    assert build_book.cache_key() == keys[-1]
    monkeypatch.setenv("SNIP_QUICK", "false")   # the same mode, spelled differently: the same key
    assert build_book.cache_key() == keys[-1]
    monkeypatch.setenv("SNIP_QUICK", "2")       # refused before anything is cleared
    with pytest.raises(ValueError, match="SNIP_QUICK='2'"):
        build_book.cache_key()


def test_the_cache_stamp_is_written_before_the_build(tmp_path):
    """An interrupted build leaves entries of the new key in the cache: the stamp must already name it."""
    build_book = _build_book_module()
    cache, stamp = tmp_path / "_build" / ".jupyter_cache", tmp_path / "_build" / ".stamp"
    cache.mkdir(parents=True)
    (cache / "entry").write_text("full-mode output")
    stamp.write_text("full")
    build_book.prepare_cache(cache, stamp, "full", "test")          # same key: the cache is kept
    assert (cache / "entry").exists()
    build_book.prepare_cache(cache, stamp, "quick", "test")         # new key: cleared, stamp written now
    assert not cache.exists() and stamp.read_text() == "quick"
    cache.mkdir()
    (cache / "entry").write_text("quick-mode output")               # the build runs one chapter, then dies
    build_book.prepare_cache(cache, stamp, "full", "test")          # back to full: the quick entry must go
    assert not cache.exists() and stamp.read_text() == "full"


def test_overview_figure_exists():
    assert (REPO / "book" / "_static" / "snip_overview.png").stat().st_size > 10_000
    assert "_static/snip_overview.png" in (REPO / "book" / "intro.md").read_text()


# --------------------------------------------------------------------------- the Colab cell


def test_colab_cell_is_the_agreed_text():
    assert nbtools.COLAB_CELL == EXPECTED_COLAB_CELL
    # Colab opens the notebook from the repository and branch of _config.yml: the library comes from there too
    repo = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]
    assert f'git+{repo["url"]}@{repo["branch"]}"' in nbtools.COLAB_CELL
    assert "colab-setup" in nbtools.COLAB_TAGS
    assert {"hide-input", "hide-cell", "hide-output"} & set(nbtools.COLAB_TAGS)  # collapsed in HTML


def test_colab_cell_pip_magic_stays_inside_the_colab_branch():
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(nbtools.COLAB_CELL))
    branch = next(node for node in tree.body if isinstance(node, ast.If))
    assert "google.colab" in ast.unparse(branch.test)
    assert "run_line_magic('pip', 'install" in ast.unparse(branch)


def test_colab_cell_runs_in_a_kernel_off_and_on_colab(tmp_path: Path):
    """Off Colab the cell is a no-op; with google.colab present the %pip magic does run."""
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient

    nb = nbtools.new_notebook("Kernel check")
    nb.cells.append(code("assert 'pip_ran' not in dir()"))
    nb.cells.append(code("import types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"))
    # Same branch, with a harmless pip command instead of the install (no network here).
    nb.cells.append(code(nbtools.COLAB_CELL.replace(
        'install -q "snip_lib[colab] @ git+https://github.com/snip-book/snip-book@main"', "--version")))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[1].outputs == []  # the real set-up cell printed nothing off Colab
    pip_output = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert pip_output.startswith("pip ")


# --------------------------------------------------------------------------- scratch books


def test_scratch_book_without_chapters_is_clean(book: Path):
    assert nbtools.check(book) == []
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    assert nbtools._toc_files(toc) == ["book/intro", "book/bibliography"]


def test_new_chapter_is_clean_and_placed_in_its_part(book: Path):
    for name in ("09_conclusion.ipynb", "01_preliminaries.ipynb", "05_lenet_results.ipynb", "08_beyond_the_paper.ipynb"):
        add_chapter(book, name)
    assert nbtools.check(book) == []
    parts = {p["caption"]: [c["file"] for c in p["chapters"]] for p in yaml.safe_load((book / "_toc.yml").read_text())["parts"]}
    assert parts == {
        "The method": ["book/01_preliminaries"],
        "Results": ["book/05_lenet_results"],
        "Beyond the paper": ["book/08_beyond_the_paper", "book/09_conclusion"],
        "References": ["book/bibliography"],
    }
    nb = nbformat.read(book / "book" / "01_preliminaries.ipynb", as_version=4)
    assert nb.cells[0].source == "# Preliminaries"
    assert nb.metadata.kernelspec.name == "python3"


def test_library_reference_ends_the_appendix(book: Path):
    """book/api.md goes after the appendix chapters, in an Appendix part of its own if there are none."""
    shutil.copy(REPO / "book" / nbtools.API_PAGE, book / "book" / nbtools.API_PAGE)
    add_chapter(book, "01_preliminaries.ipynb")
    parts = nbtools.expected_toc(book)["parts"]
    assert [p["caption"] for p in parts] == ["The method", nbtools.APPENDIX_CAPTION, "References"]
    assert parts[1]["chapters"] == [{"file": "book/api"}]
    add_chapter(book, "10_performance.ipynb")
    assert nbtools.check(book) == []
    appendix = yaml.safe_load((book / "_toc.yml").read_text())["parts"][1]
    assert appendix["caption"] == nbtools.APPENDIX_CAPTION
    assert [c["file"] for c in appendix["chapters"]] == ["book/10_performance", "book/api"]
    (book / "book" / "notes.md").write_text("# Notes\n")
    assert any("notes.md: markdown page that is not" in p for p in nbtools.check(book))


def test_library_reference_documents_every_submodule():
    """book/api.md has one automodule per submodule of snip_lib (snip_lib._SUBMODULES), and every
    module it documents declares its public names in __all__, which is what autodoc lists, and each of
    them has a docstring (or a doc comment, for a constant) to show."""
    import importlib
    import inspect

    from sphinx.pycode import ModuleAnalyzer

    import snip_lib

    text = (REPO / "book" / nbtools.API_PAGE).read_text(encoding="utf-8")
    documented = re.findall(r"^\.\. automodule:: snip_lib\.(\w+)$", text, re.MULTILINE)
    assert sorted(documented) == sorted(snip_lib._SUBMODULES)
    assert len(documented) == len(set(documented))
    for name in documented:
        module = importlib.import_module(f"snip_lib.{name}")
        assert module.__doc__, f"snip_lib.{name} has no module docstring"
        public = getattr(module, "__all__", None)
        assert public, f"snip_lib.{name} has no __all__: autodoc would list imported names too"
        missing = [n for n in public if not hasattr(module, n)]
        assert missing == [], f"snip_lib.{name}.__all__ names what the module lacks: {missing}"
        # what the page shows for each public name: a docstring, or a `#:` comment for a constant
        attr_docs = {key for (_, key) in ModuleAnalyzer.for_module(module.__name__).find_attr_docs()}
        undocumented = [n for n in public if not (
            (inspect.getdoc(getattr(module, n)) if callable(getattr(module, n)) else None) or n in attr_docs)]
        assert undocumented == [], f"snip_lib.{name}: public names without a docstring or #: comment: {undocumented}"
        # and the methods the page lists under each class (nn.Module's extra_repr is left off it)
        methods = [f"{n}.{m}" for n in public if inspect.isclass(getattr(module, n))
                   for m, f in vars(getattr(module, n)).items()
                   if inspect.isfunction(f) and not m.startswith("_") and m != "extra_repr" and not f.__doc__]
        assert methods == [], f"snip_lib.{name}: public methods without a docstring: {methods}"


def test_new_refuses_to_overwrite_or_misname(book: Path):
    add_chapter(book, "01_preliminaries.ipynb")
    with pytest.raises(FileExistsError):
        nbtools.create_chapter(book / "book" / "01_preliminaries.ipynb", "Again", root=book)
    with pytest.raises(ValueError, match="NN_slug"):
        nbtools.create_chapter(book / "book" / "Preliminaries.ipynb", "Bad name", root=book)
    with pytest.raises(ValueError, match="title"):
        nbtools.create_chapter(book / "book" / "02_x.ipynb", "  ", root=book)


def test_notebook_missing_from_toc_is_reported_until_synced(book: Path):
    nbtools.create_chapter(book / "book" / "02_connection_sensitivity.ipynb", "Scores", root=book, update_toc=False)
    assert any("book/02_connection_sensitivity exists but is not listed" in p for p in nbtools.check(book))
    nbtools.sync_toc(book)
    assert nbtools.check(book) == []


def test_toc_entry_without_a_file_and_wrong_order_are_reported(book: Path):
    add_chapter(book, "01_preliminaries.ipynb")
    add_chapter(book, "02_connection_sensitivity.ipynb")
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    chapters = toc["parts"][0]["chapters"]
    chapters.reverse()
    (book / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    assert any("order" in p for p in nbtools.check_toc(book))
    chapters.append({"file": "book/03_variance_scaling"})
    (book / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    assert any("lists book/03_variance_scaling" in p for p in nbtools.check_toc(book))


def test_stray_notebook_name_is_reported(book: Path):
    nbformat.write(nbtools.new_notebook("Scratch"), str(book / "book" / "scratch.ipynb"))
    assert any("scratch.ipynb: not a chapter file name" in p for p in nbtools.check(book))


def test_notebook_without_the_colab_cell_fails(book: Path):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.pop(1))
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(code("import snip_lib"))
    nbformat.write(nb, path)
    problems = nbtools.check(book)
    assert any("first code cell is not the standard Colab set-up cell" in p for p in problems)


def test_colab_cell_that_is_not_first_fails(book: Path):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.insert(1, code("import torch")))
    assert any("first code cell is not the standard Colab set-up cell" in p for p in nbtools.check(book))


def test_colab_cell_without_its_tags_fails(book: Path):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells[1].metadata.update(tags=[]))
    assert any("lacks the tags" in p for p in nbtools.check(book))


@pytest.mark.parametrize("tag", ["raises-exception", "skip-execution", "nbval-skip", "nbval-raises-exception"])
def test_a_tag_that_lets_a_cell_go_unchecked_fails(book: Path, tag: str):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.append(nbformat.v4.new_code_cell("1 / 0", metadata={"tags": [tag]})))
    assert any(f"tagged {tag!r}" in p for p in nbtools.check(book)), nbtools.check(book)


@pytest.mark.parametrize("source, marker", [
    ("# NBVAL_SKIP\nassert False", "NBVAL_SKIP"),
    ("x = 1\n  #NBVAL_RAISES_EXCEPTION\n1 / 0", "NBVAL_RAISES_EXCEPTION"),
    ("# nbval_ignore_output\nprint(1)", "NBVAL_IGNORE_OUTPUT"),
    ("## NBVAL_SKIP\nassert False", "NBVAL_SKIP"),                      # nbval strips every leading '#'
    ("# PYTEST_VALIDATE_IGNORE_OUTPUT\nprint(2)", "PYTEST_VALIDATE_IGNORE_OUTPUT"),
])
def test_an_nbval_comment_marker_fails(book: Path, source: str, marker: str):
    """nbval reads these comments like the tags: a cell could go unchecked without a tag."""
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.append(nbformat.v4.new_code_cell(source)))
    assert any(f"has nbval's '# {marker}' comment" in p for p in nbtools.check(book)), nbtools.check(book)
    assert nbtools.UNCHECKED_MARKER.search("print('# NBVAL_SKIP is a comment nbval reads')") is None


def test_a_misspelt_tex_macro_fails(book: Path):
    """MathJax draws \\lvertw (for \\lvert w) as red text without an error; the check catches it."""
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.append(nbformat.v4.new_markdown_cell(
        "A score $\\lvertw \\odot g\\rvert$, fine in code: `$\\notamacro$`.")))
    problems = nbtools.check(book)
    assert any("math uses \\lvertw" in p for p in problems), problems
    assert not any("notamacro" in p for p in problems)
    assert nbtools.unknown_tex_macros("$$\\frac{1}{2} \\sum_j w_j$$") == []


def test_notebook_level_execution_settings_fail(book: Path):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.metadata.update(mystnb={"execution_mode": "off"}))
    assert any("notebook-level 'mystnb' metadata ['execution_mode']" in p for p in nbtools.check(book))
    assert nbtools.strip_outputs(path) is False     # stripping such a notebook still works (it only reports)
    assert any("notebook-level 'mystnb' metadata" in p for p in nbtools.check(book))


def test_config_that_skips_a_chapter_or_overrides_execution_fails(book: Path):
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["execute"]["exclude_patterns"] = ["book/06_*"]
    config["sphinx"]["config"]["nb_execution_allow_errors"] = True
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    problems = nbtools.check(book)
    assert any("execute.exclude_patterns is ['book/06_*']" in p for p in problems), problems
    assert any("sphinx.config sets ['nb_execution_allow_errors']" in p for p in problems), problems


def test_missing_title_cell_fails(book: Path):
    path = add_chapter(book, "03_variance_scaling.ipynb")
    edit(path, lambda nb: nb.cells.pop(0))
    assert any("'# Title'" in p for p in nbtools.check(book))


@pytest.mark.parametrize("text, flagged", [
    ("Exercise 2 asks why the classifier comes out densest.", True),
    ("(exercise 1)", True),
    ("Exercises 1 and 3 compare them.", True),
    ("{numref}`ex-04-2` asks why the classifier comes out densest.", False),
    ("Table 1 of the paper; Figure 2.", False),
], ids=lambda v: str(v)[:30])
def test_hand_numbered_exercise_references_fail(book: Path, text: str, flagged: bool):
    """A hand-written 'Exercise 2' is neither a link nor kept right when exercises move: use {numref}."""
    add_chapter(book, "04_snip_algorithm.ipynb", [nbformat.v4.new_markdown_cell(text)])
    problems = nbtools.check(book)
    if flagged:
        assert len(problems) == 1 and "by number" in problems[0] and "{numref}" in problems[0], problems
    else:
        assert problems == []


@pytest.mark.parametrize("text, found", [
    ("At 98% sparsity the error is 2.4%.", ["98%", "2.4%"]),
    ("the error is {glue:text}`err_98:.1f`% after retraining", ["{glue:text}`err_98:.1f`%"]),
    ("At 98 % sparsity the error is {glue:text}`err_98:.1f` %.", []),
    ("`f\"{x:.0%}\"` in code, and $\\bar\\kappa = 100\\%$ in a formula", []),
], ids=["numbers", "glue", "house style", "code and math"])
def test_unspaced_percents_are_found_in_prose_only(text: str, found: list[str]):
    assert nbtools.unspaced_percents(text) == found


def test_an_unspaced_percent_fails_the_check(book: Path):
    add_chapter(book, "04_snip_algorithm.ipynb", [nbformat.v4.new_markdown_cell("SNIP keeps 2% at 98 % sparsity.")])
    problems = nbtools.check(book)
    assert len(problems) == 1 and "'2%'" in problems[0] and "'98 %'" in problems[0], problems


@pytest.mark.parametrize("source", [
    "import sys\nsys.path.append('..')",
    "import sys\nsys.path.insert(0, '../tools')",
    "from sys import path",
    "from tools import nbtools",
    "import google",
    "import helpers",
    "from . import helpers",
    "from ..snip_lib import snip",
    "%run ../tools/make_overview_figure.py",
    "%cd ..",
    "import pandas as pd\npd.read_json('../results/lenet.json')",
    "!pip install tqdm",
    "%pip install -e ..",
    "import importlib.util\nimportlib.util.spec_from_file_location('x', 'x.py')",
], ids=lambda s: s.splitlines()[-1][:40])
def test_local_path_dependencies_fail(book: Path, source: str):
    add_chapter(book, "04_snip_algorithm.ipynb", [code(source)])
    problems = nbtools.check(book)
    assert problems and all("04_snip_algorithm.ipynb: cell 2:" in p for p in problems), problems


@pytest.mark.parametrize("source", [
    "model = model.cuda()",
    "x = x.to('cuda')",
    "x = x.to('cuda:0')",
    "history = train.fit(model, loader, device='cpu')",
    "loader = data.make_loader(ds, 64, device='cuda')",
], ids=lambda s: s)
def test_hand_picked_device_fails(book: Path, source: str):
    add_chapter(book, "04_snip_algorithm.ipynb", [code(source)])
    problems = nbtools.check(book)
    assert len(problems) == 1 and "chooses the device by hand" in problems[0], problems


def test_repository_notebooks_take_the_device_from_default_device():
    """A notebook that places work on a device gets it from train.default_device() (Colab's GPU)."""
    for path in sorted((REPO / "book").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if re.search(r"\bdevice\s*=(?!=)", source.replace(nbtools.COLAB_CELL, "")):
            assert "default_device()" in source, f"{path.name} passes a device but never calls train.default_device()"


def test_library_stdlib_and_declared_dependencies_are_allowed(book: Path):
    source = (
        "%matplotlib inline\nimport os, sys, json, math\nfrom pathlib import Path\nimport numpy as np\n"
        "import torch\nimport torch.nn.functional as F\nimport torchvision\nimport pandas as pd\n"
        "import matplotlib.pyplot as plt\nimport seaborn as sns\nfrom tqdm.auto import tqdm\n"
        "import scipy.stats\nimport ipywidgets as widgets\nfrom IPython.display import display\n"
        "from snip_lib.display import glue\nimport snip_lib\nfrom snip_lib import snip, masking, train\n"
        "device = train.default_device()\nx = torch.zeros(2).to(device)\ny = x.cpu().to('cpu')\n"
        "ok = torch.cuda.is_available()\nz = train.resolve_device('auto')\n"
        "data = Path('data') / 'x.json'\n"
        "if 'google.colab' in sys.modules:\n    from google.colab import output"
    )
    add_chapter(book, "04_snip_algorithm.ipynb", [code(source)])
    assert nbtools.check(book) == []


def test_syntax_error_is_reported(book: Path):
    add_chapter(book, "04_snip_algorithm.ipynb", [code("def broken(:\n    pass")])
    assert any("not valid Python" in p for p in nbtools.check(book))


def test_committed_outputs_fail_until_stripped(book: Path):
    path = add_chapter(book, "05_lenet_results.ipynb", [code("print(1)")])

    def run_it(nb):
        nb.cells[2].execution_count = 1
        nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    edit(path, run_it)
    problems = nbtools.check(book)
    assert any("outputs are committed" in p for p in problems)
    assert any("execution_count is 1" in p for p in problems)
    assert any("widget state" in p for p in problems)
    assert nbtools.strip_outputs(path) is True
    assert nbtools.strip_outputs(path) is False
    assert nbtools.check(book) == []


def test_wrong_kernelspec_fails(book: Path):
    path = add_chapter(book, "05_lenet_results.ipynb")
    edit(path, lambda nb: nb.metadata.kernelspec.update(name="conda-env-snip-py"))
    assert any("kernelspec name is 'conda-env-snip-py'" in p for p in nbtools.check(book))


def test_unknown_citation_key_fails(book: Path):
    add_chapter(book, "06_modern_models.ipynb",
                [nbformat.v4.new_markdown_cell("As {cite:t}`lee2019snip` and {cite}`zagoruyko2016wide,nosuchkey2099` show.")])
    problems = nbtools.check(book)
    assert problems == ["['book/06_modern_models.ipynb']: cites 'nosuchkey2099', which is not in book/references.bib"]


def test_duplicate_bib_key_fails(book: Path):
    bib = book / "book" / "references.bib"
    bib.write_text(bib.read_text() + "\n@misc{lee2019snip,\n  title = {Again},\n  year = {2019}\n}\n")
    assert any("'lee2019snip' is defined more than once" in p for p in nbtools.check(book))


def test_config_without_raise_on_error_fails(book: Path):
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["execute"].pop("raise_on_error")
    config["sphinx"]["config"].pop("nb_execution_raise_on_error")
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    assert any("execute.raise_on_error is None, not true" in p for p in nbtools.check(book))


def test_a_sphinx_override_that_lets_notebook_errors_only_warn_fails(book: Path):
    """sphinx.config wins over execute:, so execute.raise_on_error: true does not help there."""
    config = yaml.safe_load((book / "_config.yml").read_text())
    config["execute"]["raise_on_error"] = True
    config["sphinx"]["config"]["nb_execution_raise_on_error"] = False
    (book / "_config.yml").write_text(yaml.safe_dump(config))
    problems = nbtools.check(book)
    assert any("sphinx.config.nb_execution_raise_on_error is False, not true" in p for p in problems), problems


@pytest.mark.parametrize("name, line", [
    ("jupyter-book", "jupyter-book"), ("jupyter-book", "jupyter-book>=1.0"), ("jupyter-book", "jupyter-book>=2"),
    ("jupyter-book", "jupyter-book>=1.0.4.post1,!=2.0.0"),     # excludes 2.0.0 but lets 2.1 in
    ("ipykernel", "ipykernel>=6"), ("ipykernel", "ipykernel>=7"), ("ipykernel", None),
    ("ipykernel", "ipykernel>=6.29,!=7.4.0"),
])
def test_requirement_ranges_are_checked(book: Path, name: str, line: str | None):
    """An open range (or a missing line) for jupyter-book or ipykernel is reported by name."""
    text = (book / "requirements.txt").read_text()
    assert nbtools.check_requirements(book) == []
    lines = [line if x.strip() and not x.startswith("#") and nbtools._requirement_name(x) == name else x
             for x in text.splitlines()]
    (book / "requirements.txt").write_text("\n".join(x for x in lines if x is not None) + "\n")
    problems = nbtools.check_requirements(book)
    assert len(problems) == 1 and name in problems[0], problems


def test_command_line_new_toc_and_check(book: Path):
    script = [sys.executable, str(REPO / "tools" / "nbtools.py"), "--root", str(book)]
    created = subprocess.run(script + ["new", str(book / "book" / "07_what_snip_keeps.ipynb"),
                                       "--title", "What SNIP keeps"], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    assert "book/07_what_snip_keeps" in (book / "_toc.yml").read_text()
    ok = subprocess.run(script + ["check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    nbformat.write(nbtools.new_notebook("Unlisted"), str(book / "book" / "08_beyond_the_paper.ipynb"))
    bad = subprocess.run(script + ["check"], capture_output=True, text=True)
    assert bad.returncode == 1 and "08_beyond_the_paper exists but is not listed" in bad.stdout
    assert subprocess.run(script + ["toc"], capture_output=True).returncode == 0
    assert subprocess.run(script + ["check"], capture_output=True).returncode == 0


# --------------------------------------------------------------------------- stated chapter times


def _seconds(number: str, unit: str) -> float:
    return float(number) * (60 if unit == "min" else 1)


def _recorded_times() -> dict[tuple[str, str], float]:
    obj = json.loads((REPO / "benchmarks" / "results" / "notebook_times.json").read_text())
    return {(row["notebook"][:2], row["mode"]): row["seconds"] for row in obj["metrics"]["rows"] if row["ok"]}


def _close(stated: float, measured: float) -> bool:
    return abs(stated - measured) <= max(0.25 * measured, 5.0)


@pytest.mark.parametrize("path", sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_each_chapter_states_its_measured_time(path: Path):
    """The time a chapter announces is the one the benchmark notebook_times recorded for it."""
    nb = json.loads(path.read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    found = re.findall(r"\*\*Time\*\* \(measured[^)]*\): quick mode ([\d.]+) (s|min), full mode ([\d.]+) (s|min)",
                       prose)
    assert len(found) == 1, f"{path.name}: needs one standard '**Time** (measured ...): quick mode .., full mode ..' line"
    quick, quick_unit, full, full_unit = found[0]
    recorded = _recorded_times()
    number = path.name[:2]
    assert _close(_seconds(quick, quick_unit), recorded[(number, "quick")]), (quick, recorded[(number, "quick")])
    assert _close(_seconds(full, full_unit), recorded[(number, "full")]), (full, recorded[(number, "full")])


def test_the_introductions_table_of_chapter_times_is_the_recorded_one():
    intro = (REPO / "book" / "intro.md").read_text()
    table = intro[intro.index(":name: tab-chapter-times"):]
    table = table[:table.index("```")]
    rows = re.findall(r"\* - (\d+) [^\n]+\n  - ([\d.]+) (s|min)[^\n]*\n  - ([\d.]+) (s|min)", table)
    recorded = _recorded_times()
    chapters = sorted(p.name[:2] for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(f"{int(r[0]):02d}" for r in rows) == chapters
    for number, quick, quick_unit, full, full_unit in rows:
        key = f"{int(number):02d}"
        assert _close(_seconds(quick, quick_unit), recorded[(key, "quick")]), (number, quick, recorded[(key, "quick")])
        assert _close(_seconds(full, full_unit), recorded[(key, "full")]), (number, full, recorded[(key, "full")])
    obj = json.loads((REPO / "benchmarks" / "results" / "notebook_times.json").read_text())
    assert f"Recorded on {obj['provenance']['timestamp_utc'][:10]}" in intro


def test_every_python_example_of_the_readme_runs(monkeypatch):
    """The README's library examples are code a reader copies: each must run as written."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 2
    monkeypatch.setenv("SNIP_QUICK", "1")
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
        if "masking" in namespace and "fresh" in namespace:   # the 'your own model' recipe did what it says
            masks = namespace["masking"].get_masks(namespace["fresh"])
            assert set(masks) == {"0.weight"} and abs(namespace["masking"].global_sparsity(masks) - 0.95) < 1e-3

