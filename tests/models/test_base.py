"""npgpt.models.base.Model: a training forward split across threads gives the whole batch's
logits, loss and gradients, and leaves the loss module holding the whole batch."""
import numpy as np
import pytest

import npgpt
from npgpt.errors import BackwardError
from npgpt.models.base import Model

V, T = 32, 8


def gpt(mode):
    cfg = npgpt.GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16,
                          dtype="float64")
    model = npgpt.GPT(cfg, seed=0)
    model.data_parallel = mode
    return model


def step(model, x, y, dlogits=None):
    model.zero_grad()
    logits, loss = model.forward(x, y)
    model.backward(dlogits)
    return logits, float(loss), [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("explicit_dlogits", [False, True])
def test_model_split_forward_backward_equals_the_whole_batch(explicit_dlogits):
    assert isinstance(gpt("on"), Model)
    from npgpt.runtime.jit import n_threads
    if n_threads() < 2:
        pytest.skip("a split needs two threads")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (5, T)), rng.integers(0, V, (5, T))
    g = rng.standard_normal((5, T, V)) if explicit_dlogits else None
    whole, split = gpt("off"), gpt("on")
    logits1, loss1, grads1 = step(whole, x, y, g)
    logits2, loss2, grads2 = step(split, x, y, g)
    assert split._split is None and getattr(split, "_runner", None) is not None   # it did split
    np.testing.assert_allclose(logits2, logits1, rtol=1e-12, atol=1e-14)
    assert loss2 == pytest.approx(loss1, rel=1e-12)
    for a, b in zip(grads2, grads1):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # the loss module saw the whole batch: its backward gives every row's dlogits
    split.forward(x, y)
    dlogits, _ = split.loss_fn.backward(1.0)
    assert dlogits.shape == (5, T, V)
    split.backward(dlogits)


def test_a_second_backward_after_a_split_forward_is_refused():
    model = gpt("on")
    x = np.random.default_rng(1).integers(0, V, (4, T))
    model.forward(x, x)
    model.backward()
    with pytest.raises(BackwardError):
        model.backward()
