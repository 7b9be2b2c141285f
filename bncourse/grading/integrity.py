"""Static scan of a student's code for attempts to influence grading.

Runs in the grader's process on the source read from the notebook JSON (never on objects from
the sandbox). A hit does not change the score by itself (the verdicts are decided outside the
student's process, so these tricks cannot earn points); it puts the submission on the
instructor's review list with the reason and the cell it came from. Using the course's
reference code is the exception (findings of kind ``REFERENCE``, by the one policy of
``bncourse.checks.shortcuts``): the worker scores the notebook's parts 0.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from IPython.core.inputtransformer2 import TransformerManager

from bncourse.checks.shortcuts import REFERENCE, dotted, mentions_reference, module_kind

# attribute chains whose use or replacement tampers with the process that runs tests
HOOK_CALLS = {
    "sys.settrace": "installs a trace function (sys.settrace)",
    "sys.setprofile": "installs a profile function (sys.setprofile)",
    "threading.settrace": "installs a trace function (threading.settrace)",
    "threading.setprofile": "installs a profile function (threading.setprofile)",
    "sys.addaudithook": "installs an audit hook (sys.addaudithook)",
    "sys._getframe": "inspects the caller's frames (sys._getframe)",
    "inspect.currentframe": "inspects the caller's frames (inspect.currentframe)",
    "inspect.stack": "inspects the caller's frames (inspect.stack)",
    "gc.get_objects": "searches the interpreter's objects (gc.get_objects)",
    "gc.get_referrers": "searches the interpreter's objects (gc.get_referrers)",
    "os._exit": "ends the process abruptly (os._exit)",
    "os.kill": "sends signals (os.kill)",
    "signal.signal": "changes signal handlers (signal.signal)",
    "signal.setitimer": "changes timers (signal.setitimer)",
    "signal.alarm": "changes timers (signal.alarm)",
}
HOOK_ATTRIBUTES = {
    "input_transformers_cleanup": "registers an IPython input transformer",
    "input_transformers_post": "registers an IPython input transformer",
    "ast_transformers": "registers an IPython AST transformer",
    "register_magic_function": "defines an IPython magic",
    "f_back": "walks the call stack (frame.f_back)",
    "f_locals": "reads another frame's variables (f_locals)",
    "f_globals": "reads another frame's globals (f_globals)",
    "__code__": "rewrites a function's code (__code__)",
    "modules": "searches the loaded modules (sys.modules)",
}
# modules whose attributes must not be replaced from a notebook
PROTECTED_MODULES = (
    "numpy.testing", "np.testing", "numpy", "np", "math", "builtins", "__builtins__",
    "torch.testing", "torch", "unittest", "pytest", "sys", "bncourse", "IPython",
)
LYING_METHODS = {
    "__eq__": "defines __eq__ (objects that compare equal to anything)",
    "__ne__": "defines __ne__",
    "__array__": "defines __array__ (objects that pose as arrays)",
    "__array_ufunc__": "defines __array_ufunc__",
    "__array_function__": "defines __array_function__",
    "__bool__": "defines __bool__",
}
DYNAMIC_CODE = {
    "exec": "runs code built at run time (exec)",
    "eval": "runs code built at run time (eval)",
    "compile": "compiles code at run time (compile)",
    "__import__": "imports modules by computed name (__import__)",
    "importlib.import_module": "imports modules by computed name (importlib)",
}
_transformer = TransformerManager()
# What a finding is: a use of the course's reference code (which scores the notebook's parts
# 0, see worker.py) or tampering with the process (flagged for review only).
TAMPERING = "tampering"


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: its kind (``REFERENCE`` or ``TAMPERING``), what it does and
    where (cell index in the notebook, line)."""

    kind: str
    reason: str
    cell: int
    line: int

    def describe(self) -> str:
        return f"{self.reason} (cell {self.cell}, line {self.line})"


def python_source(cell_source: str) -> str:
    """IPython syntax (%magics, !shell) -> plain Python, as the kernel would run it."""
    try:
        return _transformer.transform_cell(cell_source)
    except (SyntaxError, ValueError, IndexError):
        return cell_source


def _protected(name: str | None) -> bool:
    return bool(name) and any(name == m or name.startswith(m + ".") for m in PROTECTED_MODULES)


def _imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:  # judged name by name
        return [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _assigned_targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    return []


def _scan_reference(node: ast.AST) -> str | None:
    """The reason this node uses the course's reference code, or None."""
    for module in _imports(node):
        if module_kind(module) == REFERENCE:
            return f"imports the course's reference code ({module})"
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and mentions_reference(node.value):
        return "names the course's reference code in a string"
    return None


def _scan_node(node: ast.AST) -> str | None:
    """The reason this node tampers with the process that runs the checks, or None."""
    for module in _imports(node):
        if module == "ctypes" or module.startswith("ctypes."):
            return "uses ctypes (raw memory access)"
    if isinstance(node, ast.Call):
        name = dotted(node.func)
        if name in HOOK_CALLS:
            return HOOK_CALLS[name]
        if name in DYNAMIC_CODE:
            return DYNAMIC_CODE[name]
        if name in ("setattr", "delattr") and node.args:
            owner = dotted(node.args[0])
            if _protected(owner):
                return f"replaces attributes of {owner} ({name})"
        if name == "getattr" and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
            owner = dotted(node.args[0])
            if _protected(owner):
                return f"looks up attributes of {owner} by computed name (getattr)"
    if (isinstance(node, ast.Attribute) and node.attr in HOOK_ATTRIBUTES
            and (node.attr != "modules" or dotted(node) == "sys.modules")):
        return HOOK_ATTRIBUTES[node.attr]
    for target in _assigned_targets(node):
        name = dotted(target) if isinstance(target, ast.Attribute) else None
        if name and _protected(name.rsplit(".", 1)[0]):
            return f"replaces {name}"
    if isinstance(node, ast.FunctionDef) and node.name in LYING_METHODS:
        return LYING_METHODS[node.name]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "settrace" in node.value:
        return "names a tracing hook in a string"
    return None


def scan_cell(source: str, cell_index: int) -> list[Finding]:
    """Every suspicious construct in one cell; a cell that does not parse yields none (it
    will fail when run, which the student sees)."""
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return []
    findings = []
    for node in ast.walk(tree):
        for kind, scan in ((REFERENCE, _scan_reference), (TAMPERING, _scan_node)):
            reason = scan(node)
            if reason:
                findings.append(Finding(kind, reason, cell_index, getattr(node, "lineno", 0)))
    return findings


def scan_cells(cells: list[tuple[int, str]]) -> list[Finding]:
    """Scan (cell index, source) pairs; one finding per (reason, cell)."""
    seen, findings = set(), []
    for index, source in cells:
        for finding in scan_cell(source, index):
            key = (finding.reason, finding.cell)
            if key not in seen:
                seen.add(key)
                findings.append(finding)
    return findings


def find_target_source(cells: list[tuple[int, str]], target: str) -> str | None:
    """Source of the last top-level ``def``/``class`` named ``target`` (what the kernel ends up
    calling), with its decorators; None when the name is never defined that way."""
    found = None
    for _, source in cells:
        code = python_source(source)
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if is_def and node.name == target:
                lines = code.splitlines()
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found = "\n".join(lines[start - 1 : node.end_lineno])
    return found
