"""Scaled dot-product attention, fused per head: NumPy reference and numba kernel.

    q: (B, H, T, hs)   k, v: (B, H, S, hs)   out, dout: (B, H, T, hs)   probs: (B, H, T, S)
    key_padding_mask: (B, S) bool, True = a real key      causal: query t sits at S - T + t

forward:   probs = softmax(scale * q k^T, masked)      out = probs v
           (the masked softmax of :mod:`npgpt.kernels.softmax`, its masks and scale)
backward:  dv = probs^T dout        dprobs = dout v^T
           dscores = scale * probs * (dprobs - sum_s(dprobs * probs))
           dq = dscores k           dk = dscores^T q

NumPy's stacked matmul runs each head's small product through BLAS and writes the (T, S)
scores to memory between steps. The kernel takes one head at a time (tasks in parallel over
batch rows and heads) and its queries in blocks of ``block`` (32 or 64, see :func:`_block`):
a block's scores are written straight into its rows of ``probs``, turned into
probabilities there while in cache, and multiplied into ``out``; with the causal mask a block
meets only the keys its last query can see, so the products do (n + 1) / 2n of the work for
n blocks (T = 256: 62%) and the softmax touches only those keys. The backward goes through
the blocks last first: the last block sees every key, so its products set dk and dv and the
earlier blocks' add into them (BLAS's beta = 1).

The products run on BLAS called directly (:func:`npgpt.runtime.blas.gemm`), which takes
each matrix with its own row stride: q, k, v and dout may be strided views (the heads of a
(B, T, 3, H, hs) projection, say), and ``out``, ``dq``, ``dk``, ``dv`` may be given as views
to write into, so neither the layer nor the kernel copies heads around (a view whose last
axis is not contiguous is copied once). The softmax scale is BLAS's alpha.

Attention dropout is not fused: use the unfused path when it is on.
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.blas import dot, gemm
from ..runtime.jit import jit, row_kernel
from .softmax import (
    check_padding_mask,
    check_window,
    softmax_backward_ref,
    softmax_backward_row,
    softmax_forward_ref,
    softmax_row_inplace,
)


def _block(T: int, causal: bool, block) -> int:
    """Queries per block: large enough for BLAS, small enough that the causal mask skips work.
    64, or 32 for causal T <= 128, where the two halves skip a quarter of the products and
    32 measured fastest in a training step (docs/performance.md). Without the mask every
    block sees every key, and smaller blocks only add calls."""
    if block is None:
        return 32 if causal and T <= 128 else 64
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise InputError(f"attention block must be a positive integer, got {block!r}")
    return int(block)


def _check(q, k, v):
    if q.ndim != 4 or k.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] \
            or q.shape[3] != k.shape[3]:
        raise InputError(f"attention expects q (B, H, T, hs) and k, v (B, H, S, hs), got "
                         f"{q.shape}, {k.shape} and {v.shape}")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise InputError(f"attention expects q, k, v of one dtype, got {q.dtype}, {k.dtype} "
                         f"and {v.dtype}")


def _check_out(name, a, shape, dtype):
    if a is not None and (a.shape != shape or a.dtype != dtype):
        raise InputError(f"attention's {name} must have shape {shape} and dtype {dtype}, got "
                         f"{a.shape} and {a.dtype}")


def _scale(q, scale):
    return 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale


def _into(out, value):
    """``value`` delivered into ``out`` if one was given (and is not value itself)."""
    if out is None or out is value:
        return value
    out[...] = value
    return out


def attention_forward_ref(q, k, v, causal=True, key_padding_mask=None, scale=None, out=None,
                          window=None):
    _check(q, k, v)
    probs = softmax_forward_ref(q @ k.swapaxes(-1, -2), causal, key_padding_mask, _scale(q, scale),
                                window)
    return _into(out, probs @ v), probs


def attention_backward_ref(dout, q, k, v, probs, scale=None, causal=False, dq=None, dk=None,
                           dv=None):
    dv_ = probs.swapaxes(-1, -2) @ dout
    dscores = softmax_backward_ref(dout @ v.swapaxes(-1, -2), probs, _scale(q, scale))
    return _into(dq, dscores @ k), _into(dk, dscores.swapaxes(-1, -2) @ q), _into(dv, dv_)


@jit(inline="always")
def _fill(dst, value):
    """dst[:, :] = value, as a loop (numba's slice assignment on a view first checks for
    overlap and goes through a temporary)."""
    for i in range(dst.shape[0]):
        d = dst[i]
        for j in range(dst.shape[1]):
            d[j] = value


@jit(inline="always")
def _keys_seen(causal, T, S, t1):
    """How many keys a block of queries ending before t1 can see: up to its last query's
    position S - T + t1 - 1 if causal, else all S."""
    return max(0, min(S, S - T + t1)) if causal else S


@jit(inline="always")
def _softmax_rows(P, t0, t1, w, T, S, causal, window, mask, has_mask, b, neg_inf, zero, one):
    """Rows t0 .. t1 - 1 of P (T, S), scaled scores against keys 0 .. w - 1, in place to their
    softmax. Masked keys (padding, after a causal query's position, or before its sliding
    window) get probability 0, as do keys w .. S - 1; a query that sees no key gets zeros."""
    for t in range(t0, t1):
        row = P[t]
        end = max(0, min(w, S - T + t + 1)) if causal else w
        if window > 0:
            for s in range(min(end, max(0, S - T + t + 1 - window))):
                row[s] = neg_inf
        if has_mask:
            for s in range(end):
                if not mask[b, s]:
                    row[s] = neg_inf
        top = neg_inf
        for s in range(end):
            top = max(top, row[s])
        softmax_row_inplace(row, end, top, neg_inf, zero, one)


# Blocks of at most this many queries (decoding: one query a row) skip BLAS: a gemm call
# with one row packs its operands first, which costs more than the few dot products.
FEW_ROWS = 2


@jit(inline="always")
def _scores_few(q, k, P, t0, t1, w, scale):
    """P[t, s] = scale * q[t] . k[s] for t in t0 .. t1 - 1, s < w: one head's scores, as
    dot products along the contiguous head dimension."""
    for t in range(t0, t1):
        qt, row = q[t], P[t]
        for s in range(w):
            row[s] = dot(qt, k[s]) * scale


@jit(inline="always")
def _mix_few(P, v, out, t0, t1, w, zero):
    """out[t] = sum over s < w of P[t, s] * v[s]: the probabilities' mix of one head's values."""
    hs = v.shape[1]
    for t in range(t0, t1):
        row, ot = P[t], out[t]
        for i in range(hs):
            ot[i] = zero
        for s in range(w):
            p, vs = row[s], v[s]
            for i in range(hs):
                ot[i] += p * vs[i]


@row_kernel
def _forward(q, k, v, mask, has_mask, causal, window, scale, neg_inf, zero, one, block, out,
             probs):
    """k, v may hold more than the S = probs.shape[3] keys (a KV cache's whole buffer); only
    their first S positions are read."""
    B, H, T, hs = q.shape
    S = probs.shape[3]
    for task in prange(B * H):
        b, h = task // H, task % H
        P = probs[b, h]
        for t0 in range(0, T, block):
            t1 = min(T, t0 + block)
            w = _keys_seen(causal, T, S, t1)
            if w == 0:                                    # no key visible to the whole block
                _fill(P[t0:t1], zero)
                _fill(out[b, h, t0:t1], zero)
                continue
            few = t1 - t0 <= FEW_ROWS
            if few:
                _scores_few(q[b, h], k[b, h], P, t0, t1, w, scale)
            else:
                gemm(q[b, h, t0:t1], False, k[b, h, :w], True, P[t0:t1, :w], scale, zero)
            _softmax_rows(P, t0, t1, w, T, S, causal, window, mask, has_mask, b, neg_inf, zero,
                          one)
            if few:
                _mix_few(P, v[b, h], out[b, h], t0, t1, w, zero)
            else:
                gemm(P[t0:t1, :w], False, v[b, h, :w], False, out[b, h, t0:t1], one, zero)


@row_kernel
def _backward(dout, q, k, v, probs, scale, causal, zero, one, block, dq, dk, dv):
    B, H, T, hs = q.shape
    S = k.shape[2]
    for task in prange(B * H):
        b, h = task // H, task % H
        P = probs[b, h]
        buf = np.empty(block * S, q.dtype)
        first = True              # the last block comes first: it sees the most keys
        for t0 in range(((T - 1) // block) * block, -1, -block):
            t1 = min(T, t0 + block)
            n = t1 - t0
            w = _keys_seen(causal, T, S, t1)
            if w == 0:
                _fill(dq[b, h, t0:t1], zero)
                continue
            if first and w < S:                           # keys no query sees
                _fill(dk[b, h, w:], zero)
                _fill(dv[b, h, w:], zero)
            add = zero if first else one                  # dk, dv: set, then added into
            first = False
            do = dout[b, h, t0:t1]
            p = P[t0:t1, :w]
            gemm(p, True, do, False, dv[b, h, :w], one, add)            # dv += p^T dout
            ds = buf[:n * w].reshape(n, w)
            gemm(do, False, v[b, h, :w], True, ds, one, zero)          # dprobs, then in place:
            for i in range(n):                                          # dscores
                softmax_backward_row(P[t0 + i], ds[i], ds[i], w, scale, zero)
            gemm(ds, False, k[b, h, :w], False, dq[b, h, t0:t1], one, zero)   # dq = ds k
            gemm(ds, True, q[b, h, t0:t1], False, dk[b, h, :w], one, add)     # dk += ds^T q
        if first:                                         # no block saw a key
            _fill(dk[b, h], zero)
            _fill(dv[b, h], zero)


def _blas_ready(a) -> bool:
    """Whether BLAS takes each (rows, columns) matrix of ``a`` where it lies: unit stride
    along the last axis, and rows that follow each other forwards at least a row apart."""
    rows, cols = a.shape[-2:]
    item = a.itemsize
    cols_ok = cols <= 1 or a.strides[-1] == item
    rows_ok = rows <= 1 or (a.strides[-2] % item == 0 and a.strides[-2] >= max(1, cols) * item)
    return cols_ok and rows_ok


def _rows(a):
    """``a``, or a contiguous copy of it when BLAS could not read it where it lies."""
    return a if _blas_ready(a) else np.ascontiguousarray(a)


def _whole(a):
    """The C-contiguous buffer ``a`` is the first positions of (along axis 2, as a KV cache's
    keys and values are), else ``a``. numba compiles a kernel for strided arrays without
    knowing that a row is contiguous, and decoding's dot products along a row then run at
    half speed; given the buffer, the kernel reads the rows it needs from it."""
    base = a.base
    if (isinstance(base, np.ndarray) and base.ndim == 4 and base.flags.c_contiguous
            and base.dtype == a.dtype and base.shape[:2] == a.shape[:2]
            and base.shape[3] == a.shape[3] and a.strides == base.strides
            and a.__array_interface__["data"][0] == base.__array_interface__["data"][0]):
        return base
    return a


def _target(given, shape, dtype):
    """Where the kernel writes a result: the given array when BLAS can write into it, else a
    fresh one (copied into the given array afterwards by :func:`_into`)."""
    return given if given is not None and _blas_ready(given) else np.empty(shape, dtype)


def _mask(key_padding_mask, q, k):
    if key_padding_mask is None:
        return np.zeros((1, 1), np.bool_), False
    return np.ascontiguousarray(check_padding_mask(key_padding_mask, q.shape[0], k.shape[2])), True


def attention_forward_numba(q, k, v, causal=True, key_padding_mask=None, scale=None, out=None,
                            window=None, block=None):
    _check(q, k, v)
    window = check_window(window, causal)
    mask, has_mask = _mask(key_padding_mask, q, k)
    B, H, T, hs = q.shape
    S = k.shape[2]
    _check_out("out", out, q.shape, q.dtype)
    result = _target(out, q.shape, q.dtype)
    probs = np.empty((B, H, T, S), q.dtype)
    t = q.dtype.type
    # decoding's few queries touch the keys and values more than their scores
    work = probs.size if T > FEW_ROWS else 2 * k.size
    _forward.pick(work)(_rows(q), _whole(_rows(k)), _whole(_rows(v)), mask, has_mask,
                        bool(causal), window, t(_scale(q, scale)), t(-np.inf), t(0), t(1),
                        _block(T, causal, block), result, probs)
    return _into(out, result), probs


def attention_backward_numba(dout, q, k, v, probs, scale=None, causal=False, dq=None, dk=None,
                             dv=None, block=None):
    """``causal=True`` (probs from a causal forward) lets each block skip the keys after its
    last query; without it every key is visited, which is right for probs from any forward."""
    dtype = q.dtype
    dout = np.asarray(dout, dtype)
    probs = np.ascontiguousarray(probs, dtype)
    given = (dq, dk, dv)
    for name, g, like in zip(("dq", "dk", "dv"), given, (q, k, v)):
        _check_out(name, g, like.shape, dtype)
    results = [_target(g, like.shape, dtype) for g, like in zip(given, (q, k, v))]
    t = dtype.type
    _backward.pick(probs.size)(_rows(dout), _rows(q), _rows(k), _rows(v), probs,
                               t(_scale(q, scale)), bool(causal), t(0), t(1),
                               _block(q.shape[2], causal, block), *results)
    return tuple(_into(g, r) for g, r in zip(given, results))
