import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, InputError
from npgpt.layers import BatchNorm, LayerNorm, RMSNorm

seeds = st.integers(0, 2**32 - 1)


@st.composite
def activations(draw, max_C=8):
    """(B, T, C) activations: shape, seed, scale and offset drawn. Normal values rather than
    arbitrary floats: near-constant rows (hypothesis's favourite) have gradients below what
    central differences resolve, which would test the checker, not the layer."""
    B, T, C = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, max_C))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale, offset = draw(st.floats(0.1, 10.0)), draw(st.floats(-5.0, 5.0))
    return rng.standard_normal((B, T, C)) * scale + offset


def _randomize(layer, rng):
    for p in layer.parameters():
        p.data[:] = rng.standard_normal(p.shape)
    return layer


def _eps(group_size):
    """eps for a gradient check. Normalising 1 or 2 values saturates (xhat = +-1 whatever x is):
    the gradient is then ~eps / var, below what finite differences resolve with eps = 1e-5, so
    those shapes are checked with a large eps that makes it visible."""
    return 1e-5 if group_size >= 3 else 0.5


@given(x=activations(), bias=st.booleans(), seed=seeds)
def test_layernorm_gradients_match_finite_differences(x, bias, seed):
    C = x.shape[-1]
    layer = _randomize(LayerNorm(C, eps=_eps(C), bias=bias, dtype=np.float64),
                       np.random.default_rng(seed))
    gradcheck(layer, x)


@given(x=activations(), seed=seeds)
def test_rmsnorm_gradients_match_finite_differences(x, seed):
    C = x.shape[-1]
    layer = _randomize(RMSNorm(C, eps=_eps(C + 1), dtype=np.float64), np.random.default_rng(seed))
    gradcheck(layer, x)


@given(x=activations(), seed=seeds)
def test_batchnorm_gradients_match_finite_differences_in_training(x, seed):
    C, N = x.shape[-1], x.shape[0] * x.shape[1]
    layer = _randomize(BatchNorm(C, eps=_eps(N), dtype=np.float64), np.random.default_rng(seed))
    # the input gradient of a batch statistic sums to zero over the batch and can be ~1e-6 in
    # all: there finite differences resolve only ~1e-11 absolute, hence the absolute floor
    gradcheck(layer, x, atol=1e-9)


def test_layernorm_normalises_each_token(rng):
    x = rng.standard_normal((2, 3, 16)) * 5 + 3
    y = LayerNorm(16, dtype=np.float64)(x)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1 / (1 + 1e-5 / x.var(-1)), rtol=1e-12)


def test_rmsnorm_is_the_llama_definition(rng):
    x = rng.standard_normal((2, 3, 8))
    layer = _randomize(RMSNorm(8, eps=1e-6, dtype=np.float64), rng)
    expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * layer.weight.data
    np.testing.assert_allclose(layer(x), expected, rtol=1e-13)


def test_norms_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 8))
    ln = _randomize(LayerNorm(8, dtype=np.float64), rng)
    ref = torch.nn.functional.layer_norm(torch.tensor(x), (8,), torch.tensor(ln.weight.data),
                                         torch.tensor(ln.bias.data), eps=1e-5)
    np.testing.assert_allclose(ln(x), ref.numpy(), rtol=1e-12, atol=1e-14)
    if hasattr(torch.nn.functional, "rms_norm"):
        rms = _randomize(RMSNorm(8, dtype=np.float64), rng)
        ref = torch.nn.functional.rms_norm(torch.tensor(x), (8,), torch.tensor(rms.weight.data),
                                           eps=1e-6)
        np.testing.assert_allclose(rms(x), ref.numpy(), rtol=1e-12, atol=1e-14)


def test_batchnorm_matches_torch_in_training_and_eval(rng):
    torch = pytest.importorskip("torch")
    B, T, C = 4, 5, 3
    ours = _randomize(BatchNorm(C, momentum=0.1, dtype=np.float64), rng)
    theirs = torch.nn.BatchNorm1d(C, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    for _ in range(3):
        x = rng.standard_normal((B, T, C)) * 2 + 1
        # BatchNorm1d wants (N, C): our leading axes B, T are its batch
        ref = theirs(torch.tensor(x.reshape(-1, C))).detach().numpy().reshape(B, T, C)
        np.testing.assert_allclose(ours(x), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((B, T, C))
    ref = theirs(torch.tensor(x.reshape(-1, C))).detach().numpy().reshape(B, T, C)
    np.testing.assert_allclose(ours(x), ref, rtol=1e-12, atol=1e-13)


def test_batchnorm_output_depends_on_the_batch_layernorm_does_not(rng):
    x = rng.standard_normal((4, 3, 6))
    ln, bn = LayerNorm(6, dtype=np.float64), BatchNorm(6, dtype=np.float64)
    np.testing.assert_allclose(ln(x)[:1], ln(x[:1]), rtol=1e-13)
    assert not np.allclose(bn(x)[:1], bn(x[:1]))


@pytest.mark.parametrize("make", [lambda: LayerNorm(5), lambda: RMSNorm(5), lambda: BatchNorm(5),
                                  lambda: LayerNorm(5, bias=False)])
def test_norms_float32_in_float32_out(make, rng):
    layer = make()
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())
    layer.eval()
    assert layer(x).dtype == np.float32


@pytest.mark.parametrize("make", [lambda: LayerNorm(5), lambda: RMSNorm(5), lambda: BatchNorm(5)])
def test_norms_keep_no_cache_in_inference(make, rng):
    layer = make()
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    with no_grad():
        layer(x)
    with pytest.raises(BackwardError):
        layer.backward(np.ones_like(x))
    layer.eval()
    layer(x)
    with pytest.raises(BackwardError):
        layer.backward(np.ones_like(x))


@pytest.mark.parametrize("make", [lambda: LayerNorm(5), lambda: RMSNorm(5), lambda: BatchNorm(5)])
def test_norms_reject_wrong_channel_count(make):
    with pytest.raises(InputError, match=r"last dimension 5.*\(2, 4\)"):
        make()(np.zeros((2, 4), np.float32))
