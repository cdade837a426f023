"""Sphinx extension: number exercises, figures and tables by chapter ("Exercise 5.2", "Fig. 7.3").

Why: the chapters are not a numbered toctree (their titles carry the number, "# 5. LeNet
results"), so Sphinx numbers every enumerable node across the whole book, and the second exercise
of chapter 5 rendered as "Exercise 17". The notebooks, the student edition's stubs and checks
("exercise 5.2: ... is still None") and the exercise labels (``ex-05-2``) all say 5.2, and a teacher
who sets "exercise 5.2" must find it under that name on the page.

After Sphinx has assigned its numbers (``env-get-updated``), this renumbers them within each
chapter page: a page whose file name starts with digits (``book/05_lenet_results``) is chapter 5,
and its k-th figure, table, exercise, ... becomes (5, k) in the order Sphinx found them. Pages
without a chapter number (the introduction) keep Sphinx's numbers. ``{numref}`` links and
sphinx-exercise's titles both read these numbers, so the two always agree.
"""

from __future__ import annotations

import re
from typing import Any

CHAPTER_RE = re.compile(r"(?:^|/)(\d+)_[^/]*$")


def chapter_of(docname: str) -> int | None:
    """``book/05_lenet_results`` -> 5; ``book/intro`` -> None."""
    match = CHAPTER_RE.search(docname)
    return int(match[1]) if match else None


def by_chapter(fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]]) -> list[str]:
    """Renumber ``env.toc_fignumbers`` in place, per chapter page and figure type; return the pages changed.

    ``fignumbers`` maps docname -> figure type -> node id -> number, as Sphinx's toctree collector
    builds it. Within one page and type, the order of Sphinx's numbers is kept.
    """
    changed = []
    for docname, types in fignumbers.items():
        chapter = chapter_of(docname)
        if chapter is None:
            continue
        for figtype, numbers in types.items():
            in_order = sorted(numbers, key=lambda node_id: numbers[node_id])
            renumbered = {node_id: (chapter, k) for k, node_id in enumerate(in_order, start=1)}
            if renumbered != numbers:
                types[figtype] = renumbered
                changed.append(docname)
    return sorted(set(changed))


def renumber(app: Any, env: Any) -> list[str]:
    """``env-get-updated`` handler, run after Sphinx's own numbering (priority 900 > its 500)."""
    return by_chapter(env.toc_fignumbers)


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-get-updated", renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
