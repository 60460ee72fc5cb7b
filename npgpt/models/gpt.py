"""The GPT: GPT-2, the original post-LN Transformer decoder and LLaMA-style models, by config.

    idx (B, T) -> wte(idx) [+ wpe(pos)] -> dropout -> n_layer x Block -> ln_f -> head
        -> [cap * tanh(. / cap)] -> logits (B, T, V)

Parameter names follow GPT-2's checkpoints (``wte.weight``, ``h.0.attn.c_attn.weight``, ...)
so a GPT-2 state dict loads as it is; LLaMA-style MLPs use LLaMA's names (``gate_proj``,
``up_proj``, ``down_proj``). With tied embeddings the LM head is ``wte.weight`` (listed once).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..contract import checked
from ..errors import ConfigError, InputError
from ..fields import above, at_least, check_fields, from_dict, in_range, one_of, positive
from ..layers.attention import MultiHeadAttention
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding, LearnedPositionalEmbedding
from ..layers.ffn import MLP, GeGLU, SwiGLU
from ..layers.kv_cache import KVCache
from ..layers.linear import Linear, matmul_accumulate
from ..layers.loss import CrossEntropyLoss
from ..layers.norm import LayerNorm, RMSNorm
from ..layers.positional import SinusoidalPositionalEncoding
from ..layers.rope import RotaryEmbedding
from ..layers.softcap import SoftCap
from ..module import Module, ModuleList
from .base import Model
from .per_layer import check_family_fields, embed_multiplier, layer_ropes
from .residual import residual, residual_backward, sandwich, sandwich_backward

POSITIONS = ("learned", "sinusoidal", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu_tanh", "gelu", "relu", "relu2", "swiglu", "geglu")
ROPE_SCALINGS = ("none", "linear", "llama3")


@dataclass
class GPTConfig:
    """Every architectural choice of a GPT. Defaults are GPT-2 (124M)."""

    vocab_size: int = 50257          # V: number of token ids
    block_size: int = 1024           # longest sequence (learned positions cannot go beyond)
    n_layer: int = 12                # L: transformer blocks
    n_head: int = 12                 # H: query heads
    n_embd: int = 768                # C: channels of the residual stream
    n_kv_head: int | None = None     # key/value heads (grouped-query attention); None = n_head
    pos: str = "learned"             # learned | sinusoidal | rope | none
    norm: str = "layernorm"          # layernorm | rmsnorm
    prenorm: bool = True             # True: GPT-2's pre-LN; False: the original post-LN
    mlp: str = "gelu_tanh"           # gelu_tanh (GPT-2) | gelu (exact erf) | relu | relu2 | swiglu | geglu (tanh-GELU gate)
    mlp_hidden: int | None = None    # hidden width of the MLP; None = 4 * n_embd
    bias: bool = True                # biases in the linear layers and LayerNorms
    tie_embeddings: bool = True      # LM head shares wte's weight
    dropout: float = 0.0             # dropout on embeddings, attention weights and residuals
    rope_theta: float = 10000.0      # RoPE base
    rope_layout: str = "half"        # half (LLaMA / HF checkpoints) | interleaved (RoFormer)
    head_dim: int | None = None      # hs: channels of an attention head; None = n_embd / n_head
    qkv_bias: bool | None = None     # biases on the q, k, v projections (Qwen2: only there); None = bias
    qk_norm: bool = False            # RMSNorm of every query and key head before RoPE (Qwen3, Gemma 3)
    norm_plus_one: bool = False      # RMSNorm scales by (1 + weight), weights starting at 0 (Gemma)
    sandwich_norm: bool = False      # also norm each branch's output: four norms per block (Gemma)
    embed_scale: bool = False        # token embeddings times sqrt(n_embd) (Gemma; the tied head is not)
    attn_scalar: float | None = None  # attention scores times attn_scalar^-1/2; None = head size
    sliding_window: int | None = None  # W of sliding layers: query i sees keys i - W < j <= i
    layer_types: str | None = None   # a letter per layer: f full attention, s sliding window; None = all f
    rope_layers: str | None = None   # a digit per layer: 1 RoPE, 0 none (SmolLM3's NoPE); None = all 1
    rope_local_theta: float | None = None  # RoPE base of the sliding layers; None = rope_theta
    rope_scaling: str = "none"       # none | linear | llama3: rewrite of the rope_theta frequencies
    rope_factor: float = 1.0         # linear / llama3 scaling factor
    rope_low_freq_factor: float = 1.0   # llama3: wavelengths above original_context / this are divided
    rope_high_freq_factor: float = 4.0  # llama3: wavelengths below original_context / this are kept
    rope_original_context: int = 8192   # llama3: the context length the model was trained at
    norm_eps: float = 1e-5           # epsilon of LayerNorm / RMSNorm
    init_std: float = 0.02           # std of the normal weight init
    zero_init_proj: bool = False     # start the projections into the residual stream at zero
    logit_softcap: float | None = None   # cap * tanh(logits / cap) on the final logits; None: off
    dtype: str = "float32"           # float32, or float64 for gradient checks

    def __post_init__(self):
        check_fields(self, _RULES)
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head} "
                              "(or give head_dim)")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.pos == "rope" and self.head_size % 2:
            raise ConfigError(f"RoPE needs an even head size; it is {self.head_size}")
        check_family_fields(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head if self.head_dim is None else self.head_dim

    def layer_type(self, i: int) -> str:
        """"f" (full attention) or "s" (sliding window) for layer i."""
        return "f" if self.layer_types is None else self.layer_types[i]

    def layer_rope(self, i: int) -> bool:
        """Whether layer i rotates its queries and keys (pos="rope" and not a NoPE layer)."""
        return self.pos == "rope" and (self.rope_layers is None or self.rope_layers[i] == "1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source=None, required: bool = False) -> "GPTConfig":
        """From a file's dict: unknown fields (and, with ``required``, missing ones other than
        ``ADDED_FIELDS``) and bad values are refused, naming ``source``."""
        return from_dict(cls, d, None if source is None else str(source), required,
                         ADDED_FIELDS)

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# what each field may hold (the type comes from the annotation; see npgpt.fields)
_RULES = {
    "head_dim": positive, "sliding_window": positive, "rope_original_context": positive,
    "attn_scalar": above(0), "rope_local_theta": above(0), "rope_factor": above(0),
    "rope_low_freq_factor": above(0), "rope_high_freq_factor": above(0),
    "rope_scaling": one_of(*ROPE_SCALINGS),
    **{name: positive for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd",
                                   "n_kv_head", "mlp_hidden")},
    "pos": one_of(*POSITIONS), "norm": one_of(*NORMS), "mlp": one_of(*MLPS),
    "rope_layout": one_of("half", "interleaved"),
    "dropout": in_range(0, 1, hi_open=True),
    "rope_theta": above(0), "norm_eps": above(0), "init_std": at_least(0),
    "dtype": one_of("float32", "float64"),
    "logit_softcap": above(0),
}

# fields added after config.json files were first written, each with the value an older file,
# which lacks it, meant (the model as it was then): such a file loads as it was written
ADDED_FIELDS = {
    "head_dim": None, "qkv_bias": None, "qk_norm": False, "norm_plus_one": False,
    "sandwich_norm": False, "embed_scale": False, "attn_scalar": None, "sliding_window": None,
    "layer_types": None, "rope_layers": None, "rope_local_theta": None, "rope_scaling": "none",
    "rope_factor": 1.0, "rope_low_freq_factor": 1.0, "rope_high_freq_factor": 4.0,
    "rope_original_context": 8192, "zero_init_proj": False, "logit_softcap": None,
}

PRESETS: dict[str, dict] = {
    # GPT-2's four sizes (Radford et al. 2019; the released checkpoints)
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    # the original Transformer's decoder layout: sinusoidal positions, post-LN, ReLU
    "transformer": dict(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128,
                        pos="sinusoidal", prenorm=False, mlp="relu"),
    # LLaMA-style: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases, untied head
    "llama-tiny": dict(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_kv_head=2,
                       n_embd=128, mlp_hidden=344, pos="rope", norm="rmsnorm", mlp="swiglu",
                       bias=False, tie_embeddings=False, norm_eps=1e-6),
    # the baby char-level Shakespeare model (vocab_size is set from the tokenizer)
    "baby": dict(vocab_size=96, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # the time-to-quality recipes (training settings, Muon among them:
    # npgpt.train_config.TRAIN_PRESETS): RoPE, RMSNorm with q/k norms, no biases, ReLU²,
    # zero-initialised projections, soft-capped logits
    "speedrun-1m": dict(vocab_size=96, block_size=64, n_layer=3, n_head=4, n_embd=128,
                        pos="rope", norm="rmsnorm", bias=False, mlp="relu2",
                        zero_init_proj=True, qk_norm=True, logit_softcap=15.0),
    # five minutes: the same model, trained five times longer; at this budget it beat a
    # deeper (6 x 128) and a wider (4 x 192) one (docs/performance.md, "Time to quality")
    "speedrun-5m": dict(vocab_size=96, block_size=64, n_layer=3, n_head=4, n_embd=128,
                        pos="rope", norm="rmsnorm", bias=False, mlp="relu2",
                        zero_init_proj=True, qk_norm=True, logit_softcap=15.0),
}


def _norm(config: GPTConfig, dtype):
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps, dtype=dtype,
                       plus_one=config.norm_plus_one)
    return LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias, dtype=dtype)


class Block(Module):
    """One transformer block.   x: (B, T, C) -> (B, T, C)

    pre-LN (GPT-2):   x = x + attn(ln_1(x));   x = x + mlp(ln_2(x))
    post-LN (2017):   x = ln_1(x + attn(x));   x = ln_2(x + mlp(x))
    sandwich (Gemma): x = x + ln_attn_out(attn(ln_1(x)));   x = x + ln_mlp_out(mlp(ln_2(x)))

    ``rope``: this layer's rotary embedding (or None: no positions in the attention);
    ``window``: its sliding window (None: full causal attention).
    """

    def __init__(self, config: GPTConfig, rng: np.random.Generator, rope=None, window=None):
        dtype = np.dtype(config.dtype)
        super().__init__(dtype)
        # GPT-2 scales the init of the projections into the residual stream by 1/sqrt(2L);
        # zero_init_proj starts them at zero (each block begins as the identity)
        proj_std = 0.0 if config.zero_init_proj else config.init_std / np.sqrt(2 * config.n_layer)
        self.prenorm = config.prenorm
        self.sandwich = config.sandwich_norm
        self.ln_1 = _norm(config, dtype)
        scale = None if config.attn_scalar is None else config.attn_scalar ** -0.5
        self.attn = MultiHeadAttention(config.n_embd, config.n_head, n_kv_head=config.n_kv_head,
                                       bias=config.bias, causal=True, rope=rope,
                                       dropout=config.dropout, dtype=dtype, rng=rng,
                                       proj_std=proj_std, head_dim=config.head_dim,
                                       qkv_bias=config.qkv_bias, qk_norm=config.qk_norm,
                                       norm_eps=config.norm_eps,
                                       norm_plus_one=config.norm_plus_one, scale=scale,
                                       window=window)
        if self.sandwich:
            self.ln_attn_out = _norm(config, dtype)
        self.ln_2 = _norm(config, dtype)
        if config.mlp in ("swiglu", "geglu"):
            gated = SwiGLU if config.mlp == "swiglu" else GeGLU
            self.mlp = gated(config.n_embd, config.mlp_hidden, bias=config.bias, dtype=dtype,
                             rng=rng, proj_std=proj_std)
        else:
            self.mlp = MLP(config.n_embd, config.mlp_hidden, activation=config.mlp,
                           bias=config.bias, dtype=dtype, rng=rng, proj_std=proj_std)
        if self.sandwich:
            self.ln_mlp_out = _norm(config, dtype)
        self.drop_attn = Dropout(config.dropout, rng=rng)
        self.drop_mlp = Dropout(config.dropout, rng=rng)

    def forward(self, x, key_padding_mask=None, kv_cache=None):
        if self.sandwich:
            x = sandwich(x, self.ln_1, self.attn, self.ln_attn_out, self.drop_attn,
                         key_padding_mask=key_padding_mask, kv_cache=kv_cache)
            return sandwich(x, self.ln_2, self.mlp, self.ln_mlp_out, self.drop_mlp)
        x = residual(x, self.ln_1, self.attn, self.drop_attn, self.prenorm,
                     key_padding_mask=key_padding_mask, kv_cache=kv_cache)
        return residual(x, self.ln_2, self.mlp, self.drop_mlp, self.prenorm)

    def backward(self, dy):      # the forward read bottom-up; each residual adds its branch
        if self.sandwich:
            dx = sandwich_backward(dy, self.ln_2, self.mlp, self.ln_mlp_out, self.drop_mlp)
            return sandwich_backward(dx, self.ln_1, self.attn, self.ln_attn_out, self.drop_attn)
        dx = residual_backward(dy, self.ln_2, self.mlp, self.drop_mlp, self.prenorm)
        return residual_backward(dx, self.ln_1, self.attn, self.drop_attn, self.prenorm)


class GPT(Model):
    """A decoder-only transformer language model.

    forward(idx (B, T) int, targets (B, T) int or None) -> (logits (B, T, V), loss or None)
    backward(dlogits=None): from the mean cross-entropy of the last forward, or from any
    upstream dlogits (B, T, V); returns None (the input is integer ids). A large training
    batch runs split across the threads (``data_parallel``, see :mod:`npgpt.models.base`).
    """

    def __init__(self, config: GPTConfig, seed: int | None = 0):
        dtype = np.dtype(config.dtype)
        super().__init__(dtype)
        self.config = config
        rng = np.random.default_rng(seed)
        C, std = config.n_embd, config.init_std
        self.wte = Embedding(config.vocab_size, C, dtype=dtype, rng=rng, std=std)
        if config.pos == "learned":
            self.wpe = LearnedPositionalEmbedding(config.block_size, C, dtype=dtype, rng=rng,
                                                  std=std / 2)
        self._sinusoidal = SinusoidalPositionalEncoding(C, dtype=dtype) if config.pos == "sinusoidal" else None
        ropes = layer_ropes(config, dtype)
        self.drop = Dropout(config.dropout, rng=rng)
        self.h = ModuleList(Block(config, rng, rope=ropes[i],
                                  window=config.sliding_window if config.layer_type(i) == "s" else None)
                            for i in range(config.n_layer))
        if config.prenorm:   # pre-LN needs a final norm; the post-LN stack ends normalised
            self.ln_f = _norm(config, dtype)
        if not config.tie_embeddings:
            self.lm_head = Linear(C, config.vocab_size, bias=False, dtype=dtype, rng=rng, std=std)
        if config.logit_softcap is not None:
            self.softcap = SoftCap(config.logit_softcap, dtype=dtype)
        self.loss_fn = CrossEntropyLoss()

    # --- the head: tied (x @ wte^T) or its own Linear ------------------------------------
    # (B, T, C) is flattened to (B·T, C) so BLAS sees one large product, and the tied
    # weight's gradient is accumulated by gemm itself (no (V, C) temporary)
    def _head_forward(self, x):
        if self.config.tie_embeddings:
            return self.wte.attend(x)            # x @ wte^T (an int8 wte brings its own)
        return self.lm_head(x)

    def _head_backward(self, dlogits, x):
        if not self.config.tie_embeddings:
            return self.lm_head.backward(dlogits)
        if getattr(self.wte, "quantization", None):    # int8 rows: frozen, dx only
            return self.wte.attend_backward(dlogits)
        C = x.shape[-1]
        V = dlogits.shape[-1]
        dlogits2 = dlogits.reshape(-1, V)
        if self.wte.weight.requires_grad:
            matmul_accumulate(self.wte.weight.grad, dlogits2.T, x.reshape(-1, C))
        return (dlogits2 @ self.wte.weight.data).reshape(x.shape)

    def _check_idx(self, idx, name="idx"):
        idx = np.asarray(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer) or 0 in idx.shape:
            raise InputError(f"{name} must be a 2-D integer array (B, T) with B, T >= 1; got "
                             f"shape {idx.shape} dtype {idx.dtype}")
        return idx

    def forward(self, idx, targets=None, key_padding_mask=None, kv_cache=None):
        idx = self._check_idx(idx)
        if targets is not None:
            targets = self._check_idx(targets, "targets")
            if targets.shape != idx.shape:
                raise InputError(f"targets shape {targets.shape} != idx shape {idx.shape}")
        if kv_cache is not None:
            return self._forward((idx, key_padding_mask, kv_cache), targets, splittable=False)
        return self._forward((idx, key_padding_mask), targets)

    def _logits(self, idx, key_padding_mask=None, kv_cache=None):
        B, T = idx.shape
        offset = kv_cache[0].position if kv_cache is not None else 0
        positions = np.arange(offset, offset + T)
        x = self.wte(idx)                # a fresh gather: the positions are added in place
        if self.config.embed_scale:
            x *= x.dtype.type(embed_multiplier(self.config))
        if self.config.pos == "learned":
            x += self.wpe(positions)
        elif self.config.pos == "sinusoidal":
            x += self._sinusoidal(positions)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, key_padding_mask=key_padding_mask,
                      kv_cache=kv_cache[i] if kv_cache is not None else None)
        if self.config.prenorm:
            x = self.ln_f(x)
        self.save(x)
        logits = self._head_forward(x)
        if self.config.logit_softcap is not None:
            logits = self.softcap(logits)
        return logits

    def _logits_backward(self, dlogits):
        (x,) = self.saved()
        if self.config.logit_softcap is not None:
            dlogits = self.softcap.backward(dlogits)
        dx = self._head_backward(dlogits, x)
        if self.config.prenorm:
            dx = self.ln_f.backward(dx)
            self.grads_final(self.ln_f)
        if not self.config.tie_embeddings:
            self.grads_final(self.lm_head)
        for block in reversed(self.h._items):
            dx = block.backward(dx)
            self.grads_final(block)         # its gradients can go while the rest runs
        dx = self.drop.backward(dx)
        if self.config.embed_scale:
            dx = dx * dx.dtype.type(embed_multiplier(self.config))
        if self.config.pos == "learned":
            self.wpe.backward(dx)
        self.wte.backward(dx)

    # --- inference ---------------------------------------------------------------------
    def new_kv_cache(self, batch_size: int, max_len: int | None = None,
                     window_only: bool = False) -> list[KVCache]:
        """One KVCache per layer, for ``max_len`` positions (default ``block_size``).
        ``window_only``: sliding-window layers keep only their window (see KVCache), so their
        caches hold about sliding_window positions however long the text; such caches cannot
        be cropped back past what they dropped."""
        c = self.config
        max_len = max_len or c.block_size
        caches = []
        for i in range(c.n_layer):
            window = c.sliding_window if window_only and c.layer_type(i) == "s" else None
            size = max_len if window is None else min(max_len, window + 63)
            caches.append(KVCache(batch_size, c.n_kv_head, size, c.head_size, dtype=self.dtype,
                                  window=window))
        return caches

    # GPT.from_pretrained / save_pretrained (npgpt.hf) and GPT.generate (npgpt.generate) are
    # given to the class by those modules, which speak the file format and the decoding loop:
    # a model knows neither, and nothing here imports them.


@checked
def count_params(config: GPTConfig) -> dict[str, int]:
    """Parameters per component of the model ``config`` describes, and the ``total``.

    For the seed's layout (biases, LayerNorm, 4C MLP, tied head, no learned positions, no
    final norm) the total is the closed form ``12·C²·L + 13·C·L + V·C``
    (:func:`params_formula`); GPT-2 adds ``wpe`` (block_size·C) and ``ln_f`` (2C).
    """
    c = config
    C, L, V, hs = c.n_embd, c.n_layer, c.vocab_size, c.head_size
    b = 1 if c.bias else 0
    norm = (2 if c.bias else 1) * C if c.norm == "layernorm" else C
    qkv_out = (c.n_head + 2 * c.n_kv_head) * hs
    qkv_b = b if c.qkv_bias is None else int(c.qkv_bias)
    attn = C * qkv_out + qkv_b * qkv_out + c.n_head * hs * C + b * C + (2 * hs if c.qk_norm else 0)
    if c.mlp in ("swiglu", "geglu"):
        mlp = 3 * C * c.mlp_hidden + b * (2 * c.mlp_hidden + C)
    else:
        mlp = 2 * C * c.mlp_hidden + b * (c.mlp_hidden + C)
    parts = {
        "wte": V * C,
        "wpe": c.block_size * C if c.pos == "learned" else 0,
        "attention": L * attn,
        "mlp": L * mlp,
        "norms": L * (4 if c.sandwich_norm else 2) * norm + (norm if c.prenorm else 0),
        "lm_head": 0 if c.tie_embeddings else C * V,
    }
    parts["total"] = sum(parts.values())
    return parts


@checked
def params_formula(config: GPTConfig) -> int:
    """The closed form 12·C²·L + 13·C·L + V·C."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    return 12 * C * C * L + 13 * C * L + V * C
