"""The pieces the Llama 3, Qwen2/3, SmolLM3 and Gemma 3 families add to the one GPT: each
gradient-checked (float64, drawn shapes) and its definition pinned on small cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import ConfigError, InputError
from npgpt.kernels.softmax import causal_mask
from npgpt.layers import GeGLU, MultiHeadAttention, RMSNorm, RotaryEmbedding
from npgpt.layers.rope import inverse_frequencies, llama3_inverse_frequencies
from npgpt.models import GPT, GPTConfig
from tests.helpers import MeanLoss

# one config per family's set of pieces, at sizes a gradient check can afford
FAMILIES = {
    "llama3": dict(rope_scaling="llama3", rope_factor=8.0, rope_original_context=16,
                   rope_theta=500.0, head_dim=6),
    "qwen2-sliding": dict(qkv_bias=True, sliding_window=2, layer_types="fs"),
    "qwen3": dict(qk_norm=True, head_dim=6),
    "smollm3-nope": dict(rope_layers="10"),
    "gemma3": dict(qk_norm=True, norm_plus_one=True, sandwich_norm=True, embed_scale=True,
                   mlp="geglu", head_dim=6, attn_scalar=5.0, sliding_window=2,
                   layer_types="sf", rope_local_theta=10.0, tie_embeddings=True),
}


def tiny(**kw):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_kv_head=1, n_embd=8,
                mlp_hidden=12, pos="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                tie_embeddings=False, dtype="float64")
    base.update(kw)
    return GPTConfig(**base)


def _jitter(module, rng):
    for p in module.parameters():      # norms off their init (so 1 + w shows), biases non-zero
        p.data += rng.normal(0, 0.2, p.shape)


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=3)
@given(B=st.integers(1, 2), T=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_family_gradients_match_finite_differences(family, B, T, seed):
    config = tiny(**FAMILIES[family])
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)
    _jitter(model, rng)
    idx, targets = rng.integers(0, config.vocab_size, size=(2, B, T))
    gradcheck(model, idx, max_elements=12, seed=seed)
    gradcheck(MeanLoss(model), idx, targets, max_elements=12, seed=seed)


@settings(max_examples=8)
@given(B=st.integers(1, 2), T=st.integers(1, 7), H=st.integers(1, 3), G=st.integers(1, 2),
       hs=st.sampled_from([2, 4, 6]), window=st.one_of(st.none(), st.integers(1, 4)),
       qk_norm=st.booleans(), plus_one=st.booleans(), rope=st.booleans(),
       seed=st.integers(0, 2**16))
def test_attention_with_qk_norm_head_dim_and_window_gradients(B, T, H, G, hs, window, qk_norm,
                                                              plus_one, rope, seed):
    rng = np.random.default_rng(seed)
    C = 5                                     # no relation to H * hs: the projections are not C x C
    attn = MultiHeadAttention(C, H * G, n_kv_head=H, bias=False, qkv_bias=True, head_dim=hs,
                              qk_norm=qk_norm, norm_plus_one=plus_one, scale=0.3, window=window,
                              rope=RotaryEmbedding(hs, 100.0, dtype=np.float64) if rope else None,
                              dtype=np.float64, rng=rng)
    assert attn.c_proj.weight.shape == (H * G * hs, C) and attn.c_proj.bias is None
    _jitter(attn, rng)
    gradcheck(attn, rng.standard_normal((B, T, C)), max_elements=20, seed=seed)


@settings(max_examples=6)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), C=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_plus_one_rmsnorm_and_geglu_gradients(shape, C, seed):
    rng = np.random.default_rng(seed)
    norm = RMSNorm(C, dtype=np.float64, plus_one=True)
    assert not norm.weight.data.any()                 # starts at 0: the identity scale 1
    _jitter(norm, rng)
    x = rng.standard_normal((*shape, C))
    ms = (x * x).mean(-1, keepdims=True)
    np.testing.assert_allclose(norm(x), x / np.sqrt(ms + 1e-6) * (1 + norm.weight.data), rtol=1e-12)
    gradcheck(norm, x, seed=seed)
    glu = GeGLU(C, 3, dtype=np.float64, rng=rng)
    gradcheck(glu, x, seed=seed)


def test_sliding_window_mask_keeps_the_last_w_keys_of_each_query():
    assert causal_mask(3, 3, 2).astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    # two queries at the end of five keys (a KV cache): positions 3 and 4
    assert causal_mask(2, 5, 2).astype(int).tolist() == [[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    i, j = np.indices((6, 6))
    np.testing.assert_array_equal(causal_mask(6, 6, 3), (j <= i) & (j > i - 3))


def test_sliding_window_attention_equals_attention_over_the_window_alone():
    rng = np.random.default_rng(0)
    attn = MultiHeadAttention(8, 2, window=3, dtype=np.float64, rng=rng)
    x = rng.standard_normal((1, 7, 8))
    y = attn(x)
    full = MultiHeadAttention(8, 2, dtype=np.float64, rng=rng)
    full.load_state_dict(attn.state_dict())
    for t in range(7):                 # query t alone with its keys t-2 .. t
        lo = max(0, t - 2)
        np.testing.assert_allclose(y[0, t], full(x[:, lo:t + 1])[0, -1], rtol=1e-12, atol=1e-15)


def test_llama3_frequencies_keep_divide_or_blend_by_wavelength():
    inv = inverse_frequencies(128, 500000.0)
    out = llama3_inverse_frequencies(inv, 8.0, 1.0, 4.0, 8192)
    wavelength = 2 * np.pi / inv
    fast, slow = wavelength < 8192 / 4, wavelength > 8192
    np.testing.assert_array_equal(out[fast], inv[fast])
    np.testing.assert_array_equal(out[slow], inv[slow] / 8)
    mid = ~fast & ~slow
    assert mid.sum() > 3
    s = (8192 / wavelength[mid] - 1) / 3
    np.testing.assert_allclose(out[mid], (1 - s) * inv[mid] / 8 + s * inv[mid], rtol=1e-15)
    assert np.all(np.diff(out) < 0)    # still one frequency per pair, in order


def test_embedding_scale_multiplies_the_embeddings_not_the_tied_head():
    scaled = GPT(tiny(embed_scale=True))
    plain = GPT(tiny())
    plain.load_state_dict(scaled.state_dict())
    plain.wte.weight.data *= np.sqrt(8)     # the scale inside the embedding table
    idx = np.array([[3, 4, 1]])
    np.testing.assert_allclose(scaled.forward(idx)[0], plain.forward(idx)[0], rtol=1e-12)
    tied = GPT(tiny(embed_scale=True, tie_embeddings=True))
    x = tied.ln_f(np.ones((1, 1, 8)))
    np.testing.assert_allclose(tied._head_forward(x), x @ tied.wte.weight.data.T, rtol=1e-15)


@pytest.mark.parametrize("change,field", [
    (dict(layer_types="fsf"), "layer_types"),
    (dict(layer_types="fx"), "layer_types"),
    (dict(layer_types="fs"), "sliding_window"),
    (dict(rope_layers="12"), "rope_layers"),
    (dict(pos="none", rope_layers="10"), "rope_layers"),
    (dict(pos="learned", rope_scaling="llama3"), "rope_scaling"),
    (dict(rope_scaling="yarn"), "rope_scaling"),
    (dict(rope_scaling="llama3", rope_low_freq_factor=4.0), "rope_high_freq_factor"),
    (dict(norm="layernorm", qk_norm=True), "qk_norm"),
    (dict(sandwich_norm=True, prenorm=False), "sandwich_norm"),
    (dict(head_dim=0), "head_dim"),
    (dict(sliding_window=0), "sliding_window"),
    (dict(attn_scalar=-1.0), "attn_scalar"),
    (dict(n_embd=9, head_dim=3, pos="rope"), "RoPE"),
])
def test_family_fields_refuse_combinations_that_mean_nothing(change, field):
    with pytest.raises(ConfigError, match=field):
        tiny(**change)


def test_window_needs_a_causal_attention():
    with pytest.raises(ConfigError, match="window"):
        MultiHeadAttention(8, 2, causal=False, window=2)
    from npgpt import kernels
    with pytest.raises(InputError, match="causal"):
        kernels.softmax_forward(np.zeros((1, 1, 2, 2)), False, None, 1.0, 2)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_count_params_counts_every_family_layout(family):
    from npgpt.models import count_params
    config = tiny(**FAMILIES[family])
    assert count_params(config)["total"] == GPT(config).num_parameters()


@pytest.mark.parametrize("family", ["gemma3", "qwen2-sliding"])
def test_run_with_cache_sees_the_window_the_scale_and_the_sandwich(family):
    import npgpt  # noqa: F401  (gives GPT its run_with_cache)
    from npgpt.layers.loss import softmax
    config = tiny(**FAMILIES[family])
    model = GPT(config)
    _jitter(model, np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, config.vocab_size, size=(2, 6))
    logits, cache = model.run_with_cache(idx, targets=idx, grads=True)
    np.testing.assert_allclose(logits, model.forward(idx)[0], rtol=1e-12)
    for i in range(config.n_layer):
        pattern, scores = cache[f"h.{i}.attn.pattern"], cache[f"h.{i}.attn.scores"]
        np.testing.assert_allclose(softmax(scores), pattern, rtol=1e-10, atol=1e-15)
        before_window = np.tril(pattern, -config.sliding_window)   # keys j <= i - W
        assert before_window.any() == (config.layer_type(i) == "f")
    comps, _ = cache.decompose_resid()
    np.testing.assert_allclose(comps.sum(0), cache[f"h.{config.n_layer - 1}.resid_post"],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("prompt", [1, 3, 70])
def test_window_only_kv_cache_decodes_as_the_full_forward_and_stays_small(prompt):
    config = tiny(**FAMILIES["gemma3"], block_size=128)
    model = GPT(config).eval()
    _jitter(model, np.random.default_rng(0))
    idx = np.random.default_rng(1).integers(0, config.vocab_size, size=(2, prompt + 80))
    full = model.forward(idx)[0]
    cache = model.new_kv_cache(2, idx.shape[1], window_only=True)
    steps = [model.forward(idx[:, :prompt], kv_cache=cache)[0]]
    steps += [model.forward(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(prompt, idx.shape[1])]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)
    sliding, global_ = cache                  # layer types "sf"
    assert sliding.window == 2 and sliding.length <= 2 + 63 and sliding.position == idx.shape[1]
    assert global_.window is None and global_.length == idx.shape[1]
    with pytest.raises(InputError, match="crop"):
        sliding.crop(0)
