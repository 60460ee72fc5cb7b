"""GELU, tanh approximation (GPT-2's): the NumPy reference and the numba kernel.

    x, y, dy, dx: any shape (elementwise)

forward:   u = k * (x + a x^3)   with k = sqrt(2/pi), a = 0.044715
           y = 0.5 x (1 + tanh u)
backward:  dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k (1 + 3 a x^2))
"""
import math

import numpy as np
from numba import prange

from ..runtime.exp import exp
from ..runtime.jit import row_kernel

_K = math.sqrt(2.0 / math.pi)
_A = 0.044715
_BLOCK = 1 << 12        # elements per parallel block

# Each block works on slices of the arrays, indexed from 0. Indexing the whole array at
# lo + j instead, inside a prange loop, costs a negative-index check per element that LLVM
# cannot drop (it does not know lo >= 0 there), so the loop does not vectorise (the cost is
# in docs/performance.md).


def gelu_tanh_forward_ref(x):
    return 0.5 * x * (1.0 + np.tanh(_K * (x + _A * x * x * x)))


def gelu_tanh_backward_ref(dy, x):
    t = np.tanh(_K * (x + _A * x * x * x))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K * (1.0 + 3.0 * _A * x * x))


# The kernels use 0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + exp(-2u)), so one vectorised exp
# is all they evaluate; then 0.5 (1 - tanh^2 u) = 2 s (1 - s) with s = sigmoid(2u).

@row_kernel
def _forward(x, y, k2, a, one):
    n = x.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        sl = slice(b * _BLOCK, (b + 1) * _BLOCK)
        xs, ys = x[sl], y[sl]
        for j in range(xs.size):
            v = xs[j]
            ys[j] = v / (one + exp(-k2 * (v + a * v * v * v)))      # x * sigmoid(2u)


@row_kernel
def _backward(dy, x, dx, k2, a, one, three):
    n = x.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        sl = slice(b * _BLOCK, (b + 1) * _BLOCK)
        xs, dys, dxs = x[sl], dy[sl], dx[sl]
        for j in range(xs.size):
            v = xs[j]
            s = one / (one + exp(-k2 * (v + a * v * v * v)))
            # term 1: d(x) * s; term 2: x * ds/du * du/dx, with ds/d(2u) = s (1 - s)
            dxs[j] = dys[j] * (s + v * s * (one - s) * k2 * (one + three * a * v * v))


def _constants(dtype):
    """The formula's constants in the input dtype, so float32 math stays float32 (and SIMD-wide)."""
    t = np.dtype(dtype).type
    return t(2 * _K), t(_A), t(1.0)


def gelu_tanh_forward_numba(x):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _forward.pick(flat.size)(flat, y, *_constants(x.dtype))
    return y.reshape(x.shape)


def gelu_tanh_backward_numba(dy, x):
    flat = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat)
    _backward.pick(flat.size)(np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1), flat, dx,
                              *_constants(x.dtype), np.dtype(x.dtype).type(3.0))
    return dx.reshape(x.shape)
