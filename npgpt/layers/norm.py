"""Normalisation layers: LayerNorm (GPT-2), RMSNorm (LLaMA), BatchNorm (for the lesson)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import InputError
from ..module import Module, Parameter


def _check_channels(layer: Module, x: np.ndarray, C: int) -> None:
    if x.ndim == 0 or x.shape[-1] != C:
        raise InputError(f"{type(layer).__name__} expects inputs with last dimension {C}, "
                         f"got shape {np.shape(x)}")


class LayerNorm(Module):
    """y = (x - mean) * rstd * weight + bias, statistics over the last axis.
    x, y: (..., C); weight, bias: (C,); rstd = 1 / sqrt(var + eps), var biased (divides by C).

    Each token is normalised on its own, so the layer behaves the same in training and in
    inference and does not depend on the batch.

    backward, with xhat = (x - mean) * rstd and g = dy * weight:
        dweight += sum(dy * xhat)      dbias += sum(dy)     (over all leading axes)
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))   (means over the last axis)
    The three terms: the direct path through xhat, the path through the mean, the path
    through the variance. Forward keeps x, mean and rstd (xhat is recomputed from them); both
    directions run in ``npgpt.kernels.layernorm`` (numba, or the NumPy reference).
    """

    def __init__(self, C: int, eps: float = 1e-5, bias: bool = True, dtype=np.float32):
        super().__init__(dtype)
        self.C, self.eps = C, eps
        self.weight = Parameter(np.ones(C, dtype=dtype))
        self.bias = Parameter(np.zeros(C, dtype=dtype)) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels(self, x, self.C)
        bias = self.bias.data if self.bias is not None else None
        # the kernel (or its NumPy reference, npgpt.kernels.layernorm) computes the formula
        y, mean, rstd = kernels.layernorm_forward(x, self.weight.data, bias, self.eps)
        self.save(x, mean, rstd)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, mean, rstd = self.saved()
        dx, dweight, dbias = kernels.layernorm_backward(dy, x, self.weight.data, mean, rstd)
        if self.weight.requires_grad:       # frozen (under LoRA): no gradient buffer
            self.weight.grad += dweight
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad += dbias
        return dx


class RMSNorm(Module):
    """y = x * rstd * weight with rstd = 1 / sqrt(mean(x^2) + eps) over the last axis
    (the LLaMA definition: no mean subtraction, no bias).   x, y: (..., C); weight: (C,)

    backward, with xhat = x * rstd and g = dy * weight:
        dweight += sum(dy * xhat)
        dx = rstd * (g - xhat * mean(g * xhat))
    (LayerNorm's formula without the mean term, since no mean was subtracted.) Both directions
    run in ``npgpt.kernels.rmsnorm``.

    ``plus_one`` (Gemma): y = x * rstd * (1 + weight), the weight starting at 0. The scale is
    then 1 + weight, and d(1 + weight) = dweight, so the same kernels run with 1 + weight.
    """

    def __init__(self, C: int, eps: float = 1e-6, dtype=np.float32, plus_one: bool = False):
        super().__init__(dtype)
        self.C, self.eps, self.plus_one = C, eps, bool(plus_one)
        self.weight = Parameter((np.zeros if self.plus_one else np.ones)(C, dtype=dtype))

    def _scale(self) -> np.ndarray:
        w = self.weight.data
        return w + w.dtype.type(1) if self.plus_one else w

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels(self, x, self.C)
        y, rstd = kernels.rmsnorm_forward(x, self._scale(), self.eps)
        self.save(x, rstd)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x, rstd = self.saved()
        dx, dweight = kernels.rmsnorm_backward(dy, x, self._scale(), rstd)
        if self.weight.requires_grad:
            self.weight.grad += dweight
        return dx


class BatchNorm(Module):
    """y = (x - mean) * rstd * weight + bias, statistics per channel over every leading axis
    (all N = B*T rows), not over the channels as LayerNorm does.   x, y: (..., C)

    Training uses the batch's mean and biased variance and updates running estimates
    ``running = (1 - momentum) * running + momentum * batch`` (the running variance uses the
    unbiased N/(N-1) estimate, as PyTorch does); evaluation uses the running estimates, so a
    token's output then no longer depends on the rest of the batch. The running estimates are
    plain arrays, not parameters (they are not trained and not in ``state_dict``).

    backward (training), with xhat, g = dy * weight and means over the N rows:
        dweight += sum(dy * xhat)      dbias += sum(dy)
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    """

    def __init__(self, C: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32):
        super().__init__(dtype)
        self.C, self.eps, self.momentum = C, eps, momentum
        self.weight = Parameter(np.ones(C, dtype=dtype))
        self.bias = Parameter(np.zeros(C, dtype=dtype))
        self.running_mean = np.zeros(C, dtype=np.float64)
        self.running_var = np.ones(C, dtype=np.float64)
        self.num_batches_tracked = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        _check_channels(self, x, self.C)
        x2 = x.reshape(-1, self.C)
        N = x2.shape[0]
        if self.training:
            mean = x2.mean(0)
            xc = x2 - mean
            var = (xc * xc).mean(0)
            if N > 1:
                m = self.momentum
                self.running_mean = (1 - m) * self.running_mean + m * mean
                self.running_var = (1 - m) * self.running_var + m * var * (N / (N - 1))
                self.num_batches_tracked += 1
            rstd = 1.0 / np.sqrt(var + self.eps)
            xhat = xc * rstd
        else:
            # keep the input's dtype: the running statistics are float64 bookkeeping
            mean = self.running_mean.astype(x.dtype)
            rstd = (1.0 / np.sqrt(self.running_var + self.eps)).astype(x.dtype)
            xhat = (x2 - mean) * rstd
        self.save(xhat, rstd)   # kept only in training (batch statistics), see Module.save
        return (xhat * self.weight.data + self.bias.data).reshape(x.shape)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xhat, rstd = self.saved()
        dy2 = dy.reshape(-1, self.C)
        if self.weight.requires_grad:
            self.weight.grad += (dy2 * xhat).sum(0)
        if self.bias.requires_grad:
            self.bias.grad += dy2.sum(0)
        g = dy2 * self.weight.data
        dx = rstd * (g - g.mean(0) - xhat * (g * xhat).mean(0))
        return dx.reshape(dy.shape)
