"""Global-norm gradient clipping."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ..contract import checked
from ..errors import ConfigError
from ..module import Parameter


@checked
def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients so that their global 2-norm is at most ``max_norm``.

    Returns the norm before clipping (a non-finite norm is returned as it is, for the caller
    to act on).
    """
    if max_norm < 0:
        raise ConfigError(f"max_norm={max_norm} must be >= 0 (0 turns clipping off)")
    params = [p for p in params if p.requires_grad]
    total = math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))
    if max_norm > 0 and math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad *= p.grad.dtype.type(scale)
    return total
