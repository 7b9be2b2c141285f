"""Per-student hidden cases: the course secret, each student's seed, the case-set id.

A hidden part's cases are drawn under a seed derived from the course secret and the
student's id (``bncourse.checks.core.build_cases``); visible cases never change. The seed is

    int.from_bytes(HMAC-SHA256(secret, "<assignment>/<student>")[:8], "big")

so the same student gets the same cases on every regrade, two students get different ones,
and nobody without the secret can compute anyone's cases from the public generators. The
secret is 32 random bytes, written as 64 hex digits to ``<course>/.bncourse_secret`` (mode
0600) the first time ``bncourse-grade`` needs it. It never enters the sandbox, the job
folder, the released notebooks or the feedback: the grader builds the cases and hands the
sandbox only their values.

The case-set id (8 hex digits of SHA-256 of the seed) names a student's cases in the
results, the feedback page and the report without revealing the seed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

SECRET_FILE = ".bncourse_secret"
SECRET_BYTES = 32
_HEX = re.compile(rf"^[0-9a-f]{{{2 * SECRET_BYTES}}}$")


class SecretError(RuntimeError):
    """The course secret cannot be used (unreadable or malformed): nothing is graded."""


def read_secret(path: Path) -> bytes:
    """The secret in ``path`` (64 hex digits, surrounding whitespace ignored)."""
    try:
        text = path.read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError) as error:
        raise SecretError(f"the course secret {path} cannot be read ({error}); restore it "
                          "from your backup, or remove it to start a new one (every hidden "
                          "case then changes)") from None
    if not _HEX.match(text):
        raise SecretError(f"the course secret {path}: expected {2 * SECRET_BYTES} hex digits, "
                          f"got {len(text)} characters that are not; restore it from your backup")
    return bytes.fromhex(text)


def create_secret(path: Path) -> bytes:
    """A new secret in ``path``, readable by its owner only; never overwrites a file."""
    secret = secrets.token_bytes(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write(secret.hex() + "\n")
    return secret


def course_secret(course_root: Path, given: Path | None = None) -> tuple[bytes, str | None]:
    """(the secret, a console line when something was created or needs attention).

    ``given``: the secret file passed with ``--secret`` (must exist); else
    ``<course_root>/.bncourse_secret``, created when missing.
    """
    if given is not None:
        if not given.is_file():
            raise SecretError(f"--secret: expected an existing secret file, got {given}")
        return read_secret(given), None
    path = course_root / SECRET_FILE
    if not path.exists():
        secret = create_secret(path)
        return secret, (f"seeds: created the course secret {path}: hidden cases now differ per "
                        "student; back this file up (regrades need it) and keep it out of "
                        "anything you publish")
    note = None
    if path.stat().st_mode & 0o077:
        note = f"seeds: warning: the course secret {path} is readable by others; chmod 600 it"
    return read_secret(path), note


def student_seed(secret: bytes, assignment: str, student: str) -> int:
    """The seed of one student's hidden cases for one assignment (64 bits)."""
    digest = hmac.new(secret, f"{assignment}/{student}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def case_set_id(seed: int | None) -> str:
    """A short public name of the cases drawn under ``seed`` ("fixed" for the fixed ones)."""
    if seed is None:
        return "fixed"
    return hashlib.sha256(f"bncourse case set {seed}".encode()).hexdigest()[:8]


def secret_digest(secret: bytes) -> str:
    """What the journal's fingerprint holds of the secret: a changed secret regrades."""
    return hashlib.sha256(b"bncourse secret " + secret).hexdigest()[:16]
