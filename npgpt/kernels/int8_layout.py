"""int8 quantization and the panel layout, in NumPy (no numba, so loading an int8 model
imports no compiler): the definitions :mod:`npgpt.kernels.int8`'s kernels are tested against,
and the packing of a weight into the panels they read.

    w: (N, K) float, stored (out, in);  q: (N, K) int8;  s: (N, K / bs) float32
    packed: qp (ceil(N / PANEL), K, PANEL) int8: panel c holds outputs c * PANEL + j,
            j < PANEL, their K * PANEL bytes in the order below;
            sp (ceil(N / PANEL), K / bs, PANEL) float32, sp[c, b, j] = s[c * PANEL + j, b];
            rows past N zero

Within a panel, q[c * PANEL + j, k] is at flat offset

    k0 * PANEL + (j // 8) * kc * 8 + ((k - k0) // 4) * 32 + (j % 8) * 4 + k % 4

where k0 = 32 * (k // 32) starts k's chunk of inputs and kc = min(32, K - k0) is its width:
the inputs go in chunks of 32 (the last may be narrower, a multiple of 4), each chunk in
groups of 8 outputs, each group in quads of 4 inputs, a quad holding its 8 outputs' 4 weights
side by side. So 32 bytes are 8 outputs x 4 inputs, the operand of one SIMD multiply-add
that sums 4 products into each output's 32-bit lane, and a group's chunk is 256 consecutive
bytes: the decoding kernel reads a panel front to back.
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

CHUNK, GROUP, QUAD = 32, 8, 4   # inputs a chunk, outputs a group, inputs a quad


def _split(K: int) -> int:
    """K's inputs in whole chunks of CHUNK (the rest, a multiple of QUAD, is the last)."""
    if K % QUAD:
        raise ValueError(f"the panel layout needs K a multiple of {QUAD}; got {K}")
    return K - K % CHUNK


def pack(q, s, panel: int = PANEL):
    """(qp (P, K, panel) int8, sp (P, K / bs, panel) float32) of q (N, K), s (N, K / bs),
    P = ceil(N / panel) panels, the rows past N zero (see the module docstring)."""
    N, K = q.shape
    nb = s.shape[1]
    n_pan = -(-N // panel)
    kf = _split(K)
    rows = np.zeros((n_pan * panel, K), np.int8)
    rows[:N] = q
    v = rows.reshape(n_pan, panel // GROUP, GROUP, K)
    qp = np.empty((n_pan, K * panel), np.int8)
    full = v[..., :kf].reshape(n_pan, panel // GROUP, GROUP, kf // CHUNK, CHUNK // QUAD, QUAD)
    qp[:, :kf * panel] = full.transpose(0, 3, 1, 4, 2, 5).reshape(n_pan, -1)
    tail = v[..., kf:].reshape(n_pan, panel // GROUP, GROUP, (K - kf) // QUAD, QUAD)
    qp[:, kf * panel:] = tail.transpose(0, 1, 3, 2, 4).reshape(n_pan, -1)
    sp = np.zeros((n_pan * panel, nb), np.float32)
    sp[:N] = s
    sp = np.ascontiguousarray(sp.reshape(n_pan, panel, nb).transpose(0, 2, 1))
    return qp.reshape(n_pan, K, panel), sp


def take_rows(qp, sp, rows):
    """(q (len(rows), K) int8, s (len(rows), K / bs)) of the given output rows of a packed
    weight: with :func:`pack`, the one place outside the kernels that knows the panel layout."""
    rows = np.asarray(rows, np.intp).reshape(-1)
    n_pan, K, panel = qp.shape
    kf = _split(K)
    c, g, jj = rows // panel, rows % panel // GROUP, rows % GROUP
    flat = qp.reshape(n_pan, K * panel)
    full = flat[:, :kf * panel].reshape(n_pan, kf // CHUNK, panel // GROUP, CHUNK // QUAD,
                                        GROUP, QUAD)[c, :, g, :, jj, :]
    tail = flat[:, kf * panel:].reshape(n_pan, panel // GROUP, (K - kf) // QUAD, GROUP,
                                        QUAD)[c, g, :, jj, :]
    q = np.concatenate([full.reshape(len(rows), kf), tail.reshape(len(rows), K - kf)], axis=1)
    return q, sp[c, :, rows % panel]


def unpack(qp, sp, n: int):
    """(q (n, K), s (n, K / bs)): the (out, in) arrays :func:`pack` was given."""
    n_pan, K, panel = qp.shape
    kf = _split(K)
    flat = qp.reshape(n_pan, K * panel)
    q = np.empty((n_pan, panel // GROUP, GROUP, K), np.int8)
    full = flat[:, :kf * panel].reshape(n_pan, kf // CHUNK, panel // GROUP, CHUNK // QUAD,
                                        GROUP, QUAD)
    q[..., :kf] = full.transpose(0, 2, 4, 1, 3, 5).reshape(n_pan, panel // GROUP, GROUP, kf)
    tail = flat[:, kf * panel:].reshape(n_pan, panel // GROUP, (K - kf) // QUAD, GROUP, QUAD)
    q[..., kf:] = tail.transpose(0, 1, 3, 2, 4).reshape(n_pan, panel // GROUP, GROUP, K - kf)
    s = sp.transpose(0, 2, 1).reshape(n_pan * panel, -1)[:n]
    return q.reshape(n_pan * panel, K)[:n], np.ascontiguousarray(s)


def dequantize_rows(qp, sp, lo: int, hi: int, dtype=np.float32):
    """Rows ``lo:hi`` of w~ (hi - lo, K) in ``dtype``, from a packed weight."""
    return dequantize_ref(*take_rows(qp, sp, np.arange(lo, hi)), dtype)
