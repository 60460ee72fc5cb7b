"""The one place numba options are chosen for every kernel.

``fastmath=True`` would let LLVM assume there are no infinities or NaNs, and masks live on
``-inf``; this flag set keeps IEEE infinities/NaNs and only allows reassociation (vectorised
reductions), fused multiply-add, reciprocal and approximate-function tricks.
"""
import numba

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def jit(parallel: bool = False):
    """``numba.njit`` with the project's flags; compiled lazily on first call, cached on disk."""
    return numba.njit(cache=True, fastmath=FASTMATH, parallel=parallel, nogil=True)


def n_chunks(n_rows: int) -> int:
    """How many row blocks a weight-gradient reduction is split into (one partial per block)."""
    return max(1, min(n_rows, 4 * numba.get_num_threads()))
