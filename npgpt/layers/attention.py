"""Multi-head attention layers: self-attention (grouped-query, RoPE, KV cache) and
cross-attention, both heads of a :class:`~npgpt.layers.sdpa.ScaledDotProductAttention`.

Shapes: B batch, T queries, S keys, C = n_embd, H query heads, Hkv key/value heads, hs the head
size (C / H unless given: then the projections are C -> H hs and H hs -> C).
"""
from __future__ import annotations

import numpy as np

from ..errors import BackwardError, ConfigError, InputError
from ..module import Module
from .kv_cache import KVCache
from .linear import Linear
from .norm import RMSNorm
from .rope import RotaryEmbedding, _check_positions
from .sdpa import ScaledDotProductAttention


def _check_heads(n_embd: int, n_head: int, n_kv_head: int, head_dim: int | None = None):
    if n_head <= 0 or n_embd <= 0 or n_kv_head <= 0 or (head_dim is not None and head_dim <= 0):
        raise ConfigError(f"n_embd={n_embd}, n_head={n_head}, n_kv_head={n_kv_head}, "
                          f"head_dim={head_dim} must be positive")
    if head_dim is None and n_embd % n_head:
        raise ConfigError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
    if n_head % n_kv_head:
        raise ConfigError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}")


def _check_x(x: np.ndarray, n_embd: int, name: str = "x"):
    if x.ndim != 3 or x.shape[-1] != n_embd:
        raise InputError(f"attention expects {name} of shape (B, T, C) with C={n_embd}, "
                         f"got {x.shape}")


def _heads(a: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Heads start .. stop - 1 of a (B, T, n, hs) array, as a (B, stop - start, T, hs) view:
    no copy, the attention kernel reads (and writes) each head where it lies."""
    return a[:, :, start:stop].transpose(0, 2, 1, 3)


class _MultiHead(Module):
    """What the self- and cross-attention layers share: H heads of size hs = C / H over one
    scaled dot-product attention, and the output projection of the concatenated heads,

        y = concat_h(attention(q_h, k_h, v_h)) @ W_proj + b_proj       (c_proj: C -> C)

    whose backward hands the attention the gradient of each head.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int, causal: bool, dropout: float,
                 dtype, rng: np.random.Generator, keep_weights: bool, head_dim: int | None = None,
                 scale: float | None = None, window: int | None = None):
        super().__init__(dtype)
        _check_heads(n_embd, n_head, n_kv_head, head_dim)
        self.n_embd, self.n_head, self.n_kv_head = n_embd, n_head, n_kv_head
        self.head_dim = n_embd // n_head if head_dim is None else int(head_dim)
        # private (not walked): no parameters, and it keeps no activations of its own
        self._sdpa = ScaledDotProductAttention(causal, dropout, rng, dtype, keep_weights, scale,
                                               window)

    @property
    def attention(self) -> ScaledDotProductAttention:
        """The scaled dot-product attention inside (its ``keep_weights`` / ``weights``)."""
        return self._sdpa

    @property
    def weights(self) -> np.ndarray | None:
        """Attention weights (B, H, T, S) of the last forward, when ``keep_weights`` is set."""
        return self._sdpa.weights

    def _attend(self, q, k, v, key_padding_mask):
        """c_proj(concat_h(attention(q_h, k_h, v_h))) (B, T, C), and what backward needs."""
        B, H, T, hs = q.shape
        y = np.empty((B, T, H, hs), dtype=q.dtype)       # written head by head, in place
        _, attended = self._sdpa.attend(q, k, v, key_padding_mask,
                                        training=self.keeps_activations,
                                        out=y.transpose(0, 2, 1, 3))
        return self.c_proj.forward(y.reshape(B, T, H * hs)), attended

    def _attend_backward(self, dy, attended, dq=None, dk=None, dv=None):
        """(dq, dk, dv) of the heads from dy (B, T, C), written into the given views if any."""
        B, T, _ = dy.shape
        dy_heads = _heads(self.c_proj.backward(dy).reshape(B, T, self.n_head, self.head_dim),
                          0, self.n_head)
        return self._sdpa.attend_backward(dy_heads, *attended, dq, dk, dv)


class MultiHeadAttention(_MultiHead):
    """Multi-head self-attention, optionally grouped-query and rotary.

        x: (B, T, C) -> y: (B, T, C);  hs = head_dim (default C / H);
        c_attn: C -> (H + 2 Hkv) hs;  c_proj: H hs -> C

    forward:
        q | k | v = x @ W_attn + b_attn           (q first, then k, then v: GPT-2's c_attn)
        q, k = q_norm(q), k_norm(k)                (if ``qk_norm``: RMSNorm over each head's hs
                                                    channels, one weight (hs,) for all heads)
        q, k = rope(q), rope(k)                    (if RoPE, at ``positions``)
        k, v = cache.append(k, v)                  (if a KV cache: all cached positions)
        y_h = attention(q_h, k_h(h), v_h(h))       (k/v head of query head h: h // (H / Hkv))
        y = concat_h(y_h) @ W_proj + b_proj
    backward: the same steps read bottom-up; RoPE's backward is the inverse rotation, and a k/v
    head's gradient sums over the query heads it serves. Backward is for training: a forward
    through a KV cache is inference only.

    ``qkv_bias`` (default ``bias``) sets c_attn's bias apart from c_proj's (Qwen2: q, k, v
    only); ``scale`` replaces 1 / sqrt(hs); ``window`` makes it a sliding-window layer (query
    i sees keys i - W < j <= i); ``norm_plus_one`` gives the q/k norms Gemma's (1 + weight).

    ``positions`` default to offset, ..., offset + T - 1, offset = ``kv_cache.position`` (or 0).
    ``key_padding_mask`` (B, S) covers every key: the cached ones too, when there is a cache.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, bias: bool = True,
                 causal: bool = True, rope: RotaryEmbedding | None = None, dropout: float = 0.0,
                 dtype=np.float32, rng: np.random.Generator | None = None,
                 proj_std: float | None = None, keep_weights: bool = False,
                 head_dim: int | None = None, qkv_bias: bool | None = None,
                 qk_norm: bool = False, norm_eps: float = 1e-6, norm_plus_one: bool = False,
                 scale: float | None = None, window: int | None = None):
        rng = rng if rng is not None else np.random.default_rng()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        super().__init__(n_embd, n_head, n_kv_head, causal, dropout, dtype, rng, keep_weights,
                         head_dim, scale, window)
        if rope is not None and rope.head_dim != self.head_dim:
            raise ConfigError(f"RoPE head_dim={rope.head_dim} does not match the attention's "
                              f"head size {self.head_dim}")
        hs = self.head_dim
        self.c_attn = Linear(n_embd, (n_head + 2 * n_kv_head) * hs,
                             bias=bias if qkv_bias is None else qkv_bias, dtype=dtype, rng=rng)
        self.c_proj = Linear(n_head * hs, n_embd, bias=bias, dtype=dtype, rng=rng,
                             std=0.02 if proj_std is None else proj_std)
        if qk_norm:
            self.q_norm = RMSNorm(hs, eps=norm_eps, dtype=dtype, plus_one=norm_plus_one)
            self.k_norm = RMSNorm(hs, eps=norm_eps, dtype=dtype, plus_one=norm_plus_one)
        self.qk_norm = bool(qk_norm)
        self._rope = rope            # private: shared by every layer, no parameters

    @property
    def rope(self) -> RotaryEmbedding | None:
        return self._rope

    def forward(self, x: np.ndarray, key_padding_mask=None, positions=None,
                kv_cache: KVCache | None = None) -> np.ndarray:
        _check_x(x, self.n_embd)
        B, T, _ = x.shape
        H, Hkv, hs = self.n_head, self.n_kv_head, self.head_dim
        qkv = self.c_attn.forward(x).reshape(B, T, H + 2 * Hkv, hs)
        q, k, v = _heads(qkv, 0, H), _heads(qkv, H, H + Hkv), _heads(qkv, H + Hkv, H + 2 * Hkv)
        if self.qk_norm:             # (B, T, heads, hs) rows, normalised over hs
            q = _heads(self.q_norm.forward(qkv[:, :, :H]), 0, H)
            k = _heads(self.k_norm.forward(qkv[:, :, H:H + Hkv]), 0, Hkv)
        cos = sin = None
        if self._rope is not None:
            if positions is None:
                offset = kv_cache.position if kv_cache is not None else 0
                positions = np.arange(offset, offset + T)
            positions = _check_positions(positions, T)
            cos, sin = self._rope.tables(positions, x.dtype)
            q, k = self._rope.rotate(q, cos, sin), self._rope.rotate(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        y, attended = self._attend(q, k, v, key_padding_mask)
        self.save(attended, cos, sin, kv_cache is not None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        attended, cos, sin, used_cache = self.saved()
        if used_cache:
            raise BackwardError("MultiHeadAttention.backward() after a forward with a KV cache: "
                                "decoding with a cache is inference only; train without one")
        B, T, _ = dy.shape
        H, Hkv, hs = self.n_head, self.n_kv_head, self.head_dim
        dqkv = np.empty((B, T, H + 2 * Hkv, hs), dtype=dy.dtype)
        views = [_heads(dqkv, 0, H), _heads(dqkv, H, H + Hkv), _heads(dqkv, H + Hkv, H + 2 * Hkv)]
        if self.qk_norm:             # dq, dk of the normalised heads first, then the norms'
            dqn = np.empty((B, T, H, hs), dtype=dy.dtype)
            dkn = np.empty((B, T, Hkv, hs), dtype=dy.dtype)
            views[:2] = _heads(dqn, 0, H), _heads(dkn, 0, Hkv)
        if cos is None:
            self._attend_backward(dy, attended, *views)
        else:                        # the rotation's backward writes dq, dk into place
            dq, dk, _ = self._attend_backward(dy, attended, None, None, views[2])
            self._rope.rotate(dq, cos, sin, inverse=True, out=views[0])
            self._rope.rotate(dk, cos, sin, inverse=True, out=views[1])
        if self.qk_norm:
            dqkv[:, :, :H] = self.q_norm.backward(dqn)
            dqkv[:, :, H:H + Hkv] = self.k_norm.backward(dkn)
        return self.c_attn.backward(dqkv.reshape(B, T, -1))

    def __repr__(self):
        return (f"MultiHeadAttention(n_embd={self.n_embd}, n_head={self.n_head}, "
                f"n_kv_head={self.n_kv_head}, head_dim={self.head_dim}, "
                f"qk_norm={self.qk_norm}, window={self._sdpa.window}, causal={self._sdpa.causal}, "
                f"rope={self._rope is not None}, {self.num_parameters():,} parameters)")


class CrossAttention(_MultiHead):
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
        rng = rng if rng is not None else np.random.default_rng()
        super().__init__(n_embd, n_head, n_head, False, dropout, dtype, rng, keep_weights)
        self.q_proj = Linear(n_embd, n_embd, bias=bias, dtype=dtype, rng=rng)
        self.kv_proj = Linear(n_embd, 2 * n_embd, bias=bias, dtype=dtype, rng=rng)
        self.c_proj = Linear(n_embd, n_embd, bias=bias, dtype=dtype, rng=rng,
                             std=0.02 if proj_std is None else proj_std)

    def _split_kv(self, kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, S, 2C) -> k, v: (B, H, S, hs) views (k is the first C channels, v the last C)."""
        B, S, _ = kv.shape
        H = self.n_head
        kv = kv.reshape(B, S, 2 * H, self.head_dim)
        return _heads(kv, 0, H), _heads(kv, H, 2 * H)

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
        B, T, _ = x.shape
        q = _heads(self.q_proj.forward(x).reshape(B, T, self.n_head, self.head_dim),
                   0, self.n_head)
        y, attended = self._attend(q, k, v, memory_padding_mask)
        self.save(attended, memory_kv is not None)
        return y

    def backward(self, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        attended, projected_before = self.saved()
        if projected_before:
            raise BackwardError("CrossAttention.backward() after a forward with memory_kv: "
                                "precomputed memory keys/values are for inference only")
        B, T, C = dy.shape
        H, hs = self.n_head, self.head_dim
        S = attended[1].shape[2]
        dq = np.empty((B, T, H, hs), dtype=dy.dtype)
        dkv = np.empty((B, S, 2 * H, hs), dtype=dy.dtype)
        self._attend_backward(dy, attended, _heads(dq, 0, H), _heads(dkv, 0, H),
                              _heads(dkv, H, 2 * H))
        dx = self.q_proj.backward(dq.reshape(B, T, C))
        dmemory = self.kv_proj.backward(dkv.reshape(B, S, 2 * C))
        return dx, dmemory

    def __repr__(self):
        return (f"CrossAttention(n_embd={self.n_embd}, n_head={self.n_head}, "
                f"{self.num_parameters():,} parameters)")
