"""A one-layer attention text classifier (the experiment of the seed notes, 003).

    idx (B, T) -> wte(idx) + wpe(positions) -> x
    h = x + attn(x)            (self-attention, not causal, padding keys masked)  [-> ln_1]
    h = h + mlp(h)                                                                [-> ln_2]
    pooled = sum_t mask[b, t] h[b, t] / sum_t mask[b, t]       (mean over real tokens)
    logits = pooled @ W_head + b_head                           (B, n_classes)

With ``layernorm=False`` the two LayerNorms are left out (the seed's case 1); with
``layernorm=True`` they follow each residual, as in the post-LN Transformer (case 2).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InputError
from ..layers.attention import MultiHeadAttention
from ..layers.embedding import Embedding, LearnedPositionalEmbedding
from ..layers.ffn import MLP
from ..layers.linear import Linear
from ..layers.loss import CrossEntropyLoss
from ..layers.norm import LayerNorm
from .base import Model
from .residual import residual, residual_backward


def masked_mean(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(B, T, C), (B, T) bool -> (B, C): the mean over the real positions of each row.

    backward: dh[b, t] = dpooled[b] * mask[b, t] / n_b. A row with no real token pools to 0.
    """
    weights = mask.astype(h.dtype)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1)
    return np.einsum("bt,btc->bc", weights, h), weights


class TextClassifier(Model):
    """Embedding + one self-attention layer + MLP + masked mean pooling + a linear head.

    forward(idx (B, T) int, targets (B,) int or None, padding_mask (B, T) bool or None)
        -> (logits (B, n_classes), loss or None)
    The padding mask defaults to ``idx != pad_id``; padded positions are neither attended to
    nor pooled, so their ids change nothing.

    backward(dlogits=None): from the mean cross-entropy of the last forward, or from any
    dlogits (B, n_classes); returns None (the input is integer ids).
        dpooled = dlogits @ W_head^T;  dh = dpooled * mask / n;  then the layers bottom-up,
        each residual adding its branch's gradient.
    """

    def __init__(self, vocab_size: int, block_size: int, n_embd: int = 32, n_head: int = 2,
                 n_classes: int = 2, mlp_hidden: int | None = None, layernorm: bool = True,
                 pad_id: int = 0, dtype=np.float32, rng: np.random.Generator | None = None):
        super().__init__(dtype)
        for name, value in [("vocab_size", vocab_size), ("block_size", block_size),
                            ("n_embd", n_embd), ("n_head", n_head), ("n_classes", n_classes)]:
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"TextClassifier {name}={value!r} must be a positive integer")
        if not 0 <= pad_id < vocab_size:
            raise ConfigError(f"pad_id={pad_id} must be an id in [0, vocab_size={vocab_size})")
        rng = rng if rng is not None else np.random.default_rng()
        self.vocab_size, self.block_size, self.n_classes = vocab_size, block_size, n_classes
        self.layernorm, self.pad_id, self.n_embd = layernorm, pad_id, n_embd
        mlp_hidden = 4 * n_embd if mlp_hidden is None else mlp_hidden
        self.wte = Embedding(vocab_size, n_embd, dtype=dtype, rng=rng, std=0.1)
        self.wpe = LearnedPositionalEmbedding(block_size, n_embd, dtype=dtype, rng=rng, std=0.02)
        self.attn = MultiHeadAttention(n_embd, n_head, causal=False, dtype=dtype, rng=rng)
        self.mlp = MLP(n_embd, mlp_hidden, activation="relu", dtype=dtype, rng=rng)
        if layernorm:
            self.ln_1 = LayerNorm(n_embd, dtype=dtype)
            self.ln_2 = LayerNorm(n_embd, dtype=dtype)
        self.head = Linear(n_embd, n_classes, dtype=dtype, rng=rng)
        self.loss_fn = CrossEntropyLoss()

    def forward(self, idx, targets=None, padding_mask=None):
        idx = np.asarray(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise InputError(f"idx must be a 2-D integer array (B, T); got shape {idx.shape} "
                             f"dtype {idx.dtype}")
        B, T = idx.shape
        if T > self.block_size:
            raise InputError(f"sequence length T={T} is longer than block_size={self.block_size}")
        mask = idx != self.pad_id if padding_mask is None else np.asarray(padding_mask, bool)
        if mask.shape != (B, T):
            raise InputError(f"padding_mask must have shape (B, T) = ({B}, {T}), got {mask.shape}")
        if targets is not None:
            targets = np.asarray(targets)
            if targets.shape != (B,):
                raise InputError(f"targets must have shape (B,) = ({B},), got {targets.shape}")
        return self._forward((idx, mask), targets)

    def _logits(self, idx, mask):
        x = self.wte(idx) + self.wpe(np.arange(idx.shape[1]))
        h = residual(x, self._norm("ln_1"), self.attn, None, False, key_padding_mask=mask)
        h = residual(h, self._norm("ln_2"), self.mlp, None, False)
        pooled, weights = masked_mean(h, mask)
        self.save(weights)
        return self.head(pooled)

    def _norm(self, name: str) -> LayerNorm | None:
        """The LayerNorm after a residual (post-LN), or None without them."""
        return getattr(self, name) if self.layernorm else None

    def _logits_backward(self, dlogits):
        (weights,) = self.saved()
        dpooled = self.head.backward(dlogits)                       # (B, C)
        dh = weights[:, :, None] * dpooled[:, None, :]              # (B, T, C)
        dh = residual_backward(dh, self._norm("ln_2"), self.mlp, None, False)
        dx = residual_backward(dh, self._norm("ln_1"), self.attn, None, False)
        self.wpe.backward(dx)
        self.wte.backward(dx)

    def predict(self, idx, padding_mask=None) -> np.ndarray:
        """(B,) the most likely class of each sequence, in inference mode."""
        was_training = self.training
        self.eval()
        try:
            logits, _ = self.forward(idx, padding_mask=padding_mask)
        finally:
            self.train(was_training)
        return logits.argmax(-1)
