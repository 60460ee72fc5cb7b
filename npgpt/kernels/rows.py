"""Float products with few rows, as decoding makes them: a Linear's and a tied head's.

    matmul:    y = x @ w      x: (M, K), w: (K, N)  (a Linear's weight, stored (in, out))
    matmul_t:  y = x @ e^T    x: (M, K), e: (N, K)  (an embedding table as the LM head)

Decoding a token reads every weight once and does little with it, so the time is the time
to stream the weights, plus whatever it costs to get the second core going for each product.
BLAS runs such a product with its own threads, woken for each of a step's ~50 products and
put back to sleep at once (``OPENBLAS_THREAD_TIMEOUT``, :mod:`npgpt.runtime`), and at
2 to 4 rows it takes a path that streams the weights at under half the rate it reaches on one
row. These kernels run on numba's threads, which are still awake from the step's previous
kernel, and read each weight once for all M rows:

- ``_xw``: each thread a contiguous run of w's rows (so each reads one sequential stream),
  four rows at a time, added into its own partial y (M, N), which stays in cache; the
  partials are summed at the end (their number is the thread count, so the rounding of a
  sum follows the thread count, as BLAS's does);
- ``_xet``: the rows of e in chunks, in parallel; each row's dot product with each row of x
  along the contiguous K.

Beyond ``ROWS_MAX`` rows (``ROWS_MAX_T`` for ``matmul_t``; a prompt, a training batch) and
for anything but two C-contiguous float arrays of one dtype, the product is NumPy's (BLAS's),
which is what the references are.
"""
import numpy as np
from numba import prange

from ..runtime.blas import dot
from ..runtime.jit import jit, n_threads, row_kernel

ROWS_MAX = 4        # up to this many rows: _xw; beyond: BLAS (docs/performance.md)
ROWS_MAX_T = 2      # _xet: its dot products end in a sum across SIMD lanes per row and
                    # output, which at 4 rows costs as much as BLAS
ROWS_PER_TASK = 256  # rows of e per task of _xet


def matmul_ref(x, w):
    """y = x @ w."""
    return x @ w


def matmul_t_ref(x, e):
    """y = x @ e^T."""
    return x @ e.T


@jit(inline="always")
def _add4(y, a0, a1, a2, a3, w0, w1, w2, w3):
    """y += a0 w0 + a1 w1 + a2 w2 + a3 w3 (vectors of one length, scalars a)."""
    for j in range(y.shape[0]):
        y[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]


@row_kernel
def _xw(x, w, parts):
    """parts[c] = x[:, rows of c] @ w[rows of c] for the c-th contiguous run of w's rows."""
    M, K = x.shape
    n_parts = parts.shape[0]
    per = ((K + n_parts - 1) // n_parts + 3) // 4 * 4
    for c in prange(n_parts):
        y = parts[c]
        for m in range(M):
            ym = y[m]
            for j in range(ym.shape[0]):
                ym[j] = 0
        k, hi = c * per, min(K, (c + 1) * per)
        while k + 4 <= hi:
            for m in range(M):
                xm = x[m]
                _add4(y[m], xm[k], xm[k + 1], xm[k + 2], xm[k + 3], w[k], w[k + 1], w[k + 2],
                      w[k + 3])
            k += 4
        while k < hi:
            for m in range(M):
                a, none = x[m, k], x[m, k] * 0
                _add4(y[m], a, none, none, none, w[k], w[k], w[k], w[k])
            k += 1


@row_kernel
def _xet(x, e, y):
    """y[:, v] = x @ e[v] for the rows v of e, ROWS_PER_TASK rows a task."""
    M, N = x.shape[0], e.shape[0]
    for c in prange((N + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        for v in range(c * ROWS_PER_TASK, min(N, (c + 1) * ROWS_PER_TASK)):
            ev = e[v]
            for m in range(M):
                y[m, v] = dot(x[m], ev)


def _few(x, w, rows_max: int) -> bool:
    """Whether the kernels take x against w: at most rows_max rows, and both float arrays of
    one dtype (w C-contiguous, as a layer's weight is), nothing empty."""
    return (x.ndim == 2 and w.ndim == 2 and 0 < x.shape[0] <= rows_max and x.dtype == w.dtype
            and x.dtype in (np.float32, np.float64) and w.flags.c_contiguous and x.shape[1] > 0
            and w.size > 0)


def matmul_numba(x, w):
    if not _few(x, w, ROWS_MAX) or x.shape[1] != w.shape[0]:
        return x @ w
    x = np.ascontiguousarray(x)
    kernel = _xw.pick(w.size)
    n_parts = min(n_threads(), max(1, w.shape[0] // 4)) if kernel is _xw.parallel else 1
    parts = np.empty((n_parts, x.shape[0], w.shape[1]), x.dtype)
    kernel(x, w, parts)
    y = parts[0]
    for p in parts[1:]:
        y += p
    return y


def matmul_t_numba(x, e):
    if not _few(x, e, ROWS_MAX_T) or x.shape[1] != e.shape[1]:
        return x @ e.T
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], e.shape[0]), x.dtype)
    _xet.pick(e.size)(x, e, y)
    return y
