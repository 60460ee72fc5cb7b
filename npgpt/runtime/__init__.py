"""The runtime: the only code that touches threads, BLAS bindings, numba's threading layer and
freed-memory retention, and the in-process data parallel built on them.

    jit        numba's options for every kernel, its threading layer, the kernel-cache stamp
    blas       gemm on strided views, callable from inside numba kernels
    exp        a vectorisable float32 exp for the kernels' inner loops
    threads    one thread count for numba and BLAS (``--threads``, ``NPGPT_NUM_THREADS``)
    memory     keep freed memory in the process (a training loop reuses its pages)
    parallel   a batch split by rows across threads, one model replica per shard

Nothing here imports numba or NumPy at ``import npgpt.runtime``: the modules load when used.
"""
import os as _os
import sys as _sys

# OpenBLAS's idle workers spin for a long while after each product, on the core numba's
# kernels need next; the variable can only be set before NumPy loads its OpenBLAS (see
# docs/performance.md). A value the user set is kept.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
