"""HuggingFace ``config.json`` <-> :class:`~npgpt.models.GPTConfig`, for GPT-2 and the
LLaMA family (:mod:`npgpt.hf` reads and writes the weights).

A config that npgpt would run differently from transformers is refused with a
:class:`~npgpt.errors.ConfigError` naming the field.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .models.gpt import GPTConfig

LLAMA_TYPES = ("llama", "mistral")           # same tensors and math when the config agrees
_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                     "gelu_fast": "gelu_tanh", "gelu": "gelu", "relu": "relu", "relu2": "relu2"}


# --- config.json <-> GPTConfig -----------------------------------------------------------------

def _require(hf: dict, field: str, ok, expected: str, where: str = ""):
    value = hf.get(field)
    if not ok(value):
        raise ConfigError(f"config.json: {where}{field}={value!r} is not supported by npgpt "
                          f"(expected {expected})")


def _count(hf: dict, field: str, default=None):
    """A positive integer field of config.json (a string "768" or a missing required field is
    refused here, before any arithmetic meets it)."""
    value = hf.get(field, default)
    if field not in hf and default is None:
        raise ConfigError(f"config.json: {field} is missing (expected a positive integer)")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"config.json: {field}={value!r} must be a positive integer")
    return value


def config_from_hf(hf: dict, dtype="float32", **overrides) -> GPTConfig:
    """The :class:`GPTConfig` of a HuggingFace ``config.json`` dict (gpt2, llama, mistral).

    ``overrides`` replace fields afterwards (e.g. ``dropout=0.1`` for fine-tuning).
    """
    model_type = hf.get("model_type")
    if hf.get("quantization_config") is not None:
        raise ConfigError("config.json: quantization_config is set; npgpt loads only "
                          "unquantized float weights")
    if model_type == "gpt2":
        c = _gpt2_config(hf)
    elif model_type in LLAMA_TYPES:
        c = _llama_config(hf)
    else:
        raise ConfigError(f"config.json: model_type={model_type!r} is not supported; npgpt "
                          f"loads gpt2 and the LLaMA family ({', '.join(LLAMA_TYPES)})")
    c.update(dtype=str(np.dtype(dtype)), **overrides)
    return GPTConfig(**c)


def _gpt2_config(hf: dict) -> dict:
    _require(hf, "activation_function", lambda v: v in _GPT2_ACTIVATIONS,
             f"one of {', '.join(_GPT2_ACTIVATIONS)}")
    _require(hf, "scale_attn_weights", lambda v: v in (None, True), "true")
    _require(hf, "scale_attn_by_inverse_layer_idx", lambda v: not v, "false")
    _require(hf, "add_cross_attention", lambda v: not v, "false")
    block = _count(hf, "n_positions", hf.get("n_ctx"))
    return dict(vocab_size=_count(hf, "vocab_size"), block_size=block,
                n_layer=_count(hf, "n_layer"), n_head=_count(hf, "n_head"),
                n_embd=_count(hf, "n_embd"), pos="learned", norm="layernorm",
                mlp=_GPT2_ACTIVATIONS[hf["activation_function"]],
                mlp_hidden=hf.get("n_inner"), bias=True,
                tie_embeddings=hf.get("tie_word_embeddings", True),
                norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                init_std=hf.get("initializer_range", 0.02))


def _llama_config(hf: dict) -> dict:
    C, H = _count(hf, "hidden_size"), _count(hf, "num_attention_heads")
    _require(hf, "hidden_act", lambda v: v in (None, "silu"), "'silu' (SwiGLU)")
    _require(hf, "rope_scaling", lambda v: v is None, "null (plain RoPE)")
    rope = hf.get("rope_parameters") or {}
    _require(rope, "rope_type", lambda v: v in (None, "default"), "'default' (plain RoPE)",
             where="rope_parameters.")
    _require(hf, "partial_rotary_factor", lambda v: v in (None, 1, 1.0), "1.0")
    _require(hf, "sliding_window", lambda v: v is None, "null (full attention)")
    _require(hf, "use_sliding_window", lambda v: not v, "false")
    _require(hf, "layer_types", lambda v: v is None or set(v) <= {"full_attention"},
             "every layer 'full_attention'")
    _require(hf, "head_dim", lambda v: v in (None, C // H), f"hidden_size / num_attention_heads "
             f"= {C // H}")
    attention_bias, mlp_bias = bool(hf.get("attention_bias")), bool(hf.get("mlp_bias"))
    if attention_bias != mlp_bias:
        raise ConfigError(f"config.json: attention_bias={attention_bias} and mlp_bias={mlp_bias} "
                          "differ; npgpt's GPTConfig has one bias flag for both")
    return dict(vocab_size=_count(hf, "vocab_size"),
                block_size=_count(hf, "max_position_embeddings"),
                n_layer=_count(hf, "num_hidden_layers"), n_head=H, n_embd=C,
                n_kv_head=H if hf.get("num_key_value_heads") is None
                else _count(hf, "num_key_value_heads"), pos="rope", norm="rmsnorm",
                mlp="swiglu", mlp_hidden=_count(hf, "intermediate_size"), bias=attention_bias,
                tie_embeddings=hf.get("tie_word_embeddings", False),
                rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
                rope_layout="half", norm_eps=hf.get("rms_norm_eps", 1e-6),
                init_std=hf.get("initializer_range", 0.02))


def family(config: GPTConfig) -> str:
    """``"gpt2"`` or ``"llama"``: the HuggingFace architecture that computes exactly what
    ``config`` does, or ConfigError naming the first field that has no counterpart."""
    c = config
    if c.logit_softcap is not None:
        raise ConfigError(f"logit_softcap={c.logit_softcap}: HuggingFace GPT-2/LLaMA have no "
                          "logit soft-capping")
    if not c.prenorm:
        raise ConfigError("prenorm=False (post-LN) has no HuggingFace GPT-2/LLaMA counterpart")
    if c.pos == "learned" and c.norm == "layernorm" and c.mlp != "swiglu":
        if not c.bias:
            raise ConfigError("bias=False: HuggingFace GPT-2 always has biases")
        if c.n_kv_head != c.n_head:
            raise ConfigError(f"n_kv_head={c.n_kv_head} != n_head={c.n_head}: HuggingFace GPT-2 "
                              "has no grouped-query attention")
        return "gpt2"
    if c.pos == "rope" and c.norm == "rmsnorm" and c.mlp == "swiglu":
        if c.rope_layout != "half":
            raise ConfigError(f"rope_layout={c.rope_layout!r}: HuggingFace LLaMA uses 'half'")
        return "llama"
    raise ConfigError(f"pos={c.pos!r}, norm={c.norm!r}, mlp={c.mlp!r} match neither GPT-2 "
                      "(learned, layernorm, gelu/relu) nor LLaMA (rope, rmsnorm, swiglu)")


_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def config_to_hf(config: GPTConfig, token_ids: dict | None = None) -> dict:
    """A ``config.json`` dict that transformers builds the same model from.

    ``token_ids``: bos/eos/pad ids to record (those of the checkpoint the model was loaded
    from); absent ones are written null, so transformers assumes no family default.
    """
    c = config
    common = dict(vocab_size=c.vocab_size, tie_word_embeddings=c.tie_embeddings,
                  initializer_range=c.init_std, torch_dtype=c.dtype, use_cache=True,
                  **{k: (token_ids or {}).get(k) for k in _TOKEN_IDS})
    if family(c) == "gpt2":
        act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "relu2": "relu2"}[c.mlp]
        return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_positions=c.block_size,
                    n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                    n_inner=None if c.mlp_hidden == 4 * c.n_embd else c.mlp_hidden,
                    activation_function=act, layer_norm_epsilon=c.norm_eps,
                    resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                    scale_attn_weights=True, **common)
    return dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=c.n_embd,
                intermediate_size=c.mlp_hidden, num_hidden_layers=c.n_layer,
                num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head,
                head_dim=c.head_size, hidden_act="silu", max_position_embeddings=c.block_size,
                rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta, rope_scaling=None,
                attention_bias=c.bias, mlp_bias=c.bias, attention_dropout=c.dropout, **common)
