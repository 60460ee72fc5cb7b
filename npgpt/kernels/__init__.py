"""Hot-path kernels: numba by default, each beside its NumPy reference (the definition).

Every function here dispatches to the current backend (see :mod:`npgpt.kernels.registry`):
``NPGPT_KERNELS=numpy`` or ``with npgpt.kernels.use("numpy"):`` runs the references instead.
Nothing is imported or compiled until an op is first called; numba kernels are cached on disk.
Inputs may be non-contiguous; outputs have the input's dtype (float32 stays float32).
Threads: ``npgpt.runtime.threads.set_num_threads`` / ``NPGPT_NUM_THREADS``; calls touching fewer than
``NPGPT_PARALLEL_MIN_ELEMENTS`` (default 2**18) elements run single-threaded.

Shapes: B batch, T queries, S keys, C channels, V vocabulary, N rows (any leading shape
flattened), hs head size.
"""
from __future__ import annotations

import numpy as np

from ..contract import checked
from .registry import BACKENDS, KERNELS, VARIANTS, get_backend, kernel, set_backend, use


def layernorm_forward(x, weight, bias, eps=1e-5):
    """LayerNorm over the last axis. x: (..., C) -> (y (..., C), mean (...), rstd (...))."""
    return kernel("layernorm_forward")(x, weight, bias, eps)


def layernorm_backward(dy, x, weight, mean, rstd):
    """-> (dx (..., C), dweight (C,), dbias (C,)); the caller adds the latter two into grads."""
    return kernel("layernorm_backward")(dy, x, weight, mean, rstd)


def rmsnorm_forward(x, weight, eps=1e-6):
    """RMSNorm over the last axis. x: (..., C) -> (y (..., C), rstd (...))."""
    return kernel("rmsnorm_forward")(x, weight, eps)


def rmsnorm_backward(dy, x, weight, rstd):
    """-> (dx (..., C), dweight (C,))."""
    return kernel("rmsnorm_backward")(dy, x, weight, rstd)


def gelu_tanh_forward(x):
    """GELU, tanh approximation, elementwise."""
    return kernel("gelu_tanh_forward")(x)


def gelu_tanh_backward(dy, x):
    """dx of GELU (tanh approximation) at x."""
    return kernel("gelu_tanh_backward")(dy, x)


@checked
def erf(x: np.ndarray):
    """The error function, elementwise, in x's floating dtype (integers give float64)."""
    return kernel("erf")(x)


def softmax_forward(scores, causal=False, key_padding_mask=None, scale=1.0, window=None):
    """softmax(scale * scores) over the last axis with masks fused.

    scores: (B, ..., T, S); key_padding_mask: (B, S) bool, True = a real key (attend). Causal:
    query t sits at key position i = S - T + t; a sliding ``window`` W (causal only) keeps the
    keys i - W < s <= i. A fully masked row gives zeros.
    """
    return kernel("softmax_forward")(scores, causal, key_padding_mask, scale, window)


def softmax_backward(dprobs, probs, scale=1.0):
    """dscores = scale * probs * (dprobs - sum(dprobs * probs)), same shape as probs."""
    return kernel("softmax_backward")(dprobs, probs, scale)


def cross_entropy_forward_backward(logits, targets, ignore_index=-100):
    """Mean cross-entropy over rows whose target is not ignore_index, and its gradient.

    logits: (N, V), targets: (N,) -> (loss (scalar of logits' dtype), dlogits (N, V)),
    dlogits already divided by the number of kept rows.
    """
    return kernel("cross_entropy_forward_backward")(logits, targets, ignore_index)


def embedding_backward(dweight, idx, dy):
    """dweight[idx[n]] += dy[n] in place. dweight: (V, C), idx: (N,) or (B, T), dy: idx.shape + (C,)."""
    return kernel("embedding_backward")(dweight, idx, dy)


def adamw_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One AdamW update of param, m and v in place (torch.optim.AdamW's formula), step >= 1."""
    return kernel("adamw_step")(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)


def rope_forward(x, cos, sin, interleaved=False, out=None):
    """Rotary embedding. x: (..., T, hs), cos/sin: (T, hs/2) or broadcastable to (..., T, hs/2);
    half or interleaved pairs. ``out``, if given (not x), receives the result."""
    return kernel("rope_forward")(x, cos, sin, interleaved, out)


def rope_backward(dy, cos, sin, interleaved=False, out=None):
    """dx of rope_forward: the inverse rotation."""
    return kernel("rope_backward")(dy, cos, sin, interleaved, out)


def attention_forward(q, k, v, causal=True, key_padding_mask=None, scale=None, out=None,
                      window=None):
    """Scaled dot-product attention, one head at a time, its scores and softmax in cache.

    q: (B, H, T, hs), k, v: (B, H, S, hs), key_padding_mask: (B, S) bool (True = a real key);
    scale defaults to 1/sqrt(hs); ``window`` W: a sliding window (see softmax_forward).
    -> (out (B, H, T, hs), probs (B, H, T, S)); no dropout.
    ``out``, if given, receives the result (it may be a strided view).
    """
    return kernel("attention_forward")(q, k, v, causal, key_padding_mask, scale, out, window)


def attention_backward(dout, q, k, v, probs, scale=None, causal=False, dq=None, dk=None,
                       dv=None):
    """-> (dq, dk, dv) of attention_forward, from the probs it returned. ``causal=True`` when
    they came from a causal forward lets the kernel skip the masked keys (without it every
    key is visited, which is right for any mask). ``dq``, ``dk``, ``dv``, if given, receive
    the results (they may be strided views)."""
    return kernel("attention_backward")(dout, q, k, v, probs, scale, causal, dq, dk, dv)


def int8_matmul(x, qp, sp, n, quantize_x=True):
    """y = Q(x) @ dequantize(q, s)^T: x (M, K) float, quantized per block as the weights
    (``quantize_x``; else x itself, which a gradient can pass through); qp, sp the int8
    weights (n, K) and their block scales packed in panels of outputs
    (``npgpt.kernels.int8_layout.pack``) -> y (M, n) in x's dtype (:mod:`npgpt.kernels.int8`)."""
    return kernel("int8_matmul")(x, qp, sp, n, quantize_x)


def int8_matmul_t(dy, qp, sp, n):
    """dx = dy @ dequantize(q, s): dy (M, n) float; qp, sp the int8 weights (n, K) and their
    block scales packed in panels (``npgpt.kernels.int8_layout.pack``) -> dx (M, K) in dy's dtype;
    the input gradient of a frozen int8 layer (:mod:`npgpt.kernels.int8`)."""
    return kernel("int8_matmul_t")(dy, qp, sp, n)


def matmul(x, w):
    """y = x @ w: x (M, K), w (K, N) (a Linear's weight). Few rows (decoding) run on numba's
    threads, the rest on BLAS (:mod:`npgpt.kernels.rows`)."""
    return kernel("matmul")(x, w)


def matmul_t(x, e):
    """y = x @ e^T: x (M, K), e (N, K) (an embedding table as the LM head). Few rows run on
    numba's threads, the rest on BLAS (:mod:`npgpt.kernels.rows`)."""
    return kernel("matmul_t")(x, e)


__all__ = [
    "BACKENDS",
    "KERNELS",
    "VARIANTS",
    "adamw_step",
    "attention_backward",
    "attention_forward",
    "cross_entropy_forward_backward",
    "embedding_backward",
    "erf",
    "gelu_tanh_backward",
    "gelu_tanh_forward",
    "get_backend",
    "int8_matmul",
    "int8_matmul_t",
    "kernel",
    "layernorm_backward",
    "layernorm_forward",
    "matmul",
    "matmul_t",
    "rmsnorm_backward",
    "rmsnorm_forward",
    "rope_backward",
    "rope_forward",
    "set_backend",
    "softmax_backward",
    "softmax_forward",
    "use",
]
