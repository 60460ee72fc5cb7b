"""Scaled dot-product attention, fused per head: NumPy reference and numba kernel.

    q: (B, H, T, hs)   k, v: (B, H, S, hs)   out, dout: (B, H, T, hs)   probs: (B, H, T, S)
    key_padding_mask: (B, S) bool, True = padded key      causal: query t sits at S - T + t

forward:   probs = softmax(scale * q k^T, masked)      out = probs v
backward:  dv = probs^T dout        dprobs = dout v^T
           dscores = scale * probs * (dprobs - sum_s(dprobs * probs))
           dq = dscores k           dk = dscores^T q

NumPy's stacked matmul runs each head's small product through BLAS and writes the (T, S)
scores to memory between steps. The kernel takes a few heads of one batch row at a time and
their queries in blocks of ``block`` (32 or 64, see :func:`_block`): scores, softmax and
products stay in cache, and with the causal mask a block meets only the keys its last query
can see, so the products do (n + 1) / 2n of the work for n blocks (T = 256: 62%) and the
softmax touches only those keys. Each product writes into a scratch buffer
(``np.dot(a, b, out)``: no temporary per call), and each row's exponentials and their sum are
one loop (measured one head of tiny's shape, T = 64, hs = 32: 17.6 -> 8.4 us forward).

q, k, v and dout may be strided views (the heads of a (B, T, 3, H, hs) projection, say), and
``out``, ``dq``, ``dk``, ``dv`` may be given as views to write into, so a layer need not
transpose whole tensors around the kernel. A task copies its heads into contiguous scratch
and back row by row, all its heads at once (``heads`` per task, see :func:`_heads_per_task`):
in the (B, T, 3, H, hs) layout that reads and writes memory in address order, where one head
at a time jumped a row's stride every 128 bytes (tiny's step, one thread: attention forward and
backward 8.9 -> 7.0 ms).

Attention dropout is not fused: use the unfused path when it is on.
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ._jit import jit, n_threads, row_kernel
from .softmax import softmax_backward_ref, softmax_forward_ref, softmax_row_inplace


def _block(T: int, causal: bool, block) -> int:
    """Queries per block: large enough for BLAS, small enough that the causal mask skips work.
    64, or 32 for causal T <= 128, where the two halves skip a quarter of the products (one
    head, one thread, hs = 32 and 64 at T = 64: forward 14.8 -> 13.4 and 31.9 -> 27.1 us,
    backward 18.7 -> 17.7 and 47.6 -> 39.7 us; without the mask, 32 only adds calls)."""
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
    if out is None:
        return value
    out[...] = value
    return out


def attention_forward_ref(q, k, v, causal=True, key_padding_mask=None, scale=None, out=None):
    _check(q, k, v)
    probs = softmax_forward_ref(q @ k.swapaxes(-1, -2), causal, key_padding_mask, _scale(q, scale))
    return _into(out, probs @ v), probs


def attention_backward_ref(dout, q, k, v, probs, scale=None, causal=False, dq=None, dk=None,
                           dv=None):
    dv_ = probs.swapaxes(-1, -2) @ dout
    dscores = softmax_backward_ref(dout @ v.swapaxes(-1, -2), probs, _scale(q, scale))
    return _into(dq, dscores @ k), _into(dk, dscores.swapaxes(-1, -2) @ q), _into(dv, dv_)


# numba's slice assignment (a[:, :] = b) checks the two arrays for overlap and goes through
# a temporary: a (64, 64) float32 copy took 1.8 us, against 0.36 us for these loops.
@jit(inline="always")
def _copy(dst, src):
    """dst[:, :] = src for 2-D arrays of one shape (either may be strided)."""
    for i in range(src.shape[0]):
        d, s = dst[i], src[i]
        for j in range(src.shape[1]):
            d[j] = s[j]


@jit(inline="always")
def _add(dst, src):
    """dst[:, :] += src."""
    for i in range(src.shape[0]):
        d, s = dst[i], src[i]
        for j in range(src.shape[1]):
            d[j] += s[j]


@jit(inline="always")
def _fill(dst, value):
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
def _softmax_block(p, t0, T, S, causal, mask, has_mask, b, scale, neg_inf, zero, one):
    """p: (n, w) scores of queries t0 .. t0 + n - 1 against keys 0 .. w - 1, in place to their
    softmax. Masked keys (padded, or after a causal query's position) get probability 0; a
    query that sees no key gets a row of zeros."""
    n, w = p.shape
    for i in range(n):
        row = p[i]
        end = max(0, min(w, S - T + t0 + i + 1)) if causal else w
        top = neg_inf
        for s in range(end):
            x = neg_inf if has_mask and mask[b, s] else row[s] * scale
            row[s] = x
            top = max(top, x)
        softmax_row_inplace(row, end, top, neg_inf, zero, one)


@jit(inline="always")
def _gather(dst, src, b, h0):
    """dst[j] = src[b, h0 + j] for the heads of one task, (n, L, hs) <- (B, H, L, hs): row by
    row, each row's heads together, so the heads of a (B, T, 3, H, hs) projection are read in
    address order."""
    for t in range(dst.shape[1]):
        for j in range(dst.shape[0]):
            d, s = dst[j, t], src[b, h0 + j, t]
            for c in range(d.shape[0]):
                d[c] = s[c]


@jit(inline="always")
def _scatter(dst, src, b, h0):
    """dst[b, h0 + j] = src[j], the other way round from _gather."""
    for t in range(src.shape[1]):
        for j in range(src.shape[0]):
            d, s = dst[b, h0 + j, t], src[j, t]
            for c in range(d.shape[0]):
                d[c] = s[c]


@jit(inline="always")
def _gather_qkv(q, k, v, b, h0, h1):
    """Contiguous copies of heads h0 .. h1 - 1 of batch row b of q, k and v."""
    T, S, hs = q.shape[2], k.shape[2], q.shape[3]
    qs = np.empty((h1 - h0, T, hs), q.dtype)
    ks = np.empty((h1 - h0, S, hs), q.dtype)
    vs = np.empty((h1 - h0, S, hs), q.dtype)
    _gather(qs, q, b, h0)
    _gather(ks, k, b, h0)
    _gather(vs, v, b, h0)
    return qs, ks, vs


@jit(inline="always")
def _n_tasks(B, H, heads):
    """Tasks of ``heads`` heads of one batch row (the last group of a row may be short)."""
    return B * ((H + heads - 1) // heads)


@jit(inline="always")
def _task(task, H, heads):
    """The batch row and the first and last + 1 head of one task."""
    groups = (H + heads - 1) // heads
    b, h0 = task // groups, (task % groups) * heads
    return b, h0, min(H, h0 + heads)


@row_kernel
def _forward(q, k, v, mask, has_mask, causal, scale, neg_inf, zero, one, block, heads, out,
             probs):
    B, H, T, hs = q.shape
    S = k.shape[2]
    for task in prange(_n_tasks(B, H, heads)):
        b, h0, h1 = _task(task, H, heads)
        qs, ks, vs = _gather_qkv(q, k, v, b, h0, h1)
        outs = np.empty((h1 - h0, T, hs), q.dtype)
        buf = np.empty(block * S, q.dtype)
        for j in range(h1 - h0):
            h = h0 + j
            for t0 in range(0, T, block):
                t1 = min(T, t0 + block)
                n = t1 - t0
                w = _keys_seen(causal, T, S, t1)
                if w == 0:                                # no key visible to the whole block
                    _fill(probs[b, h, t0:t1], zero)
                    _fill(outs[j, t0:t1], zero)
                    continue
                p = buf[:n * w].reshape(n, w)
                np.dot(qs[j, t0:t1], ks[j, :w].T, p)
                _softmax_block(p, t0, T, S, causal, mask, has_mask, b, scale, neg_inf, zero,
                               one)
                np.dot(p, vs[j, :w], outs[j, t0:t1])
                _copy(probs[b, h, t0:t1, :w], p)
                _fill(probs[b, h, t0:t1, w:], zero)
        _scatter(out, outs, b, h0)


@row_kernel
def _backward(dout, q, k, v, probs, scale, causal, zero, block, heads, dq, dk, dv):
    B, H, T, hs = q.shape
    S = k.shape[2]
    for task in prange(_n_tasks(B, H, heads)):
        b, h0, h1 = _task(task, H, heads)
        qs, ks, vs = _gather_qkv(q, k, v, b, h0, h1)
        douts = np.empty((h1 - h0, T, hs), q.dtype)
        _gather(douts, dout, b, h0)
        dqs = np.empty((h1 - h0, T, hs), q.dtype)
        dks = np.zeros((h1 - h0, S, hs), q.dtype)
        dvs = np.zeros((h1 - h0, S, hs), q.dtype)
        tmp = np.empty((S, hs), q.dtype)
        pbuf = np.empty(block * S, q.dtype)
        dbuf = np.empty(block * S, q.dtype)
        for j in range(h1 - h0):
            h = h0 + j
            for t0 in range(0, T, block):
                t1 = min(T, t0 + block)
                n = t1 - t0
                w = _keys_seen(causal, T, S, t1)
                if w == 0:
                    _fill(dqs[j, t0:t1], zero)
                    continue
                p = pbuf[:n * w].reshape(n, w)
                ds = dbuf[:n * w].reshape(n, w)
                _copy(p, probs[b, h, t0:t1, :w])
                do = douts[j, t0:t1]
                tw = tmp[:w]
                np.dot(p.T, do, tw)                      # dv += p^T dout
                _add(dvs[j, :w], tw)
                np.dot(do, vs[j, :w].T, ds)              # dprobs, turned into dscores in place
                for i in range(n):
                    pr, dr = p[i], ds[i]
                    dot = zero
                    for s in range(w):
                        dot += dr[s] * pr[s]
                    for s in range(w):
                        dr[s] = scale * pr[s] * (dr[s] - dot)
                np.dot(ds, ks[j, :w], dqs[j, t0:t1])
                np.dot(ds.T, qs[j, t0:t1], tw)
                _add(dks[j, :w], tw)
        _scatter(dq, dqs, b, h0)
        _scatter(dk, dks, b, h0)
        _scatter(dv, dvs, b, h0)


# A task's copies of its heads (backward: q, dout, dq at T rows, k, v, dk, dv at S) stay
# within this many bytes, so they are still in L2 when the products read them.
_TASK_BYTES = 1 << 18


def _heads_per_task(q, S, parallel, heads):
    """Heads per task: as many as fit _TASK_BYTES, but with 4 tasks per thread or more when
    the kernel runs parallel (a single batch row then goes one head per task)."""
    B, H, T, hs = q.shape
    if heads is not None:
        if not isinstance(heads, (int, np.integer)) or heads < 1:
            raise InputError(f"attention heads per task must be a positive integer, got {heads!r}")
        return min(int(heads), H)
    fit = _TASK_BYTES // max(1, (3 * T + 4 * S) * hs * q.dtype.itemsize)
    if parallel:
        fit = min(fit, B * H // (4 * n_threads()))
    return max(1, min(H, fit))


def _mask(key_padding_mask, q, k):
    if key_padding_mask is None:
        return np.zeros((1, 1), np.bool_), False
    mask = np.asarray(key_padding_mask, dtype=bool)
    if mask.shape != (q.shape[0], k.shape[2]):
        raise InputError(f"key_padding_mask must have shape (B, S) = {(q.shape[0], k.shape[2])}, "
                         f"got {mask.shape}")
    return np.ascontiguousarray(mask), True


def attention_forward_numba(q, k, v, causal=True, key_padding_mask=None, scale=None, out=None,
                            block=None, heads=None):
    _check(q, k, v)
    mask, has_mask = _mask(key_padding_mask, q, k)
    B, H, T, hs = q.shape
    S = k.shape[2]
    _check_out("out", out, q.shape, q.dtype)
    out = np.empty_like(q) if out is None else out
    probs = np.empty((B, H, T, S), q.dtype)
    t = q.dtype.type
    kernel = _forward.pick(probs.size)
    heads = _heads_per_task(q, S, kernel is _forward.parallel, heads)
    kernel(q, k, v, mask, has_mask, bool(causal), t(_scale(q, scale)), t(-np.inf), t(0), t(1),
           _block(T, causal, block), heads, out, probs)
    return out, probs


def attention_backward_numba(dout, q, k, v, probs, scale=None, causal=False, dq=None, dk=None,
                             dv=None, block=None, heads=None):
    """``causal=True`` (probs from a causal forward) lets each block skip the keys after its
    last query; without it every key is visited, which is right for probs from any forward."""
    dtype = q.dtype
    dout = np.asarray(dout, dtype)
    probs = np.ascontiguousarray(probs, dtype)
    grads = []
    for name, g, like in (("dq", dq, q), ("dk", dk, k), ("dv", dv, v)):
        _check_out(name, g, like.shape, dtype)
        grads.append(np.empty(like.shape, dtype) if g is None else g)
    dq, dk, dv = grads
    t = dtype.type
    kernel = _backward.pick(probs.size)
    heads = _heads_per_task(q, k.shape[2], kernel is _backward.parallel, heads)
    kernel(dout, q, k, v, probs, t(_scale(q, scale)), bool(causal), t(0),
           _block(q.shape[2], causal, block), heads, dq, dk, dv)
    return dq, dk, dv
