"""LayerNorm over the last axis: the NumPy reference and the numba kernel, forward and backward.

    x, y, dy, dx: (..., C)   weight, bias: (C,)   mean, rstd: (...,)

forward:   mean = mean(x)   rstd = 1 / sqrt(var(x) + eps)   xhat = (x - mean) * rstd
           y = xhat * weight + bias
backward:  g = dy * weight
           dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
           dweight = sum dy * xhat      dbias = sum dy        (sums over every row)
"""
import numpy as np
from numba import prange

from ._jit import n_chunks, row_kernel


def layernorm_forward_ref(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + x.dtype.type(eps))
    y = (x - mean) * rstd * weight
    if bias is not None:
        y += bias
    return y, mean[..., 0], rstd[..., 0]


def layernorm_backward_ref(dy, x, weight, mean, rstd):
    C = x.shape[-1]
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * weight
    dx = rstd[..., None] * (g - g.mean(-1, keepdims=True)
                            - xhat * (g * xhat).mean(-1, keepdims=True))
    dweight = (dy * xhat).reshape(-1, C).sum(0)
    dbias = dy.reshape(-1, C).sum(0)
    return dx, dweight, dbias


@row_kernel
def _forward(x, weight, bias, eps, y, mean, rstd):
    N, C = x.shape
    for i in prange(N):
        s = 0.0                                  # float64 accumulators, whatever the dtype
        for c in range(C):
            s += x[i, c]
        mu = s / C
        s2 = 0.0
        for c in range(C):                       # two passes: no cancellation in var
            d = x[i, c] - mu
            s2 += d * d
        mean[i] = mu
        rstd[i] = 1.0 / np.sqrt(s2 / C + eps)
        m, r = mean[i], rstd[i]                  # read back in the input dtype: float32 stays float32
        for c in range(C):
            y[i, c] = (x[i, c] - m) * r * weight[c] + bias[c]


@row_kernel
def _backward(dy, x, weight, mean, rstd, dx, dweight_part, dbias_part):
    N, C = x.shape
    K = dweight_part.shape[0]
    for k in prange(K):                          # block k owns partial sums k: race-free
        for i in range(k * N // K, (k + 1) * N // K):
            m, r = mean[i], rstd[i]
            g_sum = 0.0
            gx_sum = 0.0
            for c in range(C):
                xhat = (x[i, c] - m) * r
                g = dy[i, c] * weight[c]
                g_sum += g
                gx_sum += g * xhat
                dweight_part[k, c] += dy[i, c] * xhat
                dbias_part[k, c] += dy[i, c]
            g_mean = g_sum / C
            gx_mean = gx_sum / C
            for c in range(C):
                xhat = (x[i, c] - m) * r
                # term 1: g; term 2: the mean's path; term 3: the variance's path
                dx[i, c] = r * (dy[i, c] * weight[c] - g_mean - xhat * gx_mean)


def layernorm_forward_numba(x, weight, bias, eps):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    N = x2.shape[0]
    if bias is None:
        bias = np.zeros(C, x.dtype)
    y = np.empty_like(x2)
    mean = np.empty(N, x.dtype)
    rstd = np.empty(N, x.dtype)
    _forward.pick(x2.size)(x2, np.ascontiguousarray(weight), np.ascontiguousarray(bias), float(eps), y, mean, rstd)
    lead = x.shape[:-1]
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def layernorm_backward_numba(dy, x, weight, mean, rstd):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    dy2 = np.ascontiguousarray(dy).reshape(-1, C)
    N = x2.shape[0]
    K = n_chunks(N)
    dx = np.empty_like(x2)
    dweight_part = np.zeros((K, C), np.float64)
    dbias_part = np.zeros((K, C), np.float64)
    _backward.pick(x2.size)(dy2, x2, np.ascontiguousarray(weight), np.ascontiguousarray(mean).reshape(-1),
              np.ascontiguousarray(rstd).reshape(-1), dx, dweight_part, dbias_part)
    return (dx.reshape(x.shape), dweight_part.sum(0).astype(x.dtype),
            dbias_part.sum(0).astype(x.dtype))
