"""One thread count for everything: numba's parallel kernels and the BLAS behind ``np.matmul``.

``NPGPT_NUM_THREADS`` is read the first time a numba kernel runs (or by :func:`init_threads`);
:func:`set_num_threads` changes both pools at any time. Nothing here imports numba until it is
needed, so ``import npgpt`` stays fast.
"""
from __future__ import annotations

import contextlib
import os

from ..errors import ConfigError

_initialized = False
_blas_limiter = None   # threadpoolctl keeps BLAS limits only while this object lives


def _parse(value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"thread count must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"thread count must be a positive integer, got {value!r}")
    return n


def set_num_threads(n: int) -> int:
    """Use ``n`` threads in numba kernels and in BLAS; returns the numba count actually set.

    numba cannot go above the count its pool was started with (``NUMBA_NUM_THREADS``, by
    default the number of cores), so ``n`` is clipped to it; BLAS gets ``n`` as asked.
    """
    global _initialized, _blas_limiter
    n = _parse(n)
    import numba
    from threadpoolctl import threadpool_limits

    from .jit import launch_threads
    launch_threads()          # numba's pool, started with npgpt's threading-layer settings

    n_numba = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n_numba)
    _blas_limiter = threadpool_limits(limits=n, user_api="blas")
    _limit_scipy_blas()
    _initialized = True
    return n_numba


def _limit_scipy_blas() -> None:
    """SciPy's OpenBLAS (a second copy beside NumPy's) to one thread.

    The attention kernel calls gemm through SciPy's BLAS (``npgpt.runtime.blas``), from loops
    already parallel over heads; with that pool at n threads too, the two OpenBLAS pools spin
    against each other (docs/performance.md, "Runtime"). threadpoolctl
    limits only loaded libraries, so it is loaded first.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        return
    from threadpoolctl import ThreadpoolController
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        # by its folder: NumPy's own OpenBLAS is also named libscipy_openblas, in numpy.libs
        if os.path.basename(os.path.dirname(lib.filepath)) == "scipy.libs":
            lib.set_num_threads(1)


def get_num_threads() -> dict:
    """The current thread counts: ``{"numba": n, "blas": n or None}``."""
    import numba
    from threadpoolctl import threadpool_info

    from .jit import launch_threads
    launch_threads()

    blas = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return {"numba": numba.get_num_threads(), "blas": max(blas) if blas else None}


def init_threads() -> None:
    """Apply ``NPGPT_NUM_THREADS`` once, if set (called on the first numba kernel call)."""
    global _initialized
    if _initialized:
        return
    _initialized = True
    value = os.environ.get("NPGPT_NUM_THREADS")
    if value not in (None, ""):
        set_num_threads(_parse(value))
    else:
        _limit_scipy_blas()


_blas_libs = None


@contextlib.contextmanager
def serial():
    """BLAS at one thread and numba's kernels serial, on this thread, for the span of the block.

    For a small side computation between training steps (the training statistics' forward
    of a few windows): products that small gain nothing from a second thread and pay for
    waking it, and on a busy machine a BLAS thread that is not scheduled stalls its partner.
    """
    global _blas_libs
    import numba
    from threadpoolctl import ThreadpoolController
    init_threads()
    if _blas_libs is None:
        _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
    saved_blas = [(lib, lib.get_num_threads()) for lib in _blas_libs]
    saved_numba = numba.get_num_threads()
    for lib, _ in saved_blas:
        lib.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(saved_numba)
        for lib, n in saved_blas:
            lib.set_num_threads(n)
