"""Attention softmax with the causal and key-padding masks fused: NumPy reference and numba kernel.

    scores, probs, dprobs, dscores: (B, ..., T, S)     key_padding_mask: (B, S), True = a real key

The definitions every attention path uses (the layers call them through the dispatch):
    causal_mask(T, S)       query t sits at position S - T + t and sees keys s <= S - T + t
                            (T < S is a block of queries at the end of a longer key sequence,
                            as in KV-cache decoding)
    causal_mask(T, S, W)    the sliding window of W keys: query i = S - T + t sees keys s with
                            i - W < s <= i
    check_padding_mask      a (B, S) key mask as bool, True = attend (0/1 integers accepted)
    masked_softmax          softmax over the allowed entries only; a row with none is zeros
    masked_softmax_backward dscores = p * (dp - sum_s(p * dp))

forward:   probs = masked_softmax(scale * scores, causal_mask & key_padding_mask)
backward:  dscores = scale * probs * (dprobs - sum_s(dprobs * probs))
"""
import functools

import numpy as np
from numba import prange

from ..errors import InputError
from ..runtime.exp import exp
from ..runtime.jit import jit, n_chunks, row_kernel


@functools.lru_cache(maxsize=32)
def causal_mask(T: int, S: int, window: int | None = None) -> np.ndarray:
    """(T, S) bool, True where query t (at position i = S - T + t) may see key s: s <= i, and
    with a sliding ``window`` W also s > i - W (the W most recent keys, its own included).

    With T = S this is the lower triangle; with T < S the queries are the last T positions of
    the sequence, which is what decoding with a KV cache needs.  (2, 3) -> [[1, 1, 0], [1, 1, 1]]
    ;  (3, 3, window=2) -> [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    """
    mask = np.tri(T, S, k=S - T, dtype=bool)
    if window:
        mask &= ~np.tri(T, S, k=S - T - window, dtype=bool)
    mask.flags.writeable = False
    return mask


def check_padding_mask(mask, B: int, S: int) -> np.ndarray:
    """A key padding mask as (B, S) bool, True = a real token (attend), False = padding.
    Integer 0/1 masks (HuggingFace's ``attention_mask``) are accepted."""
    mask = np.asarray(mask)
    if mask.shape != (B, S):
        raise InputError(f"key_padding_mask must have shape (B, S) = ({B}, {S}), got {mask.shape}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    raise InputError(f"key_padding_mask must be bool (True = a real token) or 0/1 integers, "
                     f"got dtype {mask.dtype}")


def masked_softmax(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """softmax over the last axis, over the allowed entries only.

    mask: bool, broadcastable to scores, True = allowed. Disallowed entries get probability 0;
    a row with nothing allowed is all zeros, not NaN (a padded query, or a causal query before
    the first real key). Subtracting the row max keeps exp() from overflowing; it cancels.

        [[1, 2, 3]], mask [[True, True, False]] -> [[0.269, 0.731, 0.]]
    """
    if mask is None:
        e = scores - scores.max(axis=-1, keepdims=True)
    else:
        e = np.where(mask, scores, np.array(-np.inf, dtype=scores.dtype))
        row_max = e.max(axis=-1, keepdims=True)
        # a fully masked row has max -inf; any finite shift gives exp(-inf) = 0 there
        np.maximum(row_max, np.finfo(scores.dtype).min, out=row_max)
        e -= row_max
    np.exp(e, out=e)
    total = e.sum(axis=-1, keepdims=True)
    total[total == 0] = 1
    e /= total
    return e


def masked_softmax_backward(probs: np.ndarray, dprobs: np.ndarray) -> np.ndarray:
    """dscores = p * (dp - sum(p * dp)) over the last axis; zero wherever p is (masked entries)."""
    dscores = probs * dprobs
    dscores -= probs * dscores.sum(axis=-1, keepdims=True)
    return dscores


def _check_mask(scores, key_padding_mask):
    if scores.ndim < 2:
        raise InputError(f"softmax expects scores of shape (..., T, S), got shape {scores.shape}")
    if key_padding_mask is None:
        return None
    B = scores.shape[0] if scores.ndim > 2 else 1
    S = scores.shape[-1]
    if scores.ndim == 2 and np.shape(key_padding_mask) == (S,):
        key_padding_mask = np.asarray(key_padding_mask)[None]
    return check_padding_mask(key_padding_mask, B, S)


def check_window(window, causal) -> int:
    """A sliding window as an int, 0 for none; a window needs the causal mask it narrows."""
    if window is None or window == 0:
        return 0
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
        raise InputError(f"attention window must be a positive integer or None, got {window!r}")
    if not causal:
        raise InputError("a sliding attention window narrows the causal mask: it needs causal=True")
    return int(window)


def softmax_forward_ref(scores, causal=False, key_padding_mask=None, scale=1.0, window=None):
    mask = _check_mask(scores, key_padding_mask)
    T, S = scores.shape[-2:]
    allowed = causal_mask(T, S, check_window(window, causal)) if causal else None
    if mask is not None:
        keys = mask.reshape((-1,) + (1,) * (scores.ndim - 2) + (S,))
        allowed = keys if allowed is None else allowed & keys
    return masked_softmax(scores * scores.dtype.type(scale), allowed)


def softmax_backward_ref(dprobs, probs, scale=1.0):
    return probs.dtype.type(scale) * masked_softmax_backward(probs, dprobs)


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
def _forward(scores, mask, has_mask, causal, window, scale, neg_inf, zero, one, n_blocks, probs):
    B, M, T, S = scores.shape
    R = B * M * T
    for k in prange(n_blocks):                   # block k owns rows [k R / K, (k+1) R / K)
        for r in range(k * R // n_blocks, (k + 1) * R // n_blocks):
            b, h, t = r // (M * T), (r // T) % M, r % T
            row = probs[b, h, t]
            end = max(0, min(S, S - T + t + 1)) if causal else S   # keys [0, end) are visible
            start = end - window if window > 0 else 0                # and of them [start, end)
            top = neg_inf                        # typed like the row: float32 stays float32
            for s in range(end):
                x = neg_inf if (has_mask and not mask[b, s]) or s < start \
                    else scores[b, h, t, s] * scale
                row[s] = x
                top = max(top, x)
            softmax_row_inplace(row, end, top, neg_inf, zero, one)


@row_kernel
def _backward(dprobs, probs, scale, dscores):
    N, S = probs.shape
    for i in prange(N):
        softmax_backward_row(probs[i], dprobs[i], dscores[i], S, scale, 0.0)


def softmax_forward_numba(scores, causal=False, key_padding_mask=None, scale=1.0, window=None):
    mask = _check_mask(scores, key_padding_mask)
    window = check_window(window, causal)
    T, S = scores.shape[-2:]
    B = scores.shape[0] if scores.ndim > 2 else 1
    s4 = np.ascontiguousarray(scores).reshape(B, -1, T, S)
    probs = np.empty_like(s4)
    has_mask = mask is not None
    if not has_mask:
        mask = np.zeros((1, 1), np.bool_)
    t = scores.dtype.type
    _forward.pick(s4.size)(s4, np.ascontiguousarray(mask), has_mask, bool(causal), window, t(scale),
                           t(-np.inf), t(0), t(1), n_chunks(s4.size // S), probs)
    return probs.reshape(scores.shape)


def softmax_backward_numba(dprobs, probs, scale=1.0):
    S = probs.shape[-1]
    p2 = np.ascontiguousarray(probs).reshape(-1, S)
    dscores = np.empty_like(p2)
    _backward.pick(p2.size)(np.ascontiguousarray(dprobs).reshape(-1, S), p2, probs.dtype.type(scale), dscores)
    return dscores.reshape(probs.shape)
