"""A vectorisable exp for the kernels' inner loops.

numba turns ``np.exp`` on a scalar into a libm call per element (~11 ns for float32 here,
against ~2 ns for NumPy's SIMD ufunc), which made softmax and cross-entropy no faster than
NumPy. For float32, :func:`exp_inplace` evaluates exp in two branch-free loops LLVM vectorises:

    n = round(x / ln 2),  r = x - n ln 2  (ln 2 split in two for exactness),
    exp(x) = p(r) * 2^n   with p Cephes' degree-7 polynomial (relative error ~1e-7)
    2^n is built from its bits, (n + 127) << 23, in an int32 scratch viewed as float32.

x < -87.3 gives 0 (so -inf masks give exact zeros), x > 88 gives inf. float64 keeps ``np.exp``
(float64 runs are for gradient checks, where exactness matters and speed does not).
"""
import numpy as np
from numba import types
from numba.extending import overload

from ._jit import FASTMATH

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_LO = np.float32(-87.33654)
_HI = np.float32(88.0)
_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                   4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_ZERO, _ONE, _HALF, _INF = np.float32(0), np.float32(1), np.float32(0.5), np.float32(np.inf)


def exp_inplace(a, bits):
    """a[:] = exp(a) for a 1-D contiguous float array; bits: int32 scratch of a's size."""
    a[:] = np.exp(a)


def _exp_float32(a, bits):
    scale = bits.view(np.float32)
    P0, P1, P2, P3, P4, P5 = _P
    for i in range(a.size):
        x = min(max(a[i], _LO), _HI)
        n = np.floor(x * _LOG2E + _HALF)
        r = x - n * _LN2_HI - n * _LN2_LO
        p = ((((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * r * r + r) + _ONE
        v = a[i]
        a[i] = _ZERO if v < _LO else (_INF if v > _HI else p)
        bits[i] = (np.int32(n) + np.int32(127)) << np.int32(23)
    for i in range(a.size):
        a[i] *= scale[i]


def _exp_generic(a, bits):
    for i in range(a.size):
        a[i] = np.exp(a[i])


@overload(exp_inplace, jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _exp_inplace_overload(a, bits):
    if isinstance(a, types.Array) and a.dtype == types.float32:
        return _exp_float32
    return _exp_generic
