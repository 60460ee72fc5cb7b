import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, InputError
from npgpt.layers import CrossEntropyLoss, log_softmax, softmax


@st.composite
def logits_and_targets(draw, ignore_index=-100):
    B, T, V = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 8))
    logits = draw(hnp.arrays(np.float64, (B, T, V),
                             elements=st.floats(-5, 5, allow_nan=False, width=64)))
    targets = draw(hnp.arrays(np.int64, (B, T),
                              elements=st.sampled_from(list(range(V)) + [ignore_index])))
    return logits, targets


@given(data=logits_and_targets())
def test_cross_entropy_gradients_match_finite_differences(data):
    logits, targets = data
    gradcheck(CrossEntropyLoss(dtype=np.float64), logits, targets)


@given(data=logits_and_targets(ignore_index=3))
def test_cross_entropy_matches_torch_with_ignore_index(data):
    torch = pytest.importorskip("torch")
    logits, targets = data
    V = logits.shape[-1]
    loss_fn = CrossEntropyLoss(ignore_index=3)
    targets = np.where(targets >= V, 3, targets)    # 3 is both a class (if V > 3) and ignored
    loss = loss_fn(logits, targets)
    dlogits, dtargets = loss_fn.backward(0.7)
    assert dtargets is None and loss.shape == () and loss.dtype == np.float64
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, V), torch.tensor(targets).reshape(-1),
                                            ignore_index=3)
    if (targets == 3).all():                         # torch: 0/0 = nan; ours: 0, documented
        assert loss == 0.0 and not dlogits.any()
        return
    (ref * 0.7).backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]])
    loss_fn = CrossEntropyLoss(dtype=np.float64)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = loss_fn(logits, np.array([2, 1]))
        dlogits, _ = loss_fn.backward()
    assert loss == pytest.approx(1000.0, rel=1e-15)   # (2000 + 0) / 2
    np.testing.assert_allclose(dlogits, [[0.5, 0, -0.5], [0, 0, 0]], atol=1e-300)


def test_cross_entropy_of_uniform_logits_is_log_v():
    V = 50
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(np.zeros((2, 3, V), np.float32), np.arange(6).reshape(2, 3))
    assert loss.dtype == np.float32
    assert loss == pytest.approx(np.log(V), rel=1e-6)
    dlogits, _ = loss_fn.backward()
    assert dlogits.dtype == np.float32 and dlogits.shape == (2, 3, V)


def test_cross_entropy_with_every_target_ignored_is_zero():
    loss_fn = CrossEntropyLoss()
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    assert loss_fn(logits, np.full((2, 3), -100)) == 0.0
    dlogits, _ = loss_fn.backward()
    assert dlogits.shape == logits.shape and not dlogits.any()


def test_cross_entropy_ignored_rows_get_zero_gradient():
    loss_fn = CrossEntropyLoss()
    logits = np.random.default_rng(0).standard_normal((1, 4, 5))
    targets = np.array([[1, -100, 4, -100]])
    full = loss_fn(logits, targets)
    dlogits, _ = loss_fn.backward()
    assert not dlogits[0, 1].any() and not dlogits[0, 3].any()
    # the mean is over the 2 counted targets only
    assert full == pytest.approx(CrossEntropyLoss()(logits[:, [0, 2]], targets[:, [0, 2]]))


@pytest.mark.parametrize("bad", [5, -1, 99])
def test_cross_entropy_rejects_targets_outside_the_vocabulary(bad):
    with pytest.raises(InputError, match=rf"target {bad}\b.*V=5.*ignore_index=-100"):
        CrossEntropyLoss()(np.zeros((1, 3, 5)), np.array([[0, bad, 1]]))


def test_cross_entropy_rejects_mismatched_shapes_and_float_targets():
    with pytest.raises(InputError, match=r"\(2, 3, 5\).*\(2, 4\)"):
        CrossEntropyLoss()(np.zeros((2, 3, 5)), np.zeros((2, 4), np.int64))
    with pytest.raises(InputError, match="integer"):
        CrossEntropyLoss()(np.zeros((2, 5)), np.zeros(2))


def test_cross_entropy_keeps_no_cache_in_inference():
    loss_fn = CrossEntropyLoss()
    with no_grad():
        loss_fn(np.zeros((2, 5)), np.array([1, 2]))
    with pytest.raises(BackwardError):
        loss_fn.backward()


@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                    elements=st.floats(-700, 700, allow_nan=False, width=64)))
def test_softmax_and_log_softmax_agree_and_normalise(x):
    p = softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(x)), p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(softmax(x + 123.0), p, rtol=1e-9, atol=1e-300)
    assert np.all(np.isfinite(log_softmax(x)))


def test_softmax_axis_and_float32():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    assert softmax(x).dtype == log_softmax(x).dtype == np.float32
    np.testing.assert_allclose(softmax(x, axis=0).sum(0), 1.0, rtol=1e-6)
