"""Book housekeeping: the table of contents, notebook hygiene and new chapters.

Why this exists: the book is read as HTML, run locally, tested by nbval and opened on
Colab straight from GitHub. Each of those breaks in its own quiet way (a chapter left
out of ``_toc.yml`` is silently dropped by ``only_build_toc_files``; a notebook that
imports a local helper works here and fails on Colab; committed outputs go stale), so
every rule is checked by one command that CI and ``tests/test_book_structure.py`` run.

Usage (from the repository root)::

    python tools/nbtools.py toc                      # rewrite _toc.yml from the chapter files present
    python tools/nbtools.py check                    # every rule below; exit status 1 on any problem
    python tools/nbtools.py new book/03_variance_scaling.ipynb --title "Variance scaling"
    python tools/nbtools.py strip book/*.ipynb       # clear outputs before committing

Rules checked by ``check``:

* ``_toc.yml`` lists exactly the book pages that exist, in chapter order
  (``book/intro.md``, ``book/NN_slug.ipynb`` by number, ``book/api.md`` at the end of the appendix,
  ``book/bibliography.md``);
* every notebook starts with a ``# Title`` markdown cell, and its first code cell is the
  standard Colab set-up cell :data:`COLAB_CELL` tagged :data:`COLAB_TAGS`;
* no notebook reaches for files Colab will not have: no ``sys.path`` changes, no relative
  or local-module imports (only the standard library, ``snip_lib``, the dependencies
  declared in ``pyproject.toml`` and ``google.colab``), no ``%run``/``%cd``, no ``../`` paths,
  no ``pip install`` outside the set-up cell;
* no notebook chooses the device by hand (``device="cpu"``, ``.cuda()``, ``.to("cuda")``): the
  device comes from ``snip_lib.train.default_device()``, so Colab's GPU is used when there is one
  and a CPU-only machine still runs the notebook;
* notebooks are committed without outputs, with ``execution_count`` null, without saved
  widget state, and with the ``python3`` kernelspec;
* no markdown cell names an exercise by a hand-written number ("Exercise 2"): write
  ``{numref}`ex-NN-k``` (the exercise's label), which the build turns into a link with the
  number the page shows (tools/chapter_numbers.py: "Exercise 4.2"), and which stays right when an
  exercise is added or moved (that the labels follow the chapter's order is an exercise
  convention, checked by tools/student_edition.py);
* percentages in prose are written with a space, "98 %" (the house style of every chapter):
  ``98%`` or a glued number followed directly by ``%`` is flagged; code spans and ``\\%`` in
  formulas are left alone;
* every ``{cite}`` key used in the book exists in ``book/references.bib``;
* ``_config.yml`` makes a failing notebook fail the build, ``jupyter-book`` is pinned below 2 and
  ``ipykernel`` below 7 (:data:`REQUIRED_RANGES`).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = "book"
TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
BIB_FILE = "book/references.bib"
INTRO_PAGE = "intro.md"
BIBLIOGRAPHY_PAGE = "bibliography.md"
#: The library reference (autodoc), the last page of the appendix.
API_PAGE = "api.md"

#: The first code cell of every notebook. On Colab only the notebook is fetched, not the
#: repository, so the library has to come from pip; everywhere else the cell is a no-op.
COLAB_CELL = '''\
# Set-up. On Colab this installs snip_lib and the book's dependencies (ranges that keep Colab's
# own torch and numpy); anywhere else it does nothing.
import sys
if "google.colab" in sys.modules:
    %pip install -q "snip_lib[colab] @ git+https://github.com/snip-book/snip-book@main"'''

#: ``colab-setup`` names the cell for tools; ``hide-input`` folds its source behind a
#: "Show code cell source" toggle in the HTML (it has no output outside Colab).
COLAB_TAGS: tuple[str, ...] = ("colab-setup", "hide-input")

#: Parts of the book: (caption, first chapter number, last chapter number).
PARTS: tuple[tuple[str, int, int], ...] = (
    ("The method", 1, 4),
    ("Results", 5, 7),
    ("Beyond the paper", 8, 9),
    ("Appendix", 10, 99),
)
#: The part that ends with the library reference (:data:`API_PAGE`).
APPENDIX_CAPTION = "Appendix"
BACK_MATTER_CAPTION = "References"

CHAPTER_RE = re.compile(r"^(?P<number>\d{2})_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

#: Import names of declared distributions whose import name is not the distribution name
#: with dashes turned into underscores.
DIST_MODULES: dict[str, tuple[str, ...]] = {
    "jupyter-book": ("jupyter_book", "myst_nb"),  # myst_nb provides ``glue``
    "matplotlib": ("matplotlib", "mpl_toolkits"),
    "ipykernel": ("ipykernel", "IPython"),
    "pillow": ("PIL",),
    "scikit-learn": ("sklearn",),
    "sphinxcontrib-bibtex": ("sphinxcontrib",),
    "pyyaml": ("yaml",),
}
#: Always importable in a notebook: the kernel itself and the library the book is about.
ALWAYS_ALLOWED = frozenset({"IPython", "snip_lib"})
#: Colab's own module, for code guarded by ``if "google.colab" in sys.modules:``.
COLAB_MODULE = "google.colab"
#: Optional-dependency groups that the Colab cell installs (``snip_lib[colab]``).
INSTALLED_EXTRAS = ("colab",)

CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
BIB_ENTRY_RE = re.compile(r"@(?P<type>[A-Za-z]+)\s*[{(]\s*(?P<key>[^,\s]+)\s*,")
BIB_NON_ENTRIES = {"comment", "string", "preamble"}
FORBIDDEN_MAGIC_RE = re.compile(r"^\s*%{1,2}(run|cd|load|bookmark)\b", re.MULTILINE)
PIP_RE = re.compile(r"^\s*[%!]\s*(pip|conda|mamba)\s+install\b|^\s*!\s*python\S*\s+-m\s+pip\s+install\b", re.MULTILINE)
FILE_LOADERS = {"spec_from_file_location", "SourceFileLoader", "addsitedir", "run_path"}


# --------------------------------------------------------------------------- pages and toc


def _root(root: Path | str | None) -> Path:
    return REPO_ROOT if root is None else Path(root)


def chapter_files(root: Path | str | None = None) -> tuple[list[Path], list[Path]]:
    """Chapter notebooks in ``book/`` in reading order, and notebooks that are not chapters.

    A chapter is ``book/NN_slug.ipynb``; anything else in ``book/`` (a scratch notebook, a
    typo in the name) cannot be placed in the toc and is returned as a stray.
    """
    book = _root(root) / BOOK_DIR
    chapters: list[tuple[int, str, Path]] = []
    strays: list[Path] = []
    for path in sorted(book.glob("*.ipynb")):
        match = CHAPTER_RE.match(path.name)
        if match:
            chapters.append((int(match["number"]), path.name, path))
        else:
            strays.append(path)
    return [p for _, _, p in sorted(chapters)], strays


def _docname(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def expected_toc(root: Path | str | None = None) -> dict[str, Any]:
    """The ``_toc.yml`` content that matches the pages present under ``book/``."""
    root = _root(root)
    book = root / BOOK_DIR
    if not (book / INTRO_PAGE).exists():
        raise FileNotFoundError(f"{book / INTRO_PAGE} is missing: it is the root page of the book")
    chapters, _ = chapter_files(root)
    parts: list[dict[str, Any]] = []
    placed: set[Path] = set()
    for caption, first, last in PARTS:
        files = [p for p in chapters if first <= int(p.name[:2]) <= last]
        placed.update(files)
        if files:
            parts.append({
                "caption": caption,
                "numbered": False,  # chapters number their own headings (1.1, 1.2, ...)
                "chapters": [{"file": _docname(p, root)} for p in files],
            })
    if (book / API_PAGE).exists():
        api = {"file": _docname(book / API_PAGE, root)}
        appendix = next((part for part in parts if part["caption"] == APPENDIX_CAPTION), None)
        if appendix is None:
            parts.append({"caption": APPENDIX_CAPTION, "numbered": False, "chapters": [api]})
        else:
            appendix["chapters"].append(api)
    unplaced = [p.name for p in chapters if p not in placed]
    if unplaced:
        raise ValueError(f"chapters {unplaced} fall outside every part in nbtools.PARTS {PARTS}")
    if (book / BIBLIOGRAPHY_PAGE).exists():
        parts.append({
            "caption": BACK_MATTER_CAPTION,
            "chapters": [{"file": _docname(book / BIBLIOGRAPHY_PAGE, root)}],
        })
    toc: dict[str, Any] = {"format": "jb-book", "root": _docname(book / INTRO_PAGE, root)}
    if parts:
        toc["parts"] = parts
    return toc


def render_toc(toc: dict[str, Any]) -> str:
    """YAML text for ``toc``, with a header saying the file is generated."""
    header = (
        "# Table of contents of \"SNIP, step by step\" (Jupyter Book 1.x, sphinx-external-toc).\n"
        "# GENERATED by `python tools/nbtools.py toc` from the files in book/: do not edit by hand;\n"
        "# add a chapter with `python tools/nbtools.py new book/NN_slug.ipynb --title \"...\"`.\n"
    )
    return header + yaml.safe_dump(toc, sort_keys=False, default_flow_style=False, width=100)


def sync_toc(root: Path | str | None = None) -> list[Path]:
    """Rewrite ``_toc.yml`` from the chapter files present; return the stray notebooks left out."""
    root = _root(root)
    (root / TOC_FILE).write_text(render_toc(expected_toc(root)), encoding="utf-8")
    return chapter_files(root)[1]


def _toc_files(node: Any) -> list[str]:
    """Every ``file:`` entry of a parsed toc, depth first, in order."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("root"), str):
            found.append(node["root"])
        if isinstance(node.get("file"), str):
            found.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                found.extend(_toc_files(child))
    return found


def check_toc(root: Path | str | None = None) -> list[str]:
    """Problems between ``_toc.yml`` and the pages in ``book/`` (missing, extra, order, strays)."""
    root = _root(root)
    problems: list[str] = []
    chapters, strays = chapter_files(root)
    for stray in strays:
        problems.append(
            f"{stray.relative_to(root)}: not a chapter file name (NN_slug.ipynb, lower case), so it "
            "cannot be in the toc; rename it or move it out of book/"
        )
    for page in sorted((root / BOOK_DIR).glob("*.md")):
        if page.name not in (INTRO_PAGE, BIBLIOGRAPHY_PAGE, API_PAGE):
            problems.append(
                f"{page.relative_to(root)}: markdown page that is not intro.md, api.md or bibliography.md; "
                "only_build_toc_files would silently drop it"
            )
    numbers = [p.name[:2] for p in chapters]
    for number in sorted({n for n in numbers if numbers.count(n) > 1}):
        problems.append(f"book/: several chapters numbered {number}: {[p.name for p in chapters if p.name[:2] == number]}")
    toc_path = root / TOC_FILE
    if not toc_path.exists():
        return problems + [f"{TOC_FILE} is missing; run `python tools/nbtools.py toc`"]
    try:
        actual = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
        expected = expected_toc(root)
    except (yaml.YAMLError, FileNotFoundError, ValueError) as err:
        return problems + [f"{TOC_FILE}: {err}"]
    listed, wanted = _toc_files(actual), _toc_files(expected)
    for doc in wanted:
        if doc not in listed:
            problems.append(f"{TOC_FILE}: page {doc} exists but is not listed; run `python tools/nbtools.py toc`")
    for doc in listed:
        if doc not in wanted:
            problems.append(f"{TOC_FILE}: lists {doc}, which is not a book page that exists; run `python tools/nbtools.py toc`")
    if not problems and actual != expected:
        problems.append(f"{TOC_FILE}: pages, order or parts differ from the generated toc; run `python tools/nbtools.py toc`")
    return problems


# --------------------------------------------------------------------------- notebooks


def new_notebook(title: str, *, gpu: bool = False) -> nbformat.NotebookNode:
    """A chapter skeleton: the title cell and the Colab set-up cell, no outputs."""
    if not title.strip():
        raise ValueError("title must be a non-empty string, e.g. 'Variance scaling'")
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 5
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if gpu:  # Colab opens such a notebook on a GPU runtime
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"] = {"gpuType": "T4"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {title.strip()}"),
        nbformat.v4.new_code_cell(COLAB_CELL, metadata={"tags": list(COLAB_TAGS)}),
    ]
    return nb


def create_chapter(path: Path | str, title: str, *, gpu: bool = False, root: Path | str | None = None,
                   update_toc: bool = True) -> Path:
    """Write a new chapter notebook (never overwrites) and, if it is in ``book/``, resync the toc."""
    root = _root(root)
    path = Path(path)
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if path.suffix != ".ipynb":
        raise ValueError(f"{path}: a chapter must be an .ipynb file")
    if path.exists():
        raise FileExistsError(f"{path} already exists; not overwriting it")
    in_book = path.parent == (root / BOOK_DIR).resolve()
    if in_book and not CHAPTER_RE.match(path.name):
        raise ValueError(f"{path.name}: chapter files are named NN_slug.ipynb (two digits, lower-case slug)")
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(title, gpu=gpu), str(path))
    if in_book and update_toc:
        sync_toc(root)
    return path


def strip_outputs(path: Path | str) -> bool:
    """Clear outputs, execution counts and saved widget state in place; True if the file changed."""
    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell.outputs, cell.execution_count = [], None
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    if changed:
        nbformat.write(nb, str(path))
    return changed


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"cannot read a distribution name from requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def allowed_modules(pyproject: Path | str | None = None) -> frozenset[str]:
    """Top-level modules a notebook may import: stdlib, ``snip_lib`` and what Colab's cell installs."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(pyproject) if pyproject else REPO_ROOT / "pyproject.toml"
    project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    requirements = list(project.get("dependencies", []))
    for extra in INSTALLED_EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    modules = set(sys.stdlib_module_names) | ALWAYS_ALLOWED
    for requirement in requirements:
        name = _requirement_name(requirement)
        modules.update(DIST_MODULES.get(name, (name.replace("-", "_"),)))
    return frozenset(modules)


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def _hard_coded_device(node: ast.AST) -> str | None:
    """The device a call fixes by hand (``f(device="cpu")``, ``x.cuda()``, ``x.to("cuda")``), if any.

    ``device="auto"`` is fine (it means :func:`snip_lib.train.default_device`), and so are
    ``x.cpu()`` and ``x.to("cpu")``: they bring results back to the host and choose nothing.
    """
    if not isinstance(node, ast.Call):
        return None
    for keyword in node.keywords:
        value = keyword.value
        if (keyword.arg == "device" and isinstance(value, ast.Constant) and isinstance(value.value, str)
                and value.value.strip().lower() != "auto"):
            return f"device={value.value!r}"
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "cuda":  # torch.cuda.x() is a call of x
        return ".cuda()"
    if (isinstance(func, ast.Attribute) and func.attr == "to" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str) and node.args[0].value.split(":")[0] in ("cuda", "mps")):
        return f".to({node.args[0].value!r})"
    return None


def _code_problems(source: str, allowed: frozenset[str]) -> list[str]:
    """Local-path and hand-picked-device problems in one code cell (IPython syntax allowed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    problems: list[str] = []
    for match in FORBIDDEN_MAGIC_RE.finditer(source):
        problems.append(f"uses %{match.group(1)}, which depends on local files or folders Colab does not have")
    if PIP_RE.search(source):
        problems.append("installs packages; only the Colab set-up cell may (declare the dependency in pyproject.toml)")
    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as err:
        return problems + [f"is not valid Python/IPython: {err.msg} (line {err.lineno})"]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            problems.append(f"relative import 'from {'.' * node.level}{node.module or ''} import ...' needs local files")
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            top = name.split(".")[0]
            if top not in allowed and not (name + ".").startswith(COLAB_MODULE + "."):
                problems.append(
                    f"imports '{name}', which is not the standard library, snip_lib or a dependency declared "
                    "in pyproject.toml (a local module would be missing on Colab)"
                )
        if _is_sys_path(node) or (isinstance(node, ast.ImportFrom) and node.module == "sys"
                                  and any(a.name == "path" for a in node.names)):
            problems.append("touches sys.path; notebooks must import snip_lib as an installed package")
        if isinstance(node, (ast.Attribute, ast.Name)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if name in FILE_LOADERS:
                problems.append(f"loads code from a file path ({name}); Colab only has the notebook")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("../"):
            problems.append(f"refers to {node.value!r} outside book/; Colab only has the notebook, load it through snip_lib")
        device = _hard_coded_device(node)
        if device:
            problems.append(f"chooses the device by hand ({device}); use device = train.default_device(), "
                            "which takes Colab's GPU when there is one and the CPU otherwise")
    return problems


#: "Exercise 2" or "exercises 1 and 3" written by hand (a {numref} role is the right way).
HAND_NUMBERED_EXERCISE = re.compile(r"\b[Ee]xercises? \d+\b")


#: A number, or a ``{glue:text}`` role, written directly against "%" in prose ("98%").
_INLINE_CODE = re.compile(r"(\{[\w:-]+\})?`[^`\n]*`")
_NUMBER_PERCENT = re.compile(r"(?<![\\\w.$])\d+(?:\.\d+)?%")


def unspaced_percents(markdown: str) -> list[str]:
    """Each "98%" in ``markdown`` (house style: "98 %"); code spans are skipped, glue roles are not."""
    found, pos = [], 0
    for match in _INLINE_CODE.finditer(markdown):
        found += _NUMBER_PERCENT.findall(markdown[pos:match.start()])
        if (match.group(1) or "").startswith("{glue") and markdown[match.end():match.end() + 1] == "%":
            found.append(match.group(0) + "%")
        pos = match.end()
    return found + _NUMBER_PERCENT.findall(markdown[pos:])


#: TeX macros the book's math may use. MathJax draws an unknown macro (a typo such as
#: ``\lvertw`` for ``\lvert w``) as red source text without any error, so neither the build nor
#: the browser test notices; the check refuses macros outside this list (add real ones here).
TEX_MACROS: frozenset[str] = frozenset("""
    Big Delta Longleftrightarrow Longrightarrow alpha approx arg bar begin beta big bigg binom cdot cdots
    delta dots ell end epsilon eta exp frac gamma ge geq gg hat in infty int kappa lVert lambda langle
    ldots le left leftarrow leq lim ln log lvert mapsto mathbb mathbf mathcal mathrm max min mu nabla ne
    neq odot operatorname overset partial phi pi pm prod propto qquad quad rVert rangle rho right
    rightarrow rvert sigma sim sqrt star sum tanh tau text textrm tfrac theta tilde times to top
    varepsilon vert
""".split())
_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]+?)\$", re.DOTALL)
_CODE_RE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def unknown_tex_macros(markdown: str) -> list[str]:
    """Macros in the ``$...$`` / ``$$...$$`` math of ``markdown`` that are not in :data:`TEX_MACROS`."""
    text = _CODE_RE.sub("", markdown)
    found = [name for m in _MATH_RE.finditer(text) for name in re.findall(r"\\([a-zA-Z]+)", m.group(1) or m.group(2))]
    return sorted({name for name in found if name not in TEX_MACROS})


#: Cell tags that make nbval or the book build accept a cell without checking it.
UNCHECKED_TAGS: dict[str, str] = {
    "raises-exception": "so the build and nbval accept it whether or not it raises the error it should; "
                        "catch the error in the cell and assert on its type and message",
    "skip-execution": "so the book shows it without running it; every cell of the book runs",
    "nbval-skip": "so the tests never run it; every cell of the book runs under nbval",
    "nbval-raises-exception": "so nbval accepts it whether or not it raises the error it should; catch the "
                              "error in the cell and assert on its type and message",
}
#: nbval's comment markers with the same effect as those tags (a first line such as ``# NBVAL_SKIP``).
UNCHECKED_MARKER = re.compile(r"^[ \t]*#+[ \t]*(NBVAL_SKIP|NBVAL_RAISES_EXCEPTION|NBVAL_IGNORE_OUTPUT|NBVAL_CHECK_OUTPUT"
                              r"|PYTEST_VALIDATE_IGNORE_OUTPUT)\b", re.MULTILINE | re.IGNORECASE)


def check_notebook(path: Path | str, allowed: frozenset[str] | None = None) -> list[str]:
    """Problems with one notebook: set-up cell, local paths, committed outputs, kernelspec, exercise references."""
    path = Path(path)
    allowed = allowed_modules() if allowed is None else allowed
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as err:  # nbformat raises several unrelated types for unreadable files
        return [f"{path.name}: cannot be read as a notebook: {err}"]
    problems: list[str] = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        problems.append(f"invalid nbformat: {err.message}")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name is {kernel!r}; use 'python3' so nbval, Jupyter Book and Colab agree")
    if "mystnb" in nb.metadata:
        problems.append(f"has notebook-level 'mystnb' metadata {sorted(nb.metadata['mystnb'])}; it can switch off "
                        "execution or error checking for this chapter alone, so settings belong in _config.yml")
    if "widgets" in nb.metadata:
        problems.append("has saved widget state in its metadata; run `python tools/nbtools.py strip` before committing")
    cells = nb.cells
    if not cells or cells[0].cell_type != "markdown" or not cells[0].source.lstrip().startswith("# "):
        problems.append("does not start with a markdown cell holding the '# Title' of the chapter")
    code_cells = [(i, c) for i, c in enumerate(cells) if c.cell_type == "code"]
    if not code_cells:
        problems.append("has no code cell; its first code cell must be the Colab set-up cell (nbtools.COLAB_CELL)")
    else:
        index, first = code_cells[0]
        if first.source.strip() != COLAB_CELL.strip():
            problems.append(f"cell {index}: the first code cell is not the standard Colab set-up cell (nbtools.COLAB_CELL)")
        missing_tags = [t for t in COLAB_TAGS if t not in first.metadata.get("tags", [])]
        if missing_tags:
            problems.append(f"cell {index}: the Colab set-up cell lacks the tags {missing_tags}")
    for index, cell in enumerate(cells):
        for tag in sorted(set(cell.metadata.get("tags", [])) & set(UNCHECKED_TAGS)):
            problems.append(f"cell {index}: tagged {tag!r}, {UNCHECKED_TAGS[tag]}")
        if cell.cell_type == "code":
            for marker in UNCHECKED_MARKER.findall(cell.source):
                problems.append(f"cell {index}: has nbval's '# {marker.upper()}' comment, which changes what nbval "
                                "checks in this cell; the book checks numbers with assert cells, under --nbval-lax")
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
        for name in unknown_tex_macros((cell.source if cell.cell_type == "markdown" else "") + "\n" + caption):
            problems.append(f"cell {index}: math uses \\{name}, which is not in nbtools.TEX_MACROS (MathJax would "
                            "draw an unknown macro as red text; fix the typo, or add a real macro to the list)")
        if cell.cell_type == "markdown":
            for match in HAND_NUMBERED_EXERCISE.finditer(cell.source):
                problems.append(f"cell {index}: names {match.group(0)!r} by number; refer to the label, "
                                "{numref}`ex-NN-k`, which links to it and keeps the number right")
            for text in unspaced_percents(cell.source):
                problems.append(f"cell {index}: writes {text!r}; the book's style puts a space before % ('98 %')")
    for index, cell in code_cells:
        if cell.get("outputs"):
            problems.append(f"cell {index}: outputs are committed; run `python tools/nbtools.py strip {path.name}`")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index}: execution_count is {cell.execution_count}, must be null")
        if cell.source.strip() != COLAB_CELL.strip():  # the set-up cell itself may %pip install
            problems.extend(f"cell {index}: {p}" for p in _code_problems(cell.source, allowed))
    return [f"{path.name}: {p}" for p in problems]


# --------------------------------------------------------------------------- bibliography, config


def bib_keys(path: Path | str) -> list[str]:
    """Entry keys of a BibTeX file, in file order (a minimal parse: ``@type{key,``)."""
    text = Path(path).read_text(encoding="utf-8")
    return [m["key"] for m in BIB_ENTRY_RE.finditer(text) if m["type"].lower() not in BIB_NON_ENTRIES]


def cited_keys(root: Path | str | None = None) -> dict[str, list[str]]:
    """``{key: [files citing it]}`` over the markdown pages and notebook markdown cells of ``book/``."""
    root = _root(root)
    book = root / BOOK_DIR
    texts: list[tuple[str, str]] = [(str(p.relative_to(root)), p.read_text(encoding="utf-8"))
                                    for p in sorted(book.glob("*.md"))]
    for path in sorted(book.glob("*.ipynb")):
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # reported by check_notebook
            continue
        texts.append((str(path.relative_to(root)),
                      "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")))
    cited: dict[str, list[str]] = {}
    for name, text in texts:
        for match in CITE_RE.finditer(text):
            for key in (k.strip() for k in match.group(1).split(",")):
                if key:
                    cited.setdefault(key, []).append(name)
    return cited


def check_bibliography(root: Path | str | None = None) -> list[str]:
    """Duplicate bib keys and citations of keys that ``book/references.bib`` lacks."""
    root = _root(root)
    bib = root / BIB_FILE
    if not bib.exists():
        return [f"{BIB_FILE} is missing"]
    keys = bib_keys(bib)
    problems = [f"{BIB_FILE}: key {k!r} is defined more than once" for k in sorted({k for k in keys if keys.count(k) > 1})]
    for key, files in sorted(cited_keys(root).items()):
        if key not in keys:
            problems.append(f"{sorted(set(files))}: cites {key!r}, which is not in {BIB_FILE}")
    return problems


def check_config(root: Path | str | None = None) -> list[str]:
    """``_config.yml`` must make notebook errors fail the build and build only toc pages."""
    root = _root(root)
    path = root / CONFIG_FILE
    if not path.exists():
        return [f"{CONFIG_FILE} is missing"]
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    execute = config.get("execute") or {}
    sphinx_config = (config.get("sphinx") or {}).get("config") or {}
    problems: list[str] = []
    # sphinx.config overrides execute: (Jupyter Book 1 writes execute: into it first)
    raise_on_error = sphinx_config.get("nb_execution_raise_on_error", execute.get("raise_on_error"))
    if raise_on_error is not True:
        where = ("sphinx.config.nb_execution_raise_on_error" if "nb_execution_raise_on_error" in sphinx_config
                 else "execute.raise_on_error")
        problems.append(f"{CONFIG_FILE}: {where} is {raise_on_error!r}, not true, so a failing notebook only warns")
    if execute.get("allow_errors") is True:
        problems.append(f"{CONFIG_FILE}: execute.allow_errors is true; a cell that must raise catches its error "
                        "and asserts on it instead")
    if execute.get("exclude_patterns"):
        problems.append(f"{CONFIG_FILE}: execute.exclude_patterns is {execute['exclude_patterns']!r}; those chapters "
                        "would be published without running (every chapter runs, in quick mode on CI)")
    overrides = sorted(k for k in sphinx_config
                       if k.startswith("nb_execution_") and k not in ("nb_execution_raise_on_error", "nb_execution_show_tb"))
    if overrides:
        problems.append(f"{CONFIG_FILE}: sphinx.config sets {overrides}; execution is configured under execute:, "
                        "which check_config checks")
    if execute.get("execute_notebooks") in (False, "off"):
        problems.append(f"{CONFIG_FILE}: execute.execute_notebooks is off, but notebooks are committed without outputs")
    if config.get("only_build_toc_files") is not True:
        problems.append(f"{CONFIG_FILE}: only_build_toc_files must be true (the build would pick up stray files)")
    for bib in config.get("bibtex_bibfiles") or []:
        if not (root / bib).exists():
            problems.append(f"{CONFIG_FILE}: bibtex_bibfiles lists {bib}, which does not exist")
    return problems


#: requirements.txt must allow the first version of each package and exclude the second and every
#: later one (checked on a few: an upper bound, not one excluded release): Jupyter Book 2 ignores
#: ``_config.yml``/``_toc.yml``; ipykernel 7.4.0 left a notebook run here waiting on an idle kernel
#: (a dropped execute request, ipython/ipykernel#1554).
REQUIRED_RANGES: dict[str, tuple[str, str]] = {
    "jupyter-book": ("1.0.4.post1", "2.0.0"),
    "ipykernel": ("6.29.0", "7.4.0"),
}


def _later_versions(version: str) -> list[str]:
    """``version`` and a few later ones: the next minor and major releases and a far one."""
    from packaging.version import Version

    v = Version(version)
    return [version, f"{v.major}.{v.minor + 1}.0", f"{v.major + 1}.0.0", f"{v.major + 10}.0.0"]


def check_requirements(root: Path | str | None = None) -> list[str]:
    """requirements.txt lists each package of :data:`REQUIRED_RANGES` with a range that allows
    its first version and excludes its second."""
    from packaging.requirements import Requirement

    root = _root(root)
    path = root / "requirements.txt"
    if not path.exists():
        return ["requirements.txt is missing"]
    lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    problems = []
    for name, (allowed, excluded) in REQUIRED_RANGES.items():
        specs = [Requirement(line) for line in lines if line and _requirement_name(line) == name]
        if not specs:
            problems.append(f"requirements.txt does not list {name}")
        for req in specs:
            if (any(req.specifier.contains(v, prereleases=True) for v in _later_versions(excluded))
                    or not req.specifier.contains(allowed)):
                problems.append(f"requirements.txt: '{req}' must allow {allowed} and exclude {excluded} and later "
                                f"(e.g. >={allowed},<{excluded.split('.')[0]})")
    return problems


def check(root: Path | str | None = None, *, pyproject: Path | str | None = None) -> list[str]:
    """Every rule of the module docstring; an empty list means the book is in order."""
    root = _root(root)
    if pyproject is None and (root / "pyproject.toml").exists():
        pyproject = root / "pyproject.toml"
    allowed = allowed_modules(pyproject)
    problems = check_toc(root)
    for path in sorted((root / BOOK_DIR).glob("*.ipynb")):
        problems += [f"{BOOK_DIR}/{p}" for p in check_notebook(path, allowed)]
    for path in sorted((root / BOOK_DIR).glob("*.md")):
        problems += [f"{BOOK_DIR}/{path.name}: math uses \\{name}, which is not in nbtools.TEX_MACROS"
                     for name in unknown_tex_macros(path.read_text(encoding="utf-8"))]
    problems += check_bibliography(root)
    problems += check_config(root)
    problems += check_requirements(root)
    return problems


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbtools.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("toc", help="rewrite _toc.yml from the chapter files in book/")
    sub.add_parser("check", help="check toc, notebooks, bibliography and config; exit 1 on problems")
    new = sub.add_parser("new", help="create a chapter notebook (title + Colab cell) and resync the toc")
    new.add_argument("path", type=Path, help="e.g. book/03_variance_scaling.ipynb")
    new.add_argument("--title", required=True, help="chapter title, becomes the '# Title' cell")
    new.add_argument("--gpu", action="store_true", help="ask Colab for a GPU runtime (notebook metadata)")
    new.add_argument("--no-toc", action="store_true", help="do not rewrite _toc.yml")
    strip = sub.add_parser("strip", help="clear outputs, execution counts and widget state in place")
    strip.add_argument("paths", type=Path, nargs="+")
    args = parser.parse_args(argv)

    if args.command == "toc":
        strays = sync_toc(args.root)
        print(f"wrote {args.root / TOC_FILE}")
        for stray in strays:
            print(f"left out (not a NN_slug.ipynb chapter name): {stray}", file=sys.stderr)
        return 0
    if args.command == "new":
        path = create_chapter(args.path, args.title, gpu=args.gpu, root=args.root, update_toc=not args.no_toc)
        print(f"created {path}")
        return 0
    if args.command == "strip":
        for path in args.paths:
            print(f"{'stripped' if strip_outputs(path) else 'clean   '} {path}")
        return 0
    problems = check(args.root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "book structure OK", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
