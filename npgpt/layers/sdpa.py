"""Scaled dot-product attention: the core that the multi-head attention layers are built on.

Shapes: B batch, T queries, S keys (S = T in self-attention without a cache), H query heads,
Hkv key/value heads (H = Hkv * G, G query heads per k/v head), hs head size.

Grouped-query attention is done without copying k and v: the queries are viewed as
(B, Hkv, G, T, hs) and k, v as (B, Hkv, 1, S, hs), so one batched matmul broadcasts each k/v
head over its G consecutive query heads (HuggingFace LLaMA's ``repeat_kv`` grouping), and the
backward sums k and v's gradients over the group.

The masks, the masked softmax and its backward are defined once, in
:mod:`npgpt.kernels.softmax`; this layer calls them through :mod:`npgpt.kernels`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import ConfigError, InputError
from ..module import Module


def _sum_group(x: np.ndarray) -> np.ndarray:
    """(B, Hkv, G, S, hs) -> (B, Hkv, S, hs): a k/v head's gradient sums over its query group."""
    return x[:, :, 0] if x.shape[2] == 1 else x.sum(axis=2)


def _into(given: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    """``value``, delivered into ``given`` when one was given."""
    if given is None:
        return value
    given[...] = value
    return given


class ScaledDotProductAttention(Module):
    """y = softmax(scale * q k^T, masked) v per batch and head, scale = 1 / sqrt(hs) unless given.

        q: (B, H, T, hs)   k: (B, Hkv, S, hs)   v: (B, Hkv, S, hs_v)   y: (B, H, T, hs_v)
        key_padding_mask: (B, S) bool, True = a real token (attend), False = padding

    Causal: query t sits at absolute position i = S - T + t (the last T of S positions, so a KV
    cache works) and sees keys s <= i; with a sliding ``window`` W only i - W < s <= i.
    Hkv may divide H (grouped-query attention).

    forward:   A = masked_softmax(scale * q k^T)       y = dropout(A) v
    backward, with D the dropout mask scaled by 1/(1-p):
        dv = (A D)^T dy       dA = (dy v^T) D       dscores = scale * A * (dA - sum_s(A * dA))
        dq = dscores k        dk = dscores^T q      (dk, dv summed over a k/v head's group)

    With ``keep_weights`` the attention weights A (B, H, T, S) of the last forward are kept in
    ``weights`` (before dropout), to print or plot.

    Without grouping (Hkv = H) and without dropout in training, both directions run in the
    fused attention kernel (``kernels.attention_forward``, a head at a time, scores kept in
    cache); otherwise the scores are stacked matmuls and the softmax is
    ``kernels.softmax_forward``. Both keep the same (q, k, v, A, D) for the backward.
    """

    def __init__(self, causal: bool = True, dropout: float = 0.0,
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 keep_weights: bool = False, scale: float | None = None,
                 window: int | None = None):
        super().__init__(dtype)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout={dropout} must be in [0, 1)")
        if scale is not None and not (isinstance(scale, (int, float)) and 0 < scale < math.inf):
            raise ConfigError(f"attention scale={scale!r} must be a positive number")
        if window is not None and (not isinstance(window, (int, np.integer)) or window < 1
                                   or not causal):
            raise ConfigError(f"attention window={window!r} must be a positive integer, on a "
                              "causal attention")
        self.scale = None if scale is None else float(scale)
        self.window = None if window is None else int(window)
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.keep_weights = keep_weights
        self.weights: np.ndarray | None = None
        self._rng = rng if rng is not None else np.random.default_rng()

    @staticmethod
    def _check(q, k, v):
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise InputError(f"attention expects q (B, H, T, hs), k (B, Hkv, S, hs), "
                             f"v (B, Hkv, S, hs); got {q.shape}, {k.shape}, {v.shape}")
        B, H, _, hs = q.shape
        Hkv = k.shape[1]
        if k.shape[:2] != (B, Hkv) or k.shape[3] != hs or v.shape[:3] != k.shape[:3]:
            raise InputError(f"attention shapes do not match: q {q.shape} (B, H, T, hs), "
                             f"k {k.shape} (B, Hkv, S, hs), v {v.shape} (B, Hkv, S, hs_v)")
        if H % Hkv:
            raise InputError(f"{H} query heads cannot share {Hkv} key/value heads "
                             f"(H must be a multiple of Hkv)")
        if not q.dtype == k.dtype == v.dtype:
            raise InputError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")

    @staticmethod
    def _fused(q, k, v, dropout: bool) -> bool:
        """Whether the fused kernel computes this attention: one k/v head per query head, one
        head size, no dropout."""
        return not dropout and q.shape[1] == k.shape[1] and v.shape[-1] == q.shape[-1]

    def _scale(self, hs: int) -> float:
        return 1.0 / math.sqrt(hs) if self.scale is None else self.scale

    def attend(self, q, k, v, key_padding_mask=None, training: bool = False, out=None):
        """The forward: (y, what backward needs). Used by the attention layers built on it.
        ``out`` (B, H, T, hs_v), if given, receives y; it may be a strided view."""
        self._check(q, k, v)
        B, H, T, hs = q.shape
        _, Hkv, S, hs_v = v.shape
        if self.causal and T > S:
            raise InputError(f"causal attention needs T <= S (queries are the last T of S "
                             f"positions), got T={T}, S={S}")
        scale = self._scale(hs)
        dropout = training and self.dropout > 0.0
        if self._fused(q, k, v, dropout):
            y, att = kernels.attention_forward(q, k, v, self.causal, key_padding_mask, scale, out,
                                               self.window)
            drop = None
        else:
            G = H // Hkv
            q5 = q.reshape(B, Hkv, G, T, hs)
            k5, v5 = k[:, :, None], v[:, :, None]                      # (B, Hkv, 1, S, .)
            att = kernels.softmax_forward(q5 @ k5.swapaxes(-1, -2), self.causal,
                                          key_padding_mask, scale, self.window)  # (B, Hkv, G, T, S)
            drop = None
            if dropout:
                drop = (self._rng.random(att.shape, dtype=att.dtype) >= self.dropout).astype(att.dtype)
                drop *= 1.0 / (1.0 - self.dropout)
                y = (att * drop) @ v5
                drop = drop.reshape(B, H, T, S)
            else:
                y = att @ v5
            y = _into(out, y.reshape(B, H, T, hs_v))
            att = att.reshape(B, H, T, S)
        if self.keep_weights:
            self.weights = att
        return y, (q, k, v, att, drop)

    def attend_backward(self, dy, q, k, v, att, drop, dq=None, dk=None, dv=None):
        """(dq, dk, dv) from dy (B, H, T, hs_v) and what :meth:`attend` returned for backward.
        ``dq``, ``dk``, ``dv``, if given, receive the results (they may be strided views)."""
        B, H, T, hs = q.shape
        _, Hkv, S, hs_v = v.shape
        scale = self._scale(hs)
        if self._fused(q, k, v, drop is not None):
            return kernels.attention_backward(dy, q, k, v, att, scale, self.causal, dq, dk, dv)
        G = H // Hkv
        q5, k5, v5 = q.reshape(B, Hkv, G, T, hs), k[:, :, None], v[:, :, None]
        dy5 = dy.reshape(B, Hkv, G, T, hs_v)
        att5 = att.reshape(B, Hkv, G, T, S)
        drop5 = None if drop is None else drop.reshape(att5.shape)
        att_d = att5 if drop5 is None else att5 * drop5
        dv_ = _sum_group(att_d.swapaxes(-1, -2) @ dy5)
        datt = dy5 @ v5.swapaxes(-1, -2)
        if drop5 is not None:
            datt *= drop5
        dscores = kernels.softmax_backward(datt, att5, scale)
        dq_ = (dscores @ k5).reshape(B, H, T, hs)
        dk_ = _sum_group(dscores.swapaxes(-1, -2) @ q5)
        return _into(dq, dq_), _into(dk, dk_), _into(dv, dv_)

    def forward(self, q, k, v, key_padding_mask=None):
        y, saved = self.attend(q, k, v, key_padding_mask, training=self.keeps_activations)
        self.save(*saved)
        return y

    def backward(self, dy):
        return self.attend_backward(dy, *self.saved())
