"""Attention: masked softmax, scaled dot-product attention, the KV cache, multi-head self-
attention (grouped-query, RoPE) and cross-attention.

Shapes: B batch, T queries, S keys (S = T in self-attention without a cache), C = n_embd,
H query heads, Hkv key/value heads (H = Hkv * G, G query heads per k/v head), hs head size.

Grouped-query attention is done without copying k and v: the queries are viewed as
(B, Hkv, G, T, hs) and k, v as (B, Hkv, 1, S, hs), so one batched matmul broadcasts each k/v
head over its G consecutive query heads (HuggingFace LLaMA's ``repeat_kv`` grouping), and the
backward sums k and v's gradients over the group.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import kernels
from ..errors import BackwardError, ConfigError, InputError
from ..module import Module
from .linear import Linear
from .rope import RotaryEmbedding, _check_positions


# --- masked softmax -------------------------------------------------------------------------
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


@functools.lru_cache(maxsize=32)
def causal_mask(T: int, S: int) -> np.ndarray:
    """(T, S) bool: query t sits at absolute position S - T + t and sees keys s <= S - T + t.

    With T = S this is the lower triangle; with T < S the queries are the last T positions of
    the sequence, which is what decoding with a KV cache needs.  (2, 3) -> [[1, 1, 0], [1, 1, 1]]
    """
    mask = np.tri(T, S, k=S - T, dtype=bool)
    mask.flags.writeable = False
    return mask


def _check_padding_mask(mask, B: int, S: int) -> np.ndarray:
    """(B, S) bool, True = a real token. Integer 0/1 masks (HF's attention_mask) are accepted."""
    mask = np.asarray(mask)
    if mask.shape != (B, S):
        raise InputError(f"key padding mask must have shape (B, S) = ({B}, {S}), got {mask.shape}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    raise InputError(f"key padding mask must be bool (True = real token) or 0/1 integers, "
                     f"got dtype {mask.dtype}")


def _sum_group(x: np.ndarray) -> np.ndarray:
    """(B, Hkv, G, S, hs) -> (B, Hkv, S, hs): a k/v head's gradient sums over its query group."""
    return x[:, :, 0] if x.shape[2] == 1 else x.sum(axis=2)


# --- scaled dot-product attention -----------------------------------------------------------
class ScaledDotProductAttention(Module):
    """y = softmax(q k^T / sqrt(hs) + mask) v, per batch and head.

        q: (B, H, T, hs)   k: (B, Hkv, S, hs)   v: (B, Hkv, S, hs_v)   y: (B, H, T, hs_v)
        key_padding_mask: (B, S) bool, True = a real token (attend), False = padding

    Causal: query t sits at absolute position S - T + t (the last T of S positions, so a KV
    cache works) and sees keys s <= S - T + t. Hkv may divide H (grouped-query attention).

    forward, with q' = q / sqrt(hs):  A = masked_softmax(q' k^T),  y = dropout(A) v
    backward, with D the dropout mask scaled by 1/(1-p):
        dv = (A D)^T dy       dA = (dy v^T) D       dscores = A * (dA - sum_s(A * dA))
        dq = dscores k / sqrt(hs)       dk = dscores^T q'       (dk, dv summed over a group)

    With ``keep_weights`` the attention weights A (B, H, T, S) of the last forward are kept in
    ``weights`` (before dropout), to print or plot.

    Without grouping (Hkv = H) and without dropout in training, both directions run in the
    fused kernel ``npgpt.kernels.attention`` (a head at a time, scores kept in cache; its
    NumPy twin under ``kernels.use("numpy")``); otherwise in the stacked matmuls below.
    """

    def __init__(self, causal: bool = True, dropout: float = 0.0,
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 keep_weights: bool = False):
        super().__init__(dtype)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"attention dropout={dropout} must be in [0, 1)")
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.keep_weights = keep_weights
        self.weights: np.ndarray | None = None
        self._rng = rng if rng is not None else np.random.default_rng()

    def mask(self, B: int, T: int, S: int, key_padding_mask=None) -> np.ndarray | None:
        """The allowed-entries mask, broadcastable to scores (B, Hkv, G, T, S), or None."""
        mask = None
        if self.causal:
            if T > S:
                raise InputError(f"causal attention needs T <= S (queries are the last T of S "
                                 f"positions), got T={T}, S={S}")
            if T > 1:                                     # one query sees every key: no mask
                mask = causal_mask(T, S)
        if key_padding_mask is not None:
            padding = _check_padding_mask(key_padding_mask, B, S)[:, None, None, None, :]
            mask = padding if mask is None else padding & mask
        return mask

    def attend(self, q, k, v, key_padding_mask=None, training: bool = False, out=None):
        """The forward: (y, what backward needs). Used by the attention layers built on it.
        ``out`` (B, H, T, hs_v), if given, receives y; it may be a strided view."""
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise InputError(f"attention expects q (B, H, T, hs), k (B, Hkv, S, hs), "
                             f"v (B, Hkv, S, hs); got {q.shape}, {k.shape}, {v.shape}")
        B, H, T, hs = q.shape
        _, Hkv, S, _ = k.shape
        if k.shape[:2] != (B, Hkv) or k.shape[3] != hs or v.shape[:3] != k.shape[:3]:
            raise InputError(f"attention shapes do not match: q {q.shape} (B, H, T, hs), "
                             f"k {k.shape} (B, Hkv, S, hs), v {v.shape} (B, Hkv, S, hs_v)")
        if H % Hkv:
            raise InputError(f"{H} query heads cannot share {Hkv} key/value heads "
                             f"(H must be a multiple of Hkv)")
        if not q.dtype == k.dtype == v.dtype:
            raise InputError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
        G = H // Hkv
        if G == 1 and v.shape[-1] == hs and not (training and self.dropout > 0.0):
            return self._attend_fused(q, k, v, key_padding_mask, out)
        mask = self.mask(B, T, S, key_padding_mask)

        q5 = (q * (1.0 / math.sqrt(hs))).reshape(B, Hkv, G, T, hs)    # q' = q / sqrt(hs)
        k5, v5 = k[:, :, None], v[:, :, None]                          # (B, Hkv, 1, S, .)
        att = masked_softmax(q5 @ k5.swapaxes(-1, -2), mask)           # (B, Hkv, G, T, S)
        if self.keep_weights:
            self.weights = att.reshape(B, H, T, S)
        drop = None
        if training and self.dropout > 0.0:
            drop = (self._rng.random(att.shape, dtype=att.dtype) >= self.dropout).astype(att.dtype)
            drop *= 1.0 / (1.0 - self.dropout)
            y = (att * drop) @ v5
        else:
            y = att @ v5
        y = y.reshape(B, H, T, v.shape[-1])
        if out is not None:
            out[...] = y
            y = out
        return y, (q5, k5, v5, att, drop)

    def _attend_fused(self, q, k, v, key_padding_mask, out):
        B, _, T, hs = q.shape
        S = k.shape[2]
        if self.causal and T > S:
            raise InputError(f"causal attention needs T <= S (queries are the last T of S "
                             f"positions), got T={T}, S={S}")
        padded = None                                 # the kernel's mask: True = padding
        if key_padding_mask is not None:
            padded = ~_check_padding_mask(key_padding_mask, B, S)
        y, att = kernels.attention_forward(q, k, v, self.causal, padded, 1.0 / math.sqrt(hs),
                                           out)
        if self.keep_weights:
            self.weights = att
        return y, (q, k, v, att, None)

    def attend_backward(self, dy, q5, k5, v5, att, drop, dq=None, dk=None, dv=None):
        """(dq, dk, dv) from dy (B, H, T, hs_v) and what :meth:`attend` returned for backward.
        ``dq``, ``dk``, ``dv``, if given, receive the results (they may be strided views)."""
        if q5.ndim == 4:                              # the fused path: q, k, v, probs
            return kernels.attention_backward(dy, q5, k5, v5, att, 1.0 / math.sqrt(q5.shape[-1]),
                                              self.causal, dq, dk, dv)
        B, Hkv, G, T, hs = q5.shape
        dy5 = dy.reshape(B, Hkv, G, T, dy.shape[-1])
        att_d = att if drop is None else att * drop
        dv_ = _sum_group(att_d.swapaxes(-1, -2) @ dy5)
        datt = dy5 @ v5.swapaxes(-1, -2)
        if drop is not None:
            datt *= drop
        dscores = masked_softmax_backward(att, datt)
        dq_ = dscores @ k5
        dq_ *= 1.0 / math.sqrt(hs)
        dk_ = _sum_group(dscores.swapaxes(-1, -2) @ q5)
        grads = []
        for given, value in ((dq, dq_.reshape(B, Hkv * G, T, hs)), (dk, dk_), (dv, dv_)):
            if given is not None:
                given[...] = value
                value = given
            grads.append(value)
        return tuple(grads)

    def forward(self, q, k, v, key_padding_mask=None):
        y, saved = self.attend(q, k, v, key_padding_mask, training=self.keeps_activations)
        self.save(*saved)
        return y

    def backward(self, dy):
        return self.attend_backward(dy, *self.saved())


# --- KV cache -------------------------------------------------------------------------------
class KVCache:
    """Keys and values of the positions seen so far, for decoding one token at a time.

        k, v: (B, Hkv, max_len, hs), preallocated; the first ``length`` positions are valid.

    ``append(k_new, v_new)`` writes (B, Hkv, T, hs) after them and returns views of all
    ``length`` keys and values; no array is reallocated while decoding.
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype=np.float32):
        for name, value in [("batch_size", batch_size), ("n_kv_head", n_kv_head),
                            ("max_len", max_len), ("head_dim", head_dim)]:
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"KVCache {name}={value} must be a positive integer")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.k.dtype

    def append(self, k_new: np.ndarray, v_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, Hkv, max_len, hs = self.k.shape
        if k_new.shape != v_new.shape or k_new.ndim != 4 or k_new.shape[:2] != (B, Hkv) \
                or k_new.shape[3] != hs:
            raise InputError(f"KVCache holds (B, Hkv, T, hs) = ({B}, {Hkv}, T, {hs}); "
                             f"got k {k_new.shape}, v {v_new.shape}")
        if k_new.dtype != self.dtype or v_new.dtype != self.dtype:
            raise InputError(f"KVCache is {self.dtype}, got k {k_new.dtype}, v {v_new.dtype}")
        T = k_new.shape[2]
        if self.length + T > max_len:
            raise InputError(f"KVCache overflow: {self.length} cached + {T} new positions > "
                             f"max_len={max_len}")
        self.k[:, :, self.length:self.length + T] = k_new
        self.v[:, :, self.length:self.length + T] = v_new
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def crop(self, n: int):
        """Keep the first n positions (e.g. to roll back rejected speculative tokens)."""
        if not 0 <= n <= self.length:
            raise InputError(f"KVCache.crop({n}): n must be in [0, length={self.length}]")
        self.length = n

    def reset(self):
        self.length = 0

    def __repr__(self):
        B, Hkv, max_len, hs = self.k.shape
        return (f"KVCache(batch_size={B}, n_kv_head={Hkv}, length={self.length}, "
                f"max_len={max_len}, head_dim={hs}, dtype={self.dtype})")


# --- multi-head attention -------------------------------------------------------------------
def _check_heads(n_embd: int, n_head: int, n_kv_head: int):
    if n_head <= 0 or n_embd <= 0 or n_kv_head <= 0:
        raise ConfigError(f"n_embd={n_embd}, n_head={n_head}, n_kv_head={n_kv_head} "
                          "must be positive")
    if n_embd % n_head:
        raise ConfigError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
    if n_head % n_kv_head:
        raise ConfigError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}")


def _check_x(x: np.ndarray, n_embd: int, name: str = "x"):
    if x.ndim != 3 or x.shape[-1] != n_embd:
        raise InputError(f"attention expects {name} of shape (B, T, C) with C={n_embd}, "
                         f"got {x.shape}")


class MultiHeadAttention(Module):
    """Multi-head self-attention, optionally grouped-query and rotary.

        x: (B, T, C) -> y: (B, T, C);  hs = C / H;  c_attn: C -> (H + 2 Hkv) hs;  c_proj: C -> C

    forward:
        q | k | v = x @ W_attn + b_attn           (q first, then k, then v: GPT-2's c_attn)
        q, k = rope(q), rope(k)                    (if RoPE, at ``positions``)
        k, v = cache.append(k, v)                  (if a KV cache: all cached positions)
        y_h = attention(q_h, k_h(h), v_h(h))       (k/v head of query head h: h // (H / Hkv))
        y = concat_h(y_h) @ W_proj + b_proj
    backward: the same steps read bottom-up; RoPE's backward is the inverse rotation, and a k/v
    head's gradient sums over the query heads it serves. Backward is for training: a forward
    through a KV cache is inference only.

    ``positions`` default to offset, ..., offset + T - 1, offset = ``kv_cache.length`` (or 0).
    ``key_padding_mask`` (B, S) covers every key: the cached ones too, when there is a cache.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, bias: bool = True,
                 causal: bool = True, rope: RotaryEmbedding | None = None, dropout: float = 0.0,
                 dtype=np.float32, rng: np.random.Generator | None = None,
                 proj_std: float | None = None, keep_weights: bool = False):
        super().__init__(dtype)
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        _check_heads(n_embd, n_head, n_kv_head)
        self.n_embd, self.n_head, self.n_kv_head = n_embd, n_head, n_kv_head
        self.head_dim = n_embd // n_head
        if rope is not None and rope.head_dim != self.head_dim:
            raise ConfigError(f"RoPE head_dim={rope.head_dim} does not match the attention's "
                              f"head size n_embd / n_head = {self.head_dim}")
        rng = rng if rng is not None else np.random.default_rng()
        self.c_attn = Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias,
                             dtype=dtype, rng=rng)
        self.c_proj = Linear(n_embd, n_embd, bias=bias, dtype=dtype, rng=rng,
                             std=0.02 if proj_std is None else proj_std)
        # private (not walked): no parameters, and they keep no activations of their own
        self._rope = rope
        self._sdpa = ScaledDotProductAttention(causal, dropout, rng, dtype, keep_weights)

    @property
    def rope(self) -> RotaryEmbedding | None:
        return self._rope

    @property
    def attention(self) -> ScaledDotProductAttention:
        """The scaled dot-product attention inside (its ``keep_weights`` / ``weights``)."""
        return self._sdpa

    @property
    def weights(self) -> np.ndarray | None:
        """Attention weights (B, H, T, S) of the last forward, when ``keep_weights`` is set."""
        return self._sdpa.weights

    def forward(self, x: np.ndarray, key_padding_mask=None, positions=None,
                kv_cache: KVCache | None = None) -> np.ndarray:
        _check_x(x, self.n_embd)
        B, T, C = x.shape
        H, Hkv, hs = self.n_head, self.n_kv_head, self.head_dim
        qkv = self.c_attn.forward(x).reshape(B, T, H + 2 * Hkv, hs)
        # (B, H, T, hs) views, no copy: the attention kernel reads each head where it lies
        q = qkv[:, :, :H].transpose(0, 2, 1, 3)
        k = qkv[:, :, H:H + Hkv].transpose(0, 2, 1, 3)                 # (B, Hkv, T, hs)
        v = qkv[:, :, H + Hkv:].transpose(0, 2, 1, 3)
        cos = sin = None
        if self._rope is not None:
            if positions is None:
                offset = kv_cache.length if kv_cache is not None else 0
                positions = np.arange(offset, offset + T)
            positions = _check_positions(positions, T)
            cos, sin = self._rope.tables(positions, x.dtype)
            q, k = self._rope.rotate(q, cos, sin), self._rope.rotate(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        y = np.empty((B, T, H, hs), dtype=q.dtype)       # written head by head, in place
        _, attended = self._sdpa.attend(q, k, v, key_padding_mask,
                                        training=self.keeps_activations,
                                        out=y.transpose(0, 2, 1, 3))
        self.save(attended, cos, sin, kv_cache is not None)
        return self.c_proj.forward(y.reshape(B, T, C))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        attended, cos, sin, used_cache = self.saved()
        if used_cache:
            raise BackwardError("MultiHeadAttention.backward() after a forward with a KV cache: "
                                "decoding with a cache is inference only; train without one")
        B, T, _ = dy.shape
        H, Hkv, hs = self.n_head, self.n_kv_head, self.head_dim
        dy_heads = self.c_proj.backward(dy).reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        dqkv = np.empty((B, T, H + 2 * Hkv, hs), dtype=dy.dtype)
        views = (dqkv[:, :, :H].transpose(0, 2, 1, 3),              # written in place
                 dqkv[:, :, H:H + Hkv].transpose(0, 2, 1, 3),
                 dqkv[:, :, H + Hkv:].transpose(0, 2, 1, 3))
        if cos is None:
            self._sdpa.attend_backward(dy_heads, *attended, *views)
        else:
            dq, dk, _ = self._sdpa.attend_backward(dy_heads, *attended, None, None, views[2])
            views[0][...] = self._rope.rotate(dq, cos, sin, inverse=True)
            views[1][...] = self._rope.rotate(dk, cos, sin, inverse=True)
        return self.c_attn.backward(dqkv.reshape(B, T, -1))

    def __repr__(self):
        return (f"MultiHeadAttention(n_embd={self.n_embd}, n_head={self.n_head}, "
                f"n_kv_head={self.n_kv_head}, causal={self._sdpa.causal}, "
                f"rope={self._rope is not None}, {self.num_parameters():,} parameters)")


class CrossAttention(Module):
    """Multi-head attention of queries from x over keys and values from memory (the encoder
    output), as in the encoder-decoder Transformer's second decoder sub-layer.

        x: (B, T, C), memory: (B, S, C) -> y: (B, T, C);  memory_padding_mask: (B, S) bool

    forward:   q = x W_q + b_q;   k | v = memory W_kv + b_kv;   y = concat_h(attention(q_h, k_h,
               v_h)) W_proj + b_proj   (not causal: every query sees every real memory position)
    backward:  dx = q_proj.backward(dq);   dmemory = kv_proj.backward(dk | dv)
    """

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 dtype=np.float32, rng: np.random.Generator | None = None,
                 proj_std: float | None = None, keep_weights: bool = False):
        super().__init__(dtype)
        _check_heads(n_embd, n_head, n_head)
        self.n_embd, self.n_head, self.head_dim = n_embd, n_head, n_embd // n_head
        rng = rng if rng is not None else np.random.default_rng()
        self.q_proj = Linear(n_embd, n_embd, bias=bias, dtype=dtype, rng=rng)
        self.kv_proj = Linear(n_embd, 2 * n_embd, bias=bias, dtype=dtype, rng=rng)
        self.c_proj = Linear(n_embd, n_embd, bias=bias, dtype=dtype, rng=rng,
                             std=0.02 if proj_std is None else proj_std)
        self._sdpa = ScaledDotProductAttention(False, dropout, rng, dtype, keep_weights)

    @property
    def attention(self) -> ScaledDotProductAttention:
        return self._sdpa

    @property
    def weights(self) -> np.ndarray | None:
        """Attention weights (B, H, T, S) of the last forward, when ``keep_weights`` is set."""
        return self._sdpa.weights

    def _split_kv(self, kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, 2C) -> k, v: (B, H, S, hs) views (k is the first C channels, v the last C)."""
        B, S, _ = kv.shape
        kv = kv.reshape(B, S, 2, self.n_head, self.head_dim)
        return kv[:, :, 0].transpose(0, 2, 1, 3), kv[:, :, 1].transpose(0, 2, 1, 3)

    def project_memory(self, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """k, v (B, H, S, hs) of the memory, for decoding: the encoder output does not change
        from one generated token to the next, so project it once and pass ``memory_kv``."""
        _check_x(memory, self.n_embd, "memory")
        kv = memory @ self.kv_proj.weight.data     # not kv_proj.forward: keep its saved input
        if self.kv_proj.bias is not None:
            kv += self.kv_proj.bias.data
        return self._split_kv(kv)

    def forward(self, x: np.ndarray, memory: np.ndarray | None, memory_padding_mask=None,
                memory_kv: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``memory_kv`` (from :meth:`project_memory`) replaces ``memory``: inference only."""
        _check_x(x, self.n_embd)
        if memory_kv is None:
            _check_x(memory, self.n_embd, "memory")
            k, v = self._split_kv(self.kv_proj.forward(memory))
        else:
            k, v = memory_kv
        if k.shape[0] != x.shape[0]:
            raise InputError(f"x has batch size {x.shape[0]} but memory has {k.shape[0]}")
        B, T, C = x.shape
        q = self.q_proj.forward(x).reshape(B, T, self.n_head, self.head_dim).transpose(0, 2, 1, 3)
        y, attended = self._sdpa.attend(q, k, v, memory_padding_mask,
                                        training=self.keeps_activations)
        self.save(attended, memory_kv is not None)
        return self.c_proj.forward(y.transpose(0, 2, 1, 3).reshape(B, T, C))

    def backward(self, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        attended, projected_before = self.saved()
        if projected_before:
            raise BackwardError("CrossAttention.backward() after a forward with memory_kv: "
                                "precomputed memory keys/values are for inference only")
        B, T, C = dy.shape
        H, hs = self.n_head, self.head_dim
        dy_heads = self.c_proj.backward(dy).reshape(B, T, H, hs).transpose(0, 2, 1, 3)
        dq, dk, dv = self._sdpa.attend_backward(dy_heads, *attended)
        S = dk.shape[2]
        dkv = np.empty((B, S, 2, H, hs), dtype=dy.dtype)
        dkv[:, :, 0] = dk.transpose(0, 2, 1, 3)
        dkv[:, :, 1] = dv.transpose(0, 2, 1, 3)
        dx = self.q_proj.backward(dq.transpose(0, 2, 1, 3).reshape(B, T, C))
        dmemory = self.kv_proj.backward(dkv.reshape(B, S, 2 * C))
        return dx, dmemory

    def __repr__(self):
        return (f"CrossAttention(n_embd={self.n_embd}, n_head={self.n_head}, "
                f"{self.num_parameters():,} parameters)")
