"""Linear layer, and ``matmul_accumulate`` (out += a @ b in blocks: no weight-sized temporary)."""
from __future__ import annotations

import contextlib

import numpy as np

from .. import kernels
from ..errors import InputError
from ..module import Module, Parameter

_SKIP_INIT = False


@contextlib.contextmanager
def no_init():
    """Models built inside get uninitialised weights (``np.empty``): for a model whose every
    weight is about to be read from a file, drawing GPT-2's 124M normals first would cost
    more than the read (and fresh empty pages cost no memory until written)."""
    global _SKIP_INIT
    previous, _SKIP_INIT = _SKIP_INIT, True
    try:
        yield
    finally:
        _SKIP_INIT = previous


def normal_init(shape, std: float, dtype, rng: np.random.Generator) -> np.ndarray:
    """N(0, std²) weights drawn directly in float32 or float64: no float64 temporary for a
    float32 model (GPT-2's 124M parameters would need 1 GB more to build). Inside
    :func:`no_init`, an uninitialised array."""
    dtype = np.dtype(dtype)
    if _SKIP_INIT:
        return np.empty(shape, dtype)
    w = rng.standard_normal(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
    w *= std
    return w.astype(dtype, copy=False)


# Rows of ``out`` per block in matmul_accumulate: a temporary of ~2M elements (8 MB float32).
_ACCUMULATE_BLOCK_ELEMENTS = 1 << 21


def matmul_accumulate(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """out += a @ b, in place, in blocks of rows.  out: (M, N), a: (M, K), b: (K, N)

    A weight gradient is accumulated (``+=``), and ``out += a @ b`` first writes the whole
    product to a fresh temporary as large as the weight (GPT-2's tied head: 154 MB, page
    faults included) and then adds it in a second pass. Blocks of rows keep the temporary
    small and the add in cache, while each block is still a large product for BLAS (GPT-2's
    tied head: docs/performance.md).

    (BLAS's gemm can add into C itself with beta = 1, but NumPy does not expose it, and
    SciPy's gemm runs on a second OpenBLAS whose thread pool fights NumPy's.)
    """
    rows = max(1, _ACCUMULATE_BLOCK_ELEMENTS // max(1, out.shape[1]))
    if out.shape[0] <= rows:
        out += a @ b
        return
    for i in range(0, out.shape[0], rows):
        out[i:i + rows] += a[i:i + rows] @ b


class Linear(Module):
    """y = x @ W + b.   x: (..., in), W: (in, out), b: (out,), y: (..., out)

    The weight is stored ``(in, out)``: the NumPy-natural layout, and GPT-2's ``Conv1D``'s.

    backward, with dy: (..., out) flattened to (N, out) and x to (N, in):
        dW += x^T @ dy      db += sum_N dy      dx = dy @ W^T

    Both directions run on the flattened (N, in) and (N, out) matrices: one large product
    for BLAS rather than a stack of B small ones, which BLAS runs faster.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, rng: np.random.Generator | None = None, std: float = 0.02):
        super().__init__(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(normal_init((in_features, out_features), std, self.dtype, rng))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.in_features:
            raise InputError(f"Linear expects inputs with last dimension {self.in_features}, "
                             f"got shape {x.shape}")
        x2 = x.reshape(-1, self.in_features)       # copies only a non-contiguous x, once
        self.save(x2)
        y = kernels.matmul(x2, self.weight.data)
        if self.bias is not None:
            y += self.bias.data
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (x2,) = self.saved()
        dy2 = dy.reshape(-1, self.out_features)
        if self.weight.requires_grad:         # frozen (a LoRA base): dx only
            matmul_accumulate(self.weight.grad, x2.T, dy2)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += dy2.sum(axis=0)
        return (dy2 @ self.weight.data.T).reshape(dy.shape[:-1] + (self.in_features,))
