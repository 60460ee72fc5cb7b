"""Feed-forward blocks and their activations: ReLU, ReLU², GELU (exact and tanh), SiLU, MLP, SwiGLU,
GeGLU.

The elementwise functions with kernels (tanh GELU, erf) are defined in :mod:`npgpt.kernels`
and called through its dispatch."""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..contract import checked
from ..errors import ConfigError
from ..module import Module
from .dropout import Dropout
from .linear import Linear

# Python floats, not NumPy float64 scalars, so float32 arrays stay float32
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class ReLU(Module):
    """y = max(x, 0).   x, y: (...)        backward: dx = dy * (x > 0)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save(x > 0)
        return np.maximum(x, 0)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (positive,) = self.saved()
        return dy * positive


class ReLUSquared(Module):
    """y = max(x, 0)² (So et al. 2021, Primer; the modded-nanogpt speedrun's MLP activation).
    x, y: (...)        backward: dx = dy * 2 max(x, 0)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        r = np.maximum(x, 0)
        self.save(r)
        return r * r

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (r,) = self.saved()
        return dy * (r + r)


class GELU(Module):
    """y = x * Phi(x), Phi the standard normal CDF.   x, y: (...)

    approximate="none":  Phi(x) = (1 + erf(x / sqrt 2)) / 2,
                         dx = dy * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    approximate="tanh":  y = x/2 * (1 + tanh(u)),  u = sqrt(2/pi) * (x + 0.044715 x^3)
                         (GPT-2's choice), dx = dy * (1/2 (1 + t) + x/2 (1 - t^2) du/dx),
                         t = tanh(u), du/dx = sqrt(2/pi) * (1 + 3 * 0.044715 x^2)
    """

    def __init__(self, approximate: str = "tanh", dtype=np.float32):
        super().__init__(dtype)
        if approximate not in ("tanh", "none"):
            raise ConfigError(f'GELU approximate={approximate!r}: expected "tanh" or "none"')
        self.approximate = approximate

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            self.save(x, None)
            return kernels.gelu_tanh_forward(x)      # npgpt.kernels.gelu: the formula above
        cdf = 0.5 * (1.0 + kernels.erf(x * _INV_SQRT_2))    # npgpt.kernels.error_function
        self.save(x, cdf)
        return x * cdf

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, cdf = self.saved()
        if self.approximate == "tanh":
            return kernels.gelu_tanh_backward(dy, x)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return dy * (cdf + x * pdf)


@checked
def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class SiLU(Module):
    """y = x * sigmoid(x) (a.k.a. swish).   x, y: (...)

    backward, with s = sigmoid(x):  dx = dy * s * (1 + x * (1 - s))
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        s = sigmoid(x)
        self.save(x, s)
        return x * s

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, s = self.saved()
        return dy * s * (1.0 + x * (1.0 - s))


_ACTIVATIONS = {
    "gelu_tanh": lambda dtype: GELU("tanh", dtype),
    "gelu": lambda dtype: GELU("none", dtype),
    "relu": lambda dtype: ReLU(dtype),
    "relu2": lambda dtype: ReLUSquared(dtype),
    "silu": lambda dtype: SiLU(dtype),
}


class MLP(Module):
    """GPT-2's feed-forward block: y = c_proj(act(c_fc(x))).
    x, y: (B, T, C) (any leading shape); c_fc: C -> hidden, c_proj: hidden -> C.

    activation: "gelu_tanh" (GPT-2), "gelu" (exact, erf), "relu" (the original Transformer),
    "relu2" (ReLU squared), "silu". ``proj_std`` is c_proj's init std (GPT-2 scales it by 1/sqrt(2 * n_layer)); other
    weights use 0.02. ``dropout`` is applied to the output (GPT-2's residual dropout).

    backward: the forward read bottom-up, dx = c_fc.backward(act.backward(c_proj.backward(dy))).
    """

    def __init__(self, n_embd: int, hidden: int, activation: str = "gelu_tanh", bias: bool = True,
                 dtype=np.float32, rng: np.random.Generator | None = None,
                 proj_std: float | None = None, dropout: float = 0.0):
        super().__init__(dtype)
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"MLP activation={activation!r}: expected one of "
                              f"{', '.join(_ACTIVATIONS)}")
        rng = rng if rng is not None else np.random.default_rng()
        self.c_fc = Linear(n_embd, hidden, bias=bias, dtype=dtype, rng=rng)
        self.c_proj = Linear(hidden, n_embd, bias=bias, dtype=dtype, rng=rng,
                             std=0.02 if proj_std is None else proj_std)
        self.act = _ACTIVATIONS[activation](dtype)
        self.dropout = Dropout(dropout, rng=rng, dtype=dtype)
        self.activation = activation

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.c_fc.backward(self.act.backward(self.c_proj.backward(self.dropout.backward(dy))))


class SwiGLU(Module):
    """LLaMA's feed-forward block: y = down_proj(silu(gate_proj(x)) * up_proj(x)).
    x, y: (B, T, C) (any leading shape); gate_proj, up_proj: C -> hidden; down_proj: hidden -> C.

    backward, with a = gate_proj(x), u = up_proj(x), s = sigmoid(a), dh = down_proj.backward(dy):
        du = dh * silu(a)       da = dh * u * s * (1 + a * (1 - s))
        dx = gate_proj.backward(da) + up_proj.backward(du)
    """

    def __init__(self, n_embd: int, hidden: int, bias: bool = False, dtype=np.float32,
                 rng: np.random.Generator | None = None, proj_std: float | None = None):
        super().__init__(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.gate_proj = Linear(n_embd, hidden, bias=bias, dtype=dtype, rng=rng)
        self.up_proj = Linear(n_embd, hidden, bias=bias, dtype=dtype, rng=rng)
        self.down_proj = Linear(hidden, n_embd, bias=bias, dtype=dtype, rng=rng,
                                std=0.02 if proj_std is None else proj_std)

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = self.gate_proj(x)
        u = self.up_proj(x)
        s = sigmoid(a)
        silu_a = a * s
        self.save(a, u, s, silu_a)
        return self.down_proj(silu_a * u)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        a, u, s, silu_a = self.saved()
        dh = self.down_proj.backward(dy)
        du = dh * silu_a
        da = dh * u * s * (1.0 + a * (1.0 - s))
        return self.gate_proj.backward(da) + self.up_proj.backward(du)


class GeGLU(SwiGLU):
    """Gemma's feed-forward block: SwiGLU with the tanh GELU as its gate,
    y = down_proj(gelu_tanh(gate_proj(x)) * up_proj(x)).   x, y: (B, T, C); same parameters.

    backward, with a = gate_proj(x), u = up_proj(x), g = gelu_tanh(a), dh = down_proj.backward(dy):
        du = dh * g       da = gelu_tanh'(a) * (dh * u)      (npgpt.kernels.gelu, both ways)
        dx = gate_proj.backward(da) + up_proj.backward(du)
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        a = self.gate_proj(x)
        u = self.up_proj(x)
        g = kernels.gelu_tanh_forward(a)
        self.save(a, u, g)
        return self.down_proj(g * u)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        a, u, g = self.saved()
        dh = self.down_proj.backward(dy)
        da = kernels.gelu_tanh_backward(dh * u, a)
        return self.gate_proj.backward(da) + self.up_proj.backward(dh * g)
