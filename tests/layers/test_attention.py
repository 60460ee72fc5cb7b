import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, ConfigError, InputError
from npgpt.kernels.softmax import causal_mask, masked_softmax, masked_softmax_backward
from npgpt.layers.attention import CrossAttention, MultiHeadAttention
from npgpt.layers.kv_cache import KVCache
from npgpt.layers.sdpa import ScaledDotProductAttention
from npgpt.layers.rope import RotaryEmbedding


def randomize(module, rng):
    """Weights of std 1/sqrt(fan_in): unit-size activations, so gradients are not tiny."""
    for _, p in module.named_parameters():
        p.data[...] = rng.standard_normal(p.shape) / np.sqrt(p.shape[0])


def padding_mask(rng, B, S, left=False):
    """Random (B, S) real-token mask; some rows may be entirely padding."""
    lengths = rng.integers(0, S + 1, size=B)
    pos = np.arange(S)[None]
    return pos >= S - lengths[:, None] if left else pos < lengths[:, None]


@st.composite
def head_config(draw, even_hs=False):
    """(H, Hkv, hs): H in 1..4, Hkv dividing H, hs in 1..8 (even when RoPE needs it)."""
    H = draw(st.integers(1, 4))
    Hkv = draw(st.sampled_from([d for d in range(1, H + 1) if H % d == 0]))
    hs = draw(st.sampled_from([2, 4, 6, 8] if even_hs else list(range(1, 9))))
    return H, Hkv, hs


# --- masked softmax -------------------------------------------------------------------------
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
       scale=st.sampled_from([1.0, 30.0, 1000.0]), seed=st.integers(0, 2**31))
def test_masked_softmax_is_softmax_over_allowed_entries(shape, scale, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(shape) * scale
    mask = rng.random(shape) < 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = masked_softmax(scores, mask)
    assert np.all(np.isfinite(p))
    assert np.all(p[~mask] == 0)
    rows = mask.any(-1)
    np.testing.assert_allclose(p.sum(-1)[rows], 1.0, atol=1e-12)
    assert np.all(p.sum(-1)[~rows] == 0)
    for idx in zip(*np.nonzero(rows)):
        s = scores[idx][mask[idx]]
        e = np.exp(s - s.max())
        np.testing.assert_allclose(p[idx][mask[idx]], e / e.sum(), rtol=1e-12, atol=1e-300)


def test_masked_softmax_without_mask_and_fully_masked_rows(rng):
    scores = rng.standard_normal((3, 5))
    e = np.exp(scores)
    np.testing.assert_allclose(masked_softmax(scores), e / e.sum(-1, keepdims=True), rtol=1e-12)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = masked_softmax(scores.astype(np.float32), mask)
    assert p.dtype == np.float32
    assert np.all(p[1] == 0) and not np.any(np.isnan(p))
    np.testing.assert_allclose(masked_softmax(np.array([[1.0, 2, 3]]), np.array([[1, 1, 0]], bool)),
                               [[0.26894142, 0.73105858, 0.0]], atol=1e-8)


def test_masked_softmax_backward_matches_finite_differences(rng):
    scores = rng.standard_normal((2, 4, 5))
    mask = rng.random((2, 4, 5)) < 0.7
    mask[0, 1] = False
    g = rng.standard_normal(scores.shape)
    analytic = masked_softmax_backward(masked_softmax(scores, mask), g)
    numeric = np.zeros_like(scores)
    for i in np.ndindex(scores.shape):
        d = np.zeros_like(scores)
        d[i] = 1e-6
        numeric[i] = ((masked_softmax(scores + d, mask) - masked_softmax(scores - d, mask)) * g
                      ).sum() / 2e-6
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)


def test_causal_mask_aligns_queries_to_the_last_positions():
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(causal_mask(2, 3), [[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(causal_mask(1, 4), [[1, 1, 1, 1]])


# --- scaled dot-product attention -----------------------------------------------------------
@given(B=st.integers(1, 5), T=st.integers(1, 5), extra=st.integers(0, 3), heads=head_config(),
       causal=st.booleans(), padded=st.booleans(), seed=st.integers(0, 2**31))
def test_sdpa_gradcheck(B, T, extra, heads, causal, padded, seed):
    H, Hkv, hs = heads
    S = T + extra
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, T, hs))
    k, v = rng.standard_normal((2, B, Hkv, S, hs))
    mask = padding_mask(rng, B, S, left=bool(seed % 2)) if padded else None
    sdpa = ScaledDotProductAttention(causal=causal, dtype=np.float64)
    gradcheck(sdpa, q, k, v, mask, seed=seed % 1000)


def torch_sdpa(torch, q, k, v, causal, mask):
    """torch's attention with our conventions: bottom-right causal, (B, S) key padding."""
    T, S = q.shape[2], k.shape[2]
    allowed = torch.ones(q.shape[0], 1, T, S, dtype=torch.bool)
    if causal:
        allowed &= torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T)
    if mask is not None:
        allowed &= torch.tensor(mask)[:, None, None, :]
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=allowed, enable_gqa=q.shape[1] != k.shape[1])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("H,Hkv,T,S", [(1, 1, 1, 1), (4, 4, 5, 5), (4, 2, 3, 7), (3, 1, 4, 4),
                                       (2, 2, 1, 6)])
def test_sdpa_matches_torch_forward_and_backward(causal, padded, H, Hkv, T, S, rng):
    torch = pytest.importorskip("torch")
    B, hs = 3, 8
    q = rng.standard_normal((B, H, T, hs))
    k, v = rng.standard_normal((2, B, Hkv, S, hs))
    mask = None
    if padded:        # torch gives NaN on rows with no key; keep key 0 real so none is empty
        mask = padding_mask(rng, B, S)
        mask[:, 0] = True
    dy = rng.standard_normal((B, H, T, hs))
    sdpa = ScaledDotProductAttention(causal=causal, dtype=np.float64)
    y = sdpa(q, k, v, mask)
    dq, dk, dv = sdpa.backward(dy)

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    ty = torch_sdpa(torch, tq, tk, tv, causal, mask)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dq, tq.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dk, tk.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dv, tv.grad.numpy(), rtol=0, atol=1e-12)


def test_sdpa_causal_square_matches_torch_is_causal(rng):
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((3, 2, 3, 6, 4))
    y = ScaledDotProductAttention(causal=True, dtype=np.float64)(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a) for a in (q, k, v)), is_causal=True)
    np.testing.assert_allclose(y, ref.numpy(), rtol=0, atol=1e-12)


def test_sdpa_fully_masked_rows_give_zeros_not_nan(rng):
    q, k, v = rng.standard_normal((3, 2, 2, 4, 3))
    mask = np.array([[False, False, True, True], [True, True, True, True]])
    sdpa = ScaledDotProductAttention(causal=True, dtype=np.float64, keep_weights=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sdpa(q, k, v, mask)
        dq, dk, dv = sdpa.backward(np.ones_like(y))
    # batch 0: queries 0 and 1 see only keys 0..1, which are padding
    assert np.all(y[0, :, :2] == 0) and np.all(np.isfinite(y))
    assert np.all(dq[0, :, :2] == 0) and np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))
    assert np.all(sdpa.weights[0, :, :2] == 0)
    np.testing.assert_allclose(sdpa.weights[0, :, 2:].sum(-1), 1.0)


def test_sdpa_keep_weights_shows_the_causal_matrix(rng):
    q, k, v = rng.standard_normal((3, 2, 3, 5, 4)).astype(np.float32)
    sdpa = ScaledDotProductAttention(causal=True, keep_weights=True)
    sdpa(q, k, v)
    w = sdpa.weights
    assert w.shape == (2, 3, 5, 5) and w.dtype == np.float32
    assert np.all(np.triu(np.ones((5, 5), bool), 1) <= (w == 0))
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[..., 0, 0], 1.0)


def test_sdpa_dropout_backward_uses_the_forward_mask(rng):
    B, H, T, hs = 2, 2, 4, 3
    q, k, v = rng.standard_normal((3, B, H, T, hs))
    g = rng.standard_normal((B, H, T, hs))
    sdpa = ScaledDotProductAttention(causal=True, dropout=0.3, dtype=np.float64)

    def f(q_):  # the same dropout mask every call
        sdpa._rng = np.random.default_rng(7)
        return (sdpa.attend(q_, k, v, training=True)[0] * g).sum()

    sdpa._rng = np.random.default_rng(7)
    y = sdpa(q, k, v)
    dq = sdpa.backward(g)[0]
    assert not np.allclose(y, ScaledDotProductAttention(causal=True, dtype=np.float64)(q, k, v))
    numeric = np.zeros_like(q)
    for i in np.ndindex(q.shape):
        d = np.zeros_like(q)
        d[i] = 1e-6
        numeric[i] = (f(q + d) - f(q - d)) / 2e-6
    np.testing.assert_allclose(dq, numeric, atol=1e-8)
    with no_grad():   # inference: no dropout
        y_eval = sdpa(q, k, v)
    np.testing.assert_allclose(y_eval, ScaledDotProductAttention(dtype=np.float64)(q, k, v))


def test_sdpa_errors(rng):
    sdpa = ScaledDotProductAttention()
    q = np.zeros((1, 2, 3, 4), np.float32)
    with pytest.raises(InputError, match="T <= S"):
        sdpa(q, q[:, :, :2], q[:, :, :2])
    with pytest.raises(InputError, match="multiple of Hkv"):
        sdpa(np.zeros((1, 3, 3, 4), np.float32), q, q)
    with pytest.raises(InputError, match="do not match"):
        sdpa(q, q[..., :3], q)
    with pytest.raises(InputError, match="one dtype"):
        sdpa(q, q.astype(np.float64), q)
    with pytest.raises(InputError, match=r"\(B, S\) = \(1, 3\)"):
        sdpa(q, q, q, np.ones((1, 4), bool))
    with pytest.raises(InputError, match="bool"):
        sdpa(q, q, q, np.ones((1, 3)))
    with pytest.raises(ConfigError, match="dropout=1.5"):
        ScaledDotProductAttention(dropout=1.5)
    with pytest.raises(BackwardError):
        ScaledDotProductAttention().backward(q)
    # integer 0/1 masks (HuggingFace's attention_mask) mean the same as bool ones
    x = rng.standard_normal((1, 2, 3, 4))
    s64 = ScaledDotProductAttention(dtype=np.float64)
    np.testing.assert_array_equal(s64(x, x, x, np.array([[1, 1, 0]])),
                                  s64(x, x, x, np.array([[True, True, False]])))


# --- multi-head attention -------------------------------------------------------------------
@given(data=st.data(), B=st.integers(1, 5), T=st.integers(1, 5),
       rope=st.sampled_from([None, "half", "interleaved"]), causal=st.booleans(),
       padded=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_mha_gradcheck(data, B, T, rope, causal, padded, bias, seed):
    H, Hkv, hs = data.draw(head_config(even_hs=rope is not None))
    rng = np.random.default_rng(seed)
    C = H * hs
    rotary = RotaryEmbedding(hs, layout=rope, dtype=np.float64) if rope else None
    mha = MultiHeadAttention(C, H, Hkv, bias=bias, causal=causal, rope=rotary,
                             dtype=np.float64, rng=rng)
    randomize(mha, rng)
    x = rng.standard_normal((B, T, C))
    mask = padding_mask(rng, B, T) if padded else None
    positions = np.arange(3, 3 + T) if seed % 3 == 0 else None
    gradcheck(mha, x, seed=seed % 1000,
              forward_kwargs={"key_padding_mask": mask, "positions": positions})


def test_mha_parameters_are_gpt2s_c_attn_and_c_proj(rng):
    mha = MultiHeadAttention(12, 3, rng=rng, proj_std=0.5)
    assert [(n, p.shape) for n, p in mha.named_parameters()] == [
        ("c_attn.weight", (12, 36)), ("c_attn.bias", (36,)),
        ("c_proj.weight", (12, 12)), ("c_proj.bias", (12,))]
    assert [n for n, _ in mha.named_children()] == ["c_attn", "c_proj"]
    assert 0.3 < mha.c_proj.weight.data.std() < 0.7
    gqa = MultiHeadAttention(16, 4, n_kv_head=2, bias=False, rng=rng,
                             rope=RotaryEmbedding(4))
    assert [(n, p.shape) for n, p in gqa.named_parameters()] == [
        ("c_attn.weight", (16, 32)), ("c_proj.weight", (16, 16))]


def test_mha_gqa_equals_mha_with_repeated_kv_heads(rng):
    """A GQA layer is an MHA layer whose k/v weights repeat each k/v head over its group."""
    B, T, H, Hkv, hs = 2, 5, 4, 2, 3
    C, G = H * hs, H // Hkv
    gqa = MultiHeadAttention(C, H, Hkv, dtype=np.float64, rng=rng)
    randomize(gqa, rng)
    mha = MultiHeadAttention(C, H, dtype=np.float64, rng=rng)
    W, b = gqa.c_attn.weight.data, gqa.c_attn.bias.data

    def repeat(a, start):   # the k or v block, each head repeated G times (repeat_kv)
        block = a[..., start * hs:(start + Hkv) * hs]
        return np.repeat(block.reshape(*a.shape[:-1], Hkv, hs), G, axis=-2).reshape(
            *a.shape[:-1], C)

    mha.c_attn.weight.data[...] = np.concatenate([W[:, :C], repeat(W, H), repeat(W, H + Hkv)], 1)
    mha.c_attn.bias.data[...] = np.concatenate([b[:C], repeat(b, H), repeat(b, H + Hkv)])
    mha.c_proj.weight.data[...] = gqa.c_proj.weight.data
    mha.c_proj.bias.data[...] = gqa.c_proj.bias.data
    x = rng.standard_normal((B, T, C))
    np.testing.assert_allclose(gqa(x), mha(x), atol=1e-12)
    # and its k/v gradient is the group sum of the repeated layer's
    dy = rng.standard_normal((B, T, C))
    np.testing.assert_allclose(gqa.backward(dy), mha.backward(dy), atol=1e-12)
    dW = mha.c_attn.weight.grad
    summed = lambda s: dW[:, s * hs:(s + H) * hs].reshape(C, Hkv, G, hs).sum(2).reshape(C, -1)
    np.testing.assert_allclose(gqa.c_attn.weight.grad[:, C:C + Hkv * hs], summed(H), atol=1e-12)
    np.testing.assert_allclose(gqa.c_attn.weight.grad[:, C + Hkv * hs:], summed(2 * H), atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("H,Hkv,rope", [(4, 4, None), (4, 2, "half"), (4, 1, "interleaved"),
                                        (2, 2, "half")])
@pytest.mark.parametrize("prefill", [1, 3])
def test_kv_cache_decoding_matches_full_forward(dtype, tol, H, Hkv, rope, prefill, rng):
    B, T, hs = 2, 7, 4
    C = H * hs
    rotary = RotaryEmbedding(hs, layout=rope, dtype=dtype) if rope else None
    mha = MultiHeadAttention(C, H, Hkv, rope=rotary, dtype=dtype, rng=rng)
    randomize(mha, rng)
    x = rng.standard_normal((B, T, C)).astype(dtype)
    mha.eval()
    full = mha(x)
    cache = KVCache(B, Hkv, max_len=T + 2, head_dim=hs, dtype=dtype)
    steps = [mha(x[:, :prefill], kv_cache=cache)]
    for t in range(prefill, T):
        steps.append(mha(x[:, t:t + 1], kv_cache=cache))
    incremental = np.concatenate(steps, axis=1)
    assert incremental.dtype == dtype and cache.length == T
    np.testing.assert_allclose(incremental, full, rtol=tol, atol=tol)


def test_kv_cache_decoding_with_left_padding_matches_full_forward(rng):
    B, T, H, hs = 3, 6, 2, 4
    mha = MultiHeadAttention(H * hs, H, rope=RotaryEmbedding(hs, dtype=np.float64),
                             dtype=np.float64, rng=rng).eval()
    randomize(mha, rng)
    x = rng.standard_normal((B, T, H * hs))
    mask = padding_mask(rng, B, T, left=True)
    full = mha(x, key_padding_mask=mask)
    cache = KVCache(B, H, T, hs, dtype=np.float64)
    steps = [mha(x[:, t:t + 1], key_padding_mask=mask[:, :t + 1], kv_cache=cache)
             for t in range(T)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-12)


def test_kv_cache_append_crop_reset_and_overflow(rng):
    cache = KVCache(2, 3, max_len=4, head_dim=5, dtype=np.float64)
    k, v = rng.standard_normal((2, 2, 3, 3, 5))
    ks, vs = cache.append(k, v)
    assert cache.length == 3 and ks.shape == (2, 3, 3, 5)
    assert np.shares_memory(ks, cache.k)
    np.testing.assert_array_equal(ks, k)
    np.testing.assert_array_equal(vs, v)
    with pytest.raises(InputError, match="overflow: 3 cached \\+ 3 new positions > max_len=4"):
        cache.append(k, v)
    assert cache.length == 3
    cache.crop(1)
    ks, _ = cache.append(k[:, :, :2], v[:, :, :2])
    np.testing.assert_array_equal(ks[:, :, 1:], k[:, :, :2])
    with pytest.raises(InputError, match="crop"):
        cache.crop(5)
    cache.reset()
    assert cache.length == 0
    with pytest.raises(InputError, match=r"\(2, 3, T, 5\)"):
        cache.append(k[:1], v[:1])
    with pytest.raises(InputError, match="float64"):
        cache.append(k.astype(np.float32), v.astype(np.float32))
    with pytest.raises(ConfigError, match="max_len=0"):
        KVCache(1, 1, 0, 4)


def test_mha_errors(rng):
    with pytest.raises(ConfigError, match="n_embd=100 is not divisible by n_head=3"):
        MultiHeadAttention(100, 3)
    with pytest.raises(ConfigError, match="n_head=4 is not divisible by n_kv_head=3"):
        MultiHeadAttention(16, 4, n_kv_head=3)
    with pytest.raises(ConfigError, match="head_dim=8"):
        MultiHeadAttention(16, 4, rope=RotaryEmbedding(8))
    mha = MultiHeadAttention(8, 2, rng=rng)
    with pytest.raises(InputError, match="C=8"):
        mha(np.zeros((1, 3, 6), np.float32))
    with pytest.raises(BackwardError):
        mha.backward(np.zeros((1, 3, 8), np.float32))
    cache = KVCache(1, 2, 4, 4)
    y = mha(np.zeros((1, 3, 8), np.float32), kv_cache=cache)
    with pytest.raises(BackwardError, match="KV cache"):
        mha.backward(y)
    with pytest.raises(InputError, match="overflow"):
        mha(np.zeros((1, 2, 8), np.float32), kv_cache=cache)
    mha(np.zeros((1, 3, 8), np.float32))
    mha.eval()                       # inference mode drops what the last forward kept
    with pytest.raises(BackwardError):
        mha.backward(y)


def test_mha_keep_weights(rng):
    mha = MultiHeadAttention(8, 2, rng=rng, keep_weights=True)
    mha(rng.standard_normal((3, 4, 8)).astype(np.float32))
    assert mha.weights.shape == (3, 2, 4, 4)
    assert np.all(mha.weights[..., 0, 1:] == 0)


def test_mha_float32_stays_float32(rng):
    mha = MultiHeadAttention(16, 4, n_kv_head=2, rope=RotaryEmbedding(4), dropout=0.1, rng=rng)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    y = mha(x, key_padding_mask=np.ones((2, 5), bool))
    assert y.dtype == np.float32
    assert mha.backward(y).dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in mha.parameters())
    cross = CrossAttention(16, 4, rng=rng)
    y = cross(x, x[:, :3])
    dx, dm = cross.backward(y)
    assert y.dtype == dx.dtype == dm.dtype == np.float32


def test_mha_matches_transformers_gpt2_attention(rng):
    torch = pytest.importorskip("torch")
    gpt2 = pytest.importorskip("transformers.models.gpt2.modeling_gpt2")
    from transformers import GPT2Config
    config = GPT2Config(n_embd=12, n_head=3, n_positions=8, attn_pdrop=0.0, resid_pdrop=0.0)
    config._attn_implementation = "eager"
    ref = gpt2.GPT2Attention(config, layer_idx=0).double().eval()
    mha = MultiHeadAttention(12, 3, dtype=np.float64, rng=rng)
    randomize(mha, rng)
    with torch.no_grad():
        for name, p in mha.named_parameters():   # GPT-2's Conv1D stores (in, out) too
            ref.get_parameter(name).copy_(torch.tensor(p.data))
    x = rng.standard_normal((2, 6, 12))
    tx = torch.tensor(x, requires_grad=True)
    # transformers builds the causal mask at the model level and passes it in, additively
    T = x.shape[1]
    causal = torch.full((T, T), -torch.inf, dtype=torch.float64).triu(1)[None, None]
    ty = ref(tx, attention_mask=causal)[0]
    dy = rng.standard_normal(x.shape)
    ty.backward(torch.tensor(dy))
    y = mha(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(mha.backward(dy), tx.grad.numpy(), atol=1e-12)
    for name, p in mha.named_parameters():
        np.testing.assert_allclose(p.grad, ref.get_parameter(name).grad.numpy(), atol=1e-12)


# --- cross-attention ------------------------------------------------------------------------
@given(B=st.integers(1, 5), T=st.integers(1, 5), S=st.integers(1, 5), H=st.integers(1, 4),
       hs=st.integers(1, 8), padded=st.booleans(), seed=st.integers(0, 2**31))
def test_cross_attention_gradcheck(B, T, S, H, hs, padded, seed):
    rng = np.random.default_rng(seed)
    C = H * hs
    cross = CrossAttention(C, H, dtype=np.float64, rng=rng)
    randomize(cross, rng)
    x, memory = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    mask = padding_mask(rng, B, S) if padded else None
    gradcheck(cross, x, memory, seed=seed % 1000, forward_kwargs={"memory_padding_mask": mask})


def test_cross_attention_matches_torch(rng):
    torch = pytest.importorskip("torch")
    B, T, S, H, hs = 2, 3, 5, 2, 4
    C = H * hs
    cross = CrossAttention(C, H, dtype=np.float64, rng=rng)
    randomize(cross, rng)
    x, memory = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    heads = lambda a: a.reshape(B, -1, H, hs).transpose(1, 2)
    q = heads(torch.tensor(x @ cross.q_proj.weight.data + cross.q_proj.bias.data))
    kv = torch.tensor(memory @ cross.kv_proj.weight.data + cross.kv_proj.bias.data)
    y = torch.nn.functional.scaled_dot_product_attention(
        q, heads(kv[..., :C]), heads(kv[..., C:]), attn_mask=torch.tensor(mask)[:, None, None])
    ref = y.transpose(1, 2).reshape(B, T, C).numpy() @ cross.c_proj.weight.data \
        + cross.c_proj.bias.data
    np.testing.assert_allclose(cross(x, memory, mask), ref, atol=1e-12)


def test_cross_attention_errors(rng):
    cross = CrossAttention(8, 2, rng=rng)
    assert [n for n, _ in cross.named_children()] == ["q_proj", "kv_proj", "c_proj"]
    assert cross.kv_proj.weight.shape == (8, 16)
    with pytest.raises(InputError, match="batch size 2 but memory has 3"):
        cross(np.zeros((2, 3, 8), np.float32), np.zeros((3, 4, 8), np.float32))
    with pytest.raises(InputError, match="memory of shape"):
        cross(np.zeros((2, 3, 8), np.float32), np.zeros((2, 4, 6), np.float32))
    with pytest.raises(ConfigError, match="n_embd=10 is not divisible by n_head=4"):
        CrossAttention(10, 4)


def test_mha_with_rope_and_gqa_matches_transformers_llama_attention(rng):
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    B, T, H, Hkv, hs = 2, 6, 4, 2, 4
    C = H * hs
    config = LlamaConfig(hidden_size=C, num_attention_heads=H, num_key_value_heads=Hkv,
                         max_position_embeddings=16, rope_theta=500.0, attention_bias=False)
    config._attn_implementation = "sdpa"     # eager does its softmax in float32
    ref = llama.LlamaAttention(config, layer_idx=0).double().eval()
    mha = MultiHeadAttention(C, H, Hkv, bias=False, rope=RotaryEmbedding(hs, base=500.0),
                             dtype=np.float64, rng=rng)
    randomize(mha, rng)
    W = mha.c_attn.weight.data       # (C, (H + 2 Hkv) hs) = [q | k | v], torch stores (out, in)
    with torch.no_grad():
        ref.q_proj.weight.copy_(torch.tensor(W[:, :C].T))
        ref.k_proj.weight.copy_(torch.tensor(W[:, C:C + Hkv * hs].T))
        ref.v_proj.weight.copy_(torch.tensor(W[:, C + Hkv * hs:].T))
        ref.o_proj.weight.copy_(torch.tensor(mha.c_proj.weight.data.T))
    x = rng.standard_normal((B, T, C))
    positions = np.arange(5, 5 + T)
    tx = torch.tensor(x)
    # LlamaRotaryEmbedding computes its angles in float32 (1e-7 off in float64): build the
    # cos/sin it would give in float64, in its own concatenated [theta, theta] layout
    theta = 500.0 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    angles = torch.outer(torch.tensor(positions, dtype=torch.float64), theta)
    emb = torch.cat([angles, angles], dim=-1)[None].expand(B, T, hs)
    cos_sin = (emb.cos(), emb.sin())
    causal = torch.full((T, T), -torch.inf, dtype=torch.float64).triu(1)[None, None]
    y_ref = ref(tx, position_embeddings=cos_sin, attention_mask=causal)[0]
    np.testing.assert_allclose(mha(x, positions=positions), y_ref.detach().numpy(), atol=1e-12)


def test_cross_attention_with_projected_memory_matches(rng):
    B, T, S, C = 2, 4, 3, 8
    cross = CrossAttention(C, 2, dtype=np.float64, rng=rng)
    x, memory = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    full = cross(x, memory, mask)
    memory_kv = cross.project_memory(memory)
    steps = [cross(x[:, t:t + 1], None, mask, memory_kv=memory_kv) for t in range(T)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-12)
    with pytest.raises(BackwardError, match="memory_kv"):
        cross.backward(full[:, -1:])
