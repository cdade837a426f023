"""The student edition of the book: every chapter with its solutions taken out.

Why this exists: the notebooks in ``book/`` are the instructor edition and the single source
of truth; their solutions are executed by CI (nbval and the book build), so they are known to
work. Students need the same chapters without the answers, both as notebooks to work in
(Jupyter, Colab) and as HTML. Hand-kept copies drift, so both are generated:

    python tools/student_edition.py            # write student/NN_*.ipynb from book/NN_*.ipynb
    python tools/student_edition.py --check    # exit 1 (and list the files) if student/ is stale
    python tools/student_edition.py --html     # HTML book without solutions, in _build/student-html

How a chapter marks its exercises (sphinx-exercise gated syntax)::

    ```{exercise-start}          <- markdown: the prompt, kept; in the student notebook the
    :label: ex-03-2                  fences become a plain "### Exercise 3.2" heading (Jupyter and
    ```                              Colab do not render MyST directives)
    ...
    ```{exercise-end}
    ```
    ```{solution-start} ex-03-2  <- markdown: dropped
    :class: dropdown
    ```
    code cell tagged "solution"  <- becomes a stub: "# YOUR ANSWER HERE" and placeholders
    markdown explanation         <- dropped (it is part of the solution); in its place an empty
                                    "your answer in words" cell, for the written part
    code cell tagged "check"     <- kept: public test, fails on the stub, passes on the answer
    ```{solution-end}
    ```                          <- dropped

A stub keeps what the check needs to fail cleanly instead of with a ``NameError``: every
function or class the solution defines at top level and the check uses keeps its signature
and raises ``NotImplementedError("exercise 3.2: ...")``; every such variable is set to
``...`` (Ellipsis: ``None`` can be a right answer). Names the check takes from the chapter's own
text are left alone.

The student notebooks are written byte for byte the same on every run (no outputs, fixed cell
ids), so ``--check`` can tell CI whether ``student/`` is up to date.

The HTML: sphinx-exercise's own ``hide_solutions: true`` cannot be used, because with gated
solutions it crashes the build in sphinx-exercise 1.2.1 (``NotImplementedError: ... departing
unknown node type: solution_end_node``; executablebooks/sphinx-exercise#89), and even without
the crash it would leave the cells between ``solution-start`` and ``solution-end`` in place.
``--html`` therefore builds the book with a copy of ``_config.yml`` that loads this file as a
Sphinx extension (:func:`setup`), which removes every solution after sphinx-exercise has merged
the gated blocks. It writes only below ``_build/student*``, never to the main build.
The same extension keeps the instructor notebooks out of reach: the page sources are not copied
(``html_copy_source: false``), the download buttons for them are dropped, and the launch
buttons (Colab) open ``student/NN_*.ipynb`` instead of ``book/NN_*.ipynb``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = "book"
STUDENT_DIR = "student"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
#: Tag of the generated stub cells, so tools and tests can find them.
STUB_TAG = "answer"
#: Tag of the generated "your answer in words" markdown cells.
WRITTEN_TAG = "answer-text"
ANSWER_MARK = "# YOUR ANSWER HERE"

#: Where ``--html`` writes: the HTML itself, and a scratch folder for its config, doctrees,
#: execution cache and Sphinx's own output (kept for incremental rebuilds).
HTML_OUT = Path("_build") / "student-html"
HTML_WORK = Path("_build") / "student"

DIRECTIVE_RE = re.compile(r"^\s*(?:`{3,}|:{3,})\{(exercise|solution)-(start|end)\}[ \t]*(\S*)")
LABEL_RE = re.compile(r"^\s*:label:\s*(\S+)", re.MULTILINE)
CLASS_RE = re.compile(r"^\s*:class:\s*(.+)$", re.MULTILINE)
EXERCISE_LABEL_RE = re.compile(r"^ex-(\d+)-(\d+)$")


# --------------------------------------------------------------------------- reading a chapter


@dataclass
class Exercise:
    """One exercise of a chapter, as cell indices into the instructor notebook."""

    label: str
    prompt: list[int] = field(default_factory=list)          # exercise-start .. exercise-end
    solution_start: int | None = None                         # the {solution-start} cell
    solution_end: int | None = None                           # the {solution-end} cell
    solution_code: list[int] = field(default_factory=list)    # code cells tagged "solution"
    solution_prose: list[int] = field(default_factory=list)   # other markdown in the block
    checks: list[int] = field(default_factory=list)           # code cells tagged "check"

    @property
    def number(self) -> str:
        """``ex-03-2`` -> ``3.2``, the number the HTML shows (tools/chapter_numbers.py); other labels as they are."""
        match = EXERCISE_LABEL_RE.match(self.label)
        return f"{int(match[1])}.{int(match[2])}" if match else self.label

    @property
    def solution_block(self) -> range:
        """Indices of every cell from ``{solution-start}`` to ``{solution-end}``, both included."""
        if self.solution_start is None or self.solution_end is None:
            return range(0)
        return range(self.solution_start, self.solution_end + 1)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _directives(source: str) -> list[tuple[str, str, str]]:
    """``(kind, edge, argument)`` for every gated fence in a markdown cell, in order."""
    return [(m[1], m[2], m[3]) for m in map(DIRECTIVE_RE.match, source.splitlines()) if m]


def parse_exercises(nb: nbformat.NotebookNode) -> tuple[list[Exercise], list[str]]:
    """The exercises of a chapter and every way it departs from the conventions above.

    Problems are returned, not raised, so that ``--check`` and the tests can list all of them.
    """
    exercises: list[Exercise] = []
    problems: list[str] = []
    current: Exercise | None = None    # exercise whose prompt is open
    solution: Exercise | None = None   # exercise whose solution block is open
    for index, cell in enumerate(nb.cells):
        where = f"cell {index}"
        tags = _tags(cell)
        if cell.cell_type == "markdown":
            directives = _directives(cell.source)
            in_prompt = current is not None or any(kind == "exercise" for kind, _, _ in directives)
            for kind, edge, argument in directives:
                if (kind, edge) == ("exercise", "start"):
                    if current is not None or solution is not None:
                        problems.append(f"{where}: exercise-start inside another exercise or solution")
                    label = LABEL_RE.search(cell.source)
                    if not label:
                        problems.append(f"{where}: exercise-start without a :label:")
                    current = Exercise(label[1] if label else f"(unlabelled, {where})")
                    exercises.append(current)
                elif (kind, edge) == ("exercise", "end"):
                    if current is None:
                        problems.append(f"{where}: exercise-end without an exercise-start")
                    current = None
                elif (kind, edge) == ("solution", "start"):
                    if solution is not None or current is not None:
                        problems.append(f"{where}: solution-start inside another exercise or solution")
                    target = next((e for e in exercises if e.label == argument), None)
                    if target is None or target is not exercises[-1]:
                        problems.append(f"{where}: solution-start {argument!r} does not follow exercise "
                                        f"{exercises[-1].label if exercises else '(none)'}")
                    if target is not None and target.solution_start is not None:
                        problems.append(f"{where}: a second solution for {argument}")
                    if target is not None and target.solution_start is None:
                        target.solution_start = index
                        classes = CLASS_RE.search(cell.source)
                        if not classes or "dropdown" not in classes[1].split():
                            problems.append(f"{where}: solution-start {argument} lacks ':class: dropdown'")
                        solution = target
                elif (kind, edge) == ("solution", "end"):
                    if solution is None:
                        problems.append(f"{where}: solution-end without a solution-start")
                    else:
                        solution.solution_end = index
                    solution = None
            if in_prompt and exercises:
                exercises[-1].prompt.append(index)
            elif solution is not None and solution.solution_start != index:
                solution.solution_prose.append(index)
            elif SOLUTION_TAG in tags and solution is None and not directives:
                problems.append(f"{where}: markdown tagged {SOLUTION_TAG!r} outside a solution block")
            continue
        if cell.cell_type != "code":
            continue
        if SOLUTION_TAG in tags and CHECK_TAG in tags:
            problems.append(f"{where}: tagged both {SOLUTION_TAG!r} and {CHECK_TAG!r}")
        if solution is None:
            for tag in (SOLUTION_TAG, CHECK_TAG):
                if tag in tags:
                    problems.append(f"{where}: code tagged {tag!r} outside a solution block")
            if current is not None:
                problems.append(f"{where}: code cell inside an exercise prompt (put it in the solution block)")
            continue
        if SOLUTION_TAG in tags:
            if solution.checks:
                problems.append(f"{where}: solution code after the check of {solution.label}")
            solution.solution_code.append(index)
        elif CHECK_TAG in tags:
            solution.checks.append(index)
        else:
            problems.append(f"{where}: code cell in the solution of {solution.label} tagged neither "
                            f"{SOLUTION_TAG!r} nor {CHECK_TAG!r}")
    if current is not None:
        problems.append(f"exercise {current.label}: no exercise-end")
    if solution is not None:
        problems.append(f"solution of {solution.label}: no solution-end")
    labels = [e.label for e in exercises]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        problems.append(f"exercise label {label} used more than once")
    for exercise in exercises:
        if exercise.solution_start is None:
            problems.append(f"exercise {exercise.label}: no solution")
            continue
        if not exercise.solution_code:
            problems.append(f"exercise {exercise.label}: its solution has no code cell tagged {SOLUTION_TAG!r}")
        if not exercise.checks:
            problems.append(f"exercise {exercise.label}: its solution has no code cell tagged {CHECK_TAG!r}")
    return exercises, problems


# --------------------------------------------------------------------------- names in code


def python_source(source: str) -> str:
    """Cell source as plain Python (IPython magics turned into calls), for ``ast``."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []  # attributes and subscripts bind no new name


def top_level_bindings(tree: ast.Module) -> dict[str, ast.stmt]:
    """Names bound at module level (not inside functions or classes), with their first binding."""
    found: dict[str, ast.stmt] = {}

    def visit(body: Iterable[ast.stmt]) -> None:
        for stmt in body:
            names: list[str] = []
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [stmt.name]
            elif isinstance(stmt, ast.Assign):
                names = [n for t in stmt.targets for n in _target_names(t)]
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                names = _target_names(stmt.target)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                names = [(a.asname or a.name).split(".")[0] for a in stmt.names]
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                names = _target_names(stmt.target)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                names = [n for item in stmt.items if item.optional_vars for n in _target_names(item.optional_vars)]
            for name in names:
                found.setdefault(name, stmt)
            for attr in ("body", "orelse", "finalbody"):
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(getattr(stmt, attr, []) or [])
            for handler in getattr(stmt, "handlers", []) or []:
                visit(handler.body)
    visit(tree.body)
    return found


def names_used(tree: ast.Module) -> set[str]:
    """Names a cell reads and does not bind anywhere itself (comprehension and loop variables,
    function arguments), that is, the names it takes from the cells before it."""
    loaded, bound = set(), set(top_level_bindings(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return loaded - bound


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{keyword} {node.name}({ast.unparse(node.args)}){returns}:"


def answer_bindings(solution_sources: Sequence[str], check_sources: Sequence[str],
                    known_before: set[str]) -> dict[str, ast.stmt]:
    """The top-level bindings of the last solution cell that become placeholders, name -> statement.

    Those are the names the checks use, except names the chapter already defined before the
    exercise (``known_before``; overwriting them would break the chapter's own values) and names
    an earlier solution cell of the same exercise binds.
    """
    needed: set[str] = set()
    for check in check_sources:
        needed |= names_used(ast.parse(python_source(check)))
    earlier_solutions: set[str] = set()
    for source in solution_sources[:-1]:
        earlier_solutions |= set(top_level_bindings(ast.parse(python_source(source))))
    return {name: stmt for name, stmt in top_level_bindings(ast.parse(python_source(solution_sources[-1]))).items()
            if name in needed and name not in known_before and name not in earlier_solutions}


def _is_variable(stmt: ast.stmt) -> bool:
    """A binding whose placeholder is ``name = ...`` (not an import, function or class)."""
    return not isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def stub_source(solution_sources: Sequence[str], check_sources: Sequence[str], number: str,
                known_before: set[str], *, first: bool = True) -> str:
    """The student's cell for one solution cell: the answer mark and the placeholders
    (for :func:`answer_bindings`)."""
    header = (f"{ANSWER_MARK} (exercise {number})\n# Replace the placeholders with your answer; the check "
              "cell below tests it." if first else f"{ANSWER_MARK} (exercise {number}, continued)")
    imports: list[str] = []
    blocks: list[str] = []
    variables: list[str] = []
    for name, stmt in answer_bindings(solution_sources, check_sources, known_before).items():
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            # An import is not an answer, and without it the check would fail with a NameError.
            if ast.unparse(stmt) not in imports:
                imports.append(ast.unparse(stmt))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            blocks.append(f'{_signature(stmt)}\n    raise NotImplementedError("exercise {number}: write {name}")')
        elif isinstance(stmt, ast.ClassDef):
            blocks.append(f"class {name}:\n    def __init__(self, *args, **kwargs):\n"
                          f'        raise NotImplementedError("exercise {number}: write {name}")')
        else:
            # Ellipsis, not None: None is a legitimate answer where a prompt allows it ("None if no
            # density breaks even", exercise 10.1), and ``...`` is the usual "fill me in" mark.
            variables.append(f"{name} = ...")
    chunks = (["\n".join(imports)] if imports else []) + blocks + (["\n".join(variables)] if variables else [])
    return header + "\n" + "\n\n\n".join(chunks) if chunks else header


def placeholder_guard(names: Sequence[str], number: str) -> str:
    """Lines for the top of an exercise's first check cell: one clear failure per unanswered placeholder.

    Without them a check on a placeholder still ``...`` fails with whatever its first use raises
    (``'ellipsis' object is not iterable``, a bare ``AssertionError``), far from the answer cell.
    """
    return "".join(f'assert {name} is not ..., "exercise {number}: {name} is still the placeholder ...; '
                   f'write your answer in the {ANSWER_MARK} cell above"\n' for name in dict.fromkeys(names))


def names_defined_before(nb: nbformat.NotebookNode, index: int, skip: set[int]) -> set[str]:
    """Top-level names bound by the code cells before ``index`` that the student edition keeps."""
    names: set[str] = set()
    for i, cell in enumerate(nb.cells[:index]):
        if cell.cell_type == "code" and i not in skip:
            try:
                names |= set(top_level_bindings(ast.parse(python_source(cell.source))))
            except SyntaxError:
                pass
    return names


# --------------------------------------------------------------------------- the student notebook


def _banner(source_name: str, has_exercises: bool) -> nbformat.NotebookNode:
    # Plain Markdown (no MyST directive): the notebook is read in Jupyter and Colab, not Sphinx.
    text = (
        "> **Student edition — solutions removed.** Generated from "
        f"`{BOOK_DIR}/{source_name}` by `tools/student_edition.py`; do not edit (edit the chapter "
        "in `book/` and run `make student`)."
    )
    if has_exercises:
        text += (
            "\n>\n"
            f"> Each exercise is followed by a code cell that starts with `{ANSWER_MARK}`: replace its "
            "placeholders with your answer, then run the check cell that follows, which fails until your "
            "answer is right. Where the exercise also asks for an explanation or a prediction, write it in "
            "the \"Your answer in words\" cell between the two (a prediction before you run the check)."
        )
    text += (
        "\n>\n> **Short on time or on a CPU (Colab's free tier)?** Run `%env SNIP_QUICK=1` before the "
        "first code cell: the chapter then runs its quick version (smaller data, fewer epochs), and the "
        "exercises and checks work the same."
    )
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = "student-edition-banner"
    return cell


_EXERCISE_START_RE = re.compile(r"^[ \t]*(`{3,}|:{3,})\{exercise-start\}[^\n]*\n(?:[ \t]*:[\w-]+:[^\n]*\n)*[ \t]*\1[ \t]*(?:\n|$)",
                                re.MULTILINE)
_EXERCISE_END_RE = re.compile(r"^[ \t]*(`{3,}|:{3,})\{exercise-end\}[^\n]*\n[ \t]*\1[ \t]*(?:\n|$)", re.MULTILINE)
_EXERCISE_REF_RE = re.compile(r"\{numref\}`(ex-(\d+)-(\d+))`")


def student_markdown(source: str, number: str | None = None) -> str:
    """Markdown as Jupyter and Colab show it: exercise fences become a heading, references a number.

    The student notebooks are read in Jupyter or Colab, which render no MyST directive: the
    fences of an exercise would show as code blocks and "{numref}`ex-05-2`" as itself, while the
    assignment says "Exercise 5.2". ``number`` is the exercise whose prompt ``source`` holds.
    """
    if number is not None:
        source = _EXERCISE_START_RE.sub(f"### Exercise {number}\n\n", source)
        source = _EXERCISE_END_RE.sub("", source).rstrip("\n")
    return _EXERCISE_REF_RE.sub(lambda m: f"Exercise {int(m[2])}.{int(m[3])}", source)


def _written_answer(exercise: Exercise) -> nbformat.NotebookNode:
    """Where the explanation goes that the instructor edition gives in prose after the code."""
    cell = nbformat.v4.new_markdown_cell(
        f"**Your answer in words (exercise {exercise.number}).** Where the exercise asks you to explain, "
        "compare or predict, write it here (double-click to edit). Write a prediction *before* you run "
        "the check below: the check tests the answer, so it gives it away.")
    cell.id = f"{exercise.label}-written"[:64]
    cell.metadata = {"tags": [WRITTEN_TAG]}
    return cell


def _clean(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def _ensure_ids(nb: nbformat.NotebookNode, source_name: str) -> None:
    """Fixed cell ids for notebooks saved without them (nbformat would invent random ones)."""
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    for index, cell in enumerate(nb.cells):
        if not cell.get("id"):
            cell.id = hashlib.sha1(f"{source_name}:{index}".encode()).hexdigest()[:8]


def label_order_problems(exercises: Sequence[Exercise], source_name: str) -> list[str]:
    """Chapter NN labels its exercises ex-NN-1, ex-NN-2, ... in order.

    The HTML numbers an exercise by its place in the chapter (tools/chapter_numbers.py), this
    edition by its label (:attr:`Exercise.number`): the two agree only if the labels follow the order.
    """
    match = re.match(r"(\d+)_", source_name)
    if not match or not exercises:
        return []
    labels = [e.label for e in exercises]
    wanted = [f"ex-{match[1]}-{k}" for k in range(1, len(labels) + 1)]
    if labels != wanted:
        return [f"exercise labels are {labels}; chapter {int(match[1])} must number them in order: {wanted}"]
    return []


def student_notebook(nb: nbformat.NotebookNode, source_name: str) -> nbformat.NotebookNode:
    """The student edition of one instructor notebook (raises ValueError on convention breaks)."""
    nb = copy.deepcopy(nb)
    _ensure_ids(nb, source_name)
    exercises, problems = parse_exercises(nb)
    problems += label_order_problems(exercises, source_name)
    if problems:
        raise ValueError(f"{BOOK_DIR}/{source_name} does not follow the exercise conventions:\n  "
                         + "\n  ".join(problems))
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.lstrip().startswith("# "):
        raise ValueError(f"{BOOK_DIR}/{source_name}: the first cell must be the '# Title' markdown cell")
    in_solution = {i: e for e in exercises for i in e.solution_block}
    in_prompt = {i: e for e in exercises for i in e.prompt}
    solution_code = {i for e in exercises for i in e.solution_code}
    out = nbformat.v4.new_notebook()
    out.nbformat, out.nbformat_minor = nb.nbformat, nb.nbformat_minor
    out.metadata = copy.deepcopy(nb.metadata)
    out.metadata.pop("widgets", None)
    cells = [_clean(nb.cells[0]), _banner(source_name, bool(exercises))]
    placeholders: dict[str, list[str]] = {}   # exercise number -> its `name = ...` placeholders so far
    for index, cell in enumerate(nb.cells[1:], start=1):
        exercise = in_solution.get(index)
        if exercise is None:
            kept = _clean(cell)
            if kept.cell_type == "markdown":
                prompt_of = in_prompt.get(index)
                kept.source = student_markdown(kept.source, prompt_of.number if prompt_of else None)
            cells.append(kept)
        elif index in exercise.checks:
            if index == exercise.checks[0] and exercise.solution_prose:
                cells.append(_written_answer(exercise))
            check = _clean(cell)
            if index == exercise.checks[0]:
                check.source = placeholder_guard(placeholders.get(exercise.number, []), exercise.number) + check.source
            cells.append(check)
        elif index in exercise.solution_code:
            position = exercise.solution_code.index(index)
            sources = [nb.cells[i].source for i in exercise.solution_code[:position + 1]]
            checks = [nb.cells[i].source for i in exercise.checks]
            known = names_defined_before(nb, exercise.solution_start, solution_code)
            stub = nbformat.v4.new_code_cell(stub_source(sources, checks, exercise.number, known,
                                                         first=position == 0))
            stub.id = f"{cell.id}-stub"[:64]
            stub.metadata = {"tags": [STUB_TAG]}
            placeholders.setdefault(exercise.number, []).extend(
                name for name, stmt in answer_bindings(sources, checks, known).items() if _is_variable(stmt))
            cells.append(stub)
        # every other cell of a solution block (the fences, the explanation) is dropped
    out.cells = cells
    return out


def render(nb: nbformat.NotebookNode) -> bytes:
    """The file content: nbformat's own JSON layout, so re-saving in Jupyter changes nothing."""
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def chapter_paths(root: Path | str | None = None) -> list[Path]:
    """The instructor notebooks: ``book/NN_*.ipynb`` in chapter order."""
    return sorted((Path(root or REPO_ROOT) / BOOK_DIR).glob(CHAPTER_GLOB))


def expected_files(root: Path | str | None = None) -> dict[str, bytes]:
    """``{file name: content}`` of everything ``student/`` should hold."""
    files: dict[str, bytes] = {}
    for path in chapter_paths(root):
        nb = nbformat.read(str(path), as_version=4)
        files[path.name] = render(student_notebook(nb, path.name))
    return files


def stale_files(root: Path | str | None = None, out_dir: Path | str | None = None) -> list[str]:
    """Files of ``student/`` that are missing, different or no longer generated."""
    root = Path(root or REPO_ROOT)
    out = Path(out_dir) if out_dir else root / STUDENT_DIR
    expected = expected_files(root)
    stale = [name for name, data in expected.items()
             if not (out / name).exists() or (out / name).read_bytes() != data]
    if out.exists():
        stale += [p.name for p in sorted(out.glob("*.ipynb")) if p.name not in expected]
    return sorted(stale)


def write_student_edition(root: Path | str | None = None, out_dir: Path | str | None = None) -> list[Path]:
    """Write ``student/``: one notebook per chapter; notebooks without a chapter are removed."""
    root = Path(root or REPO_ROOT)
    out = Path(out_dir) if out_dir else root / STUDENT_DIR
    expected = expected_files(root)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in expected.items():
        path = out / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            written.append(path)
    for path in sorted(out.glob("*.ipynb")):
        if path.name not in expected:
            path.unlink()
    return written


# --------------------------------------------------------------------------- the HTML edition


def student_config(root: Path, work: Path) -> dict[str, Any]:
    """``_config.yml`` with this file loaded as the extension that removes the solutions."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    sphinx = config.setdefault("sphinx", {})
    # The copy lives in ``work``: the book's own extension paths are relative to the repository.
    extensions = {name: str((root / path).resolve()) for name, path in (sphinx.get("local_extensions") or {}).items()}
    extensions[Path(__file__).stem] = str(Path(__file__).resolve().parent)
    sphinx["local_extensions"] = extensions
    # sphinx-exercise's own switch crashes on gated solutions (see the module docstring).
    if not isinstance(sphinx.get("config"), dict):
        sphinx["config"] = {}
    sphinx["config"]["hide_solutions"] = False
    sphinx["config"]["html_copy_source"] = False   # _sources/ would hold the instructor notebooks
    config.setdefault("execute", {})["cache"] = str((work / "_build" / ".jupyter_cache").resolve())
    return config


def _load_build_book(root: Path):
    spec = importlib.util.spec_from_file_location("build_book", root / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_html(root: Path | str | None = None) -> int:
    """Build the book without solutions into ``_build/student-html``; the exit status of the build."""
    import yaml

    root = Path(root or REPO_ROOT).resolve()
    work, out = root / HTML_WORK, root / HTML_OUT
    work.mkdir(parents=True, exist_ok=True)
    # Same rule as `make book` (tools/build_book.py): the same key, and the stamp written before the build.
    build_book = _load_build_book(root)
    build_book.prepare_cache(work / "_build" / ".jupyter_cache", work / ".snip_lib_cache_key",
                             build_book.cache_key(), "student_edition")
    config = work / "_config.yml"
    config.write_text("# GENERATED by tools/student_edition.py --html from _config.yml; do not edit.\n"
                      + yaml.safe_dump(student_config(root, work), sort_keys=False), encoding="utf-8")
    # --all, as build_book: without it Sphinx keeps the doctrees of unchanged notebooks, so a changed
    # library (which clears the execution cache) would not re-run them and their old outputs would stay
    cmd = [build_book.jupyter_book(), "build", str(root), "--config", str(config), "--path-output", str(work),
           "--all", "-W", "-n", "--keep-going"]
    print("student_edition:", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=root)
    if rc != 0:
        return rc
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work / "_build" / "html", out)
    print(f"student_edition: open {out / 'index.html'}")
    return 0


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension used by ``--html``: drop every solution (gated or not) from the pages."""
    from sphinx.transforms import SphinxTransform
    from sphinx_exercise.nodes import solution_node

    class RemoveSolutions(SphinxTransform):
        """Runs after sphinx-exercise merged each gated block into one solution node (priority 10)."""

        default_priority = 500

        def apply(self, **kwargs: Any) -> None:
            for node in list(self.document.findall(solution_node)):
                node.parent.remove(node)

    app.setup_extension("sphinx_exercise")
    app.add_transform(RemoveSolutions)
    # After sphinx-book-theme has built the header buttons (its handlers run at priority 500).
    app.connect("html-page-context", student_header_buttons, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


#: Header buttons that would hand out the instructor notebook (sphinx-book-theme's labels).
SOURCE_DOWNLOADS = ("download-notebook-button", "download-source-button")


def student_header_buttons(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Drop the source downloads and point launch links at ``student/`` instead of ``book/``."""
    def fix(buttons: list[dict]) -> list[dict]:
        kept = []
        for button in buttons:
            if button.get("label") in SOURCE_DOWNLOADS:
                continue
            if isinstance(button.get("buttons"), list):
                button = {**button, "buttons": fix(button["buttons"])}
                if not button["buttons"]:
                    continue
            url = button.get("url")
            if isinstance(url, str):
                button = {**button, "url": re.sub(r"(?<=/)book/(?=[^/]+\.ipynb)", f"{STUDENT_DIR}/", url)}
            kept.append(button)
        return kept

    if isinstance(context.get("header_buttons"), list):
        context["header_buttons"] = fix(context["header_buttons"])


# --------------------------------------------------------------------------- the exercise index

TITLE_RE = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


def exercise_index(root: Path | str | None = None) -> list[dict[str, str]]:
    """Every exercise of the book: number, label, chapter file, title (its first bold phrase) and
    the Colab address of the student notebook, for a teacher's assignment sheet."""
    import yaml

    root = Path(root or REPO_ROOT)
    repo = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")).get("repository", {})
    base = (f"https://colab.research.google.com/github/{repo['url'].removeprefix('https://github.com/')}"
            f"/blob/{repo.get('branch', 'main')}/{STUDENT_DIR}/") if repo.get("url") else ""
    rows = []
    for path in chapter_paths(root):
        nb = nbformat.read(str(path), as_version=4)
        exercises, _ = parse_exercises(nb)
        for ex in exercises:
            prompt = "\n".join(nb.cells[i].source for i in ex.prompt)
            title = TITLE_RE.search(prompt)
            rows.append({"number": ex.number, "label": ex.label, "chapter": path.name,
                         "title": " ".join(title[1].split()).rstrip(".") if title else "",
                         "colab": base + path.name if base else ""})
    return rows


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="student_edition.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if student/ is out of date; write nothing")
    mode.add_argument("--html", action="store_true", help="build the HTML book without solutions")
    mode.add_argument("--list", action="store_true",
                      help="print every exercise (number, title, student notebook on Colab) as a Markdown table")
    args = parser.parse_args(argv)
    try:
        if args.html:
            return build_html(args.root)
        if args.list:
            print("| exercise | title | student notebook |\n|---|---|---|")
            for row in exercise_index(args.root):
                link = f"[{row['chapter']}]({row['colab']})" if row["colab"] else row["chapter"]
                print(f"| {row['number']} | {row['title']} | {link} |")
            return 0
        if args.check:
            stale = stale_files(args.root)
            for name in stale:
                print(f"{STUDENT_DIR}/{name}")
            print(f"{len(stale)} student notebook(s) out of date; run `make student`" if stale
                  else f"{STUDENT_DIR}/ is up to date", file=sys.stderr)
            return 1 if stale else 0
        written = write_student_edition(args.root)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(args.root) if path.is_relative_to(args.root) else path}")
    print(f"{STUDENT_DIR}/: {len(chapter_paths(args.root))} notebook(s), {len(written)} changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
