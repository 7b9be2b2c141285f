"""Autograded notebooks (for the instructor) and feedback HTML (for the student).

Both start from the student's notebook. Each executed cell gets what it printed in the
sandbox; each test cell gets the verdict of its part as output. The autograded notebook
(``autograded/<student>/<assignment>/``) restores test cells from the source notebook, as
``nbgrader autograde`` does, hidden tests included. The feedback notebook takes test cells
from the released version, from which nbgrader's ClearHiddenTests has removed the hidden
tests, and is rendered to ``feedback/<student>/<assignment>/<notebook>.html`` with nbconvert.
A last check refuses to write feedback that still contains a hidden-test delimiter.

Formulas render offline: the page loads MathJax 3 from ``mathjax/`` beside itself (the bundle
sphinx-mathjax-offline ships for the book; ``place_mathjax`` puts it there, hard-linked when it
can), never from a CDN, so a student who opens the page without a network sees typeset math.
"""

from __future__ import annotations

import copy
import functools
import html
import importlib.util
import os
import re
import shutil
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from bncourse.grading import validate

HIDDEN_MARK = "BEGIN HIDDEN TESTS"
PAGE_VERSION = "2"  # 2: MathJax served from beside the page; bump when pages change
# one file with the TeX input and the SVG output: SVG needs no web fonts beside it
MATHJAX_FILE = "tex-svg-full.js"
MATHJAX_URL = f"mathjax/{MATHJAX_FILE}"
# MathJax 3 reads this object before it starts; nbconvert's own block configures MathJax 2
MATHJAX_CONFIG = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
    "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true, "
    "processEnvironments: true}, options: {ignoreHtmlClass: 'jp-CodeCell'}};</script>\n"
    f"<script src=\"{MATHJAX_URL}\" defer></script>"
)
REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']?(https?://[^\"' >]+)")
NBCONVERT_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
                               re.DOTALL)


def _verdict_output(part: dict) -> NotebookNode:
    if part["passed"]:
        text = f"Passed ({part['score']:g}/{part['points']:g}): {part['description']}\n"
        return new_output("stream", name="stdout", text=text)
    mistake = f" [{part['mistake']}]" if part.get("mistake") else ""
    if part.get("score", 0) > 0:  # right numbers, a side property slipped: partial credit
        text = f"Partly passed ({part['score']:g}/{part['points']:g}): {part['message']}{mistake}\n"
        return new_output("stream", name="stdout", text=text)
    return new_output("error", ename="Failed", evalue=f"{part['message']}{mistake}",
                      traceback=[f"Failed (0/{part['points']:g}): {part['message']}{mistake}"])


def _cell_outputs(info: dict | None) -> list[NotebookNode]:
    if info is None:
        return []
    outputs = []
    if info.get("output"):
        outputs.append(new_output("stream", name="stdout", text=info["output"]))
    if info.get("error") and info.get("status") != "ok":
        outputs.append(new_output("error", ename=info["status"], evalue=info["error"],
                                  traceback=[info["error"]]))
    return outputs


def _summary_cell(result: dict, for_student: bool) -> NotebookNode:
    lines = [f"# Autograded: {result['assignment']} / {result['notebook']}",
             f"**Score: {result['score']:g} / {result['max_score']:g}** (autograded parts)"]
    if result.get("case_set"):  # names the hidden inputs this student was graded on
        lines.append(f"\nHidden test inputs: case set `{result['case_set']}`.")
    if result["status"] == "error":
        lines.append(f"\n**This notebook could not be graded:** {html.escape(result['error'])}")
    for problem in result.get("problems", []):
        lines.append(f"- {html.escape(problem)}")
    if not for_student:
        for flag in result.get("flags", []):
            lines.append(f"- review: {html.escape(flag)}")
    return new_markdown_cell("\n".join(lines))


def build_notebook(student_nb: NotebookNode | None, result: dict, tests: NotebookNode,
                   for_student: bool) -> NotebookNode:
    """The student's notebook with executed outputs and verdicts; ``tests`` supplies the test
    cells (the source notebook for the instructor, the released one for the student)."""
    test_cells = {validate.grade_id(c): c for c in tests.cells if validate.is_test_cell(c)}
    parts = {p["id"]: p for p in result["parts"]}
    executed = {c["index"]: c for c in result.get("cells", [])}
    notebook = copy.deepcopy(student_nb) if student_nb is not None else nbformat.v4.new_notebook()
    placed = set()
    for index, cell in enumerate(notebook.cells):
        gid = validate.grade_id(cell)
        if gid in test_cells:
            original = test_cells[gid]
            cell.cell_type, cell.source = "code", original.source
            cell.metadata = copy.deepcopy(original.metadata)
            cell.outputs = [_verdict_output(parts[gid])] if gid in parts else []
            cell.execution_count = None
            placed.add(gid)
        elif cell.cell_type == "code":
            cell.outputs = _cell_outputs(executed.get(index))
            cell.execution_count = None
    for gid, original in test_cells.items():  # test cells the student deleted
        if gid not in placed and gid in parts:
            cell = new_code_cell(original.source, metadata=copy.deepcopy(original.metadata))
            cell.outputs = [_verdict_output(parts[gid])]
            notebook.cells.append(cell)
    notebook.cells.insert(0, _summary_cell(result, for_student))
    return notebook


@functools.cache
def _exporter() -> HTMLExporter:
    """One exporter per process: loading its templates costs more than rendering a page."""
    return HTMLExporter(template_name="lab")


def render_html(notebook: NotebookNode) -> str:
    """Feedback HTML; raises if a hidden-test region survived (it never should)."""
    for cell in notebook.cells:
        if HIDDEN_MARK in cell.get("source", "") and validate.is_test_cell(cell):
            raise RuntimeError("refusing to write feedback that contains hidden tests")
    body, _ = _exporter().from_notebook_node(notebook)
    return offline_mathjax(body)


def offline_mathjax(page: str) -> str:
    """Swap nbconvert's MathJax block (a CDN script) for the local MathJax 3 bundle, and drop
    require.js (only interactive widgets use it; feedback has none) so that the page asks the
    network for nothing."""
    page, count = NBCONVERT_MATHJAX.subn(lambda _: MATHJAX_CONFIG, page, count=1)
    page = page.replace(f'<script src="{_exporter().require_js_url}"></script>', "", 1)
    remote = REMOTE_SCRIPT.search(page)
    if count != 1 or remote:
        raise RuntimeError("nbconvert's page template changed: feedback would load "
                           f"{remote[1] if remote else 'MathJax'} from the network")
    return page


def mathjax_bundle() -> Path:
    """The MathJax 3 file that sphinx-mathjax-offline (a dependency of the book) ships."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    if folder is None or not (folder / "static" / "mathjax" / MATHJAX_FILE).exists():
        raise FileNotFoundError("MathJax: expected sphinx-mathjax-offline's static/mathjax/"
                                f"{MATHJAX_FILE} (pip install sphinx-mathjax-offline)")
    return folder / "static" / "mathjax" / MATHJAX_FILE


def place_mathjax(page_folder: Path) -> None:
    """Put the MathJax bundle in ``page_folder/mathjax/``: a hard link (no extra disk per
    student) where the file system allows, else a copy. Each student's feedback folder is then
    self-contained, as nbgrader's release_feedback hands it out."""
    target = page_folder / MATHJAX_URL
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = mathjax_bundle()
    temp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        os.link(source, temp)
    except OSError:
        shutil.copyfile(source, temp)
    os.replace(temp, target)


def error_page(result: dict) -> str:
    """Feedback for a notebook that could not be read at all."""
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback</title></head><body>"
        f"<h1>{html.escape(result['assignment'])}: {html.escape(result['notebook'])}</h1>"
        f"<p><b>Score: 0 / {result['max_score']:g}.</b> This notebook could not be graded: "
        f"{html.escape(result['error'] or '')}</p></body></html>"
    )


def render(result: dict, submission: NotebookNode | None, source: NotebookNode,
           release: NotebookNode) -> tuple[str | None, str]:
    """(autograded notebook JSON or None, feedback HTML) for one graded notebook: the
    submission as parsed (None when it could not be), the assignment's source and released
    notebooks."""
    if result["status"] != "graded" or submission is None:
        return None, error_page(result)
    autograded = build_notebook(submission, result, source, for_student=False)
    page = render_html(build_notebook(submission, result, release, for_student=True))
    return nbformat.writes(autograded), page
