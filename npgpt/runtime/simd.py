"""x86 AVX2 integer multiply-adds for the int8 decoding kernel, as a numba intrinsic.

numba's integer arithmetic widens to 64 bits, and LLVM does not rebuild the byte
multiply-adds from loops written over bytes: the int8 product written in plain numba spends
several instructions per pair of products. AVX2 has the instructions that llama.cpp's Q8_0
dot product rests on: ``vpmaddubsw`` multiplies 32 unsigned bytes by 32 signed bytes and adds
adjacent pairs into 16 int16, ``vpmaddwd`` against ones adds adjacent int16 pairs into 8 int32.
The activations' signs move onto the weights first (``vpsignb``), so the unsigned operand is
|x|. With 4 inputs of 8 outputs in 32 bytes (the panel layout of
:mod:`npgpt.kernels.int8_layout`), one quad of inputs is 3 instructions for 32 products.

``quad_dots`` is used only where :func:`has_avx2` says the CPU numba compiles for has them;
the plain-numba kernel beside it computes the same integers elsewhere.
"""
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def has_avx2() -> bool:
    """Whether the code numba generates here may use AVX2: the host CPU has it and no
    ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` asks for another target."""
    name = numba.config.CPU_NAME
    features = numba.config.CPU_FEATURES
    if features:
        return "+avx2" in features.split(",")
    if name not in (None, "", "host"):
        return False
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("avx2", False))
    except Exception:       # an llvmlite that cannot say: the plain kernel is always right
        return False


def _contiguous(*arrays) -> bool:
    """Whether every argument is a C-contiguous array: the intrinsics load and store whole
    vectors at an element's address, which only reads the right elements in such arrays."""
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


def _function(module, name, ret, args):
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, ir.FunctionType(ret, args), name=name)


@intrinsic
def quad_dots(typingctx, q, off, n, xu, xs, xoff, acc, aoff):
    """acc[aoff + j] += sum over i < n, t < 4 of x_i[t] * q[off + 32 i + 4 j + t], j < 8.

    q: 1-D int8 (a panel, flat); x_i's 4 bytes are quad ``xoff + i`` of the activations,
    given twice as int32: ``xs`` their bytes (-127..127), ``xu`` their absolute values.
    acc: 1-D int32. The sums are exact (pairs stay within int16: 2 * 127 * 127 < 2^15)."""
    if not (_contiguous(q, xu, xs, acc) and q.dtype == types.int8 and q.ndim == 1
            and xu.dtype == xs.dtype == acc.dtype == types.int32):
        return None                 # numba reports no matching signature
    sig = types.void(q, off, n, xu, xs, xoff, acc, aoff)

    def codegen(context, builder, signature, args):
        q_, off_, n_, xu_, xs_, xoff_, acc_, aoff_ = args
        arrays = [context.make_array(signature.args[i])(context, builder, args[i])
                  for i in (0, 3, 4, 6)]
        qa, xua, xsa, acca = (a.data for a in arrays)
        i8, i16, i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
        b32, w16, d8 = ir.VectorType(i8, 32), ir.VectorType(i16, 16), ir.VectorType(i32, 8)
        module = builder.module
        psign = _function(module, "llvm.x86.avx2.psign.b", b32, [b32, b32])
        maddubs = _function(module, "llvm.x86.avx2.pmadd.ub.sw", w16, [b32, b32])
        maddwd = _function(module, "llvm.x86.avx2.pmadd.wd", d8, [w16, w16])
        ones = ir.Constant(w16, [1] * 16)
        zero8 = ir.Constant(ir.VectorType(i32, 8), [0] * 8)

        def splat(value):
            vec = builder.insert_element(ir.Constant(d8, None), value, ir.Constant(i32, 0))
            return builder.bitcast(builder.shuffle_vector(vec, vec, zero8), b32)

        total = cgutils.alloca_once_value(builder, ir.Constant(d8, [0] * 8))
        base = builder.gep(qa, [off_])
        with cgutils.for_range(builder, n_) as loop:
            i = loop.index
            at = builder.gep(base, [builder.mul(i, ir.Constant(i.type, 32))])
            w = builder.load(builder.bitcast(at, b32.as_pointer()), align=1)
            k = builder.add(xoff_, i)
            signed = builder.call(psign, [w, splat(builder.load(builder.gep(xsa, [k])))])
            pairs = builder.call(maddubs, [splat(builder.load(builder.gep(xua, [k]))), signed])
            quads = builder.call(maddwd, [pairs, ones])
            builder.store(builder.add(builder.load(total), quads), total)
        out = builder.bitcast(builder.gep(acca, [aoff_]), d8.as_pointer())
        builder.store(builder.add(builder.load(out, align=4), builder.load(total)), out, align=4)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def dequantize_quad(typingctx, q, off, s, w, k, o):
    """w[k + t, o + j] = s[o + j] * q[off + 4 j + t] for t < 4, j < 8: one quad of the panel
    layout (8 outputs' weights for 4 inputs, 32 bytes) as floats in w's rows, (K, P).

    The bytes arrive output-major and w wants input-major rows; the transposition is one
    byte shuffle of the 32 bytes (plain LLVM vector code, on any CPU), where the same loop
    written in numba moved one byte at a time."""
    if not (_contiguous(q, s, w) and q.dtype == types.int8 and q.ndim == 1 and s.ndim == 1
            and w.ndim == 2 and s.dtype == w.dtype and w.dtype in (types.float32, types.float64)):
        return None                 # numba reports no matching signature
    sig = types.void(q, off, s, w, k, o)

    def codegen(context, builder, signature, args):
        q_, off_, s_, w_, k_, o_ = args
        qty, sty, wty = signature.args[0], signature.args[2], signature.args[3]
        qa = context.make_array(qty)(context, builder, q_)
        sa = context.make_array(sty)(context, builder, s_)
        wa = context.make_array(wty)(context, builder, w_)
        i8, i32 = ir.IntType(8), ir.IntType(32)
        fty = context.get_data_type(wty.dtype)
        b32 = ir.VectorType(i8, 32)
        f8 = ir.VectorType(fty, 8)
        raw = builder.load(builder.bitcast(builder.gep(qa.data, [off_]), b32.as_pointer()),
                           align=1)
        t_major = builder.shuffle_vector(
            raw, raw, ir.Constant(ir.VectorType(i32, 32),
                                  [4 * j + t for t in range(4) for j in range(8)]))
        scale = builder.load(builder.bitcast(builder.gep(sa.data, [o_]), f8.as_pointer()),
                             align=1)
        for t in range(4):
            part = builder.shuffle_vector(t_major, t_major, ir.Constant(
                ir.VectorType(i32, 8), list(range(8 * t, 8 * t + 8))))
            row = builder.add(k_, ir.Constant(k_.type, t))
            at = cgutils.get_item_pointer(context, builder, wty, wa, [row, o_])
            builder.store(builder.fmul(builder.sitofp(part, f8), scale),
                          builder.bitcast(at, f8.as_pointer()), align=1)
        return context.get_dummy_value()
    return sig, codegen
