"""Import numba without its import-time BLAS probe loading SciPy.

numba's first compile (or first load of a cached kernel) in a process imports its NumPy
implementations, and one of them asks "is there a BLAS?" by importing ``scipy.linalg``: a
third of a second, paid by every process, even one (a tokenizer training) that never
multiplies a matrix.  The answer only decides whether ``np.convolve`` / ``np.correlate`` call
BLAS.  Here the probe checks that SciPy is installed without importing it; every kernel that
does use BLAS still imports ``scipy.linalg.cython_blas`` itself when it is compiled.

    from ..runtime.numba_start import njit
"""
import importlib.util

import numba.np.linalg as _linalg

if "numba.np.arraymath" not in __import__("sys").modules:
    _ensure_blas = _linalg.ensure_blas

    def _scipy_installed():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy is required for linear algebra")

    _linalg.ensure_blas = _scipy_installed
    try:
        import numba.np.arraymath as _arraymath
    finally:
        _linalg.ensure_blas = _ensure_blas
    _arraymath.ensure_blas = _ensure_blas

from numba import njit  # noqa: E402

__all__ = ["njit"]
