"""Run the harness on one submission inside a sandbox, with limits, and read its frames.

With bubblewrap (``bwrap``) the harness sees a fresh root: read-only /usr, the Python
installation, the virtualenv and the bncourse package; a private size-capped /tmp; the job
directory (the student's cells and the case inputs) read-only; no network, its own PID, IPC
and UTS namespaces; it dies with the grader. Started by root, the harness then switches to
a user id of its own, so RLIMIT_NPROC caps this sandbox's processes alone.

Every run also gets rlimits (address space, CPU seconds, file size, open files, processes),
a scrubbed environment, its own session, a wall-clock limit, and a cap on what it may print
and report. Without bwrap (``mode="rlimits"``) only those remain: see README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bncourse.grading import frames

HARNESS = Path(__file__).with_name("harness.py")
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the bncourse package
SANDBOX_JOB = "/sandbox/job"
SANDBOX_CHECKS = "/sandbox/checks"


class SandboxUnavailableError(RuntimeError):
    """bubblewrap was required but cannot be used."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's sandbox (sizes in bytes, times in seconds)."""

    cell_timeout: float = 60.0
    case_timeout: float = 30.0
    notebook_timeout: float = 600.0
    memory: int = 4 * 2**30
    max_procs: int = 64
    max_output: int = 2 * 2**20
    keep_output: int = 10_000
    max_results: int = 64 * 2**20
    max_file_size: int = 64 * 2**20
    tmp_size: int = 256 * 2**20

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SandboxRun:
    """What came out of one sandboxed run: frames, exit status and why it stopped."""

    frames: list[tuple[dict, bytes]] = field(default_factory=list)
    returncode: int | None = None
    killed_reason: str | None = None
    console_tail: str = ""
    wall_s: float = 0.0
    mode: str = ""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def resolve_mode(mode: str) -> str:
    """'bwrap', 'rlimits' or 'auto' (bwrap when it is installed) -> the mode to use."""
    if mode not in ("auto", "bwrap", "rlimits"):
        raise ValueError(f"sandbox: expected 'auto', 'bwrap' or 'rlimits', got {mode!r}")
    if mode == "auto":
        return "bwrap" if bwrap_path() else "rlimits"
    if mode == "bwrap" and not bwrap_path():
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed: install it (apt-get install bubblewrap) "
            "or pass --sandbox rlimits to grade with weaker isolation"
        )
    return mode


def _python_roots() -> list[Path]:
    """Directories the interpreter and the virtualenv live in (mounted read-only)."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return sorted(r for r in roots if not str(r).startswith("/usr"))


def _mkdirs(path: Path, made: set[str]) -> list[str]:
    """bwrap arguments creating every ancestor of ``path`` world-readable (0755)."""
    args = []
    for ancestor in reversed(path.parents):
        name = str(ancestor)
        if name != "/" and name not in made:
            made.add(name)
            args += ["--perms", "0755", "--dir", name]
    return args


def bwrap_command(job_dir: Path, checks_file: Path | None, limits: Limits) -> list[str]:
    # The private /tmp is mounted first: bwrap applies mounts in order, so a tmpfs mounted
    # after the read-only binds would hide any of them that live under /tmp (a clone of the
    # course in /tmp, say, whose virtualenv the sandbox must still see).
    args = [
        bwrap_path() or "bwrap",
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", str(limits.tmp_size), "--tmpfs", "/tmp",
        # POSIX semaphores live in /dev/shm; the student code runs as an unprivileged user, so
        # it must be writable or multiprocessing (and joblib, under scikit-learn) warns and fails.
        "--perms", "1777", "--size", str(limits.tmp_size), "--tmpfs", "/dev/shm",
        "--ro-bind", "/usr", "/usr",
    ]
    made: set[str] = {"/tmp"}
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            args += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            args += ["--ro-bind", f"/{name}", f"/{name}"]
    for etc_file in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group"):
        if os.path.exists(etc_file):
            args += _mkdirs(Path(etc_file), made) + ["--ro-bind", etc_file, etc_file]
    for root in _python_roots() + [PACKAGE_DIR]:
        args += _mkdirs(root, made) + ["--ro-bind", str(root), str(root)]
    args += _mkdirs(Path(SANDBOX_JOB), made) + ["--ro-bind", str(job_dir), SANDBOX_JOB]
    if checks_file is not None:
        target = f"{SANDBOX_CHECKS}/{checks_file.name}"
        args += ["--perms", "0755", "--dir", SANDBOX_CHECKS, "--ro-bind", str(checks_file), target]
    args += [
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--chdir", "/tmp",
    ]
    if os.getuid() != 0:
        args += ["--unshare-user"]
    return args


def sandbox_uid() -> int | None:
    """A user id for this sandbox alone (only when running as root): RLIMIT_NPROC counts
    processes per user, so distinct ids keep concurrent sandboxes from sharing one budget."""
    if os.getuid() != 0:
        return None
    return 200_000 + os.getpid() % 1_000_000


def _user_task_count() -> int:
    """Processes and threads that the current user already runs (RLIMIT_NPROC counts them)."""
    count, uid = 0, os.getuid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def _preexec(limits: Limits, nproc: int):
    def apply() -> None:
        os.setsid()
        soft_cpu = int(limits.notebook_timeout) + 5
        for name, value in (
            (resource.RLIMIT_AS, limits.memory),
            (resource.RLIMIT_CPU, soft_cpu),
            (resource.RLIMIT_FSIZE, limits.max_file_size),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(name, (value, value))

    return apply


def sandbox_env() -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (tokens, paths) leaks in."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1",
    }


class _FrameReader(threading.Thread):
    """Reads frames from the results pipe; stops (and asks for a kill) past the size cap."""

    def __init__(self, fd: int, cap: int, on_overflow) -> None:
        super().__init__(daemon=True)
        self.file, self.cap, self.on_overflow = os.fdopen(fd, "rb"), cap, on_overflow
        self.frames: list[tuple[dict, bytes]] = []
        self.error: str | None = None

    def run(self) -> None:
        budget = self.cap
        try:
            while (frame := frames.read(self.file, budget)) is not None:
                header, payload, used = frame
                budget -= used
                self.frames.append((header, payload))
        except frames.OverBudgetError:
            self.error = f"reported more than {self.cap} bytes of results"
            self.on_overflow(self.error)
        except EOFError as error:
            self.error = str(error)
        except (ValueError, TypeError, AttributeError, OSError) as error:
            self.error = f"unreadable results stream ({type(error).__name__})"
            self.on_overflow(self.error)  # nothing after this can be trusted to parse
        finally:
            self.file.close()


class _ConsoleReader(threading.Thread):
    """Drains stdout/stderr written at the file-descriptor level; keeps only the tail."""

    def __init__(self, stream, cap: int, on_overflow) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap, self.on_overflow = stream, cap, on_overflow
        self.tail, self.total = b"", 0

    def run(self) -> None:
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            self.tail = (self.tail + chunk)[-4000:]
            if self.total > self.cap:
                self.on_overflow(f"printed more than {self.cap} bytes")
                self.stream.read()  # drain until the process is gone
                return


def run_sandboxed(job_dir: Path, job: dict, limits: Limits, mode: str = "auto") -> SandboxRun:
    """Write ``job`` (see harness.py; its "checks" is the grader's spec) as the job directory's
    ``job.json``, completed with what this sandbox needs, and run the harness on it under
    ``limits``. Never raises for student behaviour."""
    mode = resolve_mode(mode)
    checks_spec = job["checks"]
    checks_file = Path(checks_spec).resolve() if checks_spec.endswith(".py") else None
    job = dict(job, uid=None)
    if mode == "bwrap":
        uid = job["uid"] = sandbox_uid()
        if checks_file is not None:
            job["checks"] = f"{SANDBOX_CHECKS}/{checks_file.name}"
    (job_dir / "job.json").write_text(json.dumps(job))
    if mode == "bwrap":
        prefix = bwrap_command(job_dir, checks_file, limits)
        harness_job = SANDBOX_JOB
        nproc = limits.max_procs if uid is not None else _user_task_count() + limits.max_procs
    else:
        prefix, harness_job = [], str(job_dir)
        nproc = _user_task_count() + limits.max_procs
    scratch = job_dir.parent / "scratch"
    scratch.mkdir(exist_ok=True)
    env = sandbox_env()
    if mode == "rlimits":
        env.update(HOME=str(scratch), TMPDIR=str(scratch), MPLCONFIGDIR=str(scratch))
    return _supervise(prefix, harness_job, env, scratch, limits, nproc, mode)


def _supervise(
    prefix: list[str], harness_job: str, env, cwd, limits: Limits, nproc: int, mode: str
) -> SandboxRun:
    result = SandboxRun(mode=mode)
    read_fd, write_fd = os.pipe()
    # -I: ignore PYTHON* variables and the user's site-packages; the harness lives in the
    # (read-only) bncourse package, which the sandbox mounts at its real path
    command = prefix + [sys.executable, "-I", "-B", str(HARNESS), harness_job, str(write_fd)]
    start = time.monotonic()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        pass_fds=(write_fd,), env=env, cwd=cwd, preexec_fn=_preexec(limits, nproc),
    )
    os.close(write_fd)

    def kill(reason: str) -> None:
        if result.killed_reason is None:
            result.killed_reason = reason
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    frames = _FrameReader(read_fd, limits.max_results, kill)
    console = _ConsoleReader(process.stdout, limits.max_output, kill)
    frames.start()
    console.start()
    try:
        process.wait(timeout=limits.notebook_timeout)
    except subprocess.TimeoutExpired:
        kill(f"the notebook ran past its time limit of {limits.notebook_timeout:g} s")
        process.wait()
    if mode == "rlimits":  # bwrap's PID namespace already took every helper with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # helpers the student left running
    frames.join(timeout=10)
    console.join(timeout=10)
    result.returncode = process.returncode
    result.frames = frames.frames
    if frames.error and result.killed_reason is None:
        result.killed_reason = frames.error
    result.console_tail = console.tail.decode("utf-8", "replace")
    result.wall_s = time.monotonic() - start
    return result
