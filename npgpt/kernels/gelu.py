"""GELU, tanh approximation (GPT-2's): the NumPy reference and the numba kernel.

    x, y, dy, dx: any shape (elementwise)

forward:   u = k * (x + a x^3)   with k = sqrt(2/pi), a = 0.044715
           y = 0.5 x (1 + tanh u)
backward:  dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k (1 + 3 a x^2))
"""
import math

import numpy as np
from numba import prange

from ._jit import jit

_K = math.sqrt(2.0 / math.pi)
_A = 0.044715
_BLOCK = 1 << 14        # elements per parallel block


def gelu_tanh_forward_ref(x):
    return 0.5 * x * (1.0 + np.tanh(_K * (x + _A * x ** 3)))


def gelu_tanh_backward_ref(dy, x):
    t = np.tanh(_K * (x + _A * x ** 3))
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K * (1.0 + 3.0 * _A * x * x))


@jit(parallel=True)
def _forward(x, y, k, a, half, one):
    n = x.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            v = x[i]
            y[i] = half * v * (one + np.tanh(k * (v + a * v * v * v)))


@jit(parallel=True)
def _backward(dy, x, dx, k, a, half, one, three):
    n = x.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            v = x[i]
            t = np.tanh(k * (v + a * v * v * v))
            dx[i] = dy[i] * (half * (one + t) + half * v * (one - t * t) * k * (one + three * a * v * v))


def _constants(dtype):
    """The formula's constants in the input dtype, so float32 math stays float32 (and SIMD-wide)."""
    t = np.dtype(dtype).type
    return t(_K), t(_A), t(0.5), t(1.0)


def gelu_tanh_forward_numba(x):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _forward(flat, y, *_constants(x.dtype))
    return y.reshape(x.shape)


def gelu_tanh_backward_numba(dy, x):
    flat = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat)
    _backward(np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1), flat, dx,
              *_constants(x.dtype), np.dtype(x.dtype).type(3.0))
    return dx.reshape(x.shape)
