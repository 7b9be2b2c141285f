"""What the graded test cells of the exercises call, and the verdicts they return.

A test cell in an exercise notebook is one line, ``check("03_bn_transform-forward_2d",
batchnorm_forward)``. ``check`` looks the part up in ``bncourse.checks.PARTS``, refuses
ready-made normalisation (``find_shortcuts`` on the source, plus a run-time ``tripwire``),
runs every case of the part through ``part.run`` and hands the outputs to ``part.judge``,
which recomputes the expected result with the reference and, when the two differ, names the
probable mistake (``bncourse.mistakes``). The first failing case raises ``AssertionError``
with the verdict's message, which is what nbgrader shows the student.

The grading pipeline (``bncourse.grading``) uses the same pieces in two processes: ``run`` in
a sandbox, ``judge`` and ``find_shortcuts`` in its own.

Helpers shared by the check modules live here too: ``compare`` (one array against the
expected one, with the largest difference and where it is), ``unchanged`` (inputs not
mutated) and ``judge_outputs`` (the usual shape of a judge).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Verdict",
    "borrowed",
    "broadcast_hint",
    "check",
    "compare",
    "find_shortcuts",
    "judge_outputs",
    "kind_of",
    "numpy_output",
    "pair",
    "source_of",
    "tripwire",
    "unchanged",
]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one case of one part.

    - passed: whether the student's outputs are right.
    - message: one or two sentences for the student ("" when passed).
    - mistake: id of the known mistake that explains the outputs (see ``bncourse.mistakes``),
      ``"exception"``/``"shortcut"``/``"mutates_input"``/... for the generic failures, or
      None when passed or when no known mistake matched.
    """

    passed: bool
    message: str = ""
    mistake: str | None = None



# --------------------------------------------------------------------------- shortcuts

# Attribute or imported names that are ready-made normalisation, wherever they come from
# (torch.nn.functional.batch_norm, torch.batch_norm, nn.BatchNorm2d, F.layer_norm, ...).
_FORBIDDEN_NAMES = frozenset(
    {
        "batch_norm",
        "native_batch_norm",
        "batch_norm_stats",
        "batch_norm_elemt",
        "batch_norm_gather_stats",
        "cudnn_batch_norm",
        "miopen_batch_norm",
        "layer_norm",
        "native_layer_norm",
        "group_norm",
        "native_group_norm",
        "instance_norm",
        "rms_norm",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LazyBatchNorm1d",
        "LazyBatchNorm2d",
        "LazyBatchNorm3d",
        "SyncBatchNorm",
        "LayerNorm",
        "GroupNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "RMSNorm",
        "StandardScaler",
        "zscore",
    }
)
# Modules whose every use counts as a shortcut: the course's own package (its reference
# implementations, checks and variants), except the helpers students are meant to use, and
# scikit-learn's scalers.
_FORBIDDEN_MODULES = ("bncourse", "sklearn.preprocessing")
_ALLOWED_MODULES = ("bncourse.data", "bncourse.plots", "bncourse.diagrams")
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# The frames that call the student's object (check modules, this file) are not helpers.
_CALLERS_OF_STUDENT_CODE = (str(Path(__file__).resolve()), str(Path(_PACKAGE_DIR) / "checks"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _forbidden_module(module: str) -> bool:
    """Whether ``module`` (or a name inside it) is off limits; the bare package is not, its
    uses are checked one by one."""
    if module == "bncourse" or any(
        module == m or module.startswith(m + ".") for m in _ALLOWED_MODULES
    ):
        return False
    return any(module == m or module.startswith(m + ".") for m in _FORBIDDEN_MODULES)


def find_shortcuts(source: str) -> str | None:
    """Scan the source of a student's function or class for ready-made normalisation.

    Inputs:
    - source: Python source of one function or class (indented or not).

    Returns a sentence saying what was found (e.g. "it calls torch.nn.functional.batch_norm,
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
                if _forbidden_module(alias.name):
                    return f"it imports {alias.name}, which computes the result for you"
                imported[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if (_forbidden_module(node.module) or _forbidden_module(full)
                        or alias.name in _FORBIDDEN_NAMES):
                    return f"it imports {full}, a ready-made normalisation"
                imported[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            root, _, rest = dotted.partition(".")
            full = imported.get(root, root) + ("." + rest if rest else "")
            if _forbidden_module(full):
                return f"it uses {full}, which computes the result for you"
            if node.attr in _FORBIDDEN_NAMES:
                return f"it uses {full}, a ready-made normalisation"
        elif isinstance(node, ast.Name) and node.id in imported:
            full = imported[node.id]
            if _forbidden_module(full) or full.rsplit(".", 1)[-1] in _FORBIDDEN_NAMES:
                return f"it uses {full}, a ready-made normalisation"
        elif isinstance(node, ast.Name) and node.id in ("zscore", "StandardScaler"):
            return f"it uses {node.id}, a ready-made normalisation"
    return None


def borrowed(obj: Any) -> str | None:
    """A sentence when ``obj`` is itself a ready-made object (e.g. ``batchnorm_forward =
    bncourse.cpu.batchnorm_forward``, or ``torch.nn.BatchNorm1d``), else None."""
    module = getattr(obj, "__module__", None) or ""
    if _forbidden_module(module) or (
        module.startswith("torch") and getattr(obj, "__name__", "") in _FORBIDDEN_NAMES
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
        from torch.nn.modules import batchnorm, instancenorm, normalization

        add(batchnorm._BatchNorm, "torch.nn.BatchNorm", ["forward"])
        add(instancenorm._InstanceNorm, "torch.nn.InstanceNorm", ["forward"])
        add(normalization.LayerNorm, "torch.nn.LayerNorm", ["forward"])
        add(normalization.GroupNorm, "torch.nn.GroupNorm", ["forward"])
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


# --------------------------------------------------------------------------- comparing


def _index(flat_index: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return "()"
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


def compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    """Compare one output with the expected array.

    Inputs:
    - name: how the message calls the output, e.g. "out" or "dgamma".
    - got: the student's output (anything; an array is expected).
    - expected: the right answer (the reference's, usually float64).
    - rtol, atol: elementwise tolerance |got - expected| <= atol + rtol * |expected|.

    Returns None when they agree, else one sentence: wrong type, shape or non-finite
    values, or the largest difference, its index and the two values there.
    """
    expected = np.asarray(expected)
    if not isinstance(got, np.ndarray) and not np.isscalar(got):
        return f"`{name}` should be a NumPy array, got {type(got).__name__}."
    got = np.asarray(got)
    if got.shape != expected.shape:
        return f"`{name}` has shape {got.shape}, expected {expected.shape}."
    if not np.issubdtype(got.dtype, np.number) or np.iscomplexobj(got):
        return f"`{name}` has dtype {got.dtype}, expected real numbers."
    got64 = got.astype(np.float64)
    exp64 = expected.astype(np.float64)
    bad_finite = np.isfinite(got64) != np.isfinite(exp64)
    if bad_finite.any():
        flat = int(np.flatnonzero(bad_finite)[0])
        return (
            f"`{name}` holds {got64.flat[flat]} at index {_index(flat, got.shape)} where "
            f"{exp64.flat[flat]:.6g} was expected."
        )
    finite = np.isfinite(exp64)
    excess = np.where(finite, np.abs(got64 - exp64) - (atol + rtol * np.abs(exp64)), -np.inf)
    if got.size == 0 or excess.max() <= 0:
        return None
    flat = int(np.argmax(excess))
    diff = float(np.abs(got64 - exp64).flat[flat])
    return (
        f"`{name}` is wrong: the largest difference is {diff:.3g} at index "
        f"{_index(flat, got.shape)} (got {got64.flat[flat]:.6g}, expected "
        f"{exp64.flat[flat]:.6g})."
    )


def unchanged(case: Mapping[str, Any], outputs: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """Check that the inputs ``names`` came back unmodified.

    ``run`` returns the arrays it passed to the student, after the call, under
    ``"after_<name>"``. Returns a sentence naming the first mutated input, or None.
    """
    for name in names:
        after = outputs.get(f"after_{name}")
        if after is None:
            continue
        before = np.asarray(case[name])
        if after.shape != before.shape or not np.array_equal(after, before, equal_nan=True):
            return (
                f"it modified its input `{name}` in place; build new arrays instead "
                f"(write `a = a - b`, not `a -= b`)."
            )
    return None


Tolerance = tuple[float, float]


def judge_outputs(
    target: str,
    case: Mapping[str, Any],
    outputs: Mapping[str, Any],
    expected: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    variants: Sequence[Any] = (),
    dtype_of: str | None = None,
    inputs: Sequence[str] = (),
) -> Verdict:
    """The usual judge: inputs intact, outputs present, dtype kept, values right or diagnosed.

    Inputs:
    - target: the student's function name, for the messages.
    - case: the inputs (with a "label" string describing them).
    - outputs: what ``run`` returned (arrays; missing or extra keys are tolerated).
    - expected: name -> right answer, for every output that is compared.
    - tolerance: (rtol, atol) used for every output.
    - variants: ``bncourse.mistakes.Variant`` objects to try when the result is wrong.
    - dtype_of: name of the case input whose dtype every output must keep, or None.
    - inputs: names of the case inputs that must come back unmodified.
    """
    from bncourse.mistakes import diagnose

    where = f"{target} ({case.get('label', 'a test case')})"
    mutated = unchanged(case, outputs, inputs)
    if mutated:
        return Verdict(False, f"{where}: {mutated}", "mutates_input")
    missing = [name for name in expected if name not in outputs]
    if missing:
        return Verdict(False, f"{where}: returned no `{missing[0]}`.", "exception")
    if dtype_of is not None:
        want = np.asarray(case[dtype_of]).dtype
        for name in expected:
            got_dtype = np.asarray(outputs[name]).dtype
            if got_dtype != want:
                return Verdict(
                    False,
                    f"{where}: `{name}` is {got_dtype} but the input is {want}; keep the "
                    f"input's dtype.",
                    "dtype_changed",
                )
    return diagnose(where, case, outputs, expected, tolerance, variants)


# --------------------------------------------------------------------------- check


def check(part_id: str, obj: Any) -> None:
    """Run one graded part on the student's function or class; raise AssertionError if wrong.

    Inputs:
    - part_id: the part's id, equal to the nbgrader grade_id of the calling cell.
    - obj: the student's function or class (the part's ``target``).

    Prints ``passed: <description>`` when every case passes.
    """
    from bncourse.checks import PARTS, canonical_id

    part_id = canonical_id(part_id)
    if part_id not in PARTS:
        raise KeyError(f"part_id: expected one of {sorted(PARTS)}, got {part_id!r}")
    part = PARTS[part_id]
    reason = borrowed(obj) or find_shortcuts(source_of(obj))
    if reason:
        raise AssertionError(f"{part.target} gets 0 points for this part: {reason}.")
    for case in part.cases():
        verdict = run_case(part, obj, case)
        if not verdict.passed:
            raise AssertionError(verdict.message)
    print(f"passed: {part.description}")


def run_case(part: Any, obj: Any, case: dict[str, Any]) -> Verdict:
    """One case of a part in this process: run under the tripwire, then judge."""
    try:
        with tripwire() as hits:
            outputs = part.run(obj, case)
    except Exception as error:  # any error of the student's code is a verdict
        where = f"{part.target} ({case.get('label', 'a test case')})"
        return Verdict(
            False, f"{where} raised {type(error).__name__}: {error}", "exception"
        )
    if hits:
        return Verdict(
            False,
            f"{part.target} gets 0 points for this part: it called {hits[0]}, a ready-made "
            f"normalisation, instead of computing the result.",
            "shortcut",
        )
    try:
        return part.judge(case, outputs)
    except Exception as error:  # malformed outputs must fail, not crash
        return Verdict(
            False,
            f"{part.target} returned something that could not be checked "
            f"({type(error).__name__}: {error}).",
            "exception",
        )


def as_array(value: Any) -> np.ndarray:
    """A plain NumPy array from an array, a tensor (any device) or a scalar."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def kind_of(value: Any) -> str:
    """How a message names what came back: "a torch.Tensor", "a list of 3 items", "None"..."""
    if value is None:
        return "None"
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return "a torch.Tensor"
    if isinstance(value, tuple | list | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, np.ndarray):
        return f"a single array of shape {value.shape}"
    return f"a {type(value).__name__}"


def pair(result: Any, target: str, names: tuple[str, str] = ("out", "cache")) -> tuple[Any, Any]:
    """Unpack a two-element return value, with a clear error when it is not one."""
    if not isinstance(result, tuple | list) or len(result) != 2:
        hint = ""
        if names == ("out", "cache"):
            hint = " (end with `return out, cache`; the cache may be None until assignment 4)"
        elif result is None:
            hint = " (is the `return` statement missing?)"
        raise TypeError(
            f"{target} should return a pair ({names[0]}, {names[1]}), got {kind_of(result)}{hint}"
        )
    return result[0], result[1]


def numpy_output(value: Any, name: str, target: str) -> np.ndarray:
    """``value`` as an array, or a TypeError saying what a NumPy exercise got instead.

    For the functions students write in NumPy (the ``bncourse.cpu`` API): a tensor, a list,
    a tuple or None is a wrong answer with a message of its own, rather than being converted
    (``np.asarray`` would turn a list into float64 and report a misleading dtype).
    """
    if isinstance(value, np.ndarray | np.generic | float | int) and not isinstance(value, bool):
        return np.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        advice = "compute it with NumPy operations (or convert with `.numpy()`)"
    elif value is None:
        advice = "is a `return` statement missing?"
    else:
        advice = "build it with NumPy operations (or convert with `np.asarray`)"
    raise TypeError(f"{target} returned `{name}` as {kind_of(value)}; it should be a NumPy "
                    f"array: {advice}")


@contextlib.contextmanager
def broadcast_hint(hint: str) -> Iterator[None]:
    """Add ``hint`` to a NumPy "could not be broadcast" error raised by the student's code.

    The bare NumPy message names two shapes; on a layout with spatial axes the usual cause is
    a (C,) vector meeting an (N, C, H, W) array, which the hint explains. The error stays a
    ValueError raised by the student's call.
    """
    try:
        yield
    except ValueError as error:
        if "could not be broadcast" not in str(error):
            raise
        raise ValueError(f"{str(error).strip()}. Hint: {hint}") from error

