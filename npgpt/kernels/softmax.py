"""Attention softmax with the causal and key-padding masks fused: NumPy reference and numba kernel.

    scores, probs, dprobs, dscores: (B, ..., T, S)     key_padding_mask: (B, S) bool, True = pad

forward:   a = scale * scores, with a = -inf where key s is masked:
               causal: s > S - T + t (query t sits at position S - T + t, so T < S is a query
                       block at the end of a longer key sequence, as in KV-cache decoding)
               key_padding_mask[b, s] is True
           probs = exp(a - max a) / sum exp(a - max a) over s; a fully masked row gives zeros
backward:  dscores = scale * probs * (dprobs - sum_s(dprobs * probs))
"""
import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.exp import exp
from ..runtime.jit import jit, n_chunks, row_kernel


def _check_mask(scores, key_padding_mask):
    if scores.ndim < 2:
        raise InputError(f"softmax expects scores of shape (..., T, S), got shape {scores.shape}")
    if key_padding_mask is None:
        return None
    mask = np.asarray(key_padding_mask, dtype=bool)
    B = scores.shape[0] if scores.ndim > 2 else 1
    S = scores.shape[-1]
    if mask.shape == (S,) and scores.ndim == 2:
        mask = mask[None]
    if mask.shape != (B, S):
        raise InputError(f"key_padding_mask must have shape (B, S) = {(B, S)} for scores of shape "
                         f"{scores.shape}, got {mask.shape}")
    return mask


def softmax_forward_ref(scores, causal=False, key_padding_mask=None, scale=1.0):
    mask = _check_mask(scores, key_padding_mask)
    T, S = scores.shape[-2:]
    allowed = np.ones((T, S), bool)
    if causal:
        allowed = np.tril(allowed, k=S - T)
    if mask is not None:
        allowed = allowed & ~mask.reshape((-1,) + (1,) * (scores.ndim - 2) + (S,))
    a = np.where(allowed, scores * scores.dtype.type(scale), -np.inf).astype(scores.dtype)
    top = a.max(-1, keepdims=True)
    e = np.exp(a - np.where(np.isfinite(top), top, 0))
    z = e.sum(-1, keepdims=True)
    return e / np.where(z > 0, z, 1)          # fully masked row: 0 / 1 = zeros


def softmax_backward_ref(dprobs, probs, scale=1.0):
    return probs.dtype.type(scale) * probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True))


@jit(inline="always")
def softmax_row_inplace(row, end, top, neg_inf, zero, one):
    """row[:end] holds scaled scores, -inf where masked, with maximum ``top``, and becomes their
    softmax; row[end:] (keys a causal query cannot see) and a row with no visible key become
    zeros. Shared by the softmax and attention kernels."""
    if top == neg_inf:                           # no visible key: zeros, by definition
        end = 0
    z = zero
    for s in range(end):                         # masked: exp(-inf - top) = 0
        e = exp(row[s] - top)
        row[s] = e
        z += e
    for s in range(end, row.shape[0]):
        row[s] = zero
    if end > 0:
        inv = one / z
        for s in range(end):
            row[s] *= inv


@jit(inline="always")
def softmax_backward_row(probs, dprobs, dscores, end, scale, zero):
    """dscores[:end] = scale * probs * (dprobs - sum(dprobs * probs)) over one row's first
    ``end`` entries (``dscores`` may be ``dprobs``: each entry is read before it is written).
    ``zero`` types the sum. Shared by the softmax and attention kernels."""
    dot = zero
    for s in range(end):
        dot += dprobs[s] * probs[s]
    for s in range(end):
        dscores[s] = scale * probs[s] * (dprobs[s] - dot)


@row_kernel
def _forward(scores, mask, has_mask, causal, scale, neg_inf, zero, one, n_blocks, probs):
    B, M, T, S = scores.shape
    R = B * M * T
    for k in prange(n_blocks):                   # block k owns rows [k R / K, (k+1) R / K)
        for r in range(k * R // n_blocks, (k + 1) * R // n_blocks):
            b, h, t = r // (M * T), (r // T) % M, r % T
            row = probs[b, h, t]
            end = max(0, min(S, S - T + t + 1)) if causal else S   # keys [0, end) are visible
            top = neg_inf                        # typed like the row: float32 stays float32
            for s in range(end):
                x = neg_inf if has_mask and mask[b, s] else scores[b, h, t, s] * scale
                row[s] = x
                top = max(top, x)
            softmax_row_inplace(row, end, top, neg_inf, zero, one)


@row_kernel
def _backward(dprobs, probs, scale, dscores):
    N, S = probs.shape
    for i in prange(N):
        softmax_backward_row(probs[i], dprobs[i], dscores[i], S, scale, 0.0)


def softmax_forward_numba(scores, causal=False, key_padding_mask=None, scale=1.0):
    mask = _check_mask(scores, key_padding_mask)
    T, S = scores.shape[-2:]
    B = scores.shape[0] if scores.ndim > 2 else 1
    s4 = np.ascontiguousarray(scores).reshape(B, -1, T, S)
    probs = np.empty_like(s4)
    has_mask = mask is not None
    if not has_mask:
        mask = np.zeros((1, 1), np.bool_)
    t = scores.dtype.type
    _forward.pick(s4.size)(s4, np.ascontiguousarray(mask), has_mask, bool(causal), t(scale),
                           t(-np.inf), t(0), t(1), n_chunks(s4.size // S), probs)
    return probs.reshape(scores.shape)


def softmax_backward_numba(dprobs, probs, scale=1.0):
    S = probs.shape[-1]
    p2 = np.ascontiguousarray(probs).reshape(-1, S)
    dscores = np.empty_like(p2)
    _backward.pick(p2.size)(np.ascontiguousarray(dprobs).reshape(-1, S), p2, probs.dtype.type(scale), dscores)
    return dscores.reshape(probs.shape)
