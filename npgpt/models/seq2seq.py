"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

    src (B, S) -> src_emb * sqrt(C) + PE -> n_encoder_layer x EncoderLayer [-> ln_f] = memory
    tgt_in (B, T) -> tgt_emb * sqrt(C) + PE -> n_decoder_layer x DecoderLayer(memory) [-> ln_f]
        -> lm_head -> logits (B, T, V_tgt)

The encoder attends over the whole source except its padding (``src_padding_mask``, True = a
real token); the decoder attends causally over the target so far, then, by cross-attention,
over the real source positions. ``tgt_in`` is the target shifted right behind ``bos_id`` and
the loss compares the logits with the unshifted target, padding (``pad_id``) being ignored.

Post-LN (the paper): x = LN(x + sublayer(x)). Pre-LN (``prenorm=True``): x = x + sublayer(LN(x))
with a final LayerNorm on each stack, which trains more easily without warmup.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError
from ..layers.attention import CrossAttention, MultiHeadAttention
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.ffn import MLP
from ..layers.linear import Linear
from ..layers.loss import CrossEntropyLoss, log_softmax
from ..layers.norm import LayerNorm
from ..layers.positional import SinusoidalPositionalEncoding
from ..module import Module, ModuleList, no_grad
from .base import Model
from .residual import residual, residual_backward


@dataclass
class Seq2SeqConfig:
    """Every choice of an encoder-decoder Transformer. Defaults are a toy-sized model."""

    src_vocab_size: int = 32         # V_src: source token ids
    tgt_vocab_size: int = 32         # V_tgt: target token ids
    n_encoder_layer: int = 2         # encoder layers
    n_decoder_layer: int = 2         # decoder layers
    n_head: int = 4                  # H: attention heads
    n_embd: int = 64                 # C: channels (the paper's d_model)
    mlp_hidden: int | None = None    # FFN width (the paper's d_ff); None = 4 * n_embd
    prenorm: bool = False            # False: the paper's post-LN; True: pre-LN + final norms
    dropout: float = 0.0             # dropout on embeddings and on each residual branch
    pad_id: int = 0                  # padding id (both vocabularies); ignored by the loss
    bos_id: int = 1                  # target start token: decoding begins with it
    eos_id: int = 2                  # target end token: decoding stops at it
    norm_eps: float = 1e-5           # LayerNorm epsilon
    init_std: float = 0.02           # std of the normal weight init
    dtype: str = "float32"           # float32, or float64 for gradient checks

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "n_encoder_layer", "n_decoder_layer",
                     "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not 0 <= value < min(self.tgt_vocab_size, self.src_vocab_size):
                raise ConfigError(f"{name}={value} must be a valid id in both vocabularies "
                                  f"(< {min(self.tgt_vocab_size, self.src_vocab_size)})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype={self.dtype!r} must be float32 or float64")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Layer(Module):
    """What an encoder and a decoder layer are built of: sub-layers of one config."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__(np.dtype(config.dtype))
        self.prenorm = config.prenorm

    def _self_attention(self, config, rng, causal: bool) -> MultiHeadAttention:
        return MultiHeadAttention(config.n_embd, config.n_head, causal=causal, dtype=self.dtype,
                                  rng=rng, dropout=config.dropout)

    def _norm(self, config) -> LayerNorm:
        return LayerNorm(config.n_embd, eps=config.norm_eps, dtype=self.dtype)

    def _mlp(self, config, rng) -> MLP:
        return MLP(config.n_embd, config.mlp_hidden, activation="relu", dtype=self.dtype, rng=rng)

    def _dropouts(self, config, rng, n: int) -> list[Dropout]:
        return [Dropout(config.dropout, rng=rng, dtype=self.dtype) for _ in range(n)]


class EncoderLayer(_Layer):
    """x: (B, S, C) -> (B, S, C); src_padding_mask: (B, S) bool, True = real token.

    post-LN:  x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))       (attn is not causal)
    pre-LN:   x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    """

    def __init__(self, config: Seq2SeqConfig, rng: np.random.Generator):
        super().__init__(config)
        self.self_attn = self._self_attention(config, rng, causal=False)
        self.ln_1 = self._norm(config)
        self.mlp = self._mlp(config, rng)
        self.ln_2 = self._norm(config)
        self.drop_1, self.drop_2 = self._dropouts(config, rng, 2)

    def forward(self, x, src_padding_mask=None):
        x = residual(x, self.ln_1, self.self_attn, self.drop_1, self.prenorm,
                     key_padding_mask=src_padding_mask)
        return residual(x, self.ln_2, self.mlp, self.drop_2, self.prenorm)

    def backward(self, dy):
        dx = residual_backward(dy, self.ln_2, self.mlp, self.drop_2, self.prenorm)
        return residual_backward(dx, self.ln_1, self.self_attn, self.drop_1, self.prenorm)


class DecoderLayer(_Layer):
    """x: (B, T, C), memory: (B, S, C) -> (B, T, C)

    post-LN:  x = ln_1(x + self_attn(x));  x = ln_2(x + cross_attn(x, memory));
              x = ln_3(x + mlp(x))                          (self_attn is causal)
    pre-LN:   x = x + self_attn(ln_1(x));  x = x + cross_attn(ln_2(x), memory);
              x = x + mlp(ln_3(x))
    backward returns (dx, dmemory); memory's gradient comes only from cross-attention's keys
    and values.
    """

    def __init__(self, config: Seq2SeqConfig, rng: np.random.Generator):
        super().__init__(config)
        self.self_attn = self._self_attention(config, rng, causal=True)
        self.ln_1 = self._norm(config)
        self.cross_attn = CrossAttention(config.n_embd, config.n_head, dtype=self.dtype, rng=rng,
                                         dropout=config.dropout)
        self.ln_2 = self._norm(config)
        self.mlp = self._mlp(config, rng)
        self.ln_3 = self._norm(config)
        self.drop_1, self.drop_2, self.drop_3 = self._dropouts(config, rng, 3)

    def forward(self, x, memory, memory_padding_mask=None):
        x = residual(x, self.ln_1, self.self_attn, self.drop_1, self.prenorm)
        x = residual(x, self.ln_2, self.cross_attn, self.drop_2, self.prenorm, memory,
                     memory_padding_mask)
        return residual(x, self.ln_3, self.mlp, self.drop_3, self.prenorm)

    def backward(self, dy):
        dx = residual_backward(dy, self.ln_3, self.mlp, self.drop_3, self.prenorm)
        dx, dmemory = residual_backward(dx, self.ln_2, self.cross_attn, self.drop_2, self.prenorm)
        return residual_backward(dx, self.ln_1, self.self_attn, self.drop_1, self.prenorm), dmemory


class Transformer(Model):
    """The encoder-decoder Transformer.

    forward(src (B, S) int, tgt_in (B, T) int, tgt_out (B, T) int or None,
            src_padding_mask (B, S) bool or None) -> (logits (B, T, V_tgt), loss or None)

    The source padding mask defaults to ``src != pad_id``. The loss is the mean cross-entropy
    over the target tokens that are not ``pad_id``.

    backward(dlogits=None): from the loss of the last forward, or from any dlogits
    (B, T, V_tgt); returns None (both inputs are integer ids). The decoder's gradient with
    respect to memory, summed over the decoder layers, flows back through the encoder.
    A large training batch runs split across the threads (see :mod:`npgpt.models.base`).
    """

    _targets_name = "tgt_out"

    def __init__(self, config: Seq2SeqConfig, seed: int | None = 0):
        dtype = np.dtype(config.dtype)
        super().__init__(dtype)
        self.config = config
        rng = np.random.default_rng(seed)
        C, std = config.n_embd, config.init_std
        # embeddings are multiplied by sqrt(C) (section 3.4); the init keeps them ~ PE's scale
        self.src_emb = Embedding(config.src_vocab_size, C, dtype=dtype, rng=rng, std=1 / C)
        self.tgt_emb = Embedding(config.tgt_vocab_size, C, dtype=dtype, rng=rng, std=1 / C)
        self._pe = SinusoidalPositionalEncoding(C, dtype=dtype)
        self.drop_src = Dropout(config.dropout, rng=rng, dtype=dtype)
        self.drop_tgt = Dropout(config.dropout, rng=rng, dtype=dtype)
        self.encoder = ModuleList(EncoderLayer(config, rng) for _ in range(config.n_encoder_layer))
        self.decoder = ModuleList(DecoderLayer(config, rng) for _ in range(config.n_decoder_layer))
        if config.prenorm:
            self.enc_ln_f = LayerNorm(C, eps=config.norm_eps, dtype=dtype)
            self.dec_ln_f = LayerNorm(C, eps=config.norm_eps, dtype=dtype)
        self.lm_head = Linear(C, config.tgt_vocab_size, dtype=dtype, rng=rng, std=std)
        self.loss_fn = CrossEntropyLoss(ignore_index=config.pad_id)
        self._emb_scale = math.sqrt(C)

    # --- checks -------------------------------------------------------------------------
    @staticmethod
    def _check_ids(ids, name: str, vocab: int) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"{name} must be a 2-D integer array (B, length); got shape "
                             f"{ids.shape} dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise InputError(f"{name}: id {int(bad)} is outside the vocabulary [0, {vocab})")
        return ids

    def padding_mask(self, src) -> np.ndarray:
        """(B, S) bool, True where ``src`` is a real token (not ``pad_id``)."""
        return np.asarray(src) != self.config.pad_id

    def _embed(self, emb: Embedding, ids):
        x = emb(ids) * self.dtype.type(self._emb_scale)
        return x + self._pe(np.arange(ids.shape[1]))

    # --- the two stacks -----------------------------------------------------------------
    def encode(self, src, src_padding_mask=None) -> np.ndarray:
        """memory (B, S, C) of the source."""
        src = self._check_ids(src, "src", self.config.src_vocab_size)
        if src_padding_mask is None:
            src_padding_mask = self.padding_mask(src)
        x = self.drop_src(self._embed(self.src_emb, src))
        for layer in self.encoder:
            x = layer(x, src_padding_mask)
        if self.config.prenorm:
            x = self.enc_ln_f(x)
        return x

    def decode(self, tgt_in, memory, src_padding_mask=None) -> np.ndarray:
        """logits (B, T, V_tgt) of the next target token at each position of ``tgt_in``."""
        tgt_in = self._check_ids(tgt_in, "tgt_in", self.config.tgt_vocab_size)
        if memory.shape[0] != tgt_in.shape[0]:
            raise InputError(f"tgt_in has batch size {tgt_in.shape[0]} but memory has "
                             f"{memory.shape[0]}")
        x = self.drop_tgt(self._embed(self.tgt_emb, tgt_in))
        for layer in self.decoder:
            x = layer(x, memory, src_padding_mask)
        if self.config.prenorm:
            x = self.dec_ln_f(x)
        return self.lm_head(x)

    def forward(self, src, tgt_in, tgt_out=None, src_padding_mask=None):
        src = self._check_ids(src, "src", self.config.src_vocab_size)
        if src_padding_mask is None:
            src_padding_mask = self.padding_mask(src)
        if tgt_out is not None:
            tgt_out = np.asarray(tgt_out)
            if tgt_out.shape != np.shape(tgt_in):
                raise InputError(f"tgt_out shape {tgt_out.shape} != tgt_in shape "
                                 f"{np.shape(tgt_in)}")
        return self._forward((src, tgt_in, src_padding_mask), tgt_out)

    def _logits(self, src, tgt_in, src_padding_mask):
        memory = self.encode(src, src_padding_mask)
        logits = self.decode(tgt_in, memory, src_padding_mask)
        self.save(True)
        return logits

    def _logits_backward(self, dlogits):
        self.saved()
        # decoder, bottom-up; memory's gradient is the sum over the decoder layers
        dx = self.lm_head.backward(dlogits)
        if self.config.prenorm:
            dx = self.dec_ln_f.backward(dx)
        dmemory = None
        for layer in reversed(self.decoder._items):
            dx, dm = layer.backward(dx)
            dmemory = dm if dmemory is None else dmemory + dm
        dx = self.drop_tgt.backward(dx)
        self.tgt_emb.backward(dx * self.dtype.type(self._emb_scale))
        # encoder, bottom-up from memory
        if self.config.prenorm:
            dmemory = self.enc_ln_f.backward(dmemory)
        for layer in reversed(self.encoder._items):
            dmemory = layer.backward(dmemory)
        dmemory = self.drop_src.backward(dmemory)
        self.src_emb.backward(dmemory * self.dtype.type(self._emb_scale))

    # --- decoding -----------------------------------------------------------------------
    def greedy_decode(self, src, max_len: int, src_padding_mask=None) -> np.ndarray:
        """The most likely token at each step, for every source at once.

        src: (B, S) -> (B, <= max_len) int64, without the leading bos; a finished row (one
        that produced eos) is padded with ``pad_id`` after its eos.
        """
        c = self.config
        src = self._check_ids(src, "src", c.src_vocab_size)
        if src_padding_mask is None:
            src_padding_mask = self.padding_mask(src)
        B = src.shape[0]
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                memory = self.encode(src, src_padding_mask)
                out = np.full((B, 1), c.bos_id, dtype=np.int64)
                done = np.zeros(B, dtype=bool)
                for _ in range(max_len):
                    logits = self.decode(out, memory, src_padding_mask)[:, -1]
                    nxt = np.where(done, c.pad_id, logits.argmax(-1))
                    out = np.concatenate([out, nxt[:, None]], axis=1)
                    done |= nxt == c.eos_id
                    if done.all():
                        break
        finally:
            self.train(was_training)
        return out[:, 1:]

    def beam_search(self, src, max_len: int, beam_size: int = 4, length_penalty: float = 0.6,
                    src_padding_mask=None) -> list[list[int]]:
        """Beam search, one source at a time: keep the ``beam_size`` best partial targets by
        summed log-probability; a hypothesis ends at eos. Finished ones are ranked by
        score / ((5 + length) / 6) ** length_penalty (Wu et al., 2016; 0 = no penalty).

        src: (B, S) -> B lists of ids (without bos, with eos if one was produced).
        """
        c = self.config
        if beam_size < 1:
            raise ConfigError(f"beam_size={beam_size} must be >= 1")
        src = self._check_ids(src, "src", c.src_vocab_size)
        if src_padding_mask is None:
            src_padding_mask = self.padding_mask(src)
        was_training = self.training
        self.eval()
        results = []
        try:
            with no_grad():
                for b in range(src.shape[0]):
                    mask = np.asarray(src_padding_mask)[b:b + 1]
                    memory = self.encode(src[b:b + 1], mask)
                    results.append(self._beam_one(memory, mask, max_len, beam_size,
                                                  length_penalty))
        finally:
            self.train(was_training)
        return results

    def _beam_one(self, memory, mask, max_len, beam_size, alpha):
        c = self.config
        norm = lambda seq, score: score / ((5 + len(seq)) / 6) ** alpha
        beams = [([c.bos_id], 0.0)]
        finished = []
        for _ in range(max_len):
            seqs = np.array([s for s, _ in beams], dtype=np.int64)
            k = len(beams)
            logits = self.decode(seqs, np.repeat(memory, k, axis=0), np.repeat(mask, k, axis=0))
            logp = log_softmax(logits[:, -1].astype(np.float64))
            scores = np.array([sc for _, sc in beams])[:, None] + logp     # (k, V)
            order = np.argsort(-scores, axis=None)[:2 * beam_size]
            beams = []
            for flat in order:
                i, tok = divmod(int(flat), logp.shape[1])
                seq, score = seqs[i].tolist() + [tok], float(scores[i, tok])
                if tok == c.eos_id:
                    finished.append((seq, score))
                else:
                    beams.append((seq, score))
                if len(beams) == beam_size:
                    break
            best_open = max((norm(s, sc) for s, sc in beams), default=-np.inf)
            if len(finished) >= beam_size and max(norm(s, sc) for s, sc in finished) >= best_open:
                break
            if not beams:
                break
        pool = finished if finished else beams
        best = max(pool, key=lambda item: norm(item[0], item[1]))
        return best[0][1:]
