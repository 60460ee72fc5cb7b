"""The kernels' scalar exp: float32 within 4e-7 relative of the true value, exact zeros below
the float32 range (so -inf masks give 0), inf above; float64 is the C library's (to an ulp)."""
import numpy as np
import pytest

from npgpt.runtime.exp import exp
from npgpt.runtime.jit import jit


@jit()
def _exp_all(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = exp(a[i])
    return out


def test_float32_exp_is_within_4e_7_of_the_true_value():
    x = np.linspace(-87.3, 88.0, 2_000_001, dtype=np.float32)
    got = _exp_all(x)
    assert got.dtype == np.float32
    truth = np.exp(x.astype(np.float64))
    rel = np.abs(got - truth) / truth
    assert rel.max() < 4e-7, rel.max()


@pytest.mark.parametrize("x, expected", [(-np.inf, 0.0), (-1e30, 0.0), (-88.0, 0.0), (0.0, 1.0),
                                         (88.5, np.inf), (np.inf, np.inf)])
def test_float32_exp_saturates_to_zero_and_inf(x, expected):
    assert _exp_all(np.array([x], np.float32))[0] == expected


def test_float64_exp_is_exact_to_an_ulp():
    x = np.random.default_rng(0).uniform(-700, 700, 10_000)
    np.testing.assert_allclose(_exp_all(x), np.exp(x), rtol=4e-16, atol=0)
