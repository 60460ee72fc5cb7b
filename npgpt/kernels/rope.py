"""Rotary position embedding (RoPE): NumPy reference and numba kernel, two layouts.

    x, y, dy, dx: (..., T, hs)     cos, sin: (T, hs/2)   (cos[t, i] = cos(t * theta_i))

Each pair (x_a, x_b) of a head is rotated by its angle:
    y_a = x_a cos - x_b sin        y_b = x_b cos + x_a sin
layouts:   half         pairs (i, i + hs/2): GPT-NeoX, HuggingFace LLaMA
           interleaved  pairs (2i, 2i + 1): the RoPE paper, Meta's LLaMA, GPT-J
backward:  a rotation's transpose is the rotation by minus the angle: dx = rope(dy, cos, -sin)
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.jit import row_kernel


def _check(x, cos, sin):
    if x.ndim < 2 or x.shape[-1] % 2:
        raise InputError(f"rope expects x of shape (..., T, hs) with an even hs, got {x.shape}")
    want = (x.shape[-2], x.shape[-1] // 2)
    if cos.shape != want or sin.shape != want:
        raise InputError(f"rope expects cos and sin of shape (T, hs/2) = {want}, got "
                         f"{cos.shape} and {sin.shape}")


def _pairs(x, interleaved):
    return (x[..., 0::2], x[..., 1::2]) if interleaved else np.split(x, 2, axis=-1)


def rope_forward_ref(x, cos, sin, interleaved=False):
    _check(x, cos, sin)
    a, b = _pairs(x, interleaved)
    y = np.empty_like(x)
    ya, yb = _pairs(y, interleaved)
    ya[...] = a * cos - b * sin
    yb[...] = b * cos + a * sin
    return y


def rope_backward_ref(dy, cos, sin, interleaved=False):
    return rope_forward_ref(dy, cos, -sin, interleaved)


@row_kernel
def _rotate(x, cos, sin, sign, interleaved, y):
    N, T, hs = x.shape
    half = hs // 2
    for row in prange(N * T):
        n, t = row // T, row % T
        for i in range(half):
            ia, ib = (2 * i, 2 * i + 1) if interleaved else (i, i + half)
            c, s = cos[t, i], sign * sin[t, i]
            a, b = x[n, t, ia], x[n, t, ib]
            y[n, t, ia] = a * c - b * s
            y[n, t, ib] = b * c + a * s


def _rope_numba(x, cos, sin, interleaved, sign):
    _check(x, cos, sin)
    T, hs = x.shape[-2:]
    x3 = np.ascontiguousarray(x).reshape(-1, T, hs)
    y = np.empty_like(x3)
    _rotate.pick(x3.size)(x3, np.ascontiguousarray(cos, dtype=x.dtype), np.ascontiguousarray(sin, dtype=x.dtype),
            x.dtype.type(sign), bool(interleaved), y)
    return y.reshape(x.shape)


def rope_forward_numba(x, cos, sin, interleaved=False):
    return _rope_numba(x, cos, sin, interleaved, 1.0)


def rope_backward_numba(dy, cos, sin, interleaved=False):
    return _rope_numba(dy, cos, sin, interleaved, -1.0)
