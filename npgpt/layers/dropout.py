"""Dropout."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..module import Module


class Dropout(Module):
    """Inverted dropout.   x, y: (...)

    Training (and gradients enabled) with p > 0: each element is kept with probability 1 - p,
    y = x * mask / (1 - p), so the expected output equals x and inference needs no rescaling.
    In eval() / no_grad(), or with p = 0, y = x. With p = 1 everything is dropped (y = 0).

    backward: dx = dy * mask / (1 - p), the same mask (identity when forward was).
    """

    def __init__(self, p: float = 0.0, rng: np.random.Generator | None = None,
                 dtype=np.float32):
        super().__init__(dtype)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"Dropout p={p}: expected a probability in [0, 1]")
        self.p = float(p)
        self._rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.p == 0.0 or not self.keeps_activations:
            self.save(None)
            return x
        if self.p == 1.0:
            scaled_mask = np.zeros_like(x)
        else:
            keep = self._rng.random(np.shape(x)) >= self.p
            scaled_mask = keep.astype(x.dtype) * np.asarray(1.0 / (1.0 - self.p), dtype=x.dtype)
        self.save(scaled_mask)
        return x * scaled_mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (scaled_mask,) = self.saved()
        return dy if scaled_mask is None else dy * scaled_mask
