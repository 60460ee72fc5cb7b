"""Kernels on the values that break naive code: masks, huge logits, ignore_index, T=1, bad input."""
import numpy as np
import pytest

from npgpt import kernels
from npgpt.errors import InputError

from ._helpers import check_kernel

BACKENDS = ["numba", "numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_fully_masked_rows_are_zeros(backend, rng):
    scores = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    mask = np.ones((2, 4), bool)                     # True = a real key
    mask[0] = False                                  # batch 0: every key is padding
    with kernels.use(backend):
        probs = kernels.softmax_forward(scores, True, mask, 0.5)
    assert probs.dtype == np.float32 and np.isfinite(probs).all()
    assert (probs[0] == 0).all()
    np.testing.assert_allclose(probs[1].sum(-1), 1, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_causal_with_more_queries_than_keys_masks_early_rows(backend, rng):
    scores = rng.standard_normal((1, 1, 5, 3))     # query t sits at key position 3 - 5 + t
    with kernels.use(backend):
        probs = kernels.softmax_forward(scores, causal=True)
    assert (probs[0, 0, :2] == 0).all()
    np.testing.assert_allclose(probs[0, 0, 2:].sum(-1), 1, rtol=1e-12)
    assert probs[0, 0, 2, 1] == 0 and probs[0, 0, 2, 0] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_single_query_sees_every_key(backend, rng):
    scores = rng.standard_normal((2, 2, 1, 6))     # decoding: T=1 against a cache of 6 keys
    with kernels.use(backend):
        probs = kernels.softmax_forward(scores, causal=True)
    assert (probs > 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_huge_logits_stay_finite(dtype, rng):
    scores = (rng.standard_normal((2, 2, 5, 5)) * 1e30).astype(dtype)
    mask = rng.random((2, 5)) < 0.5
    check_kernel("softmax_forward", (scores, True, mask, 1.0), dtype)
    probs = kernels.softmax_forward(scores, True, mask)
    assert np.isfinite(probs).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_huge_logits_stay_finite(dtype, rng):
    logits = (rng.standard_normal((6, 40)) * 1e4).astype(dtype)
    targets = rng.integers(0, 40, 6)
    check_kernel("cross_entropy_forward_backward", (logits, targets, -100), dtype)
    loss, dlogits = kernels.cross_entropy_forward_backward(logits, targets)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    np.testing.assert_allclose(dlogits.sum(1), 0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_with_every_target_ignored_is_zero(backend, rng):
    logits = rng.standard_normal((4, 7)).astype(np.float32)
    with kernels.use(backend):
        loss, dlogits = kernels.cross_entropy_forward_backward(logits, np.full(4, -1), ignore_index=-1)
    assert loss == 0 and loss.dtype == np.float32
    assert dlogits.dtype == np.float32 and (dlogits == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_mean_is_over_kept_rows_only(backend, rng):
    logits = rng.standard_normal((4, 7))
    targets = np.array([1, -100, 3, -100])
    with kernels.use(backend):
        loss, dlogits = kernels.cross_entropy_forward_backward(logits, targets)
        loss_kept, dlogits_kept = kernels.cross_entropy_forward_backward(logits[[0, 2]], targets[[0, 2]])
    assert loss == pytest.approx(loss_kept, rel=1e-12)
    np.testing.assert_allclose(dlogits[[0, 2]], dlogits_kept, rtol=1e-12)
    assert (dlogits[[1, 3]] == 0).all()


def test_cross_entropy_matches_torch(rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((8, 11))
    targets = rng.integers(0, 11, 8)
    targets[2] = -100
    loss, dlogits = kernels.cross_entropy_forward_backward(logits, targets)
    t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(t, torch.tensor(targets), ignore_index=-100)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, t.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_adamw_matches_torch(rng):
    torch = pytest.importorskip("torch")
    param = rng.standard_normal((5, 3))
    p = torch.nn.Parameter(torch.tensor(param))
    opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m, v = np.zeros_like(param), np.zeros_like(param)
    for step in range(1, 4):
        grad = rng.standard_normal(param.shape)
        p.grad = torch.tensor(grad)
        opt.step()
        kernels.adamw_step(param, grad, m, v, 1e-2, 0.9, 0.95, 1e-8, 0.1, step)
    np.testing.assert_allclose(param, p.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedding_backward_adds_repeated_ids(backend):
    dweight = np.ones((4, 2), np.float32)
    dy = np.arange(6, dtype=np.float32).reshape(3, 2)
    with kernels.use(backend):
        kernels.embedding_backward(dweight, np.array([2, 0, 2]), dy)
    np.testing.assert_array_equal(dweight, [[3, 4], [1, 1], [1 + 0 + 4, 1 + 1 + 5], [1, 1]])


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_backward_inverts_forward_and_keeps_norms(interleaved, rng):
    T, hs = 5, 8
    angles = np.arange(T)[:, None] * 10000.0 ** (-np.arange(hs // 2) * 2 / hs)
    x = rng.standard_normal((2, 3, T, hs))
    y = kernels.rope_forward(x, np.cos(angles), np.sin(angles), interleaved)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    back = kernels.rope_backward(y, np.cos(angles), np.sin(angles), interleaved)
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_input_errors(backend, rng):
    with kernels.use(backend):
        with pytest.raises(InputError, match="outside the vocabulary"):
            kernels.cross_entropy_forward_backward(np.zeros((2, 3)), np.array([0, 3]))
        with pytest.raises(InputError, match="outside the vocabulary"):
            kernels.embedding_backward(np.zeros((3, 2)), np.array([5]), np.zeros((1, 2)))
        with pytest.raises(InputError, match="key_padding_mask"):
            kernels.softmax_forward(np.zeros((2, 1, 3, 3)), True, np.zeros((2, 4), bool))
        with pytest.raises(InputError, match="even hs"):
            kernels.rope_forward(np.zeros((1, 2, 3)), np.zeros((2, 1)), np.zeros((2, 1)))
        with pytest.raises(InputError, match="step >= 1"):
            a = np.zeros(3)
            kernels.adamw_step(a, a.copy(), a.copy(), a.copy(), 1e-3, 0.9, 0.95, 1e-8, 0.0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_backward_matches_finite_differences(backend, rng):
    B, H, T, hs = 2, 2, 3, 4
    q, k, v, g = (rng.standard_normal((B, H, T, hs)) for _ in range(4))
    mask = np.array([[True, True, False], [True, True, True]])      # True = a real key
    with kernels.use(backend):
        _, probs = kernels.attention_forward(q, k, v, True, mask)
        grads = kernels.attention_backward(g, q, k, v, probs)
        for x, dx in zip((q, k, v), grads):
            numeric = np.zeros_like(x)
            for i in np.ndindex(x.shape):
                old = x[i]
                x[i] = old + 1e-6
                plus = (kernels.attention_forward(q, k, v, True, mask)[0] * g).sum()
                x[i] = old - 1e-6
                minus = (kernels.attention_forward(q, k, v, True, mask)[0] * g).sum()
                x[i] = old
                numeric[i] = (plus - minus) / 2e-6
            np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_with_every_key_padded_gives_zeros(backend, rng):
    q, k, v = (rng.standard_normal((2, 1, 3, 4)).astype(np.float32) for _ in range(3))
    mask = np.array([[False] * 3, [True] * 3])      # batch 0: every key is padding
    with kernels.use(backend):
        out, probs = kernels.attention_forward(q, k, v, False, mask)
    assert out.dtype == np.float32 and (out[0] == 0).all() and (probs[0] == 0).all()
    assert np.isfinite(out).all()
