"""Embedding backward: scatter-add of the output gradient into the table's rows.

    dweight: (V, C), accumulated in place     idx: (N,) token ids     dy: (N, C)

backward:  dweight[idx[n]] += dy[n] for every n (a token seen k times gets k contributions)

``np.add.at`` is the definition and is slow (an unbuffered per-element loop); the kernel splits
the channels between threads, so no two threads ever write the same element.
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.jit import n_threads, row_kernel


def _check(dweight, idx, dy):
    idx = np.asarray(idx)
    if dweight.ndim != 2 or dy.shape != idx.shape + dweight.shape[1:]:
        raise InputError(f"embedding backward expects dweight (V, C), idx (N,) and dy (N, C), got "
                         f"{dweight.shape}, {idx.shape} and {dy.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= dweight.shape[0]):
        bad = idx[(idx < 0) | (idx >= dweight.shape[0])][0]
        raise InputError(f"token id {bad} is outside the vocabulary [0, {dweight.shape[0]})")
    return idx


def embedding_backward_ref(dweight, idx, dy):
    idx = _check(dweight, idx, dy)
    np.add.at(dweight, idx, dy)


@row_kernel
def _backward(dweight, idx, dy, n_blocks):
    N, C = dy.shape
    for k in prange(n_blocks):                   # block k owns channels [c0, c1): race-free
        c0, c1 = k * C // n_blocks, (k + 1) * C // n_blocks
        for n in range(N):
            row = idx[n]
            for j in range(c1 - c0):             # a loop from 0: LLVM vectorises this form
                dweight[row, c0 + j] += dy[n, c0 + j]


def embedding_backward_numba(dweight, idx, dy):
    idx = _check(dweight, idx, dy)
    if not dweight.flags.c_contiguous:
        raise InputError("embedding backward accumulates in place and needs a C-contiguous dweight")
    C = dweight.shape[1]
    n_blocks = max(1, min(C // 16, n_threads()))   # >= 16 channels (one cache line) each
    _backward.pick(dy.size)(dweight, np.ascontiguousarray(idx, dtype=np.int64).reshape(-1),
              np.ascontiguousarray(dy, dtype=dweight.dtype).reshape(-1, C), n_blocks)
