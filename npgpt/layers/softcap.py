"""Logit soft-capping: squash the logits smoothly into (-cap, cap) (Gemma 2 and 3's final
logits; speedrun recipes use it to keep early logits from growing overconfident)."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..module import Module


class SoftCap(Module):
    """y = cap * tanh(z / cap).   z, y: (..., V) (any shape)

    Near zero y ≈ z; large |z| saturate at ±cap. backward, with t = tanh(z / cap) saved:
    dz = dy * (1 - t²).
    """

    def __init__(self, cap: float, dtype=np.float32):
        super().__init__(dtype)
        if isinstance(cap, bool) or not isinstance(cap, (int, float, np.number)) \
                or not np.isfinite(cap) or cap <= 0:
            raise ConfigError(f"SoftCap cap={cap!r} must be a finite number > 0")
        self.cap = float(cap)

    def forward(self, z: np.ndarray) -> np.ndarray:
        dt = z.dtype.type
        t = np.tanh(z * dt(1.0 / self.cap))
        self.save(t)
        return t * dt(self.cap)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (t,) = self.saved()
        dz = t * t
        np.subtract(1, dz, out=dz)
        dz *= dy
        return dz
