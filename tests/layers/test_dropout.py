import numpy as np
import pytest

from npgpt import no_grad
from npgpt.errors import BackwardError, ConfigError
from npgpt.layers import Dropout


def test_dropout_mask_statistics_and_inverted_scaling():
    p = 0.3
    layer = Dropout(p, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((200, 500)) + 2.0
    y = layer(x)
    kept = y != 0
    n = x.size
    # the fraction kept is Binomial(n, 1 - p): within 5 standard deviations
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    # the expected output is x: the mean of y / x over many elements is ~1
    assert abs((y / x).mean() - 1.0) < 0.02
    dy = np.random.default_rng(2).standard_normal(x.shape)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx != 0, kept)     # the same mask
    np.testing.assert_allclose(dx[kept], dy[kept] / (1 - p), rtol=1e-15)


def test_dropout_masks_differ_between_calls():
    layer = Dropout(0.5, rng=np.random.default_rng(0))
    x = np.ones((64, 64), np.float32)
    assert not np.array_equal(layer(x) != 0, layer(x) != 0)


def test_dropout_is_reproducible_with_a_seeded_rng():
    x = np.ones((16, 16), np.float32)
    a = Dropout(0.5, rng=np.random.default_rng(7))(x)
    b = Dropout(0.5, rng=np.random.default_rng(7))(x)
    np.testing.assert_array_equal(a, b)


def test_dropout_is_the_identity_in_eval_in_no_grad_and_with_p_zero():
    x = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    layer = Dropout(0.5).eval()
    np.testing.assert_array_equal(layer(x), x)
    with pytest.raises(BackwardError):
        layer.backward(x)                            # eval keeps no cache
    layer.train()
    with no_grad():
        np.testing.assert_array_equal(layer(x), x)
    with pytest.raises(BackwardError):
        layer.backward(x)
    zero = Dropout(0.0)
    np.testing.assert_array_equal(zero(x), x)
    np.testing.assert_array_equal(zero.backward(2 * x), 2 * x)


def test_dropout_p_one_drops_everything():
    layer = Dropout(1.0)
    x = np.ones((3, 4), np.float32)
    assert not layer(x).any()
    assert not layer.backward(x).any()


def test_dropout_float32_stays_float32():
    layer = Dropout(0.2)
    x = np.ones((4, 5), np.float32)
    y = layer(x)
    assert y.dtype == layer.backward(y).dtype == np.float32


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_a_probability_outside_0_1(p):
    with pytest.raises(ConfigError, match=str(p)):
        Dropout(p)
