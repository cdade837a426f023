"""The student edition (tools/student_edition.py): current, free of solutions, and fair.

"Fair" means every public check cell fails on the stub the student starts from and passes once
the stub is replaced by the solution. The instructor notebooks' own run is nbval's job; here each
student notebook is executed in a fresh kernel (quick mode), the check cells that raised are
collected, and then each solution is run in the same kernel followed by its check again.

The scratch-notebook tests break one convention at a time, so each rule is shown to fire.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("student_edition", REPO / "tools" / "student_edition.py")
se = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("student_edition", se)  # dataclasses look their module up by name
_spec.loader.exec_module(se)

CHAPTERS = se.chapter_paths(REPO)
chapter_param = pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def md(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(source)


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def exercise(label: str, prompt: str, solution: list, *, dropdown: bool = True) -> list:
    """Cells of one gated exercise: prompt, solution-start, ``solution`` cells, solution-end."""
    start = f"```{{solution-start}} {label}\n" + (":class: dropdown\n" if dropdown else "") + "```"
    return [md(f"```{{exercise-start}}\n:label: {label}\n```\n{prompt}\n```{{exercise-end}}\n```"),
            md(start), *solution, md("```{solution-end}\n```")]


def scratch(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.cells = [md("# Scratch"), code("base = 10"), *cells]
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"
    return nb


SOLUTION = '''\
import math
from statistics import mean as avg


def area(r: float, *, squared=False) -> float:
    # the formula
    return math.pi * r ** 2


class Box:
    pass


helper = 3
side, depth = 2 * base, helper + 1
for leftover in range(2):
    pass
base = 11
'''
CHECK = "assert area(1.0) == math.pi and Box() is not None and avg([side, depth]) > 0 and base > 0"


# --------------------------------------------------------------------------- the committed student/


def test_student_edition_is_up_to_date(tmp_path: Path):
    se.write_student_edition(REPO, tmp_path)
    generated = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    committed = sorted(p.name for p in (REPO / se.STUDENT_DIR).glob("*.ipynb"))
    assert generated == [p.name for p in CHAPTERS]
    assert committed == generated, "student/ has missing or extra notebooks: run `make student`"
    for name in generated:
        assert (tmp_path / name).read_bytes() == (REPO / se.STUDENT_DIR / name).read_bytes(), \
            f"student/{name} is out of date: run `make student`"
    assert se.stale_files(REPO) == []


@chapter_param
def test_every_exercise_has_a_solution_and_a_check(chapter: Path):
    nb = read(chapter)
    exercises, problems = se.parse_exercises(nb)
    assert problems == []
    fences = sum(cell.source.count("{exercise-start}") for cell in nb.cells if cell.cell_type == "markdown")
    assert len(exercises) == fences  # a chapter may have none (the conclusion)
    for ex in exercises:
        assert ex.prompt and ex.solution_code and ex.checks, ex.label
        assert ex.prompt[-1] < ex.solution_start < ex.solution_code[0] <= ex.solution_code[-1] < ex.checks[0]
        assert ex.checks[-1] < ex.solution_end


def _solution_lines(nb: nbformat.NotebookNode, exercises) -> set[str]:
    """Lines that only a solution has: not shared with the rest of the chapter, not a signature."""
    inside = {i for ex in exercises for i in ex.solution_block}
    checks = {i for ex in exercises for i in ex.checks}
    outside = {line.strip() for i, cell in enumerate(nb.cells) if i not in inside or i in checks
               for line in cell.source.splitlines()}
    lines = set()
    for ex in exercises:
        for i in ex.solution_code + ex.solution_prose:
            for line in nb.cells[i].source.splitlines():
                line = line.strip()
                if line and line not in outside and not line.startswith(("def ", "async def ", "class ")):
                    lines.add(line)
    return lines


@chapter_param
def test_student_notebook_keeps_prompts_and_checks_and_drops_solutions(chapter: Path):
    book = read(chapter)
    exercises, _ = se.parse_exercises(book)
    student = read(REPO / se.STUDENT_DIR / chapter.name)
    assert student.cells[0].source == book.cells[0].source
    assert "Student edition" in student.cells[1].source and f"book/{chapter.name}" in student.cells[1].source
    text = "\n".join(cell.source for cell in student.cells)
    assert not [c for c in student.cells if se.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert "{solution-start}" not in text and "{solution-end}" not in text
    solution_lines = _solution_lines(book, exercises)
    assert len(solution_lines) >= len(exercises)  # there is something to look for (if any exercise)
    assert solution_lines & {line.strip() for line in text.splitlines()} == set()
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # Jupyter and Colab render no MyST: exercises are headed "### Exercise N.k", references are numbers
    assert "{exercise-start}" not in text and "{exercise-end}" not in text and "{numref}`ex-" not in text
    # Order per exercise: prompt, then the stub(s), the written-answer cell (where the solution has
    # prose), then the unchanged check(s).
    ids = [cell.id for cell in student.cells]
    for ex in exercises:
        prompt = [ids.index(book.cells[i].id) for i in ex.prompt]
        stubs = [ids.index(f"{book.cells[i].id}-stub") for i in ex.solution_code]
        written = [ids.index(f"{ex.label}-written")] if ex.solution_prose else []
        checks = [ids.index(book.cells[i].id) for i in ex.checks]
        order = prompt + stubs + written + checks
        assert order == list(range(prompt[0], prompt[0] + len(order)))
        assert f"### Exercise {ex.number}\n" in student.cells[prompt[0]].source
        for i in ex.prompt:
            assert student.cells[ids.index(book.cells[i].id)].source == se.student_markdown(
                book.cells[i].source, ex.number)
        for i in ex.checks:
            source = student.cells[ids.index(book.cells[i].id)].source
            guard = source[:len(source) - len(book.cells[i].source)]   # placeholder guards, first check only
            assert source.endswith(book.cells[i].source) and (guard == "" or i == ex.checks[0])
            assert all(line.startswith("assert ") and "is still the placeholder ..." in line for line in guard.splitlines())
        for j in written:
            assert student.cells[j].metadata["tags"] == [se.WRITTEN_TAG]
            assert f"exercise {ex.number}" in student.cells[j].source
        first_stub = student.cells[stubs[0]]
        assert first_stub.source.startswith(f"{se.ANSWER_MARK} (exercise {ex.number})")
        assert first_stub.metadata["tags"] == [se.STUB_TAG]
    kept = [c.id for i, c in enumerate(book.cells) if not any(i in ex.solution_block for ex in exercises)]
    assert [i for i in ids if i in set(kept)] == kept  # every other cell kept, in order


def _run(client, cell: nbformat.NotebookNode, index: int) -> str | None:
    """Execute one cell; the exception name it raised, or None."""
    client.execute_cell(cell, index)
    errors = [out for out in cell.outputs if out.get("output_type") == "error"]
    return f"{errors[0]['ename']}: {errors[0]['evalue']}" if errors else None


@chapter_param
def test_checks_fail_on_the_stubs_and_pass_on_the_solutions(chapter: Path, tmp_path: Path, monkeypatch):
    """The slow one: a fresh kernel per chapter (quick mode), about as long as nbval's run of it."""
    pytest.importorskip("nbclient")
    from nbclient import NotebookClient

    monkeypatch.setenv("SNIP_QUICK", "1")  # the stubs' failures do not depend on the mode
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
    book = read(chapter)
    exercises, _ = se.parse_exercises(book)
    if not exercises:
        pytest.skip(f"{chapter.name} has no exercises")
    student = read(REPO / se.STUDENT_DIR / chapter.name)
    check_ids = {book.cells[i].id: ex for ex in exercises for i in ex.checks}
    client = NotebookClient(student, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        errors = {}
        for index, cell in enumerate(student.cells):
            if cell.cell_type == "code":
                errors[cell.id] = _run(client, cell, index)
        broken = {i: e for i, e in errors.items() if e and i not in check_ids}
        assert broken == {}, "the chapter text or a stub fails in the student edition"
        for cell_id, ex in check_ids.items():
            assert errors[cell_id], f"exercise {ex.number}: its check passes on the empty answer"
            assert not errors[cell_id].startswith("NameError"), \
                f"exercise {ex.number}: the stub lacks a placeholder the check needs ({errors[cell_id]})"
        # Now the answers, in the same kernel: the solution, then the check again.
        for ex in exercises:
            for i in ex.solution_code + ex.checks:
                student.cells.append(nbformat.v4.new_code_cell(book.cells[i].source))
                error = _run(client, student.cells[-1], len(student.cells) - 1)
                assert error is None, f"exercise {ex.number}, cell {i} of book/{chapter.name}: {error}"


# --------------------------------------------------------------------------- the generator's rules


def test_stub_keeps_signatures_and_placeholders_only_what_the_check_needs():
    nb = scratch(*exercise("ex-07-1", "Write `area`.", [code(SOLUTION, "solution"), code(CHECK, "check")]))
    student = se.student_notebook(nb, "07_scratch.ipynb")
    stub = next(c for c in student.cells if se.STUB_TAG in c.metadata.get("tags", []))
    assert stub.source == (
        "# YOUR ANSWER HERE (exercise 7.1)\n"
        "# Replace the placeholders with your answer; the check cell below tests it.\n"
        "import math\n"
        "from statistics import mean as avg\n\n\n"
        "def area(r: float, *, squared=False) -> float:\n"
        '    raise NotImplementedError("exercise 7.1: write area")\n\n\n'
        "class Box:\n"
        "    def __init__(self, *args, **kwargs):\n"
        '        raise NotImplementedError("exercise 7.1: write Box")\n\n\n'
        "side = ...\n"
        "depth = ..."
    )  # not `helper`/`leftover` (the check does not use them), not `base` (the chapter defines it)
    assert "the formula" not in "".join(c.source for c in student.cells)
    check = [c.source for c in student.cells if c.cell_type == "code"][-1]
    guard = ('assert side is not ..., "exercise 7.1: side is still the placeholder ...; write your answer in the # YOUR ANSWER HERE cell above"\n'
             'assert depth is not ..., "exercise 7.1: depth is still the placeholder ...; write your answer in the # YOUR ANSWER HERE cell above"\n')
    assert check == guard + CHECK     # a placeholder left as ... is named before the check uses it
    namespace: dict = {}
    exec(nb.cells[1].source, namespace)
    exec(stub.source, namespace)
    with pytest.raises(AssertionError, match="exercise 7.1: side is still the placeholder"):
        exec(check, namespace)
    exec(guard, {"side": None, "depth": None})   # None is an answer ("None if ..."), not the placeholder
    namespace["side"] = namespace["depth"] = 1.0
    with pytest.raises(NotImplementedError, match="exercise 7.1: write area"):
        exec(check, namespace)
    exec(SOLUTION, namespace)
    exec(check, namespace)


def test_student_notebook_layout_and_determinism():
    nb = scratch(code("print(base)"),
                 *exercise("ex-07-1", "Write `area`.", [code(SOLUTION, "solution"), md("Because pi."),
                                                        code(CHECK, "check")]),
                 md("After the exercises."))
    first = se.render(se.student_notebook(nb, "07_scratch.ipynb"))
    assert first == se.render(se.student_notebook(nb, "07_scratch.ipynb"))
    student = nbformat.reads(first.decode(), as_version=4)
    kinds = [(c.cell_type, c.metadata.get("tags", [])) for c in student.cells]
    assert kinds == [("markdown", []), ("markdown", []), ("code", []), ("code", []), ("markdown", []),
                     ("code", [se.STUB_TAG]), ("markdown", [se.WRITTEN_TAG]), ("code", ["check"]), ("markdown", [])]
    assert student.cells[4].source.startswith("### Exercise 7.1\n") and "exercise-start" not in first.decode()
    assert "07_scratch.ipynb" in student.cells[1].source and "do not edit" in student.cells[1].source
    assert "Because pi." not in first.decode() and "After the exercises." in first.decode()


@pytest.mark.parametrize("cells, message", [
    (exercise("ex-07-1", "p", [code("x = 1", "solution")]), "no code cell tagged 'check'"),
    (exercise("ex-07-1", "p", [code("assert x", "check")]), "no code cell tagged 'solution'"),
    (exercise("ex-07-1", "p", [code("x = 1"), code("assert x", "check")]), "tagged neither"),
    (exercise("ex-07-1", "p", [code("x = 1", "solution"), code("assert x", "check")], dropdown=False),
     "lacks ':class: dropdown'"),
    (exercise("ex-07-1", "p", [code("assert x", "check"), code("x = 1", "solution")]), "after the check"),
    ([md("```{exercise-start}\n:label: ex-07-1\n```\np\n```{exercise-end}\n```")], "no solution"),
    ([code("x = 1", "solution")], "outside a solution block"),
    ([code("assert x", "check")], "outside a solution block"),
    (exercise("ex-07-1", "p", [code("x = 1", "solution"), code("assert x", "check")])[:-1], "no solution-end"),
    (exercise("ex-07-1", "p", [code("x = 1", "solution"), code("assert x", "check")])
     + exercise("ex-07-1", "p", [code("x = 1", "solution"), code("assert x", "check")]), "more than once"),
], ids=["no-check", "no-solution-code", "untagged-code", "no-dropdown", "check-first", "no-solution",
        "stray-solution", "stray-check", "unclosed", "duplicate-label"])
def test_convention_breaks_are_reported_and_refused(cells, message):
    nb = scratch(*cells)
    _, problems = se.parse_exercises(nb)
    assert any(message in p for p in problems), problems
    with pytest.raises(ValueError, match="does not follow the exercise conventions"):
        se.student_notebook(nb, "07_scratch.ipynb")


def test_check_mode_lists_missing_changed_and_stray_files(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    nb = scratch(*exercise("ex-07-1", "p", [code(SOLUTION, "solution"), code(CHECK, "check")]))
    nbformat.write(nb, str(root / "book" / "07_scratch.ipynb"))
    assert se.stale_files(root) == ["07_scratch.ipynb"]
    assert subprocess.run([sys.executable, str(REPO / "tools" / "student_edition.py"), "--root", str(root),
                           "--check"], capture_output=True).returncode == 1
    se.write_student_edition(root)
    assert se.stale_files(root) == []
    assert subprocess.run([sys.executable, str(REPO / "tools" / "student_edition.py"), "--root", str(root),
                           "--check"], capture_output=True).returncode == 0
    (root / "student" / "99_old.ipynb").write_text("{}")
    path = root / "student" / "07_scratch.ipynb"
    path.write_bytes(path.read_bytes().replace(b"YOUR ANSWER HERE", b"my answer"))
    assert se.stale_files(root) == ["07_scratch.ipynb", "99_old.ipynb"]
    se.write_student_edition(root)
    assert se.stale_files(root) == [] and not (root / "student" / "99_old.ipynb").exists()


def test_student_markdown_turns_myst_exercise_markup_into_what_jupyter_shows():
    prompt = "Intro.\n```{exercise-start}\n:label: ex-05-2\n```\n**Measure it.** See {numref}`ex-05-1`.\n```{exercise-end}\n```"
    assert se.student_markdown(prompt, "5.2") == "Intro.\n### Exercise 5.2\n\n**Measure it.** See Exercise 5.1."
    colons = ":::{exercise-start}\n:label: ex-05-3\n:::\nText.\n:::{exercise-end}\n:::\n"
    assert se.student_markdown(colons, "5.3") == "### Exercise 5.3\n\nText."
    other = "Prose with {numref}`ex-10-3` and {numref}`fig-ch5-sweep`."            # only exercise references
    assert se.student_markdown(other) == "Prose with Exercise 10.3 and {numref}`fig-ch5-sweep`."


def test_names_used_ignores_what_the_check_binds_itself():
    tree = ast.parse("for k, v in d.items():\n    assert f(k) == v\n_w = g()\nassert all(x for x in _w)\n")
    assert se.names_used(tree) == {"d", "f", "g", "all"}


# --------------------------------------------------------------------------- the HTML edition


def test_html_edition_removes_gated_solutions_and_keeps_prompts(tmp_path: Path):
    """A tiny book (no execution) built with the student config: the real mechanism, fast."""
    pytest.importorskip("jupyter_book")
    import yaml

    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/index\n")
    (src / "_config.yml").write_text(yaml.safe_dump({
        "title": "Scratch", "only_build_toc_files": True, "execute": {"execute_notebooks": "off"},
        "sphinx": {"extra_extensions": ["sphinx_exercise"]},
        "repository": {"url": "https://github.com/org/repo", "branch": "main"},
        "html": {"use_repository_button": True},
        "launch_buttons": {"colab_url": "https://colab.research.google.com"}}))
    nb = scratch(*exercise("ex-07-1", "PROMPT_TEXT: write `area`.",
                           [code("SOLUTION_CODE = 1", "solution"), md("SOLUTION_PROSE."),
                            code("assert SOLUTION_CODE  # CHECK_CODE", "check")]),
                 md("AFTER_TEXT"))
    nbformat.write(nb, str(src / "book" / "index.ipynb"))
    config = tmp_path / "student_config.yml"
    config.write_text(yaml.safe_dump(se.student_config(src, tmp_path / "student")))
    for name, extra in (("teacher", []), ("student", ["--config", str(config)])):
        result = subprocess.run(["jupyter-book", "build", str(src), "--path-output", str(tmp_path / name),
                                 "-W", "--keep-going", *extra], capture_output=True, text=True, cwd=src)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    teacher = (tmp_path / "teacher" / "_build" / "html" / "book" / "index.html").read_text()
    student = (tmp_path / "student" / "_build" / "html" / "book" / "index.html").read_text()
    for marker in ("PROMPT_TEXT", "AFTER_TEXT", "SOLUTION_CODE", "SOLUTION_PROSE", "CHECK_CODE"):
        assert marker in teacher, marker  # the markers are there to be removed
    for marker in ("PROMPT_TEXT", "AFTER_TEXT"):
        assert marker in student, marker
    for marker in ("SOLUTION_CODE", "SOLUTION_PROSE", "CHECK_CODE"):
        assert marker not in student, marker
    assert "(student edition)" in student
    # nothing on or behind the student page leads to the instructor notebook
    colab = "https://colab.research.google.com/github/org/repo/blob/main/"
    assert colab + "book/index.ipynb" in teacher and "_sources/book/index.ipynb" in teacher
    assert colab + "student/index.ipynb" in student and colab + "book/index.ipynb" not in student
    assert "_sources" not in student
    assert not any("SOLUTION_CODE" in f.read_text(errors="ignore")
                   for f in (tmp_path / "student" / "_build" / "html").rglob("*") if f.is_file())


def test_student_config_is_the_book_config_plus_the_extension(tmp_path: Path):
    import yaml

    book = yaml.safe_load((REPO / "_config.yml").read_text())
    config = se.student_config(REPO, tmp_path)
    book_extensions = {name: str((REPO / path).resolve()) for name, path in book["sphinx"]["local_extensions"].items()}
    assert config["sphinx"]["local_extensions"] == {**book_extensions, "student_edition": str(REPO / "tools")}
    assert config["sphinx"]["config"]["hide_solutions"] is False  # sphinx-exercise's crashes on gated ones
    assert config["execute"]["cache"].startswith(str(tmp_path))
    for key in ("execute_notebooks", "raise_on_error", "timeout"):
        assert config["execute"][key] == book["execute"][key]
    assert config["exclude_patterns"] == book["exclude_patterns"]


def test_exercise_index_lists_every_exercise_with_a_title_and_its_student_notebook(capsys):
    rows = se.exercise_index(REPO)
    labels = [row["label"] for row in rows]
    assert len(labels) == len(set(labels)) >= 25
    for row in rows:
        chapter, k = re.fullmatch(r"ex-(\d+)-(\d+)", row["label"]).groups()
        assert row["number"] == f"{int(chapter)}.{int(k)}" and row["chapter"].startswith(chapter)
        assert row["title"] and "**" not in row["title"]
        assert row["colab"].endswith(f"/blob/main/student/{row['chapter']}")
        assert (REPO / "student" / row["chapter"]).is_file()
    assert se.main(["--list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| exercise | title | student notebook |" and len(table) == len(rows) + 2


@pytest.mark.parametrize("labels, flagged", [
    (["ex-07-1", "ex-07-2"], False),
    (["ex-07-2", "ex-07-1"], True),     # out of order: the HTML would call ex-07-2 "Exercise 7.1"
    (["ex-07-1", "ex-07-3"], True),     # a gap
    (["ex-03-1"], True),                # another chapter's number
    (["ex-7-1"], True),                 # not the file's two digits
], ids=lambda v: str(v))
def test_exercise_labels_follow_the_chapter_and_its_order(labels: list[str], flagged: bool):
    nb = scratch(*[cell for label in labels
                   for cell in exercise(label, "p", [code("x = 1", "solution"), code("assert x", "check")])])
    exercises, problems = se.parse_exercises(nb)
    assert problems == []
    order = se.label_order_problems(exercises, "07_scratch.ipynb")
    if flagged:
        assert len(order) == 1 and "must number them in order" in order[0] and "ex-07-1" in order[0], order
        with pytest.raises(ValueError, match="must number them in order"):
            se.student_notebook(nb, "07_scratch.ipynb")
    else:
        assert order == []
        se.student_notebook(nb, "07_scratch.ipynb")


@chapter_param
def test_every_chapter_numbers_its_exercises_in_order(chapter: Path):
    assert se.label_order_problems(se.parse_exercises(read(chapter))[0], chapter.name) == []
