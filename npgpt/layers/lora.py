"""LoRA: a low-rank adapter beside a frozen Linear (Hu et al. 2021, "Low-Rank Adaptation").

    y = x @ W + b + scale * dropout(x) @ A @ B        scale = alpha / r

W (in, out) and b stay frozen; only A (in, r) and B (r, out) train, so a fine-tune keeps
2 r (in + out) numbers per adapted layer instead of in * out, and the optimizer holds moments
for those alone. B starts at zero, so the adapted model starts as the base model exactly.

:class:`LoRA` is the adapter alone; :class:`LoRALinear` is a Linear (same ``weight`` and
``bias`` Parameters, so checkpoint names do not change) with adapters on column ranges of
its output: one over all columns, or one per projection of a fused layer (LLaMA's q, k, v
live in npgpt's single ``c_attn``, and PEFT adapts each with its own A and B).
:class:`QuantizedLoRALinear` is the same on a frozen int8 :class:`QuantizedLinear` (QLoRA-style).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ..module import Module, Parameter
from .dropout import Dropout
from .linear import Linear, matmul_accumulate
from .quantized import QuantizedLinear


def kaiming_uniform(shape, fan_in: int, dtype, rng: np.random.Generator) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): kaiming-uniform with a = sqrt(5), the init PyTorch
    gives nn.Linear and PEFT gives lora_A (gain sqrt(2 / (1 + a^2)) = sqrt(1/3), bound
    gain * sqrt(3 / fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(dtype)


class LoRA(Module):
    """delta = scale * dropout(x) @ A @ B.   x: (N, in), A: (in, r), B: (r, out), delta: (N, out)

    backward, with h = dropout(x), u = h @ A and dy the gradient of delta:
        dB += scale * u^T @ dy      du = scale * dy @ B^T
        dA += h^T @ du              dx = dropout.backward(du @ A^T)
    """

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float,
                 dropout: float = 0.0, dtype=np.float32, rng: np.random.Generator | None = None,
                 rslora: bool = False):
        super().__init__(dtype)
        if not isinstance(r, (int, np.integer)) or r < 1:
            raise ConfigError(f"LoRA rank r={r!r} must be a positive integer")
        rng = rng if rng is not None else np.random.default_rng()
        self.r, self.alpha = int(r), float(alpha)
        # rsLoRA (Kalajdzievski 2023) divides by sqrt(r) so that large ranks still learn
        self.scale = self.alpha / (math.sqrt(self.r) if rslora else self.r)
        self.A = Parameter(kaiming_uniform((in_features, self.r), in_features, self.dtype, rng))
        self.B = Parameter(np.zeros((self.r, out_features), self.dtype))
        self.dropout = Dropout(dropout, rng=rng, dtype=dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = self.dropout(x)
        u = h @ self.A.data                       # (N, r): small, so the r-wide products are cheap
        self.save(h, u)
        delta = u @ self.B.data
        delta *= delta.dtype.type(self.scale)
        return delta

    def backward(self, dy: np.ndarray) -> np.ndarray:
        h, u = self.saved()
        s = dy.dtype.type(self.scale)
        if self.B.requires_grad:
            matmul_accumulate(self.B.grad, (u * s).T, dy)
        du = dy @ self.B.data.T
        du *= s
        if self.A.requires_grad:
            matmul_accumulate(self.A.grad, h.T, du)
        return self.dropout.backward(du @ self.A.data.T)

    def delta_weight(self) -> np.ndarray:
        """scale * A @ B (in, out): what merging adds to the base weight."""
        return (self.A.data @ self.B.data) * self.dtype.type(self.scale)


class _Adapted:
    """Adapters on column ranges of a frozen base layer's output, the base's forward and
    backward (a Linear's or a QuantizedLinear's) run by the class this is mixed into."""

    def _adapt(self, base, r, alpha, dropout, slices, rng, rslora) -> None:
        Module.__init__(self, base.dtype)
        self.training = base.training
        self.in_features, self.out_features = base.in_features, base.out_features
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        rng = rng if rng is not None else np.random.default_rng()
        self._slices = {}
        for name, cols in (slices or {"": slice(0, self.out_features)}).items():
            width = len(range(self.out_features)[cols])
            adapter = LoRA(self.in_features, width, r, alpha, dropout, dtype=self.dtype, rng=rng,
                           rslora=rslora)
            adapter.training = base.training
            setattr(self, f"lora_{name}" if name else "lora", adapter)
            self._slices[name] = cols

    def adapters(self) -> list[tuple[str, slice, LoRA]]:
        """(name, output columns, adapter) of every adapter, in order."""
        return [(name, cols, getattr(self, f"lora_{name}" if name else "lora"))
                for name, cols in self._slices.items()]

    def _add_adapters(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x2 = x.reshape(-1, self.in_features)
        y2 = y.reshape(-1, self.out_features)     # a view of the fresh y: added into in place
        for _, cols, adapter in self.adapters():
            y2[:, cols] += adapter(x2)
        return y

    def _adapters_backward(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        dy2 = dy.reshape(-1, self.out_features)
        dx2 = dx.reshape(-1, self.in_features)
        for _, cols, adapter in self.adapters():
            dx2 += adapter.backward(dy2[:, cols])
        return dx


class LoRALinear(_Adapted, Linear):
    """y = x @ W + b + sum over adapters k of  y[..., cols_k] += LoRA_k(x).   x: (..., in)

    Built from an existing :class:`Linear` (:meth:`wrap`), whose ``weight`` and ``bias`` it
    shares and freezes. ``adapters`` maps a name to (column slice, LoRA); the name ``""`` is
    the adapter over all columns, and the LoRA is held as attribute ``lora`` (or
    ``lora_<name>``, e.g. ``lora_q``), which is what its parameter names show
    (``h.0.attn.c_attn.lora_q.A``).

    backward: the base Linear's dx (no dW, db: frozen) plus each adapter's dx.
    """

    @classmethod
    def wrap(cls, linear: Linear, r: int, alpha: float, dropout: float = 0.0,
             slices: dict[str, slice] | None = None, rng: np.random.Generator | None = None,
             rslora: bool = False) -> LoRALinear:
        if not isinstance(linear, Linear) or isinstance(linear, LoRALinear):
            raise ConfigError(f"LoRA adapts a plain Linear, not {type(linear).__name__}")
        self = cls.__new__(cls)
        self.weight = linear.weight
        self.weight.requires_grad_(False)
        self._adapt(linear, r, alpha, dropout, slices, rng, rslora)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._add_adapters(x, super().forward(x))   # Linear's checks the shape, keeps x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self._adapters_backward(dy, super().backward(dy))

    def merged(self) -> Linear:
        """A plain Linear computing what this one does, W + the adapters' deltas folded in
        (a new weight array; this layer is left as it was)."""
        linear = Linear.__new__(Linear)
        Module.__init__(linear, self.dtype)
        linear.training = self.training
        linear.in_features, linear.out_features = self.in_features, self.out_features
        weight = self.weight.data.copy()
        for _, cols, adapter in self.adapters():
            weight[:, cols] += adapter.delta_weight()
        linear.weight = Parameter(weight)
        linear.bias = None if self.bias is None else Parameter(self.bias.data.copy())
        return linear


class QuantizedLoRALinear(_Adapted, QuantizedLinear):
    """LoRALinear on an int8 base (QLoRA-style):  y = x @ dequantize(qweight, scales)^T + b
    + the adapters, as :class:`LoRALinear`.   x: (..., in)

    Built from a :class:`QuantizedLinear` (:meth:`wrap`), whose int8 weight, scales and bias
    it shares (frozen, unchanged by training). backward: the int8 base's dx (dequantized a
    panel of rows at a time, see :mod:`npgpt.layers.quantized`) plus each adapter's dx.
    """

    @classmethod
    def wrap(cls, linear: QuantizedLinear, r: int, alpha: float, dropout: float = 0.0,
             slices: dict[str, slice] | None = None, rng: np.random.Generator | None = None,
             rslora: bool = False) -> QuantizedLoRALinear:
        if type(linear) is not QuantizedLinear:
            raise ConfigError(f"QuantizedLoRALinear adapts a QuantizedLinear, not "
                              f"{type(linear).__name__}")
        self = cls.__new__(cls)
        self.qpanels, self.spanels, self.block = linear.qpanels, linear.spanels, linear.block
        self._adapt(linear, r, alpha, dropout, slices, rng, rslora)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._add_adapters(x, super().forward(x))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self._adapters_backward(dy, super().backward(dy))

    NO_MERGE = ("adapters on an int8 base merge into the float base: load the adapter onto "
                "the float model (from_pretrained(dir, adapter=...)) and merge there (npgpt "
                "lora merge BASE ADAPTER OUT)")

    def merged(self):
        raise ConfigError(self.NO_MERGE)
