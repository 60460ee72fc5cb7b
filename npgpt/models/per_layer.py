"""What a GPTConfig decides layer by layer, and the checks of the fields that decide it:
each layer's rotary embedding (two bases, scaled frequencies, or none), the sliding-window and
full layers, and the embedding scale (the Llama 3, Qwen2/3, SmolLM3 and Gemma 3 layouts).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..layers.rope import RotaryEmbedding, inverse_frequencies, llama3_inverse_frequencies


def check_family_fields(c) -> None:
    """The combinations of the per-layer and Gemma/Qwen/Llama 3 fields that mean something."""
    for name, letters in (("layer_types", "fs"), ("rope_layers", "01")):
        value = getattr(c, name)
        if value is not None and (len(value) != c.n_layer or set(value) - set(letters)):
            raise ConfigError(f"{name}={value!r} must have one of {', '.join(letters)} per layer "
                              f"(n_layer={c.n_layer} letters)")
    sliding = c.layer_types is not None and "s" in c.layer_types
    if sliding and c.sliding_window is None:
        raise ConfigError(f"layer_types={c.layer_types!r} has sliding layers: give sliding_window")
    if c.rope_layers is not None and c.pos != "rope":
        raise ConfigError(f"rope_layers={c.rope_layers!r} needs pos='rope'")
    if c.rope_scaling != "none" and c.pos != "rope":
        raise ConfigError(f"rope_scaling={c.rope_scaling!r} needs pos='rope'")
    if c.rope_scaling == "llama3" and not c.rope_high_freq_factor > c.rope_low_freq_factor:
        raise ConfigError(f"rope_high_freq_factor={c.rope_high_freq_factor} must be above "
                          f"rope_low_freq_factor={c.rope_low_freq_factor}")
    rms_only = [n for n in ("qk_norm", "norm_plus_one", "sandwich_norm") if getattr(c, n)]
    if rms_only and c.norm != "rmsnorm":
        raise ConfigError(f"{rms_only[0]}=True needs norm='rmsnorm'")
    if c.sandwich_norm and not c.prenorm:
        raise ConfigError("sandwich_norm=True is a pre-LN layout: it needs prenorm=True")


def embed_multiplier(config) -> float:
    """The embedding scale sqrt(n_embd) (callers round it to the model's dtype, as the
    reference implementation, transformers' Gemma, holds it in the weights' dtype)."""
    return float(np.sqrt(config.n_embd))


def layer_ropes(config, dtype) -> list:
    """Each layer's rotary embedding (shared objects; None for a layer without RoPE): sliding
    layers use ``rope_local_theta`` when given, every other layer rope_theta with its scaling."""
    c = config
    if c.pos != "rope":
        return [None] * c.n_layer
    inv_freq = inverse_frequencies(c.head_size, c.rope_theta)
    if c.rope_scaling == "linear":
        inv_freq = inv_freq / c.rope_factor
    elif c.rope_scaling == "llama3":
        inv_freq = llama3_inverse_frequencies(inv_freq, c.rope_factor, c.rope_low_freq_factor,
                                              c.rope_high_freq_factor, c.rope_original_context)
    full = RotaryEmbedding(c.head_size, base=c.rope_theta, layout=c.rope_layout, dtype=dtype,
                           inv_freq=inv_freq)
    local = full if c.rope_local_theta is None else RotaryEmbedding(
        c.head_size, base=c.rope_local_theta, layout=c.rope_layout, dtype=dtype)
    return [None if not c.layer_rope(i) else local if c.layer_type(i) == "s" else full
            for i in range(c.n_layer)]
