import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, ConfigError
from npgpt.layers import GELU, MLP, ReLU, SiLU, SwiGLU, erf

seeds = st.integers(0, 2**32 - 1)


@st.composite
def activations(draw, max_C=8, bound=4.0):
    B, T, C = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, max_C))
    return draw(hnp.arrays(np.float64, (B, T, C),
                           elements=st.floats(-bound, bound, allow_nan=False, width=64)))


def _randomize(layer, rng):
    for p in layer.parameters():
        p.data[:] = rng.standard_normal(p.shape)
    return layer


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-7, 7, 20001), np.logspace(-300, 1, 500), [0.0, np.inf]])
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), expected, rtol=4e-16, atol=0)
    assert erf(x.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(erf(x.astype(np.float32)), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@given(x=activations(bound=4.0))   # beyond, GELU' < 1e-8: below what differences resolve
def test_gelu_gradients_match_finite_differences(approximate, x):
    gradcheck(GELU(approximate, dtype=np.float64), x)


@given(x=activations())
def test_relu_gradients_match_finite_differences(x):
    x = np.where(np.abs(x) < 1e-3, 0.5, x)          # the kink at 0 has no derivative
    gradcheck(ReLU(dtype=np.float64), x)


@given(x=activations(bound=30.0))
def test_silu_gradients_match_finite_differences(x):
    gradcheck(SiLU(dtype=np.float64), x)


def test_gelu_matches_the_direct_formula(rng):
    x = np.concatenate([rng.standard_normal(1000) * 3, np.linspace(-10, 10, 101)])
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    tanh = np.array([0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
                     for v in x])
    np.testing.assert_allclose(GELU("none", dtype=np.float64)(x), exact, rtol=1e-14, atol=1e-300)
    # 1 + tanh(u) cancels for negative x: both sides carry ~1e-16 absolute round-off there
    np.testing.assert_allclose(GELU("tanh", dtype=np.float64)(x), tanh, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_matches_torch(approximate, rng):
    torch = pytest.importorskip("torch")
    x = np.concatenate([rng.standard_normal(2000) * 3, np.linspace(-12, 12, 241)])
    dy = rng.standard_normal(x.shape)
    ours = GELU(approximate, dtype=np.float64)
    y = ours(x)
    dx = ours.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    yt.backward(torch.tensor(dy))
    # atol: the tanh form's 1 + tanh(u) cancels for negative x (round-off ~1e-16 absolute)
    atol = 1e-300 if approximate == "none" else 1e-15
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=atol)
    # the tanh form's derivative sums O(1) terms that cancel for negative x
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=atol * 20)


def test_silu_matches_torch_and_does_not_overflow(rng):
    torch = pytest.importorskip("torch")
    x = np.concatenate([rng.standard_normal(500) * 5, [-800.0, -50.0, 50.0, 800.0]])
    with np.errstate(over="raise"):
        y = SiLU(dtype=np.float64)(x)
    np.testing.assert_allclose(y, torch.nn.functional.silu(torch.tensor(x)).numpy(),
                               rtol=1e-13, atol=1e-300)


@given(B=st.integers(1, 5), T=st.integers(1, 5), C=st.integers(1, 8), hidden=st.integers(1, 8),
       activation=st.sampled_from(["gelu_tanh", "gelu", "relu", "silu"]), bias=st.booleans(),
       seed=seeds)
def test_mlp_gradients_match_finite_differences(B, T, C, hidden, activation, bias, seed):
    rng = np.random.default_rng(seed)
    mlp = _randomize(MLP(C, hidden, activation, bias=bias, dtype=np.float64, rng=rng), rng)
    x = rng.standard_normal((B, T, C))
    if activation == "relu":                        # keep pre-activations off the kink at 0
        mlp(x)
        pre = x @ mlp.c_fc.weight.data + (mlp.c_fc.bias.data if bias else 0)
        if np.abs(pre).min() < 1e-3:
            return
    gradcheck(mlp, x)


@given(B=st.integers(1, 5), T=st.integers(1, 5), C=st.integers(1, 8), hidden=st.integers(1, 8),
       bias=st.booleans(), seed=seeds)
def test_swiglu_gradients_match_finite_differences(B, T, C, hidden, bias, seed):
    rng = np.random.default_rng(seed)
    ffn = _randomize(SwiGLU(C, hidden, bias=bias, dtype=np.float64, rng=rng), rng)
    gradcheck(ffn, rng.standard_normal((B, T, C)))


def test_mlp_and_swiglu_parameter_names_and_shapes(rng):
    mlp = MLP(4, 16, rng=rng, proj_std=0.5)
    assert [(n, p.shape) for n, p in mlp.named_parameters()] == [
        ("c_fc.weight", (4, 16)), ("c_fc.bias", (16,)),
        ("c_proj.weight", (16, 4)), ("c_proj.bias", (4,))]
    assert 0.3 < mlp.c_proj.weight.data.std() < 0.7      # proj_std applies to c_proj only
    assert mlp.c_fc.weight.data.std() < 0.05
    swiglu = SwiGLU(4, 8, rng=rng)
    assert [(n, p.shape) for n, p in swiglu.named_parameters()] == [
        ("gate_proj.weight", (4, 8)), ("up_proj.weight", (4, 8)), ("down_proj.weight", (8, 4))]


def test_swiglu_is_down_of_silu_gate_times_up(rng):
    ffn = _randomize(SwiGLU(3, 5, dtype=np.float64, rng=rng), rng)
    x = rng.standard_normal((2, 4, 3))
    a = x @ ffn.gate_proj.weight.data
    expected = (a / (1 + np.exp(-a)) * (x @ ffn.up_proj.weight.data)) @ ffn.down_proj.weight.data
    np.testing.assert_allclose(ffn(x), expected, rtol=1e-13)


def test_mlp_matches_transformers_gpt2_mlp(rng):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
    config = GPT2Config(n_embd=8, resid_pdrop=0.0, activation_function="gelu_new")
    theirs = GPT2MLP(32, config).double()
    ours = MLP(8, 32, dtype=np.float64, rng=rng)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 3, 8))
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12,
                               atol=1e-15)


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="'swish'"):
        MLP(4, 8, activation="swish")
    with pytest.raises(ConfigError, match="'fast'"):
        GELU("fast")


ALL = [lambda: ReLU(), lambda: GELU("tanh"), lambda: GELU("none"), lambda: SiLU(),
       lambda: MLP(5, 7), lambda: MLP(5, 7, activation="gelu"), lambda: SwiGLU(5, 7)]


@pytest.mark.parametrize("make", ALL)
def test_ffn_float32_in_float32_out(make, rng):
    layer = make()
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())


@pytest.mark.parametrize("make", ALL)
def test_ffn_keeps_no_cache_in_inference(make, rng):
    layer = make()
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    with no_grad():
        y = layer(x)
    with pytest.raises(BackwardError):
        layer.backward(np.ones_like(y))
    layer.eval()
    layer(x)
    with pytest.raises(BackwardError):
        layer.backward(np.ones_like(y))
