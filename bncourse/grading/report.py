"""The instructor's report: one HTML page with figures, and the same tables as CSV.

Tables: scores per student, pass rate of every test, the mistakes the diagnostics named and
how many students made each, submissions flagged for review (with the reasons), and files or
notebooks that could not be graded. Figures (matplotlib PNGs beside the page): the score
distribution, the pass rate of every test and the mistake counts. Every string that came
from a submission is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def tables(results: list[dict], collect_problems: list[tuple[str, str]]) -> dict[str, list]:
    """Rows of every table (first row: header)."""
    by_student: dict[str, list[dict]] = {}
    for result in results:
        by_student.setdefault(result["student"], []).append(result)
    scores = [["student", "score", "max_score", "status", "flagged"]]
    flagged = [["student", "notebook", "reason"]]
    problems = [["file_or_student", "problem"]] + [list(p) for p in collect_problems]
    for student, items in sorted(by_student.items()):
        total, maximum = sum(r["score"] for r in items), sum(r["max_score"] for r in items)
        status = "error" if any(r["status"] == "error" for r in items) else "graded"
        reasons = [(r["notebook"], f) for r in items for f in r.get("flags", [])]
        scores.append([student, f"{total:g}", f"{maximum:g}", status, "yes" if reasons else ""])
        flagged += [[student, notebook, reason] for notebook, reason in reasons]
        for r in items:
            if r["status"] == "error":
                problems.append([f"{student}/{r['notebook']}", r["error"]])
            problems += [[f"{student}/{r['notebook']}", p] for p in r.get("problems", [])]
    tests = [["test", "points", "hidden", "passed", "submissions", "pass_rate"]]
    mistake_students: dict[tuple[str, str], set] = {}
    part_rows: dict[str, list] = {}
    for result in results:
        for part in result["parts"]:
            row = part_rows.setdefault(part["id"], [part["points"], part["hidden"], 0, 0])
            row[2] += bool(part["passed"])
            row[3] += 1
            if part.get("mistake"):
                mistake_students.setdefault((part["id"], part["mistake"]), set()).add(
                    result["student"])
    for part_id, (points, hidden, passed, total) in part_rows.items():
        tests.append([part_id, f"{points:g}", hidden, passed, total, f"{passed / total:.3f}"])
    by_mistake: dict[str, tuple[set, set]] = {}
    for (part_id, mistake), students in mistake_students.items():
        who, where = by_mistake.setdefault(mistake, (set(), set()))
        who.update(students)
        where.add(part_id)
    mistakes = [["mistake", "students", "tests"]] + sorted(
        ([m, len(who), " ".join(sorted(where))] for m, (who, where) in by_mistake.items()),
        key=lambda row: (-row[1], row[0]))
    return {"scores": scores, "tests": tests, "mistakes": mistakes, "flagged": flagged,
            "problems": problems}


def _figures(out: Path, assignment: str, data: dict[str, list]) -> list[str]:
    names = []
    scores = [float(r[1]) for r in data["scores"][1:]]
    maximum = max([float(r[2]) for r in data["scores"][1:]] or [1.0])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(scores, bins=min(20, max(5, len(set(scores)))), range=(0, maximum or 1),
            color="#3b75af")
    ax.set(xlabel="score", ylabel="students", title=f"{assignment}: score distribution")
    names.append(_save(fig, out / "scores.png"))
    rows = data["tests"][1:]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
    ax.barh([r[0] for r in rows], [float(r[5]) for r in rows], color="#4c9a5b")
    ax.set(xlim=(0, 1), xlabel="pass rate", title="pass rate of every test")
    ax.invert_yaxis()
    names.append(_save(fig, out / "tests.png"))
    rows = data["mistakes"][1:]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#c4504f")
        ax.set(xlabel="students", title="mistakes named by the diagnostics")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.invert_yaxis()
        names.append(_save(fig, out / "mistakes.png"))
    return names


def _save(fig, path: Path) -> str:
    # bbox_inches="tight" fits long test names without tight_layout's re-layout warning
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _table_html(rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _sandbox_note(modes: Counter) -> str:
    """Say how the notebooks were isolated; loudly when bubblewrap was not used."""
    if modes.get("rlimits"):
        return ("<p style='color:#b00'><b>Warning:</b> "
                f"{modes['rlimits']} notebook(s) were graded without bubblewrap (rlimits, a "
                "private temporary directory and a scrubbed environment only): their code could "
                "read and write whatever the grading user can. See bncourse/grading/README.md."
                "</p>")
    if modes.get("bwrap"):
        return ("<p>Sandbox: bubblewrap (no network, private filesystem view) with limits on "
                "time, memory, processes and output.</p>")
    return ""


def write_report(out: Path, assignment: str, results: list[dict],
                 collect_problems: list[tuple[str, str]]) -> Path:
    """Write report.html, the PNG figures and one CSV per table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = tables(results, collect_problems)
    for name, rows in data.items():
        with open(out / f"{name}.csv", "w", newline="") as stream:
            csv.writer(stream).writerows(rows)
    figures = _figures(out, assignment, data) if len(data["scores"]) > 1 else []
    counts = Counter(r["status"] for r in results)
    modes = Counter((r.get("sandbox") or {}).get("mode") for r in results if r.get("sandbox"))
    titles = {"scores": "Scores", "tests": "Pass rate of every test",
              "mistakes": "Mistakes the diagnostics named",
              "flagged": "Flagged for review", "problems": "Could not be (fully) graded"}
    sections = [f"<h2>{titles[name]} (<a href='{name}.csv'>CSV</a>)</h2>{_table_html(rows)}"
                for name, rows in data.items()]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(assignment)}: grading report</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "</style></head><body>"
        f"<h1>{html.escape(assignment)}: grading report</h1>"
        f"<p>{len({r['student'] for r in results})} students, {counts.get('graded', 0)} "
        f"notebooks graded, {counts.get('error', 0)} could not be read, "
        f"{len(data['flagged']) - 1} review flags.</p>" + _sandbox_note(modes)
        + "".join(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"
                  for name in figures)
        + "".join(sections) + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
