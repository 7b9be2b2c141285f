"""Which students' solutions are unusually alike: a lead for a human, never a verdict.

Runs locally on the collected notebooks and sends nothing anywhere. For each student, the
code of the solution cells (nbgrader ``solution`` cells) is read from the submitted notebooks
and tokenised with Python's own ``tokenize`` module, then normalised so that cosmetic changes
do not hide a copy:

- comments, blank lines, indentation and line breaks are dropped (formatting);
- every name the student chose (variables, functions, parameters) becomes ``V``; keywords,
  builtins and attribute names (``.mean``, ``.shape``) are kept, since they carry the method;
- numbers become ``N`` and strings ``S``.

Each solution becomes the set of its runs of ``K`` consecutive tokens (k-grams). Runs that occur
in the released starter code (the notebook as nbgrader released it) are removed, and so are runs
that more than half the class share (common idioms, such as ``x.mean(axis=0)``), as MOSS does;
what remains is what each student wrote themselves. Two students' similarity is the Jaccard
index of these sets. The report lists the closest pairs with a side-by-side view of both
solutions, the lines inside shared runs highlighted.
"""

from __future__ import annotations

import builtins
import html
import io
import itertools
import keyword
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat

from bncourse.grading.report import table_html  # one table style for the report's pages

K = 6  # tokens per run: long enough that unrelated code rarely shares one, short for small cells
TOP_PAIRS = 10
SIDE_BY_SIDE = 5
SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
           tokenize.ENCODING, tokenize.ENDMARKER}
KEPT_NAMES = set(keyword.kwlist) | set(dir(builtins))


@dataclass
class Solution:
    """One student's solution code, its normalised tokens and the line of each token."""

    student: str
    source: str
    tokens: list[str]
    lines: list[int]


def solution_code(notebook: nbformat.NotebookNode) -> str:
    """The code of the notebook's nbgrader solution cells, one after the other."""
    cells = [c.source for c in notebook.cells if c.cell_type == "code"
             and c.metadata.get("nbgrader", {}).get("solution")]
    return "\n\n".join(cells)


def normalise(source: str) -> tuple[list[str], list[int]]:
    """Normalised tokens of ``source`` and the (1-based) line each starts on. Lines Python
    cannot read (IPython magics, shell escapes) are blanked first; code that still does not
    tokenise keeps the tokens read before the error."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    tokens, rows = [], []
    previous = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
            if tok.type in SKIPPED:
                continue
            if tok.type == tokenize.NAME:
                text = tok.string if tok.string in KEPT_NAMES or previous == "." else "V"
            elif tok.type == tokenize.NUMBER:
                text = "N"
            elif tok.type == tokenize.STRING:
                text = "S"
            else:
                text = tok.string
            tokens.append(text)
            rows.append(tok.start[0])
            previous = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return tokens, rows


def kgrams(tokens: list[str]) -> dict[tuple, list[int]]:
    """{run of K tokens: positions where it starts}."""
    runs: dict[tuple, list[int]] = {}
    for start in range(len(tokens) - K + 1):
        runs.setdefault(tuple(tokens[start:start + K]), []).append(start)
    return runs


def read_solutions(course_root: Path, assignment: str, notebooks: list[str]) -> list[Solution]:
    """Every collected student's solution code, all notebooks of the assignment together."""
    solutions = []
    for folder in sorted((course_root / "submitted").glob(f"*/{assignment}")):
        parts = []
        for name in notebooks:
            path = folder / f"{name}.ipynb"
            try:
                parts.append(solution_code(nbformat.read(path, as_version=4)))
            except Exception:  # unreadable notebooks are reported by grading, not here
                continue
        source = "\n\n".join(parts)
        tokens, lines = normalise(source)
        solutions.append(Solution(folder.parent.name, source, tokens, lines))
    return solutions


def compare(solutions: list[Solution], starter: str) -> list[tuple[float, Solution, Solution, set]]:
    """(similarity, a, b, shared runs) for every pair with something in common, closest first."""
    removed = set(kgrams(normalise(starter)[0]))
    runs = {s.student: set(kgrams(s.tokens)) - removed for s in solutions}
    counts: dict[tuple, int] = {}
    for own in runs.values():
        for run in own:
            counts[run] = counts.get(run, 0) + 1
    common = {run for run, n in counts.items() if n > max(2, len(solutions) // 2)}
    runs = {student: own - common for student, own in runs.items()}
    pairs = []
    for a, b in itertools.combinations(solutions, 2):
        shared = runs[a.student] & runs[b.student]
        if shared:
            union = runs[a.student] | runs[b.student]
            pairs.append((len(shared) / len(union), a, b, shared))
    return sorted(pairs, key=lambda p: (-p[0], p[1].student, p[2].student))


def _marked_lines(solution: Solution, shared: set) -> set[int]:
    marked = set()
    for start in range(len(solution.tokens) - K + 1):
        if tuple(solution.tokens[start:start + K]) in shared:
            marked.update(solution.lines[start:start + K])
    return marked


def _code_html(solution: Solution, shared: set) -> str:
    marked = _marked_lines(solution, shared)
    lines = [f"<span class='same'>{html.escape(line)}</span>" if number in marked
             else html.escape(line)
             for number, line in enumerate(solution.source.splitlines(), start=1)]
    return "<pre>" + "\n".join(lines) + "</pre>"


def report(course_root: Path, assignment: str, notebooks: list[str],
           starter: str) -> tuple[list[list], str]:
    """(CSV rows, HTML section) of the closest pairs; ``starter`` is the released solution
    cells' code (what every student started from)."""
    pairs = compare(read_solutions(course_root, assignment, notebooks), starter)[:TOP_PAIRS]
    rows = [["student_a", "student_b", "similarity", "shared_runs"]]
    rows += [[a.student, b.student, f"{score:.3f}", len(shared)]
             for score, a, b, shared in pairs]
    parts = ["<p>Jaccard similarity of the runs of "
             f"{K} normalised tokens each student wrote beyond the starter code and the "
             "idioms most of the class shares. Identical names or formatting do not count; "
             "a high value is a reason to look at both notebooks, nothing more. Nothing is "
             "deducted.</p>"]
    if not pairs:
        parts.append("<p>No two solutions share code beyond the starter code.</p>")
    else:
        parts.append(table_html(rows))
    for score, a, b, shared in pairs[:SIDE_BY_SIDE]:
        parts.append(
            f"<details><summary>{html.escape(a.student)} and {html.escape(b.student)}: "
            f"{score:.2f}</summary><table><tr><th>{html.escape(a.student)}</th>"
            f"<th>{html.escape(b.student)}</th></tr><tr><td style='vertical-align:top'>"
            f"{_code_html(a, shared)}</td><td style='vertical-align:top'>"
            f"{_code_html(b, shared)}</td></tr></table></details>")
    return rows, "".join(parts)


def starter_code(released: dict[str, nbformat.NotebookNode]) -> str:
    """The released notebooks' solution cells: the code every student was given."""
    return "\n\n".join(solution_code(nb) for nb in released.values())
