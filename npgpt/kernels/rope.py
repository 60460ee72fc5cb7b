"""Rotary position embedding (RoPE): NumPy reference and numba kernel, two layouts.

    x, y, dy, dx: (..., T, hs)     cos, sin: (T, hs/2), or any shape broadcastable to
    (..., T, hs/2) (one row of angles per sequence: (B, 1, T, hs/2))   cos[t, i] = cos(m_t theta_i)

Each pair (x_a, x_b) of a head is rotated by its angle:
    y_a = x_a cos - x_b sin        y_b = x_b cos + x_a sin
layouts:   half         pairs (i, i + hs/2): GPT-NeoX, HuggingFace LLaMA
           interleaved  pairs (2i, 2i + 1): the RoPE paper, Meta's LLaMA, GPT-J
backward:  a rotation's transpose is the rotation by minus the angle: dx = rope(dy, cos, -sin)

``out``, if given, receives the result; it may be a strided view (the heads of a projection),
but not x itself. The kernel reads x and writes out where they lie, any strides.
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.jit import row_kernel


def _check(x, cos, sin, out):
    if x.ndim < 2 or x.shape[-1] % 2:
        raise InputError(f"rope expects x of shape (..., T, hs) with an even hs, got {x.shape}")
    want = x.shape[:-1] + (x.shape[-1] // 2,)
    for table in (cos, sin):
        if table.shape[-2:] != want[-2:] or np.broadcast_shapes(table.shape, want) != want:
            raise InputError(f"rope expects cos and sin of shape (T, hs/2) = {want[-2:]}, or "
                             f"broadcastable to {want}, got {cos.shape} and {sin.shape}")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype):
        raise InputError(f"rope's out must have shape {x.shape} and dtype {x.dtype}, got "
                         f"{out.shape} and {out.dtype}")


def _pairs(x, interleaved):
    return (x[..., 0::2], x[..., 1::2]) if interleaved else np.split(x, 2, axis=-1)


def rope_forward_ref(x, cos, sin, interleaved=False, out=None):
    _check(x, cos, sin, out)
    a, b = _pairs(x, interleaved)
    y = np.empty_like(x) if out is None else out
    ya, yb = _pairs(y, interleaved)
    ya[...] = a * cos - b * sin
    yb[...] = b * cos + a * sin
    return y


def rope_backward_ref(dy, cos, sin, interleaved=False, out=None):
    return rope_forward_ref(dy, cos, -sin, interleaved, out)


@row_kernel
def _rotate(x, cos, sin, sign, interleaved, y):
    """x, y: (N1, N2, T, hs), any strides; cos, sin: (N1, N2, T, hs/2), broadcast (strides 0)."""
    N1, N2, T, hs = x.shape
    half = hs // 2
    for row in prange(N1 * N2 * T):
        n1, n2, t = row // (N2 * T), (row // T) % N2, row % T
        xr, yr, c_row, s_row = x[n1, n2, t], y[n1, n2, t], cos[n1, n2, t], sin[n1, n2, t]
        for i in range(half):
            ia, ib = (2 * i, 2 * i + 1) if interleaved else (i, i + half)
            c, s = c_row[i], sign * s_row[i]
            a, b = xr[ia], xr[ib]
            yr[ia] = a * c - b * s
            yr[ib] = b * c + a * s


def _as4d(a):
    """(..., T, n) as (N1, N2, T, n): leading axes added, or merged (a copy only then)."""
    if a.ndim < 4:
        return a.reshape((1,) * (4 - a.ndim) + a.shape)
    return a.reshape((-1,) + a.shape[-3:])


def _rope_numba(x, cos, sin, interleaved, sign, out):
    _check(x, cos, sin, out)
    y = out if out is not None and out.ndim <= 4 else np.empty(x.shape, x.dtype)
    half = (x.shape[:-1] + (x.shape[-1] // 2,))
    tables = [_as4d(np.broadcast_to(np.asarray(t, dtype=x.dtype), half)) for t in (cos, sin)]
    _rotate.pick(x.size)(_as4d(x), *tables, x.dtype.type(sign), bool(interleaved), _as4d(y))
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


def rope_forward_numba(x, cos, sin, interleaved=False, out=None):
    return _rope_numba(x, cos, sin, interleaved, 1.0, out)


def rope_backward_numba(dy, cos, sin, interleaved=False, out=None):
    return _rope_numba(dy, cos, sin, interleaved, -1.0, out)
