"""Unit tests of the grading pipeline's steps (fast: no sandbox, no course)."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import PurePosixPath
from types import SimpleNamespace

import numpy as np
import pytest

from bncourse.checks.core import Verdict
from bncourse.checks.shortcuts import REFERENCE
from bncourse.grading import cli, collect, integrity, judge, sandbox, validate
from bncourse.grading.cli import parse_size


@pytest.mark.parametrize("name, expected", [
    ("alice.ipynb", ("alice", "nb")),
    ("alice/nb.ipynb", ("alice", "nb")),
    ("alice/03_a/nb.ipynb", ("alice", "nb")),
    ("jdoe_12345_67890_nb.ipynb", ("jdoe", "nb")),
    ("jdoe_late_12345_67890_nb-2.ipynb", ("jdoe", "nb")),
    ("Jane Doe_555_assignsubmission_file_nb.ipynb", ("555", "nb")),
])
def test_submission_names_are_matched(name, expected):
    assert collect.match(PurePosixPath(name), "03_a", ["nb"], None) == expected


def test_unmatched_names_give_a_reason():
    reason = collect.match(PurePosixPath("alice/other.ipynb"), "03_a", ["nb", "nb2"], None)
    assert isinstance(reason, str) and "other" in reason
    reason = collect.match(PurePosixPath("bad id!.ipynb"), "03_a", ["nb"], None)
    assert isinstance(reason, str) and "student id" in reason


def test_student_regex_option():
    regex = re.compile(r"^sub-(?P<student>\w+)-(?P<notebook>\w+)\.ipynb$")
    assert collect.match(PurePosixPath("sub-bob-nb.ipynb"), "03_a", ["nb"], regex) == (
        "bob", "nb")


@pytest.mark.parametrize("data, phrase", [
    (b"", "empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b'{"a": 1}', "not a Jupyter notebook"),
    (json.dumps({"nbformat": 99, "nbformat_minor": 0, "cells": [], "metadata": {}}).encode(),
     "nbformat version 99"),
    (b"x" * 101, "over the"),
])
def test_unreadable_notebooks_get_one_clear_sentence(data, phrase):
    notebook, error, _ = validate.read_notebook(data, max_bytes=100)
    assert notebook is None and phrase in error


@pytest.mark.parametrize("code, phrase", [
    ("import sys\nsys.settrace(None)", "sys.settrace"),
    ("get_ipython().input_transformers_cleanup.append(f)", "input transformer"),
    ("import numpy as np\nnp.testing.assert_allclose = print", "replaces np.testing"),
    ("import math\nsetattr(math, 'isclose', print)", "replaces attributes of math"),
    ("class A:\n    def __eq__(self, other):\n        return True", "__eq__"),
    ("from bncourse.cpu import batchnorm_forward", "reference code"),
    ("m = __import__('bnc' + 'ourse')", "__import__"),
    ("exec(code)", "exec"),
    ("%time x = 1\nimport ctypes", "ctypes"),
])
def test_integrity_scan_names_the_trick(code, phrase):
    findings = integrity.scan_cells([(4, code)])
    assert any(phrase in f.describe() for f in findings), findings
    assert all("cell 4" in f.describe() for f in findings)


def test_integrity_scan_applies_the_one_shortcut_policy():
    """Reference use is its own kind (it scores the notebook's parts 0), judged name by name
    by ``bncourse.checks.shortcuts``: the helpers a setup cell imports stay allowed, the rest
    of the package does not (``bncourse.initialization`` was missed by the old list)."""
    allowed = "from bncourse.deepnet import init_mlp, softmax_cross_entropy\nfrom bncourse.testing import check"
    assert integrity.scan_cells([(1, allowed)]) == []
    for code in ("from bncourse.initialization import xavier_uniform",
                 "from bncourse.deepnet import batchnorm_inference", "import bncourse.checks.variants",
                 "text = 'bncourse.gpu.batch_norm'"):
        findings = integrity.scan_cells([(1, code)])
        assert [f.kind for f in findings] == [REFERENCE], (code, findings)
    assert {f.kind for f in integrity.scan_cells([(1, "import sys\nsys.settrace(None)")])} == {
        integrity.TAMPERING}


def test_cached_verdicts_depend_on_every_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "bncourse"
    (package / "checks").mkdir(parents=True)
    (package / "flops.py").write_text("X = 1\n")
    (package / "checks" / "core.py").write_text("Y = 1\n")
    monkeypatch.setattr(cli, "PACKAGE_DIR", package)
    before = cli.checks_digest("bncourse.checks")
    (package / "flops.py").write_text("X = 2\n")  # a module no list would have named
    assert cli.checks_digest("bncourse.checks") != before


def test_integrity_scan_passes_ordinary_code():
    code = ("import numpy as np\nfrom bncourse.data import load_digits\n"
            "def f(x):\n    mean = x.mean(0)\n    return (x - mean) / np.sqrt(x.var(0) + 1e-5)\n"
            "nparr = np.zeros(3)\nnparr.shape = (3, 1)\n%matplotlib inline\n")
    assert integrity.scan_cells([(0, code)]) == []


def test_target_source_is_the_last_definition_with_decorators():
    cells = [(0, "def f(x):\n    return 1\n"), (1, "@staticmethod\ndef f(x):\n    return 2\n")]
    assert integrity.find_target_source(cells, "f") == "@staticmethod\ndef f(x):\n    return 2"
    assert integrity.find_target_source(cells, "g") is None


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_outputs_must_be_plain_numeric_arrays():
    assert judge.load_outputs(npz(out=np.ones(3)))["out"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="not a plain array"):
        judge.load_outputs(npz(out=np.array([object()])))  # pickled: refused
    with pytest.raises(ValueError, match="numeric"):
        judge.load_outputs(npz(out=np.array(["text"])))
    with pytest.raises(ValueError, match="could not be read"):
        judge.load_outputs(b"garbage")


def test_first_frame_wins_when_a_forked_child_repeats_it():
    first = ({"kind": "case", "part": "p", "case": 0, "status": "ok"}, b"1")
    second = ({"kind": "case", "part": "p", "case": 0, "status": "ok"}, b"2")
    outcome = judge.sort_frames([first, second, ({"kind": "done"}, b"")])
    assert outcome.cases[("p", 0)][1] == b"1" and outcome.finished


def fake_part(verdict: Verdict, judge_raises: bool = False):
    def decide(case, outputs):
        if judge_raises:
            raise KeyError("bug")
        return verdict
    return SimpleNamespace(id="a-p", target="f", points=2, hidden=False, description="d",
                           judge=decide)


def ok_frame(payload: bytes):
    return ({"kind": "case", "part": "a-p", "case": 0, "status": "ok"}, payload)


def test_part_scores_only_when_the_trusted_judge_says_so():
    outcome = judge.sort_frames([ok_frame(npz(out=np.ones(2)))])
    passed = judge.judge_part(fake_part(Verdict(True)), [{}], outcome, None, "")
    assert passed.score == 2 and passed.passed
    failed = judge.judge_part(fake_part(Verdict(False, "wrong", "no_eps")), [{}], outcome,
                              None, "")
    assert failed.score == 0 and failed.mistake == "no_eps" and failed.message == "wrong"
    shortcut = judge.judge_part(fake_part(Verdict(True)), [{}], outcome, "it uses bncourse", "")
    assert shortcut.score == 0 and shortcut.mistake == "shortcut"
    crashed = judge.judge_part(fake_part(Verdict(True), judge_raises=True), [{}], outcome,
                               None, "")
    assert crashed.score == 0 and crashed.mistake == "judge_error"


def test_cases_that_never_ran_score_zero_with_the_reason():
    outcome = judge.sort_frames([({"kind": "case_start", "part": "a-p", "case": 0}, b"")])
    reason = judge.outcome_reason(outcome, None)
    assert "while checking a-p, case 0" in reason
    result = judge.judge_part(fake_part(Verdict(True)), [{}], outcome, None, reason)
    assert result.score == 0 and "ended abruptly" in result.message


def test_sizes_and_missing_bubblewrap(monkeypatch):
    assert parse_size("1G") == 2**30 and parse_size("512M") == 512 * 2**20
    assert parse_size("100") == 100
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailableError, match="bubblewrap"):
        sandbox.resolve_mode("bwrap")
    assert sandbox.resolve_mode("auto") == "rlimits"


def test_sandbox_sees_read_only_roots_that_live_under_tmp(tmp_path, monkeypatch):
    # CI clones the course (and its .venv) wherever it likes, /tmp included; the sandbox's
    # private /tmp must not hide the interpreter and package folders bound into it.
    if not sandbox.bwrap_path():
        pytest.fail("bubblewrap (bwrap) is not installed; `make test` installs it")
    root = tmp_path / "fake-venv"
    root.mkdir()
    (root / "marker.txt").write_text("visible")
    monkeypatch.setattr(sandbox, "_python_roots", lambda: [root])
    job = tmp_path / "job"
    job.mkdir()
    command = sandbox.bwrap_command(job, None, sandbox.Limits()) + ["/usr/bin/cat", str(root / "marker.txt")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "visible"
