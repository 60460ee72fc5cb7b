"""The error function erf, elementwise: the NumPy reference and the numba kernel.

    x, y: any shape (elementwise); integers are taken as float64

    erf(x) = 2 / sqrt(pi) * integral_0^x exp(-t^2) dt

Both call the C library's ``erf`` (``math.erf``), correctly rounded to within an ulp or two:
the reference once per element through a NumPy ufunc of Python's function, the kernel in a
compiled loop. A polynomial or series approximation would not be as exact, and exact GELU
(``GELU(approximate="none")``) is what PyTorch's default GELU computes.
"""
import math

import numpy as np
from numba import prange

from ..runtime.jit import row_kernel

_BLOCK = 1 << 12        # elements per parallel block (slices indexed from 0: see gelu.py)
_erf_object = np.frompyfunc(math.erf, 1, 1)


def _as_float(x):
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def erf_ref(x):
    x = _as_float(x)
    return np.asarray(_erf_object(x), dtype=x.dtype)


@row_kernel
def _erf(x, y):
    n = x.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        sl = slice(b * _BLOCK, (b + 1) * _BLOCK)
        xs, ys = x[sl], y[sl]
        for j in range(xs.size):
            ys[j] = math.erf(xs[j])


def erf_numba(x):
    x = _as_float(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _erf.pick(flat.size)(flat, y)
    return y.reshape(x.shape)
