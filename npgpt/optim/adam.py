"""Adam and AdamW, and ``adamw_update``: the NumPy definition of their fused kernel."""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import ConfigError
from .base import Optimizer


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), bias-corrected; ``weight_decay`` here is L2 added to the
    gradient (classic Adam). For decoupled decay use :class:`AdamW`.

        m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        try:
            b1, b2 = betas
            ok = 0 <= b1 < 1 and 0 <= b2 < 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"betas={betas} must each be in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay))

    def _update(self, p, st, group):
        # kept in the parameter's dtype throughout: float32 training never upcasts
        t = self.step_count
        b1, b2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        if self.decoupled or not wd:
            # one fused pass over p, g, m and v (npgpt.kernels.adamw; adamw_update's formula)
            kernels.adamw_step(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps,
                               wd if self.decoupled else 0.0, t)
        else:
            adamw_update(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps, wd, t,
                         decoupled=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p *= 1 - lr * wd first.

    Give biases, norms and embeddings their own group with ``weight_decay=0``.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def adamw_update(p, g, m, v, lr, b1, b2, eps, wd, t, decoupled=True):
    """One Adam(W) step on arrays, in place. The reference for the fused kernel."""
    dt = p.dtype.type
    if wd and decoupled:
        p *= dt(1.0 - lr * wd)
    elif wd:
        g = g + dt(wd) * p
    m *= dt(b1)
    m += dt(1.0 - b1) * g
    v *= dt(b2)
    v += dt(1.0 - b2) * (g * g)
    step_size = lr / (1.0 - b1 ** t)
    denom = np.sqrt(v)
    denom /= dt(math.sqrt(1.0 - b2 ** t))
    denom += dt(eps)
    p -= dt(step_size) * (m / denom)
