"""The one policy on ready-made results: what a student's code may not call, and how it is seen.

Two kinds of shortcut, each named once here:

- ``REFERENCE``: the course's own package (its reference implementations, checks and
  catalogue), except the helpers students are meant to use (``ALLOWED_MODULES``);
- ``READY_MADE``: normalisation someone else wrote (``torch.nn.functional.batch_norm``,
  ``nn.LayerNorm``, scikit-learn's scalers, ``scipy.stats.zscore``...).

Three ways of seeing them, all driven by this policy:

- ``find_shortcuts``: an AST scan of one function's or class's source (the test cell's
  ``check`` and the grader's ``judge`` use it);
- ``borrowed``: the student's "function" is itself a ready-made object;
- ``tripwire``: a profile hook that records calls into ready-made entry points while the
  student's code runs (what the source scan cannot see: names bound elsewhere, getattr).

``module_kind`` and ``mentions_reference`` are what the grader's notebook-wide scan
(``bncourse.grading.integrity``) uses, so both sides apply one list.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_MODULES",
    "ALLOWED_NAMES",
    "READY_MADE",
    "REFERENCE",
    "borrowed",
    "dotted",
    "find_shortcuts",
    "mentions_reference",
    "module_kind",
    "source_of",
    "tripwire",
]

REFERENCE = "reference"
READY_MADE = "ready_made"

# Attribute or imported names that are ready-made normalisation, wherever they come from
# (torch.nn.functional.batch_norm, torch.batch_norm, nn.BatchNorm2d, F.layer_norm, ...).
FORBIDDEN_NAMES = frozenset(
    {
        "batch_norm", "native_batch_norm", "batch_norm_stats", "batch_norm_elemt",
        "batch_norm_gather_stats", "cudnn_batch_norm", "miopen_batch_norm", "layer_norm",
        "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "rms_norm",
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
        "LazyBatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm1d",
        "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", "StandardScaler", "zscore",
    }
)
# Modules whose every use is a shortcut, by kind.
FORBIDDEN_MODULES = {"bncourse": REFERENCE, "sklearn.preprocessing": READY_MADE}
# The course's helpers that students are meant to use (data, figures), and the single names
# the exercises' setup cells import from elsewhere in the package: a student who imports one
# of them again in a cell of their own has done nothing wrong.
ALLOWED_MODULES = ("bncourse.data", "bncourse.plots", "bncourse.diagrams")
ALLOWED_NAMES = frozenset({
    "bncourse.testing.check", "bncourse.initialization.ACTIVATIONS",
    "bncourse.deepnet.accuracy", "bncourse.deepnet.expected_keys", "bncourse.deepnet.init_mlp",
    "bncourse.deepnet.softmax_cross_entropy",
})

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
# The frames that call the student's object (the check modules, testing.py) are no helpers.
_CALLERS_OF_STUDENT_CODE = (str(Path(_PACKAGE_DIR) / "testing.py"), str(Path(__file__).resolve().parent))


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_kind(module: str) -> str | None:
    """``REFERENCE`` or ``READY_MADE`` when ``module`` (or a name inside it) is off limits,
    else None. The bare package ``bncourse`` is not: its uses are checked one by one."""
    if module in ("bncourse", *ALLOWED_NAMES) or any(_within(module, m) for m in ALLOWED_MODULES):
        return None
    return next((kind for prefix, kind in FORBIDDEN_MODULES.items() if _within(module, prefix)), None)


_DOTTED_NAME = re.compile(r"bncourse(?:\.\w+)+")


def mentions_reference(text: str) -> bool:
    """Whether ``text`` (a string in the student's code) names the course's reference code."""
    return any(module_kind(name) == REFERENCE for name in _DOTTED_NAME.findall(text))


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def find_shortcuts(source: str) -> str | None:
    """Scan the source of a student's function or class for ready-made normalisation.

    Inputs:
    - source: Python source of one function or class (indented or not).

    Returns a sentence saying what was found (e.g. "it uses torch.nn.functional.batch_norm,
    a ready-made normalisation"), or None when nothing was found or the source does not
    parse (a syntax error is reported elsewhere, when the code runs).
    """
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    imported: dict[str, str] = {}  # local name -> what it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if module_kind(alias.name):
                    return f"it imports {alias.name}, which computes the result for you"
                imported[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if module_kind(full) or alias.name in FORBIDDEN_NAMES:
                    return f"it imports {full}, a ready-made normalisation"
                imported[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = dotted(node)
            if name is None:
                continue
            root, _, rest = name.partition(".")
            full = imported.get(root, root) + ("." + rest if rest else "")
            if module_kind(full):
                return f"it uses {full}, which computes the result for you"
            if node.attr in FORBIDDEN_NAMES:
                return f"it uses {full}, a ready-made normalisation"
        elif isinstance(node, ast.Name) and node.id in imported:
            full = imported[node.id]
            if module_kind(full) or full.rsplit(".", 1)[-1] in FORBIDDEN_NAMES:
                return f"it uses {full}, a ready-made normalisation"
        elif isinstance(node, ast.Name) and node.id in ("zscore", "StandardScaler"):
            return f"it uses {node.id}, a ready-made normalisation"
    return None


def borrowed(obj: Any) -> str | None:
    """A sentence when ``obj`` is itself a ready-made object (e.g. ``batchnorm_forward =
    bncourse.cpu.batchnorm_forward``, or ``torch.nn.BatchNorm1d``), else None."""
    module = getattr(obj, "__module__", None) or ""
    if module_kind(module) or (
        module.startswith("torch") and getattr(obj, "__name__", "") in FORBIDDEN_NAMES
    ):
        return f"it is {module}.{getattr(obj, '__qualname__', obj)} itself, not your own code"
    return None


def source_of(obj: Any) -> str:
    """Source of a function or class defined in a notebook, or "" when it cannot be found.

    ``inspect.getsource`` fails on classes defined in a Jupyter kernel (their module,
    ``__main__``, has no file), so a class falls back to the sources of its methods.
    """
    with contextlib.suppress(OSError, TypeError):
        return inspect.getsource(obj)
    if inspect.isclass(obj):
        pieces = []
        for klass in obj.__mro__:
            if klass.__module__ in ("builtins",) or klass.__module__.startswith("torch"):
                continue
            for member in vars(klass).values():
                function = getattr(member, "__func__", member)
                if inspect.isfunction(function):
                    with contextlib.suppress(OSError, TypeError):
                        pieces.append(inspect.getsource(function))
        return "\n".join(textwrap.dedent(piece) for piece in pieces)
    return ""


def _forbidden_entry_points() -> tuple[dict[Any, str], dict[int, str]]:
    """Code objects (Python functions) and ids (builtins) of ready-made normalisation."""
    codes: dict[Any, str] = {}
    builtins: dict[int, str] = {}

    def add(owner: Any, owner_name: str, names: Sequence[str]) -> None:
        for name in names:
            entry = getattr(owner, name, None)
            entry = getattr(entry, "__func__", entry)
            if entry is None:
                continue
            code = getattr(entry, "__code__", None)
            if code is not None:
                codes[code] = f"{owner_name}.{name}"
            else:
                builtins[id(entry)] = f"{owner_name}.{name}"

    # Only modules already loaded: importing torch here would cost every test cell a second
    # or two, and a function that imports torch itself during the call is left to
    # find_shortcuts.
    torch = sys.modules.get("torch")
    if torch is not None:
        norm_functions = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"]
        add(torch, "torch", norm_functions + ["native_batch_norm", "native_layer_norm"])
        add(torch.nn.functional, "torch.nn.functional", norm_functions)
        modules = torch.nn.modules
        add(modules.batchnorm._BatchNorm, "torch.nn.BatchNorm", ["forward"])
        add(modules.instancenorm._InstanceNorm, "torch.nn.InstanceNorm", ["forward"])
        add(modules.normalization.LayerNorm, "torch.nn.LayerNorm", ["forward"])
        add(modules.normalization.GroupNorm, "torch.nn.GroupNorm", ["forward"])
    for module_name in ("bncourse.cpu", "bncourse.gpu"):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        public = [n for n in dir(module) if not n.startswith("_")]
        own = [n for n in public if getattr(getattr(module, n), "__module__", "") == module_name]
        add(module, module_name, [n for n in own if inspect.isfunction(getattr(module, n))])
        for class_name in (n for n in own if inspect.isclass(getattr(module, n))):
            klass = getattr(module, class_name)
            # Only what the class itself defines: inherited entries (torch's Function.apply,
            # Module.__call__) are shared with the student's own classes.
            defined = [n for n, v in vars(klass).items() if callable(getattr(v, "__func__", v))]
            add(klass, f"{module_name}.{class_name}", defined)
    return codes, builtins


@contextlib.contextmanager
def tripwire() -> Iterator[list[str]]:
    """Record calls into ready-made normalisation made while the block runs.

    Yields a list that fills with the names of the entry points called: torch's
    normalisation functions and modules, and every public function of ``bncourse.cpu`` and
    ``bncourse.gpu`` (scikit-learn and SciPy are left to ``find_shortcuts``). It catches calls
    that the source scan cannot see (a name bound outside the function, ``getattr`` tricks).
    Calls made from inside the bncourse package itself (a helper students may use) are not
    counted. It watches the calling thread only: CUDA backward passes run on autograd's own
    threads and escape it.
    """
    codes, builtins = _forbidden_entry_points()
    hits: list[str] = []

    def from_package(frame: Any) -> bool:
        """Whether the frame is a bncourse helper (its own calls do not count)."""
        if frame is None:
            return False
        filename = frame.f_code.co_filename
        return filename.startswith(_PACKAGE_DIR) and not filename.startswith(
            _CALLERS_OF_STUDENT_CODE
        )

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            name = codes.get(frame.f_code)
            if name is not None and not from_package(frame.f_back):
                hits.append(name)
        elif event == "c_call":
            name = builtins.get(id(arg))
            if name is not None and not from_package(frame):
                hits.append(name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield hits
    finally:
        sys.setprofile(previous)
