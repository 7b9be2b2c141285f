"""The implementations the shared tests run on, by name: NumPy (readable and fast), the torch
reference, the fused torch path.

``module_for("fused")`` is ``bncourse.gpu`` with the training forward and backward of
``bncourse.fused`` run eagerly (the compiled kernels are tested on a few shapes in
test_gpu.py, as compiling takes seconds per shape).
"""

from types import SimpleNamespace

from bncourse import cpu, cpu_fast, fused, gpu

_fused_functions = {name: getattr(gpu, name) for name in gpu.__all__}
_fused_functions |= {"batchnorm_forward": fused.batchnorm_forward, "batchnorm_backward": fused.batchnorm_backward}
FUSED = SimpleNamespace(**_fused_functions)

_numpy_fast_functions = {name: getattr(cpu, name) for name in cpu.__all__}
_numpy_fast_functions |= {name: getattr(cpu_fast, name) for name in cpu_fast.__all__}
NUMPY_FAST = SimpleNamespace(**_numpy_fast_functions)

MODULES = {"numpy": cpu, "numpy-fast": NUMPY_FAST, "torch": gpu, "fused": FUSED}


def module_for(library: str):
    """The module (or namespace) with the eight reference functions of ``library``."""
    return MODULES[library]
