"""LoRA: gradients against finite differences, the frozen base, init, merge."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import ConfigError
from npgpt.layers import Linear
from npgpt.layers.lora import LoRA, LoRALinear
from npgpt.optim import AdamW, clip_grad_norm


@st.composite
def lora_cases(draw):
    B, T = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    n_in, n_out, r = draw(st.integers(1, 8)), draw(st.integers(2, 9)), draw(st.integers(1, 4))
    split = draw(st.booleans())
    return B, T, n_in, n_out, r, split, draw(st.integers(0, 2**32 - 1))


def _layer(n_in, n_out, r, split, seed, alpha=3.0):
    rng = np.random.default_rng(seed)
    base = Linear(n_in, n_out, dtype=np.float64, rng=rng)
    base.bias.data[:] = rng.standard_normal(n_out)
    # a fused projection with adapters on two of its column ranges (LLaMA's q and v in
    # c_attn), the middle columns unadapted; or one adapter over all of them
    slices = {"q": slice(0, n_out // 2), "v": slice(n_out - 1, n_out)} if split else None
    layer = LoRALinear.wrap(base, r=r, alpha=alpha, slices=slices, rng=rng)
    for _, _, adapter in layer.adapters():
        adapter.B.data[:] = rng.standard_normal(adapter.B.shape)   # B = 0 would hide dA
    return layer, rng


@given(lora_cases())
def test_lora_linear_gradients_match_finite_differences(case):
    B, T, n_in, n_out, r, split, seed = case
    layer, rng = _layer(n_in, n_out, r, split, seed)
    report = gradcheck(layer, rng.standard_normal((B, T, n_in)), max_elements=None)
    checked = {c.name for c in report.checks}
    assert "input[0]" in checked and "weight" not in checked and "bias" not in checked
    assert any(name.endswith(".A") for name in checked) and any(n.endswith(".B") for n in checked)


@given(lora_cases())
def test_lora_output_is_the_formula(case):
    B, T, n_in, n_out, r, split, seed = case
    layer, rng = _layer(n_in, n_out, r, split, seed, alpha=5.0)
    x = rng.standard_normal((B, T, n_in))
    expected = x @ layer.weight.data + layer.bias.data
    for _, cols, adapter in layer.adapters():
        expected[..., cols] += 5.0 / r * x @ adapter.A.data @ adapter.B.data
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)
    with no_grad():
        np.testing.assert_allclose(layer.merged()(x), expected, rtol=1e-12, atol=1e-12)


def test_base_is_frozen_and_gets_no_optimizer_state(rng):
    layer, _ = _layer(6, 5, 2, False, 0)
    assert layer.weight.grad is None and layer.bias.grad is None
    assert [p.shape for p in layer.trainable_parameters()] == [(6, 2), (2, 5)]
    before = layer.weight.data.copy()
    opt = AdamW(layer.parameters(), lr=0.1)      # the frozen ones are left out
    assert len(opt.state_dict()) == 1 + 2 * 2
    layer(rng.standard_normal((3, 6)))
    layer.backward(rng.standard_normal((3, 5)))
    assert clip_grad_norm(layer.parameters(), 1.0) > 0
    opt.step()
    np.testing.assert_array_equal(layer.weight.data, before)
    assert not np.array_equal(layer.lora.B.data, 0)
    with pytest.raises(ConfigError, match="only frozen"):
        AdamW([layer.weight], lr=0.1)


def test_init_is_pefts_kaiming_uniform_and_zero_b():
    n_in = 400
    adapter = LoRA(n_in, 7, r=64, alpha=16, dtype=np.float64, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(n_in)
    assert np.abs(adapter.A.data).max() <= bound
    assert np.abs(adapter.A.data).max() > 0.99 * bound
    np.testing.assert_allclose(adapter.A.data.var(), bound ** 2 / 3, rtol=0.05)   # U(-b, b)
    assert not adapter.B.data.any()
    assert adapter.scale == 16 / 64
    assert LoRA(4, 4, r=16, alpha=8, rslora=True).scale == 8 / 4


def test_dropout_masks_only_the_adapter_input(rng):
    base = Linear(6, 4, dtype=np.float64, rng=rng)
    layer = LoRALinear.wrap(base, r=2, alpha=2, dropout=0.5, rng=rng)
    layer.lora.B.data[:] = 1.0
    x = rng.standard_normal((50, 6))
    y = layer(x)
    with no_grad():
        assert np.allclose(layer.eval()(x) - base(x), x @ layer.lora.A.data @ layer.lora.B.data)
    layer.train()
    again = layer(x)
    assert not np.allclose(y, again)               # training: a new mask, a new delta
    dx = layer.backward(np.ones_like(again))       # the adapter adds to the base's dx
    assert not np.allclose(dx, np.ones((50, 4)) @ base.weight.data.T)


def test_rank_must_be_positive():
    with pytest.raises(ConfigError, match=r"rank|r=0 must be a positive integer"):
        LoRALinear.wrap(Linear(3, 3), r=0, alpha=1)
