"""Linear layer."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..module import Module, Parameter


def normal_init(shape, std: float, dtype, rng: np.random.Generator) -> np.ndarray:
    """N(0, std²) weights drawn directly in float32 or float64: no float64 temporary for a
    float32 model (GPT-2's 124M parameters would need 1 GB more to build)."""
    dtype = np.dtype(dtype)
    w = rng.standard_normal(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
    w *= std
    return w.astype(dtype, copy=False)


class Linear(Module):
    """y = x @ W + b.   x: (..., in), W: (in, out), b: (out,), y: (..., out)

    The weight is stored ``(in, out)``: the NumPy-natural layout, and GPT-2's ``Conv1D``'s.

    backward, with dy: (..., out) flattened to (N, out) and x to (N, in):
        dW += x^T @ dy      db += sum_N dy      dx = dy @ W^T
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
        self.save(x)
        y = x @ self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (x,) = self.saved()
        x2 = x.reshape(-1, self.in_features)
        dy2 = dy.reshape(-1, self.out_features)
        self.weight.grad += x2.T @ dy2
        if self.bias is not None:
            self.bias.grad += dy2.sum(axis=0)
        return dy @ self.weight.data.T
