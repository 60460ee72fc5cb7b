"""numba for kernels that a short process loads from the cache: ``njit`` as numba's, cheaper
to start.

Two costs of numba's start that such a process (a tokenizer training) pays for nothing:

- Loading a cached kernel first "refreshes" numba's typing and lowering registries: it imports
  and registers every NumPy, list, dict and random implementation numba has (a fifth of a
  second), which only compiling uses.  Loading needs the runtime's allocator symbols alone, so
  the kernels made by this ``njit`` load with those; compiling still refreshes the registries
  itself (``compiler.compile_extra`` does), so a cache miss compiles as ever.
- Registering the NumPy implementations (on the first compile in a process) asks "is there a
  BLAS?" by importing ``scipy.linalg``: a third of a second.  The answer only decides whether
  ``np.convolve`` / ``np.correlate`` call BLAS.  Here the probe checks that SciPy is installed
  without importing it; every kernel that does use BLAS still imports
  ``scipy.linalg.cython_blas`` itself when it is compiled.

    from ..runtime.numba_start import njit
"""
import importlib.util
import sys
import types

import numba
from numba.core import cpu

__all__ = ["njit"]


def _scipy_installed():
    if importlib.util.find_spec("scipy") is None:
        raise ImportError("scipy is required for linear algebra")


def _registries_without_scipy(self, _load=cpu.CPUContext.load_additional_registries):
    if "numba.np.arraymath" not in sys.modules:
        from numba.np import linalg
        ensure_blas = linalg.ensure_blas
        linalg.ensure_blas = _scipy_installed
        try:
            from numba.np import arraymath
        finally:
            linalg.ensure_blas = ensure_blas
        arraymath.ensure_blas = ensure_blas
    _load(self)


if not getattr(cpu.CPUContext.load_additional_registries, "_npgpt", False):
    _registries_without_scipy._npgpt = True
    cpu.CPUContext.load_additional_registries = _registries_without_scipy


def _load_overload(cache, sig, target_context):
    """numba's ``Cache.load_overload`` without the registry refresh (see the module docstring)."""
    from numba.core.runtime import rtsys
    rtsys.initialize(target_context)
    with cache._guard_against_spurious_io_errors():
        return cache._load_overload(sig, target_context)


def _light(dispatcher):
    cache = getattr(dispatcher, "_cache", None)
    # numba's own loading, as it is, where a numba version lacks the private parts used here
    if cache is not None and all(hasattr(cache, name) for name in
                                 ("_load_overload", "_guard_against_spurious_io_errors")):
        cache.load_overload = types.MethodType(_load_overload, cache)
    return dispatcher


def njit(*args, **kwargs):
    """``numba.njit``, whose cached kernels load without the registry refresh."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _light(numba.njit(args[0]))
    decorate = numba.njit(*args, **kwargs)
    return lambda fn: _light(decorate(fn))
