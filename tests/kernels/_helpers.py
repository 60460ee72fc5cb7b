"""Shared by the kernel tests: run an op on both backends and compare what it produced.

A kernel is compared with its reference *and* with the reference evaluated one precision up
(float32 -> float64, float64 -> longdouble), which stands for the exact result. The kernel
passes when its error against that truth is within ``TOL`` of the scale of the numbers involved
(the largest of the output and the inputs), or within four times the reference's own rounding
error: on ill-conditioned cases (LayerNorm's dx with C=1 or 2 is pure cancellation, exactly 0
in exact arithmetic) the reference is no more exact than the kernel.
"""
import numpy as np

from npgpt.kernels import KERNELS, kernel

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
WIDER = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}


def copy_args(args, dtype=None):
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            a = a.astype(dtype) if dtype is not None and a.dtype.kind == "f" else a.copy()
        out.append(a)
    return out


def outputs(spec, args, result):
    """The arrays an op produced: its return value(s), or its in-place arguments."""
    if spec.inplace:
        return [args[i] for i in spec.inplace]
    return list(result) if isinstance(result, tuple) else [result]


def run(name, args, backend, dtype=None):
    spec = KERNELS[name]
    args = copy_args(args, dtype)
    return outputs(spec, args, kernel(name, backend)(*args))


def check_kernel(name, args, dtype):
    """The numba kernel agrees with the reference (see the module docstring) and keeps dtype."""
    dtype = np.dtype(dtype)
    fast = run(name, args, "numba")
    ref = run(name, args, "numpy")
    truth = run(name, args, "numpy", WIDER[dtype])
    tol = TOL[dtype]
    input_scale = max([float(np.max(np.abs(a), initial=0.0)) for a in args
                       if isinstance(a, np.ndarray) and a.dtype.kind == "f"], default=0.0)
    assert len(fast) == len(ref) == len(truth)
    for f, r, t in zip(fast, ref, truth):
        f, r, t = np.asarray(f), np.asarray(r), np.asarray(t, np.longdouble)
        assert f.shape == r.shape == t.shape
        assert f.dtype == r.dtype == dtype, (f.dtype, r.dtype, dtype)
        assert np.array_equal(np.isfinite(f), np.isfinite(r))
        finite = np.isfinite(r)
        if not finite.any():
            continue
        scale = max(float(np.max(np.abs(t[finite]))), input_scale)
        ref_error = float(np.max(np.abs(r[finite] - t[finite])))
        error = float(np.max(np.abs(f[finite] - t[finite])))
        assert error <= max(tol * scale, 4 * ref_error), (
            f"{name} ({dtype}): kernel error {error:.3g}, reference error {ref_error:.3g}, "
            f"scale {scale:.3g}")
