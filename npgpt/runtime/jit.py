"""The one place numba options are chosen for every kernel.

``fastmath=True`` would let LLVM assume there are no infinities or NaNs, and masks live on
``-inf``; this flag set keeps IEEE infinities/NaNs and only allows reassociation (vectorised
reductions), fused multiply-add, reciprocal and approximate-function tricks.

A parallel region costs a thread wake-up and a barrier: microseconds on a quiet machine, but a
whole scheduler slice when another process holds the other core. So every parallel kernel
also exists serial, and small calls run serial.
"""
import hashlib
import os
import types

import numba

# The threading layer. GNU OpenMP ("omp") starts a parallel region far sooner than numba's own
# "workqueue" wakes its threads (docs/performance.md, "Runtime"). OpenMP's idle workers spin
# before they sleep, and libgomp's default spin (GOMP_SPINCOUNT 300,000) holds the second core
# through the OpenBLAS product that follows each kernel, so the spin is cut to
# OMP_SPIN_COUNT: long enough that a worker is still awake for the next kernel after the short
# Python between two kernels of a decoding step, short enough that it has slept by the time
# OpenBLAS's product needs its core (docs/performance.md, "Runtime"). libgomp reads the variable once, when it is loaded, so
# :func:`launch_threads` sets it only for that moment. A process holds one libgomp.so.1, and
# PyTorch's wheel ships one of that name: whichever loads first sets the spin for both, and
# PyTorch's many small regions want its long default (a tiny PyTorch step ran ~5x slower with
# npgpt's). So a process that runs both should import torch first (as the benchmarks do).
# A layer or spin count the user chose is kept.
OMP_SPIN_COUNT = "5000"
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def launch_threads() -> None:
    """Start numba's thread pool (once), with libgomp's short spin if OpenMP is the layer."""
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return
    added = "GOMP_SPINCOUNT" not in os.environ
    if added:
        os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
    try:
        parallel._launch_threads()
    finally:
        if added:
            del os.environ["GOMP_SPINCOUNT"]


launch_threads()

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# Below this many elements touched, threads cost more than they save. On a machine shared with
# other busy processes, a parallel region can wait a whole scheduler slice for its second
# thread; raise NPGPT_PARALLEL_MIN_ELEMENTS there.
PARALLEL_MIN_ELEMENTS = int(os.environ.get("NPGPT_PARALLEL_MIN_ELEMENTS") or 1 << 18)


# numba keys a cached kernel on its own source file only, but the kernels inline helpers from
# other files (exp and gemm here, the copy loops, the softmax row): after an upgrade that
# changed only a helper, a kernel would load its stale machine code. Kernels defined in
# npgpt/kernels are therefore stamped with a hash of all of its and the runtime's sources.
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNELS_DIR = os.path.join(os.path.dirname(_RUNTIME_DIR), "kernels")


def sources_stamp(*directories: str) -> bytes:
    """A hash of the names and contents of the .py files in ``directories`` (default: the
    kernels' and the runtime's)."""
    digest = hashlib.sha256()
    for directory in directories or (_KERNELS_DIR, _RUNTIME_DIR):
        for name in sorted(os.listdir(directory)):
            if name.endswith(".py"):
                with open(os.path.join(directory, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.digest()


def _stamp_kernel_caches() -> None:
    from numba.core import caching

    stamp = sources_stamp()

    class _PackageStamp:
        def get_source_stamp(self):
            return stamp

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _KERNELS_DIR:
                return None
            return super().from_function(py_func, py_file)

    try:
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl    # (older numba)
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                 caching.UserWideCacheLocator)
        impl._locator_classes[:0] = [
            type("Kernels" + base.__name__, (_PackageStamp, base), {}) for base in bases]
    except AttributeError:      # another numba layout: its own per-file stamps apply
        pass


_stamp_kernel_caches()


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
