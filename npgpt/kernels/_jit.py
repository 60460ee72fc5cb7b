"""The one place numba options are chosen for every kernel.

``fastmath=True`` would let LLVM assume there are no infinities or NaNs, and masks live on
``-inf``; this flag set keeps IEEE infinities/NaNs and only allows reassociation (vectorised
reductions), fused multiply-add, reciprocal and approximate-function tricks.

A parallel region costs a thread wake-up and a barrier: microseconds on a quiet machine, but a
whole scheduler slice (~8-20 ms measured here) when another process holds the other core.
So every parallel kernel also exists serial, and small calls run serial.
"""
import os
import types

import numba

# numba picks its OpenMP threading layer here, whose idle workers spin against OpenBLAS's
# (and PyTorch's OpenMP) on a 2-core machine: measured, tiny GPT step 78 -> 170 ms, PyTorch in
# the same process 57 ms -> 2.4 s. The workqueue layer does not spin. A layer the user chose
# (NUMBA_THREADING_LAYER) is kept.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# Below this many elements touched, threads cost more than they save. On a machine shared with
# other busy processes, a parallel region can wait a whole scheduler slice for its second thread
# (measured here: 25 us quiet, ~8 ms busy); raise NPGPT_PARALLEL_MIN_ELEMENTS there.
PARALLEL_MIN_ELEMENTS = int(os.environ.get("NPGPT_PARALLEL_MIN_ELEMENTS") or 1 << 18)


def jit(parallel: bool = False, inline: str = "never"):
    """``numba.njit`` with the project's flags; compiled lazily on first call, cached on disk.
    ``inline="always"`` inlines a small helper into its callers (no call per row)."""
    # error_model="numpy": x / 0 gives inf or nan as in NumPy, instead of a per-division check
    # that raises ZeroDivisionError and keeps LLVM from vectorising every loop with a division.
    return numba.njit(cache=True, fastmath=FASTMATH, parallel=parallel, nogil=True,
                      error_model="numpy", inline=inline)


class RowKernel:
    """A kernel compiled twice (``prange`` loops parallel, and plain), picked by problem size."""

    def __init__(self, fn):
        self.parallel = jit(parallel=True)(fn)
        # A distinct function object and name, so the two versions get distinct cache files.
        serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                    fn.__defaults__, fn.__closure__)
        serial.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = jit(parallel=False)(serial)
        self.__doc__ = fn.__doc__

    def pick(self, n_elements: int):
        if n_elements >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial


def row_kernel(fn) -> RowKernel:
    return RowKernel(fn)


def n_threads() -> int:
    return numba.get_num_threads()


def n_chunks(n_rows: int) -> int:
    """How many row blocks a weight-gradient reduction is split into (one partial per block)."""
    return max(1, min(n_rows, 4 * numba.get_num_threads()))
