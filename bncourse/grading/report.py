"""The instructor's report: who struggled with what. One HTML page, figures, the same tables as CSV.

Tables (each also ``<name>.csv`` beside ``report.html``):

- ``scores``: each student's total, with a link to their feedback;
- ``matrix``: student x test, the points each student got for each test (the gradebook's
  autograded scores; a test cannot show partial credit it did not give);
- ``tests``: item analysis per test: pass rate over the gradable notebooks, and
  discrimination, the Pearson correlation between the test's score and the rest of the
  student's score (near 0 or negative: the test does not separate strong from weak work);
- ``mistakes``: every mistake the diagnostics named, readable, with the students who made it
  (linked to their feedback) and the tests where it showed. Errors raised by the student's
  code are split by the hint they received (a broadcast error with its hint is its own row);
  failures no diagnosis named are one row;
- ``late``: late submissions, by how much and the penalty (when the run knows the gradebook);
- ``similarity``: the closest pairs of solutions (a lead for a human, never a verdict);
- ``flagged``: submissions flagged for review, with the reasons;
- ``problems``: files that could not be collected and notebooks that could not be graded,
  with the reason. Ungradable notebooks are left out of pass rates, item analysis and the
  mistake list: their 0 says nothing about any test.

Figures (PNG): the score distribution (one bar per attainable score), pass rates, mistakes.
Every string that came from a submission is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import itertools
import math
import re
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

# readable names for the generic outcomes; named diagnoses read well with spaces
GENERIC_NAMES = {
    "exception": "raised an error",
    "not_run": "was not checked (the notebook stopped before)",
    "timeout": "ran past the time limit",
    "shortcut": "called a ready-made implementation",
    "invalid_output": "returned something that is not plain numbers",
    "missing_output": "returned nothing to check",
    "wrong_shape": "returned the wrong shape",
    "judge_error": "internal error of the checks (not the student's)",
    None: "wrong result that no diagnosis named",
}
# (text in the message, hint class): what the student was told about the error they raised
HINT_CLASSES = (
    ("could not be broadcast", "arrays could not be broadcast"),
    ("should return a pair", "did not return a pair"),
    ("should be a NumPy array", "returned something other than a NumPy array"),
    ("could not be checked", "returned something that could not be checked"),
    ("returned no", "returned no value for an output"),
)
RAISED = re.compile(r"raised (\w+)")


def mistake_key(part: dict) -> tuple[str, str]:
    """(id, readable name) of a failed part's mistake; errors split by their hint class."""
    mistake = part.get("mistake")
    if mistake != "exception":
        return str(mistake or "unnamed"), GENERIC_NAMES.get(mistake, str(mistake).replace("_", " "))
    message = part.get("message", "")
    for marker, hint in HINT_CLASSES:
        if marker in message:
            given = " (hint given)" if "Hint:" in message else ""
            return f"exception: {hint}", f"raised an error: {hint}{given}"
    raised = RAISED.search(message)
    kind = raised[1] if raised else "error"
    return f"exception: {kind}", f"raised {kind}"


def _by_student(results: list[dict]) -> dict[str, list[dict]]:
    by_student: dict[str, list[dict]] = {}
    for result in sorted(results, key=lambda r: (r["student"], r["notebook"])):
        by_student.setdefault(result["student"], []).append(result)
    return by_student


def test_ids(results: list[dict]) -> list[str]:
    """Every test (part id) in the order the notebooks list them."""
    return list(dict.fromkeys(p["id"] for r in results for p in r["parts"]))


def matrix(results: list[dict]) -> list[list]:
    """student x test scores (first row: header); '' where the student has no such test."""
    ids = test_ids(results)
    rows = [["student", "status", *ids, "total"]]
    for student, items in _by_student(results).items():
        scores = {p["id"]: p["score"] for r in items for p in r["parts"]}
        status = "not gradable" if any(r["status"] == "error" for r in items) else "graded"
        rows.append([student, status, *(f"{scores[i]:g}" if i in scores else "" for i in ids),
                     f"{sum(r['score'] for r in items):g}"])
    return rows


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Correlation of two lists; None when either is constant or there are under 3 pairs."""
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def item_analysis(results: list[dict]) -> list[list]:
    """Per test: points, hidden, passed, gradable submissions, pass rate, discrimination."""
    graded = [r for r in results if r["status"] != "error"]
    totals = {s: sum(r["score"] for r in items) for s, items in _by_student(graded).items()}
    rows = [["test", "points", "hidden", "passed", "submissions", "pass_rate",
             "discrimination"]]
    for part_id in test_ids(results):
        found = [(r["student"], p) for r in graded for p in r["parts"] if p["id"] == part_id]
        if not found:
            continue
        passed = sum(bool(p["passed"]) for _, p in found)
        r = pearson([p["score"] for _, p in found],
                    [totals[s] - p["score"] for s, p in found])
        points, hidden = found[0][1]["points"], found[0][1]["hidden"]
        rows.append([part_id, f"{points:g}", hidden, passed, len(found),
                     f"{passed / len(found):.3f}", "" if r is None else f"{r:.2f}"])
    return rows


def mistakes(results: list[dict], links: dict[str, str]) -> tuple[list[list], list[list]]:
    """(CSV rows, HTML rows) of every mistake made on a gradable notebook."""
    found: dict[str, dict] = {}
    for result in results:
        if result["status"] == "error":
            continue  # nothing was tested: no mistake to report
        for part in result["parts"]:
            if part["passed"] or part.get("mistake") == "not_graded":
                continue
            key, name = mistake_key(part)
            entry = found.setdefault(key, {"name": name, "who": set(), "tests": set(),
                                           "example": part.get("message", "")})
            entry["who"].add(result["student"])
            entry["tests"].add(part["id"])
            if len(part.get("message", "")) < len(entry["example"]):
                entry["example"] = part["message"]
    order = sorted(found.items(), key=lambda kv: (-len(kv[1]["who"]), kv[0]))
    rows = [["mistake", "name", "students", "tests", "who", "example"]]
    cells = [["mistake", "students", "who", "tests", "what the feedback says (shortest)"]]
    for key, e in order:
        who = sorted(e["who"])
        rows.append([key, e["name"], len(who), " ".join(sorted(e["tests"])), " ".join(who),
                     e["example"]])
        linked = ", ".join(_link(links.get(s), s) for s in who)
        cells.append([html.escape(e["name"]), str(len(who)), linked,
                      html.escape(" ".join(sorted(e["tests"]))), html.escape(e["example"])])
    return rows, cells


def _link(href: str | None, text: str) -> str:
    if not href:
        return html.escape(text)
    return f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"


def tables(results: list[dict], collect_problems: list[tuple[str, str]],
           links: dict[str, str] | None = None) -> dict[str, list]:
    """Rows of the CSV tables (first row: header)."""
    links = links or {}
    scores = [["student", "score", "max_score", "status", "flagged", "feedback", "case_set"]]
    flagged = [["student", "notebook", "reason"]]
    problems = [["file_or_student", "problem"]] + [list(p) for p in collect_problems]
    for student, items in _by_student(results).items():
        total, maximum = sum(r["score"] for r in items), sum(r["max_score"] for r in items)
        status = "error" if any(r["status"] == "error" for r in items) else "graded"
        reasons = [(r["notebook"], f) for r in items for f in r.get("flags", [])]
        scores.append([student, f"{total:g}", f"{maximum:g}", status, "yes" if reasons else "",
                       links.get(student, ""), items[0].get("case_set", "")])
        flagged += [[student, notebook, reason] for notebook, reason in reasons]
        for r in items:
            if r["status"] == "error":
                problems.append([f"{student}/{r['notebook']}", f"not gradable: {r['error']}"])
            problems += [[f"{student}/{r['notebook']}", p] for p in r.get("problems", [])]
    return {"scores": scores, "matrix": matrix(results), "tests": item_analysis(results),
            "mistakes": mistakes(results, links)[0], "flagged": flagged, "problems": problems}


def attainable_scores(results: list[dict]) -> list[float]:
    """Every total a student can reach: the sums of subsets of the tests' points."""
    points = {p["id"]: p["points"] for r in results for p in r["parts"]}
    sums = {0.0}
    for value in points.values():
        sums |= {round(s + value, 9) for s in sums}
        if len(sums) > 400:  # too many to draw one bar each: the plain histogram will do
            return []
    return sorted(sums)


def _score_figure(out: Path, assignment: str, results: list[dict], scores: list[float],
                  maximum: float) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    levels = attainable_scores(results)
    if levels:  # one bar centred on each score a student can get
        counts = Counter(min(levels, key=lambda v: abs(v - s)) for s in scores)
        gap = min((b - a for a, b in itertools.pairwise(levels)), default=1.0)
        ax.bar(levels, [counts.get(v, 0) for v in levels], width=0.8 * gap, color="#3b75af")
        if len(levels) <= 25:
            ax.set_xticks(levels, [f"{v:g}" for v in levels])
    else:
        ax.hist(scores, bins=20, range=(0, maximum or 1), color="#3b75af")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="score", ylabel="students", title=f"{assignment}: score distribution")
    return _save(fig, out / "scores.png")


def _figures(out: Path, assignment: str, data: dict[str, list], results: list[dict]) -> list[str]:
    graded = [r for r in data["scores"][1:] if r[3] == "graded"]
    maximum = max([float(r[2]) for r in data["scores"][1:]] or [1.0])
    names = [_score_figure(out, assignment, results, [float(r[1]) for r in graded], maximum)]
    rows = data["tests"][1:]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
        ax.barh([r[0] for r in rows], [float(r[5]) for r in rows], color="#4c9a5b")
        ax.set(xlim=(0, 1), xlabel="pass rate", title="pass rate of every test")
        ax.invert_yaxis()
        names.append(_save(fig, out / "tests.png"))
    rows = data["mistakes"][1:]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
        ax.barh([r[1] for r in rows], [r[2] for r in rows], color="#c4504f")
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


def table_html(rows: list[list], escaped: bool = False) -> str:
    def cell(value) -> str:
        return str(value) if escaped else html.escape(str(value))

    head = "".join(f"<th>{cell(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>"
                   for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _scores_html(rows: list[list]) -> str:
    """The scores table with each name linked to the feedback (the link column hidden)."""
    keep = [i for i, name in enumerate(rows[0]) if name not in ("student", "feedback")]
    linked = [["student", *(rows[0][i] for i in keep)]]
    linked += [[_link(r[5], r[0]), *(html.escape(str(r[i])) for i in keep)] for r in rows[1:]]
    return table_html(linked, escaped=True)


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


TITLES = {
    "scores": "Scores", "matrix": "Every student, every test",
    "tests": "Item analysis: pass rate and discrimination of every test",
    "mistakes": "Who made which mistake", "late": "Late submissions",
    "similarity": "Similar solutions (a lead for a human, never a verdict)",
    "flagged": "Flagged for review", "problems": "Could not be (fully) graded",
}


def write_report(out: Path, assignment: str, results: list[dict],
                 collect_problems: list[tuple[str, str]], links: dict[str, str] | None = None,
                 late_rows: list[list] | None = None,
                 similarity: tuple[list[list], str] | None = None) -> Path:
    """Write report.html, the PNG figures and one CSV per table into ``out``. ``links``:
    student -> their feedback page, relative to ``out``; ``late_rows`` from late.late_table;
    ``similarity``: (CSV rows, HTML section) from similarity.report."""
    out.mkdir(parents=True, exist_ok=True)
    links = links or {}
    data = tables(results, collect_problems, links)
    extra = {}
    if late_rows is not None:
        extra["late"] = late_rows
        penalties = {row[0]: float(row[5]) for row in late_rows[1:]}
        data["scores"][0].append("after_late_penalty")
        for row in data["scores"][1:]:
            row.append(f"{max(0.0, float(row[1]) - penalties.get(row[0], 0.0)):g}")
    if similarity is not None:
        extra["similarity"] = similarity[0]
    order = ["scores", "matrix", "tests", "mistakes", "late", "similarity", "flagged",
             "problems"]
    data = {name: ({**data, **extra})[name] for name in order if name in data or name in extra}
    for name, rows in data.items():
        with open(out / f"{name}.csv", "w", newline="") as stream:
            csv.writer(stream).writerows(rows)
    figures = _figures(out, assignment, data, results) if len(data["scores"]) > 1 else []
    special = {"scores": _scores_html(data["scores"]),
               "mistakes": table_html(mistakes(results, links)[1], escaped=True)}
    if similarity is not None:
        special["similarity"] = similarity[1]
    sections = [f"<h2 id='{name}'>{TITLES[name]} (<a href='{name}.csv'>CSV</a>)</h2>"
                + special.get(name, table_html(rows)) for name, rows in data.items()]
    counts = Counter(r["status"] for r in results)
    modes = Counter((r.get("sandbox") or {}).get("mode") for r in results if r.get("sandbox"))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(assignment)}: grading report</title><style>"
        "body{font-family:sans-serif;max-width:70em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "pre{margin:0;font-size:85%}.same{background:#ffe9a8}"
        "</style></head><body>"
        f"<h1>{html.escape(assignment)}: grading report</h1>"
        f"<p>{len({r['student'] for r in results})} students, {counts.get('graded', 0)} "
        f"notebooks graded, {counts.get('error', 0)} could not be graded (left out of pass "
        f"rates and mistakes; see <a href='#problems'>below</a>), "
        f"{len(data['flagged']) - 1} review flags.</p>" + _sandbox_note(modes)
        + "".join(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>"
                  for name in figures)
        + "".join(sections) + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path
