"""bncourse-grade against plain serial ``nbgrader autograde`` on the same synthetic class.

Builds a class of ``--students`` submissions of one assignment (default 03_bn_transform):
correct answers, wrong ones from the shared corpus (tests/submissions/) and hostile ones
(patched numpy.testing, printed fake passes, sys.exit), then grades it twice in two copies
of the same course, side by side on this machine:

- ``bncourse-grade`` (collect + sandboxed autograde + feedback + report, one worker per core);
- ``nbgrader autograde`` (one notebook at a time, as nbgrader does it).

It prints seconds per notebook for each and the ratio. Usage:

    .venv/bin/python benchmarks/bench_grading.py [--students 40] [--assignment 03_bn_transform]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from submission_builder import build_notebook, load_submissions, read  # noqa: E402

HOSTILE = [
    "import numpy as np\nnp.testing.assert_allclose = lambda *a, **k: None\n"
    "np.allclose = lambda *a, **k: True\n",
    "print('passed: every test\\nAll tests passed!')\n",
    "import sys\ntry:\n    sys.exit(0)\nexcept SystemExit:\n    pass\n",
]


def build_class(assignment: str, students: int, folder: Path) -> None:
    notebook_name = next((REPO / "solutions" / assignment).glob("*.ipynb")).stem
    exercise = read(REPO / "exercises" / assignment / f"{notebook_name}.ipynb")
    solution = read(REPO / "solutions" / assignment / f"{notebook_name}.ipynb")
    wrong = [s.overrides for s in load_submissions(assignment)]
    folder.mkdir(parents=True)
    for index in range(students):
        kind = index % 4
        if kind == 0 or not wrong:
            notebook = build_notebook(exercise, solution, demos=False)
        elif kind in (1, 2):
            notebook = build_notebook(exercise, solution, wrong[index % len(wrong)], demos=False)
        else:
            notebook = build_notebook(exercise, solution, demos=False)
            code = HOSTILE[index % len(HOSTILE)]
            notebook.cells.insert(len(notebook.cells) // 2, nbformat.v4.new_code_cell(code))
        nbformat.write(notebook, folder / f"student{index:03d}.ipynb")


def make_course(root: Path, assignment: str) -> Path:
    shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


def run(command: list[str], cwd: Path) -> float:
    # nbgrader runs `alembic` from PATH when it creates a gradebook: use the venv's
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--assignment", default="03_bn_transform")
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as temp:
        temp = Path(temp)
        build_class(args.assignment, args.students, temp / "incoming")
        ours = make_course(temp / "ours", args.assignment)
        theirs = make_course(temp / "theirs", args.assignment)
        command = [str(bin_dir / "bncourse-grade"), args.assignment, str(temp / "incoming"),
                   "--quiet"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        ours_s = run(command, ours)
        # nbgrader's own route: register the assignment, lay out submitted/, autograde
        run([str(bin_dir / "nbgrader"), "generate_assignment", args.assignment, "--force",
             f"--CourseDirectory.release_directory={theirs / 'release'}"], theirs)
        shutil.copytree(ours / "submitted", theirs / "submitted")
        theirs_s = run([str(bin_dir / "nbgrader"), "autograde", args.assignment, "--force"],
                       theirs)
    n = args.students
    print(f"class: {n} notebooks of {args.assignment}")
    print(f"bncourse-grade (collect+autograde+feedback+report): {ours_s / n:.2f} s/notebook")
    print(f"nbgrader autograde (serial, autograde only):        {theirs_s / n:.2f} s/notebook")
    print(f"speed-up: {theirs_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
