"""RMSNorm over the last axis: the NumPy reference and the numba kernel, forward and backward.

    x, y, dy, dx: (..., C)   weight: (C,)   rstd: (...,)

forward:   rstd = 1 / sqrt(mean(x^2) + eps)    y = x * rstd * weight
backward:  g = dy * weight
           dx = rstd * (g - xhat * mean(g * xhat))      with xhat = x * rstd
           dweight = sum dy * xhat                        (sum over every row)
"""
import numpy as np
from numba import prange

from ..runtime.jit import n_chunks, row_kernel


def rmsnorm_forward_ref(x, weight, eps):
    rstd = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + x.dtype.type(eps))
    return x * rstd * weight, rstd[..., 0]


def rmsnorm_backward_ref(dy, x, weight, rstd):
    C = x.shape[-1]
    xhat = x * rstd[..., None]
    g = dy * weight
    dx = rstd[..., None] * (g - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, C).sum(0)


@row_kernel
def _forward(x, weight, eps, y, rstd, zero, one, inv_c):
    N, C = x.shape
    for i in prange(N):
        xr, yr = x[i], y[i]
        s2 = zero                                # in the input dtype, as LayerNorm's
        for c in range(C):
            s2 += xr[c] * xr[c]
        r = one / np.sqrt(s2 * inv_c + eps)
        rstd[i] = r
        for c in range(C):
            yr[c] = xr[c] * r * weight[c]


@row_kernel
def _backward(dy, x, weight, rstd, dx, dweight_part, zero, inv_c):
    N, C = x.shape
    K = dweight_part.shape[0]
    for k in prange(K):                          # block k owns partial sum k: race-free
        dw = dweight_part[k]
        for i in range(k * N // K, (k + 1) * N // K):
            r = rstd[i]
            xr, dyr, dxr = x[i], dy[i], dx[i]
            gx_sum = zero
            for c in range(C):
                xhat = xr[c] * r
                gx_sum += dyr[c] * weight[c] * xhat
                dw[c] += dyr[c] * xhat
            gx_mean = gx_sum * inv_c
            for c in range(C):
                dxr[c] = r * (dyr[c] * weight[c] - xr[c] * r * gx_mean)


def rmsnorm_forward_numba(x, weight, eps):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    y = np.empty_like(x2)
    rstd = np.empty(x2.shape[0], x.dtype)
    t = x.dtype.type
    _forward.pick(x2.size)(x2, np.ascontiguousarray(weight), t(eps), y, rstd, t(0), t(1), t(1.0 / C))
    return y.reshape(x.shape), rstd.reshape(x.shape[:-1])


def rmsnorm_backward_numba(dy, x, weight, rstd):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    dy2 = np.ascontiguousarray(dy).reshape(-1, C)
    dx = np.empty_like(x2)
    dweight_part = np.zeros((n_chunks(x2.shape[0]), C), x.dtype)
    t = x.dtype.type
    _backward.pick(x2.size)(dy2, x2, np.ascontiguousarray(weight),
                            np.ascontiguousarray(rstd).reshape(-1), dx, dweight_part, t(0), t(1.0 / C))
    return dx.reshape(x.shape), dweight_part.sum(0)
