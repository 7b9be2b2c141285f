"""The harness: runs ONE student's notebook inside the sandbox and reports plain data.

This file is executed as a script inside the sandbox (``python harness.py JOB_DIR``), so it
depends only on the standard library, NumPy and IPython, plus the checks module that holds
each part's ``run``. It decides nothing: it executes the student's cells (never the test
cells), calls ``part.run(obj, case)`` for every case, and writes what came out as frames on
the file descriptor given as the second argument (``bncourse.grading.frames``). The grader
reads the frames, validates them and judges them in its own process, so nothing the
student's code does in here can mark a test as passed.

It imports the bncourse package it belongs to (the one the grader runs from and the sandbox
mounts), whatever copy the interpreter's site-packages or the working folder may point to.

Job directory (read-only in the sandbox):

- ``job.json``: {"cells": [{"index", "source"}], "parts": [{"id", "target", "n_cases"}],
  "checks": module name or path of a .py file, "cell_timeout", "case_timeout",
  "max_output", "keep_output", "uid"}
- ``cases/<part id>/<i>.npz`` and ``<i>.json``: the inputs of each case (made by the grader).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import numpy as np

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [PACKAGE_ROOT]:
    sys.path.insert(0, PACKAGE_ROOT)

from bncourse.checks.outputs import numeric_outputs  # noqa: E402 (after choosing which bncourse)
from bncourse.grading import frames  # noqa: E402

MAX_ERROR_CHARS = 2000


class HarnessTimeout(BaseException):
    """Raised by SIGALRM when a cell or a case runs past its time limit.

    A BaseException, so ``except Exception`` in student code does not swallow it."""


class OutputLimitExceeded(BaseException):
    """Raised when the notebook has printed more than the output cap."""


class CappedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: keeps the start of each cell's output, counts
    the whole notebook's output, and raises once the notebook passes ``max_total`` chars."""

    def __init__(self, keep: int, max_total: int) -> None:
        self.keep, self.max_total = keep, max_total
        self.total, self.raised = 0, False
        self.parts: list[str] = []
        self.kept = 0

    def reset_cell(self) -> str:
        text, self.parts, self.kept = "".join(self.parts), [], 0
        return text

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        self.total += len(text)
        if self.kept < self.keep:
            piece = text[: self.keep - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
            if self.kept >= self.keep:
                self.parts.append("\n[... output truncated ...]\n")
        if self.total > self.max_total and not self.raised:
            self.raised = True
            raise OutputLimitExceeded(f"printed more than {self.max_total} characters")
        return len(text)

    def flush(self) -> None:
        pass


class Reporter:
    """Writes frames to the results pipe; the only channel out of the sandbox."""

    def __init__(self, fd: int) -> None:
        self.stream = os.fdopen(fd, "wb", buffering=0)
        self.pid = os.getpid()

    def send(self, kind: str, payload: bytes = b"", **fields) -> None:
        if os.getpid() != self.pid:  # a child the student forked reached our code: stop it
            os._exit(0)
        self.stream.write(frames.encode(kind, payload, **fields))


def load_checks(spec: str):
    """Import the checks provider: a module name (``bncourse.checks``) or a .py file path."""
    if spec.endswith(".py"):
        name = Path(spec).stem
        module_spec = importlib.util.spec_from_file_location(name, spec)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def load_case(case_dir: Path, index: int) -> dict:
    """One case: arrays from the .npz (no pickle), scalars and strings from the .json."""
    case = json.loads((case_dir / f"{index}.json").read_text())
    with np.load(case_dir / f"{index}.npz", allow_pickle=False) as arrays:
        case.update({key: arrays[key] for key in arrays.files})
    return case


def pack_outputs(outputs) -> bytes:
    """Check that ``run`` returned a dict of numeric arrays and pack it as .npz bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **numeric_outputs(outputs))
    return buffer.getvalue()


def describe_error(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return "".join(lines).strip()[:MAX_ERROR_CHARS]


def drop_privileges(uid: int | None) -> None:
    """Inside bubblewrap started by root, become an unprivileged user of our own, so that
    the process-count limit (RLIMIT_NPROC counts per user) applies to this sandbox alone."""
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def on_alarm(signum, frame):
    raise HarnessTimeout("time limit reached")


class Harness:
    def __init__(self, job_dir: Path, results_fd: int) -> None:
        self.job_dir = job_dir
        self.job = json.loads((job_dir / "job.json").read_text())
        self.reporter = Reporter(results_fd)
        self.stream = CappedStream(self.job["keep_output"], self.job["max_output"])
        # keep our own references: student code may replace the module attributes
        self.signal, self.setitimer = signal.signal, signal.setitimer

    def arm(self, seconds: float) -> None:
        self.signal(signal.SIGALRM, on_alarm)
        self.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        self.setitimer(signal.ITIMER_REAL, 0)

    def make_shell(self):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        config.InteractiveShell.colors = "NoColor"
        config.InteractiveShell.xmode = "Plain"
        shell = InteractiveShell.instance(config=config)
        return shell, InteractiveShell.run_cell

    def run_cells(self, shell, run_cell) -> None:
        for cell in self.job["cells"]:
            self.reporter.send(frames.CELL_START, index=cell["index"])
            status, error = "ok", None
            sys.stdout = sys.stderr = self.stream
            try:
                self.arm(self.job["cell_timeout"])
                result = run_cell(shell, cell["source"], store_history=False)
                self.disarm()
                failure = result.error_in_exec or result.error_before_exec
                if isinstance(failure, HarnessTimeout):
                    status, error = "timeout", f"cell ran past {self.job['cell_timeout']} s"
                elif isinstance(failure, OutputLimitExceeded):
                    status, error = "output_limit", describe_error(failure)
                elif failure is not None:
                    status, error = "error", describe_error(failure)
            except BaseException as failure:  # anything the cell threw, SystemExit included
                self.disarm()
                status = "timeout" if isinstance(failure, HarnessTimeout) else "error"
                if isinstance(failure, OutputLimitExceeded):
                    status = "output_limit"
                error = describe_error(failure)
            finally:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            self.reporter.send(
                frames.CELL, index=cell["index"], status=status, error=error,
                output=self.stream.reset_cell(),
            )
            if status == "output_limit":
                self.reporter.send(frames.STOPPED, reason=f"output limit: {error}")
                return

    def run_parts(self, namespace: dict, runs: dict) -> None:
        for part_info in self.job["parts"]:
            part_id, target = part_info["id"], part_info["target"]
            obj = namespace.get(target)
            if obj is None:
                self.reporter.send(frames.MISSING, part=part_id, target=target)
                continue
            case_dir = self.job_dir / "cases" / part_id
            for index in range(part_info["n_cases"]):
                self.run_case(part_id, runs[part_id], obj, case_dir, index)

    def run_case(self, part_id: str, run, obj, case_dir: Path, index: int) -> None:
        self.reporter.send(frames.CASE_START, part=part_id, case=index)
        case = load_case(case_dir, index)
        sys.stdout = sys.stderr = self.stream
        try:
            self.arm(self.job["case_timeout"])
            payload = pack_outputs(run(obj, case))
            self.disarm()
        except BaseException as failure:  # reported as the student's function raising
            self.disarm()
            status = "timeout" if isinstance(failure, HarnessTimeout) else "error"
            self.reporter.send(
                frames.CASE, part=part_id, case=index, status=status, error=describe_error(failure)
            )
            return
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            self.stream.reset_cell()
        self.reporter.send(frames.CASE, payload, part=part_id, case=index, status="ok")

    def main(self) -> None:
        shell, run_cell = self.make_shell()
        checks = load_checks(self.job["checks"])
        # taken before any student code runs, so replacing PARTS entries later changes nothing
        runs = {info["id"]: checks.PARTS[info["id"]].run for info in self.job["parts"]}
        drop_privileges(self.job.get("uid"))
        os.chdir(os.environ.get("TMPDIR", "/tmp"))
        self.reporter.send(frames.READY)
        self.run_cells(shell, run_cell)
        self.run_parts(shell.user_ns, runs)
        self.reporter.send(frames.DONE)


if __name__ == "__main__":
    Harness(Path(sys.argv[1]), int(sys.argv[2])).main()
    sys.stdout.flush()
    os._exit(0)  # skip atexit hooks the student's code may have registered
