"""int8 weights: blockwise symmetric quantization, and the int8 x float product that decodes.

    w: (N, K) float, stored (out, in): each row is one output's weights over the K inputs
    q: (N, K) int8;  s: (N, K / bs) float32, one scale per block of bs consecutive inputs
    x: (M, K) float;  y = x @ dequantize(q, s)^T: (M, N)

quantize (the definition, Q8_0-style):
    s[n, b] = max_k |w[n, k]| / 127 over block b     (rounded to the storage dtype of s)
    q[n, k] = round(w[n, k] / s[n, b])                (0 where the block is all zeros)
dequantize:   w~[n, k] = s[n, b] q[n, k]

Decoding reads every weight once a token, so its speed is the bytes streamed: 1 + 4/bs bytes
a weight here against 4 for float32. Two numba kernels compute the product, each tested equal
to ``int8_matmul_ref`` (dequantize, then matmul):

- a few rows (decoding: M <= ``ROWS_MAX``): each output's row of q is read once, each weight
  converted once for four rows of x; per block, the bs products are summed and then scaled
  (``y[m, n] = sum_b s[n, b] sum_k x[m, k] q[n, k]``). Blocks are sliced, not indexed from
  the row's start: a slice's index from 0 needs no negative-index check, so the loop
  vectorises;
- many rows (a prompt): each thread dequantizes ``_TILE`` rows of q into a float buffer in
  cache and multiplies it by x with BLAS's gemm, so the prompt runs at matmul speed.

The input gradient of a frozen int8 layer, ``dx = dy @ dequantize(q, s)`` (LoRA on an int8
base), has one kernel tested equal to ``int8_matmul_t_ref``: each thread takes a chunk of
the rows of q, dequantizes ``_TILE_T`` of them at a time into a buffer and adds their
product with the matching columns of dy into its own partial dx (gemm with beta = 1); the
partials are summed at the end.
"""
import numpy as np
from numba import prange

from ..runtime.blas import gemm
from ..runtime.jit import n_threads, row_kernel

QMAX = 127
ROWS_MAX = 8            # up to this many rows of x: the decoding kernel; beyond: tiles + gemm
_TILE = 64              # rows of q dequantized at once by the prompt kernel (64 x K floats)
_TILE_T = 256           # ... by the input-gradient kernel (a deeper product for gemm)


def quantize_ref(w, block: int, scale_dtype=np.float32):
    """(q int8 (N, K), s (N, K / block)) of w (N, K), K a multiple of ``block``. The scales
    are rounded to ``scale_dtype`` first and q computed from the rounded scales, so
    dequantizing with the stored scales is what the rounding to int8 assumed."""
    N, K = w.shape
    blocks = np.ascontiguousarray(w, np.float32).reshape(N, K // block, block)
    s = (np.abs(blocks).max(axis=-1) / QMAX).astype(scale_dtype)
    s32 = s.astype(np.float32)
    safe = np.where(s32 > 0, s32, 1.0)[..., None]
    q = np.where(s32[..., None] > 0, np.clip(np.rint(blocks / safe), -QMAX, QMAX), 0)
    return np.ascontiguousarray(q.reshape(N, K), np.int8), np.ascontiguousarray(s)


def dequantize_ref(q, s, dtype=np.float32):
    """w~ (N, K) in ``dtype`` from q (N, K) int8 and s (N, K / bs)."""
    N, K = q.shape
    nb = s.shape[1]
    w = q.reshape(N, nb, K // nb).astype(dtype) * np.asarray(s, dtype)[..., None]
    return w.reshape(N, K)


def dequantize_rows(q, s, lo, hi, dtype=np.float32):
    """Rows ``lo:hi`` of w~ (hi - lo, K) in ``dtype``: the one place outside the kernels that
    reads the stored layout of q and s (a panel of the weight, for :func:`int8_matmul_t`)."""
    return dequantize_ref(q[lo:hi], s[lo:hi], dtype)


# rows of q dequantized at once by int8_matmul_t_ref: a panel of 4 MB in float32 at most
PANEL_ELEMENTS = 1 << 20


def int8_matmul_t_ref(dy, q, s, panel_elements: int = PANEL_ELEMENTS):
    """dx = dy @ dequantize(q, s) in dy's dtype.   dy: (M, N), q: (N, K) int8 -> (M, K).

    The input gradient of a frozen int8 layer (the transpose of the forward's product),
    summed over panels of rows of q: dx = sum over panels p of dy[:, p] @ w~[p], each panel
    dequantized (``dequantize_rows``) and dropped in turn, so a large layer's float weight
    never exists whole (GPT-2's tied head would be 154 MB)."""
    N, K = q.shape
    rows = max(1, panel_elements // max(1, K))
    if N <= rows:
        return dy @ dequantize_ref(q, s, dy.dtype)
    dx = np.zeros((dy.shape[0], K), dy.dtype)
    for lo in range(0, N, rows):
        hi = min(N, lo + rows)
        dx += dy[:, lo:hi] @ dequantize_rows(q, s, lo, hi, dy.dtype)
    return dx


def int8_matmul_ref(x, q, s):
    """y = x @ dequantize(q, s)^T in x's dtype.   x: (M, K), q: (N, K) int8, s: (N, K/bs)."""
    return x @ dequantize_ref(q, s, x.dtype).T


@row_kernel
def _rows(x, q, s, y, zero):
    """y = x @ dequantize(q, s)^T for few rows of x: outputs in parallel blocks of 16; rows of
    x four at a time, so each int8 weight is converted once for four products."""
    M, K = x.shape
    N, nb = s.shape
    bs = K // nb
    for c in prange((N + 15) // 16):
        for n in range(c * 16, min(N, c * 16 + 16)):
            qn, sn = q[n], s[n]
            m = 0
            while m + 4 <= M:
                x0, x1, x2, x3 = x[m], x[m + 1], x[m + 2], x[m + 3]
                a0 = a1 = a2 = a3 = zero
                for b in range(nb):
                    lo = b * bs
                    qb = qn[lo:lo + bs]
                    x0b, x1b = x0[lo:lo + bs], x1[lo:lo + bs]
                    x2b, x3b = x2[lo:lo + bs], x3[lo:lo + bs]
                    p0 = p1 = p2 = p3 = zero
                    for k in range(bs):
                        w = np.float32(qb[k])
                        p0 += x0b[k] * w
                        p1 += x1b[k] * w
                        p2 += x2b[k] * w
                        p3 += x3b[k] * w
                    sb = sn[b]
                    a0 += sb * p0
                    a1 += sb * p1
                    a2 += sb * p2
                    a3 += sb * p3
                y[m, n], y[m + 1, n], y[m + 2, n], y[m + 3, n] = a0, a1, a2, a3
                m += 4
            while m < M:
                xm = x[m]
                acc = zero
                for b in range(nb):
                    lo = b * bs
                    xb, qb = xm[lo:lo + bs], qn[lo:lo + bs]
                    part = zero
                    for k in range(bs):
                        part += xb[k] * np.float32(qb[k])
                    acc += sn[b] * part
                y[m, n] = acc
                m += 1


@row_kernel
def _tiles(x, q, s, y):
    """y = x @ dequantize(q, s)^T for many rows of x: tiles of q dequantized, then gemm."""
    M, K = x.shape
    N, nb = s.shape
    bs = K // nb
    for t in prange((N + _TILE - 1) // _TILE):
        lo = t * _TILE
        hi = min(N, lo + _TILE)
        w = np.empty((hi - lo, K), y.dtype)
        for n in range(lo, hi):
            qn, sn, wn = q[n], s[n], w[n - lo]
            for b in range(nb):
                qb, wb, sb = qn[b * bs:(b + 1) * bs], wn[b * bs:(b + 1) * bs], sn[b]
                for k in range(bs):
                    wb[k] = sb * np.float32(qb[k])
        gemm(x, False, w, True, y[:, lo:hi], 1.0, 0.0)


def int8_matmul_numba(x, q, s):
    x = np.ascontiguousarray(x)
    q = np.ascontiguousarray(q)
    s = np.ascontiguousarray(s, dtype=x.dtype)
    M, N = x.shape[0], q.shape[0]
    y = np.empty((M, N), x.dtype)
    if M == 0 or N == 0:
        return y
    if x.shape[1] == 0:
        y.fill(0)
        return y
    if M <= ROWS_MAX:
        _rows.pick(q.size)(x, q, s, y, x.dtype.type(0))
    else:
        _tiles.pick(q.size)(x, q, s, y)
    return y


@row_kernel
def _tiles_t(dy, q, s, parts):
    """parts[c] += dy[:, tile] @ dequantize(q[tile], s[tile]) over the tiles of rows of q in
    chunk c: each thread its own chunk of rows and its own partial sum (M, K)."""
    M, N = dy.shape
    K = q.shape[1]
    nb = s.shape[1]
    bs = K // nb
    n_parts = parts.shape[0]
    per = (N + n_parts - 1) // n_parts
    for c in prange(n_parts):
        w = np.empty((_TILE_T, K), parts.dtype)
        end = min(N, (c + 1) * per)
        for lo in range(c * per, end, _TILE_T):
            hi = min(end, lo + _TILE_T)
            for n in range(lo, hi):
                qn, sn, wn = q[n], s[n], w[n - lo]
                for b in range(nb):
                    qb, wb, sb = qn[b * bs:(b + 1) * bs], wn[b * bs:(b + 1) * bs], sn[b]
                    for k in range(bs):
                        wb[k] = sb * qb[k]
            gemm(dy[:, lo:hi], False, w[:hi - lo], False, parts[c], 1.0, 1.0)


def int8_matmul_t_numba(dy, q, s):
    dy = np.ascontiguousarray(dy)
    q = np.ascontiguousarray(q)
    s = np.ascontiguousarray(s, dtype=dy.dtype)
    M, N = dy.shape
    K = q.shape[1]
    if M == 0 or K == 0 or N == 0:
        return np.zeros((M, K), dy.dtype)
    kernel = _tiles_t.pick(q.size)
    n_parts = min(N, n_threads()) if kernel is _tiles_t.parallel else 1
    parts = np.zeros((n_parts, M, K), dy.dtype)
    kernel(dy, q, s, parts)
    return parts[0] if n_parts == 1 else parts.sum(axis=0)
