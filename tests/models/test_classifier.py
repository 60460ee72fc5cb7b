import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import BackwardError, ConfigError, InputError
from npgpt.models import TextClassifier
from npgpt.models.classifier import masked_mean
from tests.helpers import MeanLoss

PAD = 0


def perturbed(layernorm, n_head, hs, seed, vocab=9, block=6):
    model = TextClassifier(vocab, block, n_embd=n_head * hs, n_head=n_head, mlp_hidden=7,
                           layernorm=layernorm, dtype=np.float64,
                           rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0, 0.4, p.shape)
    return model


def relu_margin(model, idx) -> float:
    """The smallest |input| of the MLP's ReLU on idx: finite differences across its kink at 0
    measure a slope that is not there."""
    act, seen = model.mlp.act, []
    act.forward = lambda x: (seen.append(float(np.abs(x).min())), type(act).forward(act, x))[1]
    try:
        model.forward(idx)
    finally:
        del act.forward
    return min(seen)


def padded_ids(rng, B, T, vocab=9):
    idx = rng.integers(1, vocab, size=(B, T))
    for b, n in enumerate(rng.integers(1, T + 1, size=B)):
        idx[b, n:] = PAD
    return idx


@pytest.mark.parametrize("layernorm", [True, False], ids=["layernorm", "no_layernorm"])
@settings(max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(B=st.integers(1, 5), T=st.integers(1, 5), H=st.integers(1, 4), hs=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_classifier_gradients_match_finite_differences(layernorm, B, T, H, hs, seed):
    model = perturbed(layernorm, H, hs, seed)
    rng = np.random.default_rng(seed)
    idx = padded_ids(rng, B, T)
    assume(relu_margin(model, idx) > 1e-3)       # eps = 1e-5 moves it by ~1e-5
    # atol: a LayerNorm over C <= 2 channels has ~zero gradients (finite-difference noise)
    gradcheck(model, idx, max_elements=16, eps=1e-5, atol=1e-8, seed=seed)
    gradcheck(MeanLoss(model), idx, rng.integers(0, 2, size=B), max_elements=16, eps=1e-5,
              atol=1e-8, seed=seed)


def test_masked_mean_pools_only_real_tokens():
    h = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    mask = np.array([[True, True, False], [True, False, False]])
    pooled, _ = masked_mean(h, mask)
    np.testing.assert_allclose(pooled, [[1.0, 2.0], [6.0, 7.0]])


@pytest.mark.parametrize("layernorm", [True, False])
def test_padding_changes_nothing_and_gets_no_gradient(layernorm):
    model = perturbed(layernorm, 2, 4, seed=1)
    rng = np.random.default_rng(1)
    idx = np.array([[3, 4, 5, PAD, PAD], [6, 7, PAD, PAD, PAD]])
    short = model.forward(idx[:, :3])[0]
    logits, _ = model.forward(idx)
    np.testing.assert_allclose(logits, short, rtol=1e-12, atol=1e-12)
    model.zero_grad()
    model.forward(idx)
    model.backward(rng.standard_normal(logits.shape))
    np.testing.assert_array_equal(model.wte.weight.grad[PAD], 0.0)   # the padding row
    np.testing.assert_array_equal(model.wpe.weight.grad[3:], 0.0)    # positions only padded


def test_learns_a_keyword_rule():
    from npgpt.optim import AdamW
    rng = np.random.default_rng(0)
    model = TextClassifier(10, 8, n_embd=16, n_head=2, layernorm=True, rng=rng)
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        idx = rng.integers(1, 10, size=(32, 8))
        y = (idx == 7).any(axis=1).astype(np.int64)      # class 1: the sequence contains a 7
        model.zero_grad()
        model.forward(idx, y)
        model.backward()
        opt.step()
    idx = rng.integers(1, 10, size=(200, 8))
    y = (idx == 7).any(axis=1)
    assert (model.predict(idx) == y).mean() > 0.9


def test_float32_stays_float32_and_errors_are_clear():
    model = TextClassifier(10, 4, n_embd=8, n_head=2, rng=np.random.default_rng(0))
    logits, loss = model.forward(np.array([[1, 2, 0]]), np.array([1]))
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    model.backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())
    with pytest.raises(InputError, match="T=5 is longer than block_size=4"):
        model.forward(np.ones((1, 5), dtype=np.int64))
    with pytest.raises(InputError, match="targets must have shape"):
        model.forward(np.ones((2, 3), dtype=np.int64), np.array([0]))
    with pytest.raises(ConfigError, match="n_embd=10 is not divisible by n_head=3"):
        TextClassifier(10, 4, n_embd=10, n_head=3)
    model.eval()
    model.forward(np.ones((1, 3), dtype=np.int64), np.array([0]))
    with pytest.raises(BackwardError):
        model.backward()
