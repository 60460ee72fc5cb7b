"""gemm inside numba kernels, on strided row-major views: ``gemm(a, ta, b, tb, c, alpha, beta)``.

numba's ``np.dot`` takes contiguous arrays only and computes ``c = a @ b``. The attention
kernel's operands are heads of a (B, T, 3, H, hs) projection (rows a whole projection row
apart) and blocks of the (T, S) probabilities, so with ``np.dot`` each head was first copied
into contiguous scratch, the probabilities went through a block buffer, and the gradients
that add up over query blocks (dk, dv) took a product into scratch and a loop to add it.
BLAS itself takes a row stride per matrix (``lda``), a scale ``alpha`` and ``beta`` to add
into ``c``, so :func:`gemm` passes those through and every copy goes (figures in
docs/performance.md, "Runtime").

The BLAS is SciPy's (``scipy.linalg.cython_blas``, Fortran calling convention: column-major,
every argument by reference), the one ``np.dot`` in numba uses, kept at one thread by
``npgpt.runtime.threads``. Its ``sgemm``/``dgemm`` are registered with LLVM under the names below
when this module is imported, and the kernels call them by name, so cached machine code
links to them again in a new process (an address baked into the code could not be cached).
A row-major ``c = op(a) op(b)`` is the column-major ``c^T = op(b)^T op(a)^T``: b is passed
first, and each matrix's leading dimension is its row stride.
"""
import llvmlite.binding
import llvmlite.ir as ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from .jit import jit

_SYMBOLS = {types.float32: ("sgemm", "npgpt_sgemm"), types.float64: ("dgemm", "npgpt_dgemm")}
for _name, _symbol in _SYMBOLS.values():
    llvmlite.binding.add_symbol(
        _symbol, get_cython_function_address("scipy.linalg.cython_blas", _name))

_N, _T = ord("N"), ord("T")


@intrinsic
def _fortran_gemm(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """?gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), each scalar passed by
    reference from a stack slot and each matrix by its data pointer; the dtype of ``c``
    picks sgemm or dgemm."""
    if not (isinstance(c, types.Array) and c.dtype in _SYMBOLS):
        return None
    dtype = c.dtype

    def codegen(context, builder, signature, args):
        i8, i32, f = ir.IntType(8), ir.IntType(32), context.get_value_type(dtype)
        p8, p32, pf = i8.as_pointer(), i32.as_pointer(), f.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [p8, p8, p32, p32, p32, pf, pf, p32, pf, p32,
                                               pf, pf, p32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[dtype][1])

        def ref(i, llty):
            value, ty = args[i], signature.args[i]
            if llty is None:                               # alpha, beta: in the dtype
                value = context.cast(builder, value, ty, dtype)
            elif ty.bitwidth > llty.width:
                value = builder.trunc(value, llty)
            elif ty.bitwidth < llty.width:
                value = builder.sext(value, llty)
            return cgutils.alloca_once_value(builder, value)

        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        builder.call(fn, [ref(0, i8), ref(1, i8), ref(2, i32), ref(3, i32), ref(4, i32),
                          ref(5, None), data(6), ref(7, i32), data(8), ref(9, i32),
                          ref(10, None), data(11), ref(12, i32)])
        return context.get_dummy_value()

    return types.void(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), codegen


@jit(inline="always")
def gemm(a, ta, b, tb, c, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c, op(x) = x.T if t else x, for 2-D float32 or
    float64 arrays whose rows are contiguous (unit stride along the last axis) and follow each
    other forwards, at least a row apart: the caller makes sure of it (BLAS would read and
    write out of bounds otherwise). With beta = 0, c is only written (BLAS does not read it)."""
    m, n = c.shape
    k = a.shape[0] if ta else a.shape[1]
    if m == 0 or n == 0:
        return
    item = c.itemsize
    # a leading dimension is at least the row length (NumPy may give any stride to one row)
    lda = max(a.strides[0] // item, a.shape[1], 1)
    ldb = max(b.strides[0] // item, b.shape[1], 1)
    ldc = max(c.strides[0] // item, n, 1)
    _fortran_gemm(_T if tb else _N, _T if ta else _N, n, m, k, alpha, b, ldb, a, lda, beta, c,
                  ldc)


@jit(inline="always")
def dot(a, b):
    """sum_i a[i] * b[i] over two vectors of one length, as a loop: inlined into a kernel's own
    loop, where a call into BLAS for a few dozen products would cost more than they do
    (the reassociation the project's flags allow lets LLVM vectorise it)."""
    acc = a[0] * 0
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc
