"""int8 quantization and the panel layout, in NumPy (no numba, so loading an int8 model
imports no compiler): the definitions :mod:`npgpt.kernels.int8`'s kernels are tested against,
and the packing of a weight into the panels they read.

    w: (N, K) float, stored (out, in);  q: (N, K) int8;  s: (N, K / bs) float32
    packed: qp (ceil(N / PANEL), K, PANEL) int8, qp[c, k, j] = q[c * PANEL + j, k];
            sp (ceil(N / PANEL), K / bs, PANEL) float32, the scales alike; rows past N zero
"""
import numpy as np

QMAX = 127
PANEL = 128             # outputs per panel of the in-memory layout


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


def quantize_acts_ref(x, block: int):
    """(xq int16 (M, K) in -127..127, sx (M, K / block) in x's dtype): the activations'
    quantization, as the weights' but with the scale kept in x's dtype and computed as
    ``max |x| * (1/127)``, x divided by it as ``x * (1 / sx)`` (the kernels do the same
    operations, so they round the same way)."""
    M, K = x.shape
    dt = x.dtype.type
    blocks = x.reshape(M, K // block, block)
    sx = np.abs(blocks).max(axis=-1) * dt(1 / QMAX)
    inv = np.zeros_like(sx)
    np.divide(dt(1), sx, out=inv, where=sx > 0)
    xq = np.clip(np.rint(blocks * inv[..., None]), -QMAX, QMAX)
    return xq.reshape(M, K).astype(np.int16), sx


# ---- the in-memory layout: panels of PANEL outputs ----

def pack(q, s, panel: int = PANEL):
    """(qp (P, K, panel) int8, sp (P, K / bs, panel) float32) of q (N, K), s (N, K / bs),
    P = ceil(N / panel) panels, the rows past N zero (see the module docstring)."""
    N, K = q.shape
    nb = s.shape[1]
    n_pan = -(-N // panel)
    qp = np.zeros((n_pan, K, panel), np.int8)
    sp = np.zeros((n_pan, nb, panel), np.float32)
    for c in range(n_pan):
        lo, hi = c * panel, min(N, (c + 1) * panel)
        qp[c, :, :hi - lo] = q[lo:hi].T
        sp[c, :, :hi - lo] = s[lo:hi].T
    return qp, sp


def take_rows(qp, sp, rows):
    """(q (len(rows), K) int8, s (len(rows), K / bs)) of the given output rows of a packed
    weight: the one place outside the kernels that reads the panel layout."""
    rows = np.asarray(rows, np.intp)
    panel = qp.shape[2]
    return qp[rows // panel, :, rows % panel], sp[rows // panel, :, rows % panel]


def unpack(qp, sp, n: int):
    """(q (n, K), s (n, K / bs)): the (out, in) arrays :func:`pack` was given."""
    return take_rows(qp, sp, np.arange(n))


def dequantize_rows(qp, sp, lo: int, hi: int, dtype=np.float32):
    """Rows ``lo:hi`` of w~ (hi - lo, K) in ``dtype``, from a packed weight."""
    return dequantize_ref(*take_rows(qp, sp, np.arange(lo, hi)), dtype)
