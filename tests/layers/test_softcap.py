import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npgpt import gradcheck
from npgpt.errors import ConfigError
from npgpt.layers import ReLUSquared, SoftCap


def arrays(bound):
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6))
    return shapes.flatmap(lambda s: hnp.arrays(
        np.float64, s, elements=st.floats(-bound, bound, allow_nan=False, width=64)))


@settings(max_examples=15)
@given(z=arrays(60.0), cap=st.floats(0.5, 40.0))
def test_softcap_gradients_match_finite_differences(z, cap):
    gradcheck(SoftCap(cap, dtype=np.float64), z)


@settings(max_examples=15)
@given(x=arrays(4.0))
def test_relu_squared_gradients_match_finite_differences(x):
    x = np.where(np.abs(x) < 1e-3, 0.5, x)       # (differentiable at 0, but keep off the kink)
    gradcheck(ReLUSquared(dtype=np.float64), x)


def test_softcap_bounds_and_small_logits(rng):
    z = rng.standard_normal((2, 3, 7)) * 100
    y = SoftCap(15.0, dtype=np.float64)(z)
    assert np.all(np.abs(y) <= 15.0) and np.abs(y).max() > 14.9   # (tanh rounds to 1)
    small = rng.standard_normal(5) * 1e-3       # tanh(u) ~ u: the cap changes nothing near 0
    np.testing.assert_allclose(SoftCap(15.0, dtype=np.float64)(small), small, rtol=1e-8)
    assert SoftCap(30.0)(z.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("cap", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_softcap_refuses_a_bad_cap(cap):
    with pytest.raises(ConfigError, match="cap"):
        SoftCap(cap)


def test_softcap_and_relu_squared_match_torch(tt, rng):
    torch, transformers = tt
    from transformers.activations import ACT2FN
    z = rng.standard_normal((2, 5, 9)) * 40
    dy = rng.standard_normal(z.shape)
    zt = torch.tensor(z, requires_grad=True)
    yt = 30.0 * torch.tanh(zt / 30.0)           # Gemma 2's final_logit_softcapping
    yt.backward(torch.tensor(dy))
    layer = SoftCap(30.0, dtype=np.float64)
    np.testing.assert_allclose(layer(z), yt.detach().numpy(), rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(layer.backward(dy), zt.grad.numpy(), rtol=1e-13, atol=1e-15)

    x = rng.standard_normal((3, 4, 8))
    xt = torch.tensor(x, requires_grad=True)
    yt = ACT2FN["relu2"](xt)                     # transformers' ReLUSquaredActivation
    dx = rng.standard_normal(x.shape)
    yt.backward(torch.tensor(dx))
    relu2 = ReLUSquared(dtype=np.float64)
    np.testing.assert_allclose(relu2(x), yt.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(relu2.backward(dx), xt.grad.numpy(), rtol=1e-15)
