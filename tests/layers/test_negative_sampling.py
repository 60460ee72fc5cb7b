import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import InputError
from npgpt.layers.negative_sampling import NegativeSamplingLoss, log_sigmoid

seeds = st.integers(0, 2**32 - 1)


@given(B=st.integers(1, 5), K=st.integers(0, 4), C=st.integers(1, 8),
       scale=st.sampled_from([0.1, 1.0, 4.0]), seed=seeds)
def test_negative_sampling_gradients_match_finite_differences(B, K, C, scale, seed):
    rng = np.random.default_rng(seed)
    v = scale * rng.standard_normal((B, C))
    u = scale * rng.standard_normal((B, 1 + K, C))
    gradcheck(NegativeSamplingLoss(np.float64), v, u, max_elements=None)


def test_negative_sampling_loss_is_the_definition(rng):
    v, u = rng.standard_normal((3, 4)), rng.standard_normal((3, 3, 4))
    loss = NegativeSamplingLoss(np.float64)(v, u)
    expected = 0.0
    for b in range(3):
        expected -= np.log(1 / (1 + np.exp(-v[b] @ u[b, 0])))
        for j in (1, 2):
            expected -= np.log(1 / (1 + np.exp(v[b] @ u[b, j])))
    np.testing.assert_allclose(loss, expected / 3, rtol=1e-13)


def test_log_sigmoid_is_finite_for_large_scores():
    out = log_sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(out, [-1000.0, -np.log(2), 0.0])


def test_negative_sampling_rejects_mismatched_shapes():
    with pytest.raises(InputError, match=r"v \(B, C\) and u \(B, 1\+K, C\)"):
        NegativeSamplingLoss()(np.zeros((2, 3)), np.zeros((2, 4, 5)))
