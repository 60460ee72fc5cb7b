"""LayerNorm over the last axis: the NumPy reference and the numba kernel, forward and backward.

    x, y, dy, dx: (..., C)   weight, bias: (C,)   mean, rstd: (...,)

forward:   mean = mean(x)   rstd = 1 / sqrt(var(x) + eps)   xhat = (x - mean) * rstd
           y = xhat * weight + bias
backward:  g = dy * weight
           dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
           dweight = sum dy * xhat      dbias = sum dy        (sums over every row)

The kernels sum in the input's dtype: float32 sums run 16 lanes wide and are split across
those lanes (fastmath reassociation), where float64 accumulators converted every element and
ran half as wide (measured in docs/performance.md). Each row's mean and variance are still
taken in two passes.
"""
import numpy as np
from numba import prange

from ..runtime.jit import n_chunks, row_kernel


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
def _forward(x, weight, bias, eps, y, mean, rstd, zero, one, inv_c):
    N, C = x.shape
    for i in prange(N):
        xr, yr = x[i], y[i]
        s = zero                                 # sums in the input dtype, SIMD-wide
        for c in range(C):
            s += xr[c]
        mu = s * inv_c
        s2 = zero
        for c in range(C):                       # two passes: no cancellation in var
            d = xr[c] - mu
            s2 += d * d
        r = one / np.sqrt(s2 * inv_c + eps)
        mean[i] = mu
        rstd[i] = r
        for c in range(C):
            yr[c] = (xr[c] - mu) * r * weight[c] + bias[c]


@row_kernel
def _backward(dy, x, weight, mean, rstd, dx, dweight_part, dbias_part, zero, inv_c):
    N, C = x.shape
    K = dweight_part.shape[0]
    for k in prange(K):                          # block k owns partial sums k: race-free
        dw, db = dweight_part[k], dbias_part[k]
        for i in range(k * N // K, (k + 1) * N // K):
            m, r = mean[i], rstd[i]
            xr, dyr, dxr = x[i], dy[i], dx[i]
            g_sum = zero
            gx_sum = zero
            for c in range(C):
                xhat = (xr[c] - m) * r
                g = dyr[c] * weight[c]
                g_sum += g
                gx_sum += g * xhat
                dw[c] += dyr[c] * xhat
                db[c] += dyr[c]
            g_mean = g_sum * inv_c
            gx_mean = gx_sum * inv_c
            for c in range(C):
                xhat = (xr[c] - m) * r
                # term 1: g; term 2: the mean's path; term 3: the variance's path
                dxr[c] = r * (dyr[c] * weight[c] - g_mean - xhat * gx_mean)


def layernorm_forward_numba(x, weight, bias, eps):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    N = x2.shape[0]
    if bias is None:
        bias = np.zeros(C, x.dtype)
    y = np.empty_like(x2)
    mean = np.empty(N, x.dtype)
    rstd = np.empty(N, x.dtype)
    t = x.dtype.type
    _forward.pick(x2.size)(x2, np.ascontiguousarray(weight), np.ascontiguousarray(bias), t(eps),
                           y, mean, rstd, t(0), t(1), t(1.0 / C))
    lead = x.shape[:-1]
    return y.reshape(x.shape), mean.reshape(lead), rstd.reshape(lead)


def layernorm_backward_numba(dy, x, weight, mean, rstd):
    C = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, C)
    dy2 = np.ascontiguousarray(dy).reshape(-1, C)
    N = x2.shape[0]
    K = n_chunks(N)
    dx = np.empty_like(x2)
    dweight_part = np.zeros((K, C), x.dtype)
    dbias_part = np.zeros((K, C), x.dtype)
    t = x.dtype.type
    _backward.pick(x2.size)(dy2, x2, np.ascontiguousarray(weight),
                            np.ascontiguousarray(mean).reshape(-1),
                            np.ascontiguousarray(rstd).reshape(-1), dx, dweight_part, dbias_part,
                            t(0), t(1.0 / C))
    return dx.reshape(x.shape), dweight_part.sum(0), dbias_part.sum(0)
