"""Softmax cross-entropy over the vocabulary, loss and gradient in one pass.

    logits, dlogits: (N, V)     targets: (N,) integers, ignore_index marks rows without a loss

forward:   loss = (1 / n) sum_{i kept} (logsumexp(logits_i) - logits_i[targets_i]),
           n = number of kept rows (targets != ignore_index)
backward:  dlogits_i = (softmax(logits_i) - onehot(targets_i)) / n for kept rows, 0 for ignored

When every row is ignored the loss is 0 and dlogits is all zeros (there is nothing to learn from).
The loss is returned as a scalar of the logits' dtype.
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.exp import exp
from ..runtime.jit import n_chunks, row_kernel


def _check(logits, targets, ignore_index):
    if logits.ndim != 2:
        raise InputError(f"cross-entropy expects logits of shape (N, V), got shape {logits.shape}")
    targets = np.asarray(targets)
    if targets.shape != logits.shape[:1] or not np.issubdtype(targets.dtype, np.integer):
        raise InputError(f"cross-entropy expects integer targets of shape ({logits.shape[0]},), got "
                         f"shape {targets.shape} and dtype {targets.dtype}")
    kept = targets != ignore_index
    bad = kept & ((targets < 0) | (targets >= logits.shape[1]))
    if bad.any():
        raise InputError(f"target {targets[bad][0]} is outside the vocabulary [0, {logits.shape[1]}) "
                         f"and is not ignore_index={ignore_index}")
    return targets, kept


def cross_entropy_forward_backward_ref(logits, targets, ignore_index=-100):
    targets, kept = _check(logits, targets, ignore_index)
    n = max(int(kept.sum()), 1)
    shifted = logits - logits.max(1, keepdims=True)
    e = np.exp(shifted)
    z = e.sum(1, keepdims=True)
    rows = np.nonzero(kept)[0]
    loss = (np.log(z[rows, 0]) - shifted[rows, targets[rows]]).sum() / n
    dlogits = e / z
    dlogits[rows, targets[rows]] -= 1
    dlogits *= kept[:, None] / logits.dtype.type(n)
    return logits.dtype.type(loss), dlogits


@row_kernel
def _forward_backward(logits, tops, targets, ignore_index, inv_n, n_blocks, dlogits, row_loss):
    N, V = logits.shape
    for k in prange(n_blocks):                   # block k owns rows [k N / K, (k+1) N / K)
        for i in range(k * N // n_blocks, (k + 1) * N // n_blocks):
            row = dlogits[i]
            target = targets[i]
            if target == ignore_index:
                row_loss[i] = 0.0
                row[:] = 0.0
                continue
            top = tops[i]
            z = 0.0                              # float64 sum over up to 50k terms
            for v in range(V):                   # exp(logits - max) computed once, in dlogits
                e = exp(logits[i, v] - top)
                row[v] = e
                z += e
            row_loss[i] = np.log(z) - (logits[i, target] - top)
            scale = inv_n / z
            for v in range(V):
                row[v] *= scale
            row[target] -= inv_n


def cross_entropy_forward_backward_numba(logits, targets, ignore_index=-100):
    targets, kept = _check(logits, targets, ignore_index)
    n = max(int(kept.sum()), 1)
    logits = np.ascontiguousarray(logits)
    dlogits = np.empty_like(logits)
    row_loss = np.empty(logits.shape[0], np.float64)
    # Row maxima from NumPy's SIMD max: numba cannot vectorise a NaN-propagating max reduction
    # without the no-NaN flag, which the kernels never set (masks and logits may hold inf/nan).
    tops = logits.max(axis=1)
    _forward_backward.pick(logits.size)(logits, tops, np.ascontiguousarray(targets, dtype=np.int64),
                                        int(ignore_index), 1.0 / n, n_chunks(logits.shape[0]),
                                        dlogits, row_loss)
    return logits.dtype.type(row_loss.sum() / n), dlogits
