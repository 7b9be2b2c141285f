"""The package's modules import each other in one direction only.

An import placed inside a function hides a cycle from this check as well as from the reader,
so those are listed too: only ``gpu.SyncBatchNorm`` is imported on first use, because
``bncourse.sync_batchnorm`` builds on ``bncourse.gpu`` (and on ``torch.distributed``).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bncourse"

# (module, imported module) pairs allowed inside a function, with the reason above.
FIRST_USE_IMPORTS = {("bncourse.gpu", "bncourse.sync_batchnorm")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST) -> list[str]:
    """The bncourse modules an import statement names (``from bncourse import gpu`` names
    ``bncourse.gpu`` when that is a module, ``bncourse`` otherwise)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("bncourse")]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bncourse"):
        names = []
        for alias in node.names:
            candidate = f"{node.module}.{alias.name}"
            as_path = PACKAGE.parent / Path(*candidate.split("."))
            names.append(candidate if as_path.with_suffix(".py").exists() or as_path.is_dir() else node.module)
        return names
    return []


def _imports() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """Module-level imports per module, and the (module, imported) pairs made inside functions."""
    top: dict[str, set[str]] = {}
    inside: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text())
        top[name] = {imported for node in tree.body for imported in _imported(node)} - {name}
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside |= {(name, imported) for node in ast.walk(function) for imported in _imported(node)}
    return top, inside


def test_no_import_cycle_between_the_package_modules():
    top, _ = _imports()
    # A package's __init__ may import its submodules (checks/__init__ collects the assignments).
    graph = {name: {other for other in deps if not name.startswith(other + ".") and other != "bncourse"}
             for name, deps in top.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_package_modules_are_imported_inside_functions_only_where_listed():
    _, inside = _imports()
    assert inside == FIRST_USE_IMPORTS
