"""SGD with optional momentum."""
from __future__ import annotations

from .base import Optimizer


class SGD(Optimizer):
    """p -= lr * (g + wd * p), with optional momentum b: buf = b * buf + g (PyTorch's form)."""

    _state_names = ("momentum",)

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _update(self, p, st, group):
        g = p.grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if group["momentum"]:
            buf = st["momentum"]
            if self.step_count == 1:
                buf[...] = g
            else:
                buf *= group["momentum"]
                buf += g
            g = buf
        p.data -= p.data.dtype.type(group["lr"]) * g
