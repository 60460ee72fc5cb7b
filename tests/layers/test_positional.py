import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import no_grad
from npgpt.errors import BackwardError, InputError
from npgpt.layers import SinusoidalPositionalEncoding, sinusoidal_table


@given(n=st.integers(1, 40), dim=st.integers(1, 17), base=st.sampled_from([10000.0, 100.0]))
def test_sinusoidal_table_matches_the_paper_formula(n, dim, base):
    table = sinusoidal_table(n, dim, base=base, dtype=np.float64)
    assert table.shape == (n, dim)
    for pos in range(n):
        for j in range(dim):
            i = j // 2
            angle = pos / base ** (2 * i / dim)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert table[pos, j] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_sinusoidal_table_odd_dim_ends_with_a_sine():
    table = sinusoidal_table(5, 5, dtype=np.float64)
    np.testing.assert_allclose(table[:, 4], np.sin(np.arange(5) / 10000 ** (4 / 5)), rtol=1e-14)
    np.testing.assert_array_equal(table[0], [0, 1, 0, 1, 0])


def test_sinusoidal_table_dtype():
    assert sinusoidal_table(3, 4).dtype == np.float32
    assert sinusoidal_table(3, 4, dtype=np.float64).dtype == np.float64


def test_sinusoidal_encoding_has_no_parameters_and_no_length_limit():
    pe = SinusoidalPositionalEncoding(6)
    assert pe.parameters() == []
    y = pe(np.arange(3))
    assert y.shape == (3, 6) and y.dtype == np.float32
    far = pe(np.array([5000, 2]))                  # grows the cached table on demand
    np.testing.assert_allclose(far, sinusoidal_table(5001, 6)[[5000, 2]], rtol=1e-6)
    np.testing.assert_array_equal(pe(np.arange(3)), y)


def test_sinusoidal_encoding_relative_shift_is_a_rotation():
    # PE[pos + k] is a fixed linear map (a rotation per frequency pair) of PE[pos]
    dim, k = 8, 3
    table = sinusoidal_table(50, dim, dtype=np.float64)
    omega = 1.0 / 10000 ** (np.arange(0, dim, 2) / dim)
    for pos in (0, 7, 40):
        for i, w in enumerate(omega):
            s, c = table[pos, 2 * i], table[pos, 2 * i + 1]
            rotated = (s * math.cos(k * w) + c * math.sin(k * w),
                       c * math.cos(k * w) - s * math.sin(k * w))
            np.testing.assert_allclose(table[pos + k, 2 * i:2 * i + 2], rotated, atol=1e-12)


def test_sinusoidal_encoding_backward_and_inference():
    pe = SinusoidalPositionalEncoding(4, dtype=np.float64)
    y = pe(np.arange(5))
    assert pe.backward(np.ones_like(y)) is None
    with no_grad():
        pe(np.arange(5))
    with pytest.raises(BackwardError):
        pe.backward(np.ones_like(y))


def test_sinusoidal_encoding_rejects_bad_positions():
    pe = SinusoidalPositionalEncoding(4)
    with pytest.raises(InputError, match="-2"):
        pe(np.array([0, -2]))
    with pytest.raises(InputError, match="integer"):
        pe(np.array([0.5]))
