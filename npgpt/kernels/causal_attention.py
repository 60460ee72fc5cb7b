"""Causal self-attention that skips the masked upper triangle: NumPy reference and numba kernel.

    q, k, v, out, dout, dq, dk, dv: (B, H, T, hs)     probs: (B, H, T, T), zero above the diagonal

forward:   probs = softmax(scale * q k^T) over keys s <= t      out = probs v
backward:  dv = probs^T dout        dprobs = dout v^T
           dscores = scale * probs * (dprobs - sum_s(dprobs * probs))
           dq = dscores k           dk = dscores^T q

``npgpt.kernels.attention`` multiplies the full (T, T) score matrix and masks it afterwards;
here each head is cut into blocks of ``_BLOCK`` queries and block i only meets the keys up to
its last query, so the products do (n + 1) / 2n of the work for n blocks (T = 256, 64-query
blocks: 62%), and the softmax touches only the visible keys.
"""
import math

import numpy as np
from numba import prange

from ..errors import InputError
from ._exp import exp_inplace
from ._jit import row_kernel
from .attention import attention_backward_ref, attention_forward_ref

_BLOCK = 64          # queries per block: large enough for BLAS, small enough to skip work


def _check(q, k, v):
    if q.ndim != 4 or not (q.shape == k.shape == v.shape):
        raise InputError(f"causal attention expects q, k, v of one shape (B, H, T, hs), got "
                         f"{q.shape}, {k.shape} and {v.shape}")


def _scale(q, scale):
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale


def causal_attention_forward_ref(q, k, v, scale=None):
    _check(q, k, v)
    return attention_forward_ref(q, k, v, True, None, _scale(q, scale))


def causal_attention_backward_ref(dout, q, k, v, probs, scale=None):
    return attention_backward_ref(dout, q, k, v, probs, _scale(q, scale))


@row_kernel
def _forward(q, k, v, scale, block, out, probs):
    B, H, T = q.shape[:3]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        bits = np.empty(T, np.int32)
        buf = np.empty(block * T, q.dtype)              # one block's scores, contiguous
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)
            p = buf[:(t1 - t0) * t1].reshape(t1 - t0, t1)   # keys past t1 are masked for all
            p[:, :] = np.dot(q[b, h, t0:t1], k[b, h, :t1].T)
            for i in range(t1 - t0):
                row = p[i]
                end = t0 + i + 1                         # keys [0, end) are visible
                top = row[0] * scale
                for s in range(end):
                    x = row[s] * scale
                    row[s] = x
                    top = max(top, x)
                for s in range(end):
                    row[s] -= top
                exp_inplace(row[:end], bits[:end])
                z = 0.0
                for s in range(end):
                    z += row[s]
                inv = 1.0 / z
                for s in range(end):
                    row[s] *= inv
                row[end:] = 0.0
            out[b, h, t0:t1] = np.dot(p, v[b, h, :t1])
            probs[b, h, t0:t1, :t1] = p
            probs[b, h, t0:t1, t1:] = 0.0


@row_kernel
def _backward(dout, q, k, v, probs, scale, block, dq, dk, dv):
    B, H, T = q.shape[:3]
    for bh in prange(B * H):
        b, h = bh // H, bh % H
        dk[b, h] = 0.0
        dv[b, h] = 0.0
        buf = np.empty(block * T, q.dtype)
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)
            p = buf[:(t1 - t0) * t1].reshape(t1 - t0, t1)
            p[:, :] = probs[b, h, t0:t1, :t1]           # a contiguous copy for BLAS
            do = dout[b, h, t0:t1]
            dv[b, h, :t1] += np.dot(p.T, do)
            ds = np.dot(do, v[b, h, :t1].T)             # dprobs, turned into dscores in place
            for i in range(t1 - t0):
                end = t0 + i + 1
                dot = 0.0
                for s in range(end):
                    dot += ds[i, s] * p[i, s]
                for s in range(end):
                    ds[i, s] = scale * p[i, s] * (ds[i, s] - dot)
                ds[i, end:] = 0.0
            dq[b, h, t0:t1] = np.dot(ds, k[b, h, :t1])
            dk[b, h, :t1] += np.dot(ds.T, q[b, h, t0:t1])


def causal_attention_forward_numba(q, k, v, scale=None, block=_BLOCK):
    _check(q, k, v)
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    B, H, T, _ = q.shape
    out = np.empty_like(q)
    probs = np.empty((B, H, T, T), q.dtype)
    _forward.pick(probs.size)(q, k, v, q.dtype.type(_scale(q, scale)), block, out, probs)
    return out, probs


def causal_attention_backward_numba(dout, q, k, v, probs, scale=None, block=_BLOCK):
    """Also right for probs from any causal forward (padded keys have probability 0 there)."""
    dout, q, k, v, probs = (np.ascontiguousarray(a) for a in (dout, q, k, v, probs))
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _backward.pick(probs.size)(dout, q, k, v, probs, q.dtype.type(_scale(q, scale)), block,
                               dq, dk, dv)
    return dq, dk, dv
