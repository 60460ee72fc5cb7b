"""AdamW update in place (bias-corrected Adam, decoupled weight decay, as torch.optim.AdamW).

    param, grad, m, v: same shape; param, m, v are updated in place      step: 1, 2, ...

    param -= lr * weight_decay * param                  (decay first, on the old weights)
    m = beta1 m + (1 - beta1) grad                      v = beta2 v + (1 - beta2) grad^2
    param -= (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
"""
import math

import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.jit import row_kernel

_BLOCK = 1 << 15        # elements per parallel block


def _check(param, grad, m, v, step):
    if not (param.shape == grad.shape == m.shape == v.shape):
        raise InputError(f"adamw_step expects param, grad, m and v of one shape, got {param.shape}, "
                         f"{grad.shape}, {m.shape} and {v.shape}")
    if int(step) < 1:
        raise InputError(f"adamw_step expects step >= 1 (bias correction), got {step}")


def adamw_step_ref(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    _check(param, grad, m, v, step)
    param *= 1 - lr * weight_decay
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + eps
    param -= (lr / (1 - beta1 ** step)) * m / denom


@row_kernel
def _step(param, grad, m, v, decay, beta1, one_minus_beta1, beta2, one_minus_beta2,
          step_size, inv_sqrt_bc2, eps):
    n = param.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        # slices indexed from 0: indexing the whole arrays at lo + j here costs a negative-
        # index check per element that keeps LLVM from vectorising (docs/performance.md)
        lo, hi = b * _BLOCK, (b + 1) * _BLOCK
        ps, gs, ms, vs = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(ps.size):
            g = gs[i]
            mi = beta1 * ms[i] + one_minus_beta1 * g
            vi = beta2 * vs[i] + one_minus_beta2 * g * g
            ms[i] = mi
            vs[i] = vi
            ps[i] = ps[i] * decay - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)


def adamw_step_numba(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    _check(param, grad, m, v, step)
    for name, a in (("param", param), ("m", m), ("v", v)):
        if not a.flags.c_contiguous:
            raise InputError(f"adamw_step updates {name} in place and needs it C-contiguous")
    t = param.dtype.type                         # float32 state is updated in float32
    _step.pick(param.size)(param.reshape(-1), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
          m.reshape(-1), v.reshape(-1), t(1 - lr * weight_decay), t(beta1), t(1 - beta1), t(beta2),
          t(1 - beta2), t(lr / (1 - beta1 ** step)), t(1 / math.sqrt(1 - beta2 ** step)), t(eps))
