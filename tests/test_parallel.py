"""npgpt.runtime.parallel: a batch split across threads gives the one-pass loss and gradients."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import npgpt
from npgpt import kernels
from npgpt.errors import BackwardError, ConfigError, InputError
from npgpt.models.classifier import TextClassifier
from npgpt.optim import AdamW
from npgpt.runtime.parallel import DataParallel, auto_shards
from npgpt.runtime.threads import get_num_threads

V, T = 32, 8


def small_gpt(dtype="float64", dropout=0.0, seed=0, **kw):
    cfg = npgpt.GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16,
                          dtype=dtype, dropout=dropout, **kw)
    return npgpt.GPT(cfg, seed=seed)


def one_pass(model, x, y):
    model.zero_grad()
    _, loss = model(x, y)
    model.backward()
    return float(loss), [p.grad.copy() for p in model.parameters()]


def split_pass(model, x, y, n_shards, fused=False):
    """forward then backward, or (fused) forward_backward, on a fresh DataParallel."""
    model.zero_grad()
    dp = DataParallel(model, n_shards)
    if fused:
        loss = dp.forward_backward(x, y)
    else:
        loss = dp.forward(x, y)
        dp.backward()
    dp.close()
    return loss, [p.grad.copy() for p in model.parameters()]


def assert_grads_close(a, b, rtol=1e-12):
    for g, h in zip(a, b):
        scale = max(np.abs(h).max(), 1e-300)
        assert np.abs(g - h).max() <= rtol * scale


def batch(seed, B=4, high=V):
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, (B, T)), rng.integers(0, high, (B, T))


def assert_split_matches_one_pass(model, x, y, n_shards=2, rtol=1e-12):
    """The split loss and gradients, by either API, equal one pass's (float64: to rounding)."""
    loss1, g1 = one_pass(model, x, y)
    for fused in (False, True):
        loss2, g2 = split_pass(model, x, y, n_shards, fused)
        assert loss2 == pytest.approx(loss1, rel=rtol)
        assert_grads_close(g2, g1, rtol)
    return g2


@settings(max_examples=12, deadline=None)
@given(B=st.integers(1, 6), n_shards=st.integers(1, 4), seed=st.integers(0, 2 ** 16),
       pos=st.sampled_from(["learned", "rope"]))
def test_split_equals_one_pass_with_uneven_shards_and_ignored_targets(B, n_shards, seed, pos):
    x, y = batch(seed, B)
    y[np.random.default_rng(seed).random((B, T)) < 0.3] = -100   # ignored, unevenly over shards
    assert_split_matches_one_pass(small_gpt(pos=pos), x, y, n_shards)


def test_a_shard_with_every_target_ignored_counts_for_nothing():
    x, y = batch(0)
    y[2:] = -100
    assert_split_matches_one_pass(small_gpt(), x, y)


def test_gradients_add_into_what_the_model_already_holds():
    model = small_gpt()
    x, y = batch(1)
    _, g1 = one_pass(model, x, y)
    model.zero_grad()
    dp = DataParallel(model, 2)
    dp.forward(x, y)                       # two micro-batches: grads accumulate with +=
    dp.backward()
    dp.forward_backward(x, y)
    assert_grads_close([p.grad for p in model.parameters()], [2 * g for g in g1])


def test_classifier_splits_too():
    model = TextClassifier(V, T, n_embd=16, n_head=2, n_classes=3, dtype=np.float64,
                           rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    x, y = rng.integers(1, V, (5, T)), rng.integers(0, 3, 5)
    assert_split_matches_one_pass(model, x, y)


def test_float32_split_matches_one_pass_to_rounding():
    grads = assert_split_matches_one_pass(small_gpt("float32"), *batch(3, B=6), rtol=1e-5)
    assert all(g.dtype == np.float32 for g in grads)


def test_numpy_backend_runs_in_the_shard_threads_too():
    with kernels.use("numpy"):
        assert_split_matches_one_pass(small_gpt(), *batch(4))


def test_replicas_follow_in_place_updates_and_replaced_arrays():
    model = small_gpt()
    x, y = batch(5)
    dp = DataParallel(model, 2)
    opt = AdamW([{"params": model.parameters()}], lr=1e-2)
    for _ in range(3):                     # the optimizer writes the shared arrays in place
        model.zero_grad()
        dp.forward(x, y)
        dp.backward()
        opt.step()
    loss1, g1 = one_pass(model, x, y)
    model.zero_grad()
    assert dp.forward(x, y) == pytest.approx(loss1, rel=1e-12)
    dp.backward()
    assert_grads_close([p.grad for p in model.parameters()], g1)

    model.to(np.float32)                   # new arrays: the replica is rebuilt from them
    loss1, g1 = one_pass(model, x, y)
    model.zero_grad()
    assert dp.forward(x, y) == pytest.approx(loss1, rel=1e-6)
    dp.backward()
    assert_grads_close([p.grad for p in model.parameters()], g1, rtol=1e-5)


def test_shards_draw_different_dropout_masks_and_runs_repeat():
    def run(seed):
        model = small_gpt(dropout=0.5, seed=seed)
        x = np.tile(np.arange(T) % V, (4, 1))          # every row the same
        dp = DataParallel(model, 2)
        loss = dp.forward(x, x)
        dp.backward()
        return dp.shard_losses, loss, [p.grad.copy() for p in model.parameters()]
    shard_losses, loss, grads = run(0)
    assert shard_losses[0] != shard_losses[1]           # same rows, different masks
    shard_losses2, loss2, grads2 = run(0)
    assert shard_losses2 == shard_losses and loss2 == loss
    assert all(np.array_equal(a, b) for a, b in zip(grads, grads2))


def test_inference_mode_split_keeps_nothing():
    model = small_gpt()
    x, y = batch(6)
    model.eval()
    with npgpt.no_grad():
        _, loss1 = model(x, y)
        dp = DataParallel(model, 2)
        assert dp.forward(x, y) == pytest.approx(float(loss1), rel=1e-12)
    assert all(m._cache is None for r in [model] + [r.module for r in dp._replicas] for m in r.modules())


def test_a_failing_shard_raises_and_leaves_the_gradients_untouched():
    model = small_gpt()
    x, y = batch(7)
    bad = y.copy()
    bad[3, 0] = V + 5                      # only the second shard holds the bad target
    dp = DataParallel(model, 2)
    model.zero_grad()
    with pytest.raises(InputError, match="outside"):
        dp.forward(x, bad)
    with pytest.raises(BackwardError):
        dp.backward()
    assert all(not p.grad.any() for p in model.parameters())
    loss1, g1 = one_pass(model, x, y)      # and the next step works
    model.zero_grad()
    assert dp.forward(x, y) == pytest.approx(loss1, rel=1e-12)
    dp.backward()
    assert_grads_close([p.grad for p in model.parameters()], g1)


@pytest.mark.parametrize("bad_row", [0, 3])      # in the model's own shard, in the replica's
def test_forward_backward_with_a_failing_shard_raises_and_leaves_the_gradients_untouched(bad_row):
    model = small_gpt()
    x, y = batch(7)
    bad = y.copy()
    bad[bad_row, 0] = V + 5
    dp = DataParallel(model, 2)
    model.zero_grad()
    with pytest.raises(InputError, match="outside"):
        dp.forward_backward(x, bad)
    assert all(not p.grad.any() for p in model.parameters())
    with pytest.raises(BackwardError):
        dp.backward()                      # forward_backward leaves nothing to differentiate
    loss1, g1 = one_pass(model, x, y)      # and the next step works
    model.zero_grad()
    assert dp.forward_backward(x, y) == pytest.approx(loss1, rel=1e-12)
    assert_grads_close([p.grad for p in model.parameters()], g1)


def test_thread_settings_are_restored_after_each_phase():
    model = small_gpt("float32")
    x, y = batch(8)
    before = get_num_threads()
    dp = DataParallel(model, 2)
    dp.forward(x, y)
    assert get_num_threads() == before
    dp.backward()
    assert get_num_threads() == before
    dp.forward_backward(x, y)
    assert get_num_threads() == before


def test_bad_arguments_are_refused():
    class NoLoss(npgpt.Module):
        pass
    with pytest.raises(ConfigError, match="loss_fn"):
        DataParallel(NoLoss())
    with pytest.raises(ConfigError, match="n_shards"):
        DataParallel(small_gpt(), 0)
    dp = DataParallel(small_gpt(), 2)
    with pytest.raises(InputError, match="batch size"):
        dp.forward(np.zeros((4, T), int), np.zeros((3, T), int))


def test_auto_shards_splits_only_when_each_shard_keeps_n_embd_rows():
    tiny = npgpt.GPT(npgpt.GPTConfig(vocab_size=512, block_size=64, n_layer=1, n_head=4,
                                     n_embd=128), seed=0)
    assert auto_shards(tiny, 16, 64, n_threads=2) == 2      # 512 rows per shard >= 128
    assert auto_shards(tiny, 16, 64, n_threads=4) == 4
    assert auto_shards(tiny, 1, 64, n_threads=2) == 1       # one row: nothing to split
    assert auto_shards(tiny, 16, 64, n_threads=1) == 1
    assert auto_shards(tiny, 2, 64, n_threads=2) == 1       # 64 rows per shard < 128
    assert auto_shards(npgpt.Module(), 16, 64, n_threads=2) == 1


# --- the Trainer --------------------------------------------------------------------------

def _train_config(out, **kw):
    from npgpt.trainer import TrainConfig
    base = dict(batch_size=4, block_size=T, max_steps=6, eval_interval=3, eval_steps=2,
                log_interval=1, lr=3e-3, warmup_steps=0, out_dir=str(out), progress=False,
                plot=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def two_threads():
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: the Trainer has no second thread to split the batch over")
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(previous)


def test_trainer_split_or_not_trains_the_same(tmp_path, two_threads):
    from npgpt.trainer import Trainer
    data = np.random.default_rng(0).integers(0, V, 2000)
    runs = {}
    for mode in ("on", "off"):
        model = small_gpt("float32")
        trainer = Trainer(model, data, data, _train_config(tmp_path / mode, data_parallel=mode))
        trainer.train()
        assert trainer._parallel.n_shards == (2 if mode == "on" else 1)
        runs[mode] = [r["loss"] for r in trainer.history if "loss" in r], model
    (on, m_on), (off, m_off) = runs["on"], runs["off"]
    assert on == pytest.approx(off, rel=1e-4)
    for p, q in zip(m_on.parameters(), m_off.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=1e-4)


def test_trainer_split_with_dropout_resumes_bit_exact(tmp_path, two_threads):
    from npgpt.trainer import Trainer
    data = np.random.default_rng(1).integers(0, V, 2000)
    straight = small_gpt("float32", dropout=0.2)
    Trainer(straight, data, None, _train_config(tmp_path / "a", data_parallel="on")).train()
    first = small_gpt("float32", dropout=0.2)
    Trainer(first, data, None, _train_config(tmp_path / "b", data_parallel="on")).train(until=3)
    resumed = small_gpt("float32", dropout=0.2, seed=7)
    trainer = Trainer(resumed, data, None, _train_config(tmp_path / "b", data_parallel="on"))
    trainer.resume(tmp_path / "b")
    trainer.train()
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert np.array_equal(p.data, q.data), name


def test_trainer_refuses_a_bad_mode_or_a_model_it_cannot_split(tmp_path):
    from npgpt.trainer import Trainer
    with pytest.raises(ConfigError, match="data_parallel"):
        _train_config(tmp_path, data_parallel="yes")

    class NoLoss(npgpt.Module):
        pass
    with pytest.raises(ConfigError, match="loss_fn"):
        Trainer(NoLoss(), np.zeros(100, int), None, _train_config(tmp_path, data_parallel="on"))


def test_shards_for_each_mode(two_threads):
    from npgpt.runtime.parallel import shards_for
    tiny = npgpt.GPT(npgpt.GPTConfig(vocab_size=512, block_size=64, n_layer=1, n_head=4,
                                     n_embd=128), seed=0)
    assert shards_for("off", tiny, 16, 64) == 1
    assert shards_for("on", tiny, 16, 64) == 2
    assert shards_for("on", tiny, 2, 4) == 2          # on: split even where auto would not
    assert shards_for("on", tiny, 1, 64) == 1         # but never below one row per shard
    assert shards_for("auto", tiny, 16, 64) == 2
    assert shards_for("auto", tiny, 2, 4) == 1
    with pytest.raises(ConfigError, match="data_parallel"):
        shards_for("yes", tiny, 16, 64)
