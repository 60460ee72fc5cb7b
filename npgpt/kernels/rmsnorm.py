"""RMSNorm over the last axis: the NumPy reference and the numba kernel, forward and backward.

    x, y, dy, dx: (..., C)   weight: (C,)   rstd: (...,)

forward:   rstd = 1 / sqrt(mean(x^2) + eps)    y = x * rstd * weight
backward:  g = dy * weight
           dx = rstd * (g - xhat * mean(g * xhat))      with xhat = x * rstd
           dweight = sum dy * xhat                        (sum over every row)
"""
import numpy as np
from numba import prange

from ._jit import n_chunks, row_kernel


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
def _forward(x, weight, eps, y, rstd):
    N, C = x.shape
    for i in prange(N):
        s2 = 0.0
        for c in range(C):
            s2 += x[i, c] * x[i, c]
        rstd[i] = 1.0 / np.sqrt(s2 / C + eps)
        r = rstd[i]                              # in the input dtype
        for c in range(C):
            y[i, c] = x[i, c] * r * weight[c]


@row_kernel
def _backward(dy, x, weight, rstd, dx, dweight_part):
    N, C = x.shape
    K = dweight_part.shape[0]
    for k in prange(K):                          # block k owns partial sum k: race-free
        for i in range(k * N // K, (k + 1) * N // K):
            r = rstd[i]
            gx_sum = 0.0
            for c in range(C):
                xhat = x[i, c] * r
                gx_sum += dy[i, c] * weight[c] * xhat
                dweight_part[k, c] += dy[i, c] * xhat
            gx_mean = gx_sum / C
            for c in range(C):
                dx[i, c] = r * (dy[i, c] * weight[c] - x[i, c] * r * gx_mean)


def rmsnorm_forward_numba(x, weight, eps):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    y = np.empty_like(x2)
    rstd = np.empty(x2.shape[0], x.dtype)
    _forward.pick(x2.size)(x2, np.ascontiguousarray(weight), float(eps), y, rstd)
    return y.reshape(x.shape), rstd.reshape(x.shape[:-1])


def rmsnorm_backward_numba(dy, x, weight, rstd):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    dy2 = np.ascontiguousarray(dy).reshape(-1, C)
    dx = np.empty_like(x2)
    dweight_part = np.zeros((n_chunks(x2.shape[0]), C), np.float64)
    _backward.pick(x2.size)(dy2, x2, np.ascontiguousarray(weight), np.ascontiguousarray(rstd).reshape(-1),
              dx, dweight_part)
    return dx.reshape(x.shape), dweight_part.sum(0).astype(x.dtype)
