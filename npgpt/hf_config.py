"""HuggingFace ``config.json`` <-> :class:`~npgpt.models.GPTConfig`, for GPT-2 and the LLaMA
family: Llama (1, 2, 3.x with llama3 RoPE scaling), Mistral, Qwen2 / 2.5, Qwen3, SmolLM2 (a
Llama), SmolLM3 and Gemma 3 text (:mod:`npgpt.hf` reads and writes the weights). A family is a
mapping onto GPTConfig's fields, not a model class of its own:

    model_type    what it sets beyond a Llama decoder
    mistral       sliding_window on every layer (null: none; absent: 4096, transformers'
                  default); no biases
    qwen2         qkv_bias (q, k, v only); sliding layers from max_window_layers if switched on
    qwen3         qk_norm, head_dim (q and o are not C x C)
    smollm3       rope_layers (no_rope_layers: 1 = RoPE, 0 = none)
    gemma3_text   norm_plus_one, sandwich_norm, qk_norm, geglu, embed_scale, attn_scalar
                  (query_pre_attn_scalar), layer_types with sliding_window, rope_local_theta,
                  logit_softcap (final_logit_softcapping)

A config that npgpt would run differently from transformers is refused with a
:class:`~npgpt.errors.ConfigError` naming the field.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .models.gpt import GPTConfig

# Llama's tensor names, and the same math once the config's fields are mapped
LLAMA_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma3_text")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM",
                  "qwen3": "Qwen3ForCausalLM", "smollm3": "SmolLM3ForCausalLM",
                  "gemma3_text": "Gemma3ForCausalLM"}
# transformers' defaults for fields a family's config.json may leave out
_DEFAULTS = {
    "mistral": dict(sliding_window=4096),
    "qwen3": dict(head_dim=128),
    "smollm3": dict(tie_word_embeddings=True, rope_theta=2_000_000.0),
    "gemma3_text": dict(head_dim=256, tie_word_embeddings=True, query_pre_attn_scalar=256,
                        sliding_window=4096, hidden_activation="gelu_pytorch_tanh",
                        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0),
}
_SLIDING_SWITCHED = ("qwen2", "qwen3", "smollm3")   # sliding only with use_sliding_window
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
    """The :class:`GPTConfig` of a HuggingFace ``config.json`` dict (see the module's table).

    ``overrides`` replace fields afterwards (e.g. ``dropout=0.1`` for fine-tuning).
    """
    model_type = hf.get("model_type")
    if hf.get("quantization_config") is not None:
        raise ConfigError("config.json: quantization_config is set; npgpt loads only "
                          "unquantized float weights")
    if model_type == "gpt2":
        c = _gpt2_config(hf)
    elif model_type in LLAMA_TYPES:
        c = _llama_config({**_DEFAULTS.get(model_type, {}), **hf}, model_type)
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


def _rope_fields(rope: dict, where: str) -> dict:
    """GPTConfig's RoPE fields of one rope-parameter dict (default, linear or llama3)."""
    kind = rope.get("rope_type", rope.get("type")) or "default"
    _require({"rope_type": kind}, "rope_type", lambda v: v in ("default", "linear", "llama3"),
             "'default', 'linear' or 'llama3'", where=where)
    _require(rope, "partial_rotary_factor", lambda v: v in (None, 1, 1.0), "1.0", where=where)
    if kind == "default":
        return {}
    fields = dict(rope_scaling=kind, rope_factor=rope.get("factor"))
    if kind == "llama3":
        fields.update(rope_low_freq_factor=rope.get("low_freq_factor"),
                      rope_high_freq_factor=rope.get("high_freq_factor"),
                      rope_original_context=rope.get("original_max_position_embeddings"))
    for name, value in fields.items():
        if value is None:
            raise ConfigError(f"config.json: {where} of rope_type {kind!r} lacks the value of "
                              f"npgpt's {name}")
    return fields


def _llama_rope(hf: dict, model_type: str) -> dict:
    """RoPE fields from rope_parameters (transformers 5) or rope_theta / rope_scaling (the
    files on the Hub); Gemma 3 keeps one set per layer type."""
    rope = hf.get("rope_parameters")
    if model_type == "gemma3_text":
        if rope is None:
            full = {**(hf.get("rope_scaling") or {}), "rope_theta": hf["rope_theta"]}
            local = {"rope_theta": hf["rope_local_base_freq"]}
        else:
            full = rope.get("full_attention") or {}
            local = rope.get("sliding_attention") or {}
        _require(local, "rope_type", lambda v: v in (None, "default"), "'default'",
                 where="rope_parameters.sliding_attention.")
        return dict(rope_theta=full.get("rope_theta", 1_000_000.0),
                    rope_local_theta=local.get("rope_theta", 10_000.0),
                    **_rope_fields(full, "rope_parameters.full_attention."))
    if rope is None:
        rope = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta", 10000.0)}
        where = "rope_scaling."
    else:
        where = "rope_parameters."
    return dict(rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
                **_rope_fields(rope, where))


def _layer_types(hf: dict, model_type: str, n_layer: int) -> dict:
    """sliding_window and layer_types (f / s per layer), as each family decides them."""
    window = hf.get("sliding_window")
    if model_type in _SLIDING_SWITCHED and not hf.get("use_sliding_window"):
        window = None                          # present in the file, but switched off
    elif model_type == "llama":
        _require(hf, "sliding_window", lambda v: v is None, "null (full attention)")
    elif model_type == "mistral":     # every layer slides: transformers' Mistral reads no
        return {} if window is None else dict(   # layer_types (it warns and ignores them)
            sliding_window=_count(hf, "sliding_window"), layer_types="s" * n_layer)
    if window is None:
        _require(hf, "layer_types", lambda v: v is None or set(v) <= {"full_attention"} or
                 model_type in _SLIDING_SWITCHED, "every layer 'full_attention'")
        return {}
    types = hf.get("layer_types")
    if types is None and model_type == "gemma3_text":
        pattern = hf.get("sliding_window_pattern", 6)
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention"
                 for i in range(n_layer)]
    elif types is None and model_type == "smollm3":
        return {}                              # sliding only where given by layer_types
    elif types is None:
        first = hf.get("max_window_layers", 28)
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layer)]
    letters = {"full_attention": "f", "sliding_attention": "s"}
    if len(types) != n_layer or set(types) - set(letters):
        raise ConfigError(f"config.json: layer_types={types!r} must name 'full_attention' or "
                          f"'sliding_attention' for each of the {n_layer} layers")
    types = "".join(letters[t] for t in types)
    return dict(sliding_window=_count(hf, "sliding_window"), layer_types=types) \
        if "s" in types else {}


def _llama_config(hf: dict, model_type: str) -> dict:
    C, H = _count(hf, "hidden_size"), _count(hf, "num_attention_heads")
    L = _count(hf, "num_hidden_layers")
    gemma = model_type == "gemma3_text"
    act = "hidden_activation" if gemma else "hidden_act"
    want = "gelu_pytorch_tanh" if gemma else "silu"
    _require(hf, act, lambda v: v in (None, want), f"{want!r}")
    head_dim = hf.get("head_dim") or C // H
    if not isinstance(head_dim, int) or head_dim < 1:
        raise ConfigError(f"config.json: head_dim={head_dim!r} must be a positive integer")
    attention_bias, mlp_bias = bool(hf.get("attention_bias")), bool(hf.get("mlp_bias"))
    fields = dict(vocab_size=_count(hf, "vocab_size"),
                  block_size=_count(hf, "max_position_embeddings"), n_layer=L, n_head=H,
                  n_embd=C, n_kv_head=H if hf.get("num_key_value_heads") is None
                  else _count(hf, "num_key_value_heads"), pos="rope", norm="rmsnorm",
                  mlp="geglu" if gemma else "swiglu", mlp_hidden=_count(hf, "intermediate_size"),
                  bias=attention_bias, tie_embeddings=hf.get("tie_word_embeddings", False),
                  rope_layout="half", norm_eps=hf.get("rms_norm_eps", 1e-6),
                  init_std=hf.get("initializer_range", 0.02),
                  head_dim=None if head_dim * H == C else head_dim,
                  **_llama_rope(hf, model_type), **_layer_types(hf, model_type, L))
    if model_type == "mistral":      # its layers have no biases, whatever the file says
        fields.update(bias=False)
    elif model_type in ("llama", "smollm3") and attention_bias != mlp_bias:
        raise ConfigError(f"config.json: attention_bias={attention_bias} and mlp_bias={mlp_bias} "
                          "differ; npgpt's GPTConfig has one bias flag for both")
    if model_type in ("qwen3", "gemma3_text"):
        _require(hf, "attention_bias", lambda v: not v, "false (the MLP has no biases)")
        fields.update(qk_norm=True)
    if model_type == "qwen2":
        fields.update(bias=False, qkv_bias=True)
    if model_type == "smollm3":
        nope = hf.get("no_rope_layers")
        if nope is None:
            every = _count(hf, "no_rope_layer_interval", 4)
            nope = [int((i + 1) % every != 0) for i in range(L)]
        if len(nope) != L or set(nope) - {0, 1}:
            raise ConfigError(f"config.json: no_rope_layers={nope!r} must hold 1 (RoPE) or 0 "
                              f"(none) for each of the {L} layers")
        if 0 in nope:
            fields.update(rope_layers="".join(map(str, nope)))
    if gemma:
        _require(hf, "attn_logit_softcapping", lambda v: v is None, "null")
        _require(hf, "use_bidirectional_attention", lambda v: not v, "false")
        fields.update(norm_plus_one=True, sandwich_norm=True, embed_scale=True,
                      attn_scalar=float(hf["query_pre_attn_scalar"]),
                      logit_softcap=hf.get("final_logit_softcapping"))
    return fields


def model_type(config: GPTConfig) -> str:
    """The HuggingFace ``model_type`` whose modeling code computes exactly what ``config``
    does ("gpt2", "llama", "mistral", "qwen2", "qwen3", "smollm3" or "gemma3_text"), or
    ConfigError naming the first field that has no counterpart there."""
    c = config
    if not c.prenorm:
        raise ConfigError("prenorm=False (post-LN) has no HuggingFace counterpart")
    if c.pos == "learned" and c.norm == "layernorm" and c.mlp not in ("swiglu", "geglu"):
        _only_defaults(c, "GPT-2", ("logit_softcap",))
        if not c.bias:
            raise ConfigError("bias=False: HuggingFace GPT-2 always has biases")
        if c.n_kv_head != c.n_head:
            raise ConfigError(f"n_kv_head={c.n_kv_head} != n_head={c.n_head}: HuggingFace GPT-2 "
                              "has no grouped-query attention")
        return "gpt2"
    if not (c.pos == "rope" and c.norm == "rmsnorm" and c.mlp in ("swiglu", "geglu")):
        raise ConfigError(f"pos={c.pos!r}, norm={c.norm!r}, mlp={c.mlp!r} match neither GPT-2 "
                          "(learned, layernorm, gelu/relu) nor LLaMA (rope, rmsnorm, swiglu/geglu)")
    if c.rope_layout != "half":
        raise ConfigError(f"rope_layout={c.rope_layout!r}: HuggingFace LLaMA uses 'half'")
    gemma = ("norm_plus_one", "sandwich_norm", "embed_scale", "rope_local_theta",
             "attn_scalar", "logit_softcap")
    if c.mlp == "geglu" or any(getattr(c, n) not in (False, None) for n in gemma):
        _need(c, "Gemma 3", mlp="geglu", norm_plus_one=True, sandwich_norm=True,
              embed_scale=True, qk_norm=True, bias=False, rope_layers=None)
        if c.qkv_bias:
            raise ConfigError("qkv_bias=True: Gemma 3 has no q/k/v-only biases")
        return "gemma3_text"
    sliding = c.layer_types is not None and "s" in c.layer_types
    if c.qk_norm:
        _need(c, "Qwen3", bias=False, rope_layers=None)
        if c.qkv_bias:
            raise ConfigError("qkv_bias=True: Qwen3's q/k norm layout has no q/k/v-only biases")
        return "qwen3"
    if c.qkv_bias and not c.bias:
        _need(c, "Qwen2", rope_layers=None)
        return "qwen2"
    if c.qkv_bias is not None and c.qkv_bias != c.bias:
        raise ConfigError(f"qkv_bias={c.qkv_bias} with bias={c.bias}: no HuggingFace family has "
                          "biases on o_proj and the MLP but not on q, k, v")
    if c.rope_layers is not None:
        return "smollm3"
    if sliding and c.layer_types == "s" * c.n_layer and not c.bias:
        return "mistral"                       # a Llama whose every layer slides
    if sliding:
        raise ConfigError(f"layer_types={c.layer_types!r}: sliding layers in a Llama layout "
                          "have no HuggingFace counterpart (Mistral slides every layer and has "
                          "no biases; Qwen2/3, SmolLM3 and Gemma 3 choose layers)")
    return "llama"


def _need(c: GPTConfig, name: str, **want):
    for field, value in want.items():
        if getattr(c, field) != value:
            raise ConfigError(f"{field}={getattr(c, field)!r}: HuggingFace {name}, which the other "
                              f"fields ask for, has {field}={value!r}")


def _only_defaults(c: GPTConfig, name: str, fields=()):
    """GPT-2 knows none of the fields the LLaMA families added."""
    defaults = GPTConfig()
    for field in ("head_dim", "qkv_bias", "qk_norm", "norm_plus_one", "sandwich_norm",
                  "embed_scale", "attn_scalar", "sliding_window", "layer_types", "rope_layers",
                  "rope_local_theta", *fields):
        if getattr(c, field) != getattr(defaults, field):
            raise ConfigError(f"{field}={getattr(c, field)!r}: HuggingFace {name} has no such "
                              "option")


def _number(x: float):
    """An integral float as an int (transformers types query_pre_attn_scalar as int)."""
    return int(x) if float(x).is_integer() else x


def family(config: GPTConfig) -> str:
    """``"gpt2"`` or ``"llama"``: whose tensor names the checkpoint uses (every LLaMA-family
    model_type uses Llama's), or ConfigError naming the first field that has no counterpart."""
    return "gpt2" if model_type(config) == "gpt2" else "llama"


_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def config_to_hf(config: GPTConfig, token_ids: dict | None = None) -> dict:
    """A ``config.json`` dict that transformers builds the same model from.

    ``token_ids``: bos/eos/pad ids to record (those of the checkpoint the model was loaded
    from); absent ones are written null, so transformers assumes no family default.
    """
    c = config
    kind = model_type(c)
    common = dict(vocab_size=c.vocab_size, tie_word_embeddings=c.tie_embeddings,
                  initializer_range=c.init_std, torch_dtype=c.dtype, use_cache=True,
                  **{k: (token_ids or {}).get(k) for k in _TOKEN_IDS})
    if kind == "gpt2":
        act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "relu2": "relu2"}[c.mlp]
        return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_positions=c.block_size,
                    n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                    n_inner=None if c.mlp_hidden == 4 * c.n_embd else c.mlp_hidden,
                    activation_function=act, layer_norm_epsilon=c.norm_eps,
                    resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                    scale_attn_weights=True, **common)
    rope = {"rope_type": c.rope_scaling if c.rope_scaling != "none" else "default",
            "rope_theta": c.rope_theta}
    if c.rope_scaling != "none":
        rope["factor"] = c.rope_factor
    if c.rope_scaling == "llama3":
        rope.update(low_freq_factor=c.rope_low_freq_factor,
                    high_freq_factor=c.rope_high_freq_factor,
                    original_max_position_embeddings=c.rope_original_context)
    L = range(c.n_layer)
    types = [{"f": "full_attention", "s": "sliding_attention"}[c.layer_type(i)] for i in L]
    sliding = "sliding_attention" in types
    out = dict(model_type=kind, architectures=[_ARCHITECTURES[kind]], hidden_size=c.n_embd,
               intermediate_size=c.mlp_hidden, num_hidden_layers=c.n_layer,
               num_attention_heads=c.n_head, num_key_value_heads=c.n_kv_head,
               head_dim=c.head_size, max_position_embeddings=c.block_size,
               rms_norm_eps=c.norm_eps, attention_dropout=c.dropout, **common)
    if kind == "gemma3_text":
        local = {"rope_type": "default", "rope_theta": c.rope_local_theta or c.rope_theta}
        return dict(out, hidden_activation="gelu_pytorch_tanh", attention_bias=False,
                    rope_parameters={"full_attention": rope, "sliding_attention": local},
                    query_pre_attn_scalar=_number(c.attn_scalar or c.head_size),
                    sliding_window=c.sliding_window or c.block_size, layer_types=types,
                    final_logit_softcapping=c.logit_softcap, attn_logit_softcapping=None,
                    use_bidirectional_attention=False)
    out.update(hidden_act="silu", rope_parameters=rope)
    if kind == "mistral":
        return dict(out, sliding_window=c.sliding_window)
    if kind != "llama":
        out.update(use_sliding_window=sliding, sliding_window=c.sliding_window if sliding else None,
                   layer_types=types)
    if kind in ("qwen2", "qwen3"):
        out.update(max_window_layers=c.n_layer)   # unused: layer_types is given
    if kind in ("llama", "smollm3", "qwen3"):
        out.update(attention_bias=c.bias)
    if kind in ("llama", "smollm3"):
        out.update(mlp_bias=c.bias)
    if kind == "smollm3":
        out.update(no_rope_layers=[int(c.layer_rope(i)) for i in L])
    return out
