"""int8 weights: blockwise symmetric quantization, and the int8 x int8 product that decodes.

    w: (N, K) float, stored (out, in): each row is one output's weights over the K inputs
    q: (N, K) int8;  s: (N, K / bs) float32, one scale per block of bs consecutive inputs
    x: (M, K) float;  y = Q(x) @ dequantize(q, s)^T: (M, N)

quantize (the definition, Q8_0-style, for weights and activations alike):
    s[n, b] = max_k |w[n, k]| / 127 over block b     (rounded to the storage dtype of s)
    q[n, k] = round(w[n, k] / s[n, b])                (0 where the block is all zeros)
dequantize:   w~[n, k] = s[n, b] q[n, k]

The product quantizes x the same way, row by row in blocks of bs (``quantize_acts_ref``:
scale ``max |x| * (1/127)`` in x's dtype, kept unrounded), so each block's products are
integers: ``y[m, n] = sum_b sx[m, b] s[n, b] sum_k xq[m, k] q[n, k]``, the inner sum exact
in int32. That is llama.cpp's Q8_0 x Q8_0 dot.

**Panels.** In memory the kernels read the weight in panels of ``PANEL`` outputs (packed by
:func:`npgpt.kernels.int8_layout.pack`, in NumPy beside the definitions, so that loading a
model imports no numba), the scales beside them as ``sp[c, b, j] = s[c * PANEL + j, b]``; the
last panel is padded with zero rows. Within a panel the bytes go in chunks of 32 inputs, each
chunk in groups of 8 outputs, each group in quads of 4 inputs: 32 bytes hold 8 outputs' weights
for 4 consecutive inputs (``int8_layout`` gives the offsets). Files keep the (out, in) layout;
a layer packs its weights when they are set (the same number of bytes) and unpacks them to
save.

Decoding reads every weight once a token, so the product must keep up with memory. Stored
(out, in), each output's row is a dot product ending, per block of 32, in a horizontal sum
across SIMD lanes and a scale. In the quad layout one 32-byte load is the operand of AVX2's
byte multiply-add (``npgpt.runtime.simd.quad_dots``): the activations' four int8 values,
broadcast, times 8 outputs' four weights, summed into 8 int32 lanes, three instructions for 32
products, the group's 8 quads of a block of 32 inputs added in registers. Each block ends with
one float multiply-add per output. Numba itself cannot express those instructions (its integer
arithmetic widens to 64 bits); where the CPU lacks AVX2 a plain-numba kernel computes the same
integers, slower. Two kernels, each tested equal to ``int8_matmul_ref``:

- a few rows (decoding, a short prompt: M <= ``ROWS_MAX``): ``_panels``, panels in
  parallel, each panel read once for all M rows (it stays in the L2 cache between rows);
  its time grows with M;
- many rows (a longer prompt): ``_tiles``, each panel dequantized into a (K, PANEL) float
  buffer in cache and multiplied by the dequantized Q(x) with BLAS's gemm.

The input gradient of a frozen int8 layer, ``dx = dy @ dequantize(q, s)`` (LoRA on an int8
base), has one kernel, ``_tiles_t``, tested equal to ``int8_matmul_t_ref``: each thread takes
a chunk of the panels, dequantizes one at a time into a buffer as ``_tiles`` does and adds
its product with the matching columns of dy into its own partial dx (gemm with beta = 1);
the partials are summed at the end.
"""
import numpy as np
from numba import prange

from ..runtime.blas import gemm
from ..runtime.jit import jit, n_threads, row_kernel
from ..runtime.simd import dequantize_quad, has_avx2, quad_dots
from .int8_layout import (CHUNK, GROUP, PANEL, QMAX, dequantize_ref,  # noqa: F401
                          dequantize_rows, pack, quantize_acts_ref, quantize_ref, take_rows,
                          unpack)

ROWS_MAX = 16           # up to this many rows of x: the panel kernel; beyond: tiles + gemm


def int8_matmul_ref(x, qp, sp, n: int, quantize_x: bool = True):
    """y = Q(x) @ dequantize(q, s)^T in x's dtype, or x @ ... without ``quantize_x``.
    x: (M, K), qp, sp: the packed weight (:func:`pack`) of n outputs -> y (M, n)."""
    M, K = x.shape
    if quantize_x and K:
        x = dequantize_ref(*quantize_acts_ref(x, K // sp.shape[1]), x.dtype)
    return x @ dequantize_rows(qp, sp, 0, n, x.dtype).T


# float elements of w~ dequantized at once by int8_matmul_t_ref: 4 MB in float32 at most
PANEL_ELEMENTS = 1 << 20


def int8_matmul_t_ref(dy, qp, sp, n: int, panel_elements: int = PANEL_ELEMENTS):
    """dx = dy @ dequantize(q, s) in dy's dtype.   dy: (M, n), qp, sp: the packed weight of n
    outputs -> (M, K). The product a frozen int8 layer's input gradient is (the transpose of
    the forward's; the activations' rounding Q(x) is passed straight through), summed over
    panels of rows: dx = sum over panels p of dy[:, p] @ w~[p], each panel dequantized
    (``dequantize_rows``) and dropped in turn, so a large layer's float weight never exists
    whole (GPT-2's tied head would be 154 MB)."""
    K = qp.shape[1]
    rows = max(1, panel_elements // max(1, K))
    if n <= rows:
        return dy @ dequantize_rows(qp, sp, 0, n, dy.dtype)
    dx = np.zeros((dy.shape[0], K), dy.dtype)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        dx += dy[:, lo:hi] @ dequantize_rows(qp, sp, lo, hi, dy.dtype)
    return dx


# ---- numba ----

@jit()
def _quantize_acts(x, bs, r127, xq, sx):
    """quantize_acts_ref into xq (M, K) int16 and sx (M, K / bs)."""
    M, K = x.shape
    one = r127 * 0 + 1
    for m in range(M):
        xm, qm = x[m], xq[m]
        for b in range(K // bs):
            xb, qb = xm[b * bs:(b + 1) * bs], qm[b * bs:(b + 1) * bs]
            amax = abs(xb[0]) * 0
            for k in range(bs):
                amax = max(amax, abs(xb[k]))
            sb = amax * r127
            sx[m, b] = sb
            inv = one / sb if sb > 0 else sb * 0
            for k in range(bs):
                qb[k] = np.int16(min(max(np.rint(xb[k] * inv), -QMAX), QMAX))


@jit(inline="always")
def _act_quads(xm, xu, xs):
    """Row xm's int16 activations (-127..127) four at a time as int32 words for
    ``quad_dots``: xs[i] the bytes of xm[4i:4i+4], xu[i] the bytes of their absolute values."""
    for i in range(xm.shape[0] // 4):
        a, b, c, d = xm[4 * i], xm[4 * i + 1], xm[4 * i + 2], xm[4 * i + 3]
        xs[i] = np.int32((a & 255) | ((b & 255) << 8) | ((c & 255) << 16) | ((d & 255) << 24))
        xu[i] = np.int32(abs(a) | (abs(b) << 8) | (abs(c) << 16) | (abs(d) << 24))


@jit(inline="always")
def _quad_dots_plain(qc, off, n, xm, k, acc, aoff):
    """``quad_dots`` in plain numba: acc[aoff + j] += the 8 outputs' dot products with
    xm[k:k + 4n] over n quads from qc[off]."""
    for i in range(n):
        p = off + 32 * i
        x0, x1, x2, x3 = xm[k + 4 * i], xm[k + 4 * i + 1], xm[k + 4 * i + 2], xm[k + 4 * i + 3]
        for j in range(8):
            pj = p + 4 * j
            acc[aoff + j] += (np.int32(x0 * np.int16(qc[pj]) + x1 * np.int16(qc[pj + 1]))
                              + np.int32(x2 * np.int16(qc[pj + 2]) + x3 * np.int16(qc[pj + 3])))


def _panel_kernel(simd: bool):
    """y = Q(x) @ w~^T for few rows: x quantized first (on this thread: a few rows), then
    panels in parallel, each read front to back: per block of inputs, each group of 8
    outputs' products summed exactly in int32 (``quad_dots`` with AVX2, else plain numba),
    then one scale per block and output."""

    def _panels(x, r127, qp, sp, y):
        M, K = x.shape
        n_pan, nb, P = sp.shape
        N = y.shape[1]
        bs = K // nb
        xq = np.empty((M, K), np.int16)
        sx = np.empty((M, nb), y.dtype)
        _quantize_acts(x, bs, r127, xq, sx)
        xu = np.empty((M, K // 4), np.int32)
        xs = np.empty((M, K // 4), np.int32)
        for m in range(M):
            _act_quads(xq[m], xu[m], xs[m])
        for c in prange(n_pan):
            qc, sc = qp[c], sp[c]
            acc = np.empty(P, np.int32)
            tot = np.empty(P, y.dtype)
            lo = c * P
            width = min(N - lo, P)
            for m in range(M):
                tot[:] = 0
                for b in range(nb):
                    acc[:] = 0
                    k = b * bs
                    while k < (b + 1) * bs:         # the block's pieces within input chunks
                        k0 = k - k % CHUNK
                        kc = min(CHUNK, K - k0)
                        end = min((b + 1) * bs, k0 + kc)
                        for g in range(P // GROUP):
                            at = k0 * P + g * kc * GROUP + (k - k0) // 4 * 32
                            if simd:
                                quad_dots(qc, at, (end - k) // 4, xu[m], xs[m], k // 4, acc,
                                          g * GROUP)
                            else:
                                _quad_dots_plain(qc, at, (end - k) // 4, xq[m], k, acc,
                                                 g * GROUP)
                        k = end
                    f, sb = sx[m, b], sc[b]
                    for j in range(P):      # |acc| < 2^24: exact in float32
                        tot[j] += np.float32(acc[j]) * (sb[j] * f)
                ym = y[m]
                for j in range(width):
                    ym[lo + j] = tot[j]
    _panels.__name__ = _panels.__qualname__ = "_panels_simd" if simd else "_panels_plain"
    return row_kernel(_panels)


_panels_plain = _panel_kernel(False)
_panels_simd = _panel_kernel(True) if has_avx2() else None
_panels = _panels_simd or _panels_plain


@jit(inline="always")
def _dequantize_panel(qc, sc, bs, w):
    """w[k, j] = sc[k // bs, j] * q[k, j]: one panel's weights, (K, PANEL), as floats, from
    its flat bytes qc (the layout of :mod:`npgpt.kernels.int8_layout`), a quad at a time."""
    K, P = w.shape
    for k0 in range(0, K, CHUNK):
        kc = min(CHUNK, K - k0)
        for g in range(P // GROUP):
            at = k0 * P + g * kc * GROUP
            for i in range(kc // 4):
                k = k0 + 4 * i
                dequantize_quad(qc, at + 32 * i, sc[k // bs], w, k, g * GROUP)


@row_kernel
def _tiles(xd, qp, sp, y):
    """y = xd @ w~^T for many rows, or float x (xd: x, or the dequantized Q(x)): each panel
    dequantized, then gemm."""
    M, K = xd.shape
    n_pan, nb, P = sp.shape
    N = y.shape[1]
    bs = K // nb
    for c in prange(n_pan):
        w = np.empty((K, P), y.dtype)
        _dequantize_panel(qp[c], sp[c], bs, w)
        lo = c * P
        hi = min(N, lo + P)
        gemm(xd, False, w[:, :hi - lo], False, y[:, lo:hi], 1.0, 0.0)


def _flat(qp):
    """The packed weight as the kernels take it: (panels, K * PANEL), each panel's bytes flat."""
    return np.ascontiguousarray(qp).reshape(qp.shape[0], -1)


def int8_matmul_numba(x, qp, sp, n: int, quantize_x: bool = True):
    x = np.ascontiguousarray(x)
    dt = x.dtype.type
    M, K = x.shape
    y = np.empty((M, n), x.dtype)
    if M == 0 or n == 0:
        return y
    if K == 0:
        y.fill(0)
        return y
    qp = _flat(qp)
    sp = np.ascontiguousarray(sp, dtype=x.dtype)
    if not quantize_x:
        _tiles.pick(qp.size)(x, qp, sp, y)
        return y
    if M <= ROWS_MAX:
        _panels.pick(qp.size)(x, dt(1 / QMAX), qp, sp, y)
        return y
    bs = K // sp.shape[1]
    xq = np.empty((M, K), np.int16)
    sx = np.empty((M, K // bs), x.dtype)
    _quantize_acts(x, bs, dt(1 / QMAX), xq, sx)
    _tiles.pick(qp.size)(dequantize_ref(xq, sx, x.dtype), qp, sp, y)
    return y


@row_kernel
def _tiles_t(dy, qp, sp, parts):
    """parts[c] += dy[:, panel] @ w~[panel] over the panels of chunk c: each thread its own
    chunk of panels, each panel dequantized into a (K, PANEL) buffer, and its own partial
    sum (M, K), added into by gemm (beta = 1)."""
    M, N = dy.shape
    n_pan, nb, P = sp.shape
    K = parts.shape[2]
    bs = K // nb
    n_parts = parts.shape[0]
    per = (n_pan + n_parts - 1) // n_parts
    for c in prange(n_parts):
        w = np.empty((K, P), parts.dtype)
        for p in range(c * per, min(n_pan, (c + 1) * per)):
            _dequantize_panel(qp[p], sp[p], bs, w)
            lo = p * P
            hi = min(N, lo + P)
            gemm(dy[:, lo:hi], False, w[:, :hi - lo], True, parts[c], 1.0, 1.0)


def int8_matmul_t_numba(dy, qp, sp, n: int):
    dy = np.ascontiguousarray(dy)
    M = dy.shape[0]
    K = qp.shape[1]
    if M == 0 or K == 0 or n == 0:
        return np.zeros((M, K), dy.dtype)
    qp = _flat(qp)
    sp = np.ascontiguousarray(sp, dtype=dy.dtype)
    kernel = _tiles_t.pick(qp.size)
    n_parts = min(qp.shape[0], n_threads()) if kernel is _tiles_t.parallel else 1
    parts = np.zeros((n_parts, M, K), dy.dtype)
    kernel(dy, qp, sp, parts)
    return parts[0] if n_parts == 1 else parts.sum(axis=0)
