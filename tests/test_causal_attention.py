"""The attention kernel over several query blocks (each skips the keys its queries cannot see)
equals its reference, and the attention layer gives the same gradients through it."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import gradcheck, kernels
from npgpt.errors import InputError
from npgpt.kernels import attention as ka
from npgpt.layers.attention import MultiHeadAttention


@settings(max_examples=20)
@given(B=st.integers(1, 5), H=st.integers(1, 4), T=st.integers(1, 40), hs=st.integers(1, 8),
       block=st.integers(1, 16), magnitude=st.sampled_from([1.0, 30.0, 1e3]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_blocked_causal_attention_matches_reference(B, H, T, hs, block, magnitude, dtype, seed):
    """Any query block, the last one short or not."""
    rng = np.random.default_rng(seed)
    # q and k large (huge logits), v ordinary; q a non-contiguous view
    q = (rng.standard_normal((B, T, H, hs)) * magnitude).astype(dtype).transpose(0, 2, 1, 3)
    k = (rng.standard_normal((B, H, T, hs)) * magnitude).astype(dtype)
    v = rng.standard_normal((B, H, T, hs)).astype(dtype)
    dout = rng.standard_normal((B, H, T, hs)).astype(dtype)
    out_ref, probs_ref = ka.attention_forward_ref(q, k, v, causal=True)
    out, probs = ka.attention_forward_numba(q, k, v, causal=True, block=block)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    assert out.dtype == probs.dtype == dtype
    np.testing.assert_allclose(probs, probs_ref, **tol)
    np.testing.assert_allclose(out, out_ref, **tol)
    assert np.all(np.triu(probs, 1) == 0)
    grads_ref = ka.attention_backward_ref(dout, q, k, v, probs_ref)
    grads = ka.attention_backward_numba(dout, q, k, v, probs, causal=True, block=block)
    scale = max(1.0, float(np.abs(grads_ref[0]).max()), float(np.abs(grads_ref[1]).max()))
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == dtype
        np.testing.assert_allclose(g / scale, g_ref / scale, **tol)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_attention_layer_over_several_blocks_matches_finite_differences(backend, rng):
    T = 70                                         # three 32-query blocks on the numba path
    mha = MultiHeadAttention(6, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, T, 6))
    with kernels.use(backend):
        gradcheck(mha, x, max_elements=12, seed=1)


def test_attention_layer_takes_the_blocked_kernel_with_the_same_result(rng):
    mha = MultiHeadAttention(16, 2, dtype=np.float32, rng=rng)
    x = rng.standard_normal((2, 100, 16)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = {}
    for backend in ("numba", "numpy"):
        mha.zero_grad()
        with kernels.use(backend):
            y = mha(x)
            dx = mha.backward(dy)
        results[backend] = y, dx, mha.c_attn.weight.grad.copy()
    for a, b in zip(results["numba"], results["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@settings(max_examples=20)
@given(B=st.integers(1, 3), H=st.integers(1, 3), T=st.integers(1, 30), extra=st.integers(0, 20),
       hs=st.integers(1, 8), block=st.integers(1, 16), causal=st.booleans(),
       padded=st.booleans(), seed=st.integers(0, 2**16))
def test_blocked_attention_with_masks_and_cache_matches_reference(B, H, T, extra, hs, block,
                                                                 causal, padded, seed):
    """T queries at the end of S = T + extra keys (a KV cache), causal or not, padded keys;
    strided inputs, and results written into strided views as the attention layer does."""
    rng = np.random.default_rng(seed)
    S = T + extra
    qkv = rng.standard_normal((B, S, 3, H, hs))
    q = qkv[:, extra:, 0].transpose(0, 2, 1, 3)
    k, v = qkv[:, :, 1].transpose(0, 2, 1, 3), qkv[:, :, 2].transpose(0, 2, 1, 3)
    dout = rng.standard_normal((B, H, T, hs))
    mask = rng.random((B, S)) < 0.3 if padded else None
    out_ref, probs_ref = ka.attention_forward_ref(q, k, v, causal, mask)
    y = np.empty((B, T, H, hs))
    out, probs = ka.attention_forward_numba(q, k, v, causal, mask, out=y.transpose(0, 2, 1, 3),
                                            block=block)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.transpose(0, 2, 1, 3), out_ref, rtol=1e-12, atol=1e-12)
    assert not np.isnan(probs).any()
    grads_ref = ka.attention_backward_ref(dout, q, k, v, probs_ref)
    dqkv = np.empty((B, S, 3, H, hs))
    dq = np.empty((B, H, T, hs))
    views = dq, dqkv[:, :, 1].transpose(0, 2, 1, 3), dqkv[:, :, 2].transpose(0, 2, 1, 3)
    ka.attention_backward_numba(dout, q, k, v, probs, None, causal, *views, block=block)
    for g, g_ref in zip(views, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_attention_kernel_refuses_a_bad_block(value, rng):
    q = rng.standard_normal((1, 2, 3, 4))
    with pytest.raises(InputError, match="block"):
        ka.attention_forward_numba(q, q, q, block=value)
    with pytest.raises(InputError, match="block"):
        ka.attention_backward_numba(q, q, q, q, np.ones((1, 2, 3, 3)), block=value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["every other column", "rows reversed"])
def test_attention_kernel_takes_and_fills_views_blas_cannot(dtype, layout, rng):
    """BLAS reads rows forwards with unit stride: other inputs are copied, other outputs are
    computed aside and copied into the given views."""
    B, H, T, hs = 2, 3, 9, 4
    # inputs from the first half of a wide array, results into its second half
    pick = {"every other column": lambda a, i: a[..., i::2],
            "rows reversed": lambda a, i: a[..., ::-1, i * hs:(i + 1) * hs]}[layout]
    wide = rng.standard_normal((4, B, H, T, 2 * hs)).astype(dtype)
    q, k, v, dout = (pick(w, 0) for w in wide)
    out_ref, probs_ref = ka.attention_forward_ref(q, k, v, causal=True)
    grads_ref = ka.attention_backward_ref(dout, q, k, v, probs_ref)
    into = np.full((4, B, H, T, 2 * hs), np.nan, dtype)
    views = [pick(a, 1) for a in into]
    out, probs = ka.attention_forward_numba(q, k, v, causal=True, out=views[0], block=4)
    grads = ka.attention_backward_numba(dout, q, k, v, probs, causal=True, dq=views[1],
                                        dk=views[2], dv=views[3], block=4)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, ref, view, i in zip((out, *grads), (out_ref, *grads_ref), views, range(4)):
        assert got.base is into                               # written where it was asked to be
        np.testing.assert_allclose(view, ref, rtol=tol, atol=tol)
        assert np.isnan(pick(into[i], 0)).all()               # and nowhere else


@pytest.mark.parametrize("T", [1, 2, 3])
@pytest.mark.parametrize("window", [None, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decoding_queries_against_a_long_cache_match_reference(T, window, dtype, rng,
                                                              monkeypatch):
    """A step of decoding (one or two queries a row: dot products, no BLAS) and three queries
    (BLAS), against 300 cached keys in a (B, S, H, hs) buffer, padded keys, a sliding window;
    serial and parallel."""
    from npgpt.runtime import jit as _jit
    B, H, S, hs = 2, 3, 300, 16
    cache = rng.standard_normal((B, 512, 2, H, hs)).astype(dtype)
    k, v = cache[:, :S, 0].transpose(0, 2, 1, 3), cache[:, :S, 1].transpose(0, 2, 1, 3)
    q = rng.standard_normal((B, H, T, hs)).astype(dtype)
    mask = rng.random((B, S)) < 0.9
    out_ref, probs_ref = ka.attention_forward_ref(q, k, v, True, mask, window=window)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for version in ("serial", "parallel"):
        monkeypatch.setattr(_jit.RowKernel, "pick", lambda self, n, v=version: getattr(self, v))
        out, probs = ka.attention_forward_numba(q, k, v, True, mask, window=window)
        np.testing.assert_allclose(probs, probs_ref, **tol)
        np.testing.assert_allclose(out, out_ref, **tol)
        if window:
            assert np.all(probs[..., :S - T - window + 1] == 0)


@pytest.mark.parametrize("T", [1, 2, 5])
def test_keys_given_as_the_first_positions_of_a_cache_buffer_read_only_those(T, rng):
    """k, v the first S positions of a (B, H, max_len, hs) buffer, as a KV cache hands them
    out: the kernel reads from the whole buffer, and never past S (NaN there would show)."""
    B, H, S, hs = 2, 3, 40, 16
    kbuf, vbuf = (np.full((B, H, 64, hs), np.nan, np.float32) for _ in range(2))
    kbuf[:, :, :S] = rng.standard_normal((B, H, S, hs))
    vbuf[:, :, :S] = rng.standard_normal((B, H, S, hs))
    k, v = kbuf[:, :, :S], vbuf[:, :, :S]
    assert ka._whole(k) is kbuf
    q = rng.standard_normal((B, H, T, hs)).astype(np.float32)
    out_ref, probs_ref = ka.attention_forward_ref(q, k, v, True)
    out, probs = ka.attention_forward_numba(q, k, v, True)
    assert probs.shape == (B, H, T, S)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)
    assert ka._whole(k[:, :, 1:]) is not kbuf and ka._whole(k[:, :2]) is not kbuf
