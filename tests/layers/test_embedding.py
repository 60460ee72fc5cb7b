import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, InputError
from npgpt.layers import Embedding, LearnedPositionalEmbedding

seeds = st.integers(0, 2**32 - 1)


@given(B=st.integers(1, 5), T=st.integers(1, 5), V=st.integers(1, 8), C=st.integers(1, 8),
       seed=seeds)
def test_embedding_gradients_match_finite_differences(B, T, V, C, seed):
    rng = np.random.default_rng(seed)
    layer = Embedding(V, C, dtype=np.float64, rng=rng, std=1.0)
    idx = rng.integers(0, V, size=(B, T))          # small V: repeated ids are the norm
    gradcheck(layer, idx)


def test_embedding_backward_scatter_adds_repeated_ids(rng):
    layer = Embedding(5, 3, dtype=np.float64, rng=rng)
    idx = np.array([[1, 4, 1], [1, 0, 4]])
    y = layer(idx)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y[0, 2], layer.weight.data[1])
    dy = rng.standard_normal((2, 3, 3))
    assert layer.backward(dy) is None
    expected = np.zeros((5, 3))
    for b in range(2):
        for t in range(3):
            expected[idx[b, t]] += dy[b, t]
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=1e-14)
    assert not layer.weight.grad[2].any() and not layer.weight.grad[3].any()


@pytest.mark.parametrize("bad", [7, -1, 100])
def test_embedding_rejects_ids_outside_vocabulary(bad):
    layer = Embedding(7, 2)
    with pytest.raises(InputError, match=rf"id {bad}\b.*V=7"):
        layer(np.array([[0, bad, 3]]))


def test_embedding_rejects_float_ids():
    with pytest.raises(InputError, match="integer"):
        Embedding(7, 2)(np.array([1.0, 2.0]))


def test_embedding_float32_stays_float32(rng):
    layer = Embedding(10, 4, rng=rng)
    y = layer(np.array([[1, 2, 3]]))
    layer.backward(np.ones_like(y))
    assert y.dtype == layer.weight.grad.dtype == np.float32


@given(B=st.integers(1, 5), T=st.integers(1, 5), C=st.integers(1, 8), extra=st.integers(0, 3),
       seed=seeds)
def test_learned_positions_gradients_match_finite_differences(B, T, C, extra, seed):
    rng = np.random.default_rng(seed)
    layer = LearnedPositionalEmbedding(T + extra, C, dtype=np.float64, rng=rng, std=1.0)
    report = gradcheck(layer, np.arange(T))
    assert report.max_error <= 1e-6


def test_learned_positions_backward_sums_leading_axes(rng):
    layer = LearnedPositionalEmbedding(6, 3, dtype=np.float64, rng=rng)
    y = layer(np.arange(4))
    assert y.shape == (4, 3)
    dy = rng.standard_normal((2, 4, 3))            # (B, T, C) after broadcasting over B
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad[:4], dy.sum(0), rtol=1e-14)
    assert not layer.weight.grad[4:].any()


def test_learned_positions_too_long_sequence_is_refused():
    layer = LearnedPositionalEmbedding(8, 4)
    layer(np.arange(8))                            # exactly block_size is fine
    with pytest.raises(InputError, match="sequence length 9 exceeds block_size=8"):
        layer(np.arange(9))


def test_learned_positions_need_a_1d_array():
    with pytest.raises(InputError, match=r"1-D.*\(2, 3\)"):
        LearnedPositionalEmbedding(8, 4)(np.zeros((2, 3), dtype=np.int64))


def test_embeddings_keep_no_cache_in_inference(rng):
    for layer, x in [(Embedding(5, 2, rng=rng), np.array([1, 2])),
                     (LearnedPositionalEmbedding(5, 2, rng=rng), np.arange(3))]:
        with no_grad():
            y = layer(x)
        with pytest.raises(BackwardError):
            layer.backward(np.ones_like(y))
        layer.eval()
        layer(x)
        with pytest.raises(BackwardError):
            layer.backward(np.ones_like(y))
