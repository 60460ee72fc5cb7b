"""A vectorisable exp for the kernels' inner loops.

numba turns ``np.exp`` on a scalar into a libm call per element, several times slower than
NumPy's SIMD ufunc, which made softmax and cross-entropy no faster than NumPy. For float32, :func:`exp` is branch-free arithmetic that LLVM vectorises inside the
caller's loop:

    n = round(x / ln 2),  r = x - n ln 2  (ln 2 split in two for exactness),
    exp(x) = p(r) * 2^n   with p Cephes' degree-7 polynomial (relative error ~1e-7)
    2^n is built from its bits, (n + 127) << 23, reinterpreted as a float32.

x < -87.3 gives 0 (so -inf masks give exact zeros), x > 88 gives inf. float64 keeps ``np.exp``
(float64 runs are for gradient checks, where exactness matters and speed does not).

The reinterpretation is one LLVM ``bitcast`` (:func:`_float32_from_bits`), so exp is a scalar
function a kernel calls in the loop that also computes its argument and uses its result: no
int32 scratch and no second pass over the array (docs/performance.md, "Runtime").
"""
import llvmlite.ir
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from .jit import FASTMATH

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_LO = np.float32(-87.33654)
_HI = np.float32(88.0)
_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                   4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_ZERO, _ONE, _HALF, _INF = np.float32(0), np.float32(1), np.float32(0.5), np.float32(np.inf)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of an integer (no conversion)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, llvmlite.ir.IntType(32))
        elif bits.bitwidth < 32:
            value = builder.zext(value, llvmlite.ir.IntType(32))
        return builder.bitcast(value, context.get_value_type(types.float32))

    return types.float32(bits), codegen


def exp(x):
    """exp of a float scalar, in its dtype; only inside jitted kernels."""
    return np.exp(x)


def _exp_float32(x):
    P0, P1, P2, P3, P4, P5 = _P
    c = min(max(x, _LO), _HI)
    n = np.floor(c * _LOG2E + _HALF)
    r = c - n * _LN2_HI - n * _LN2_LO
    p = ((((((P0 * r + P1) * r + P2) * r + P3) * r + P4) * r + P5) * r * r + r) + _ONE
    p *= _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    return _ZERO if x < _LO else (_INF if x > _HI else p)


def _exp_generic(x):
    return np.exp(x)


@overload(exp, inline="always", jit_options={"fastmath": FASTMATH, "error_model": "numpy"})
def _exp_overload(x):
    return _exp_float32 if x == types.float32 else _exp_generic
