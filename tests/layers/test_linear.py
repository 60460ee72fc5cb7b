import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, InputError
from npgpt.layers import Linear


@given(B=st.integers(1, 5), T=st.integers(1, 5), n_in=st.integers(1, 8), n_out=st.integers(1, 8),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_gradients_match_finite_differences(B, T, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(n_in, n_out, bias=bias, dtype=np.float64, rng=rng, std=1.0)
    if bias:
        layer.bias.data[:] = rng.standard_normal(n_out)
    gradcheck(layer, rng.standard_normal((B, T, n_in)))


def test_linear_computes_x_at_w_plus_b(rng):
    layer = Linear(4, 3, dtype=np.float64, rng=rng)
    layer.bias.data[:] = [1.0, 2.0, 3.0]
    x = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(layer(x), x @ layer.weight.data + layer.bias.data, rtol=1e-14)
    assert layer.weight.shape == (4, 3)


def test_linear_float32_stays_float32(rng):
    layer = Linear(4, 3, rng=rng)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32


def test_linear_gradients_accumulate(rng):
    layer = Linear(3, 2, dtype=np.float64, rng=rng)
    x = rng.standard_normal((4, 3))
    dy = rng.standard_normal((4, 2))
    layer(x)
    layer.backward(dy)
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * x.T @ dy, rtol=1e-13)


def test_linear_wrong_last_dimension_is_named(rng):
    with pytest.raises(InputError, match=r"last dimension 4.*\(2, 5\)"):
        Linear(4, 3, rng=rng)(np.zeros((2, 5), np.float32))


def test_linear_inference_keeps_no_cache(rng):
    layer = Linear(3, 2, rng=rng)
    x = np.ones((1, 3), np.float32)
    with no_grad():
        layer(x)
    with pytest.raises(BackwardError):
        layer.backward(np.ones((1, 2), np.float32))
    layer.eval()
    layer(x)
    assert layer._cache is None
    with pytest.raises(BackwardError):
        layer.backward(np.ones((1, 2), np.float32))
