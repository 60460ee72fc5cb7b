import itertools
import json

import numpy as np
import pytest

from npgpt.data import tokenize
from npgpt.errors import CheckpointError, ConfigError, DataError, TrainingError
from npgpt.io import load_checkpoint
from npgpt.layers.linear import Linear
from npgpt.module import Module, Parameter
from npgpt.trainer import TrainConfig, Trainer, param_groups


class TokenEmbedding(Module):
    def __init__(self, V, C, rng):
        super().__init__()
        self.weight = Parameter((rng.standard_normal((V, C)) * 0.1).astype(np.float32))

    def forward(self, idx):
        self.save(idx)
        return self.weight.data[idx]

    def backward(self, dx):
        (idx,) = self.saved()
        np.add.at(self.weight.grad, idx.reshape(-1), dx.reshape(-1, dx.shape[-1]))


class TinyLM(Module):
    """A stand-in language model: embedding -> dropout -> linear head -> mean cross-entropy,
    with the GPT interface the Trainer relies on (forward(idx, targets), backward(), config)."""

    class Config:
        def __init__(self, V, T):
            self.vocab_size, self.block_size = V, T

        def to_dict(self):
            return {"vocab_size": self.vocab_size, "block_size": self.block_size}

    def __init__(self, V=8, C=6, T=16, seed=0, dropout=0.0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.config = self.Config(V, T)
        self.wte = TokenEmbedding(V, C, rng)
        self.head = Linear(C, V, rng=rng)
        self.dropout = dropout
        self._rng = np.random.default_rng(seed + 1)
        self.nan_at_call = None
        self.calls = 0

    def forward(self, idx, targets):
        self.calls += 1
        x = self.wte(idx)
        mask = None
        if self.keeps_activations and self.dropout:
            mask = (self._rng.random(x.shape) >= self.dropout) / (1 - self.dropout)
            x = (x * mask).astype(np.float32)
        logits = self.head(x)
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        loss = -np.take_along_axis(logp, targets[..., None], -1).mean()
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loss = np.float32(np.nan)
        self.save(logp, targets, mask)
        return logits, loss

    def backward(self):
        logp, targets, mask = self.saved()
        dlogits = np.exp(logp)
        np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1)
        dx = self.head.backward((dlogits / targets.size).astype(np.float32))
        if mask is not None:
            dx = dx * mask
        self.wte.backward(dx)


def _data(n=400, V=8, seed=0):
    # a learnable stream: mostly "next id = id + 1 (mod V)", with some noise
    rng = np.random.default_rng(seed)
    ids = (np.arange(n) + (rng.random(n) < 0.1) * rng.integers(0, V, n)) % V
    return ids.astype(np.uint16)


def _config(tmp_path, **kw):
    base = {"batch_size": 4, "block_size": 8, "max_steps": 20, "lr": 0.05, "min_lr": 0.005,
            "warmup_steps": 3, "eval_interval": 5, "eval_steps": 3, "log_interval": 2,
            "out_dir": str(tmp_path / "out"), "progress": False, "plot": False}
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_the_loss_and_writes_metrics_and_a_checkpoint(tmp_path):
    model = TinyLM()
    trainer = Trainer(model, _data(), _data(seed=1), _config(tmp_path, max_steps=40, plot=True))
    before = trainer.evaluate()
    last = trainer.train()
    assert last["step"] == 40 and last["val_loss"] < before["val"] - 0.5
    lines = [json.loads(s) for s in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "val_loss" in r]
    assert [r["step"] for r in logs] == list(range(2, 41, 2))
    assert [r["step"] for r in evals] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in logs)
    ck = load_checkpoint(tmp_path / "out" / "checkpoint")
    assert ck.trainer_state["step"] == 40 and ck.config == {"vocab_size": 8, "block_size": 16}
    assert np.array_equal(ck.model_state["head.weight"], model.head.weight.data)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_learning_rate_follows_warmup_then_cosine(tmp_path):
    trainer = Trainer(TinyLM(), _data(), None, _config(tmp_path, max_steps=10, log_interval=1,
                                                        eval_interval=100))
    trainer.train()
    lrs = [r["lr"] for r in trainer.history if "lr" in r]
    assert lrs[:3] == pytest.approx([0.05 / 3, 0.1 / 3, 0.05])
    assert all(a > b for a, b in itertools.pairwise(lrs[2:])) and lrs[-1] > 0.005


def test_no_weight_decay_on_biases_norms_and_embeddings():
    groups = param_groups(TinyLM(), 0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [(6, 8)]                  # head.weight only
    assert sorted(p.shape for p in no_decay["params"]) == [(8,), (8, 6)]   # head.bias, wte


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_resume_is_bit_exact(tmp_path, dropout):
    data, val = _data(), _data(seed=1)
    straight = TinyLM(dropout=dropout)
    Trainer(straight, data, val, _config(tmp_path / "a")).train()

    first = TinyLM(dropout=dropout)
    Trainer(first, data, val, _config(tmp_path / "b")).train(until=10)
    resumed = TinyLM(seed=99, dropout=dropout)          # other init and RNGs: all restored
    trainer = Trainer(resumed, data, val, _config(tmp_path / "b"))
    trainer.resume(tmp_path / "b" / "out")
    assert trainer.step == 10
    trainer.train()
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    steps = [json.loads(s)["step"] for s in (tmp_path / "b" / "out" / "metrics.jsonl").open()]
    assert steps == [json.loads(s)["step"] for s in (tmp_path / "a" / "out" / "metrics.jsonl").open()]


def test_resume_after_a_crash_drops_metrics_beyond_the_checkpoint(tmp_path):
    data = _data()
    Trainer(TinyLM(), data, None, _config(tmp_path, max_steps=14, eval_interval=5)).train()
    trainer = Trainer(TinyLM(), data, None, _config(tmp_path, max_steps=14, eval_interval=5))
    # pretend the run died after step 14 but the last checkpoint is step 10
    trainer.resume(tmp_path / "out")
    assert trainer.step == 14
    trainer.step = 10
    trainer._trim_metrics()
    assert max(r["step"] for r in trainer.history) == 10


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    data = _data()
    big = TinyLM()
    t1 = Trainer(big, data, None, _config(tmp_path / "a", batch_size=8, max_steps=1, grad_clip=0))
    small = TinyLM()
    t2 = Trainer(small, data, None, _config(tmp_path / "b", batch_size=4, grad_accum=2,
                                            max_steps=1, grad_clip=0))
    # the same 8 windows: one draw of 8, or two micro-batches of 4
    starts = np.random.default_rng(1337).integers(0, len(data) - 8, size=8)

    class Replay:
        def __init__(self, *draws):
            self.draws = iter(draws)

        def integers(self, lo, hi, size):
            return next(self.draws)

    t1.rng, t2.rng = Replay(starts), Replay(starts[:4], starts[4:])
    t1.train_step(), t2.train_step()
    for p, q in zip(big.parameters(), small.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-7)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = TinyLM()
    trainer = Trainer(model, _data(), _data(seed=1), _config(tmp_path, max_steps=20))
    model.nan_at_call = 13 + 2 * 2 * 3       # evals at steps 5 and 10: 2 splits x 3 batches
    with pytest.raises(TrainingError, match=r"loss became nan at step 13 .*last good checkpoint"):
        trainer.train()
    ck = load_checkpoint(tmp_path / "out" / "checkpoint")
    assert ck.trainer_state["step"] == 10
    assert not any(r["step"] > 12 for r in trainer.history)


def test_bad_configs_and_data_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="batch_size=0 must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="min_lr=0.1 is larger than lr=0.01"):
        TrainConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(ConfigError, match="beta2=1.0"):
        TrainConfig(beta2=1.0)
    with pytest.raises(ConfigError, match="block_size=32 is longer than the model's block_size=16"):
        Trainer(TinyLM(), _data(), None, _config(tmp_path, block_size=32))
    with pytest.raises(DataError, match="training data has 5 tokens"):
        Trainer(TinyLM(), _data(5), None, _config(tmp_path))


def test_resume_rejects_a_checkpoint_of_another_model(tmp_path):
    data = _data()
    Trainer(TinyLM(), data, None, _config(tmp_path, max_steps=5)).train()
    other = Trainer(TinyLM(C=7), data, None, _config(tmp_path, max_steps=5))
    with pytest.raises(CheckpointError, match=r"wte.weight: file \(8, 6\) vs expected \(8, 7\)"):
        other.resume(tmp_path / "out")


def test_tokenizer_identity_and_file_travel_with_the_checkpoint(tmp_path):
    tokenizers = pytest.importorskip("npgpt.tokenizers.char")
    text = "abcdefgh" * 40
    tok = tokenizers.CharTokenizer.train(text)
    data = tokenize(text, tok, cache_dir=tmp_path / "cache")
    Trainer(TinyLM(), data, None, _config(tmp_path, max_steps=5), tokenizer=tok).train()
    ck = load_checkpoint(tmp_path / "out")
    assert ck.trainer_state["tokenizer"]["name"] == tok.name
    assert tokenizers.CharTokenizer.load(ck.tokenizer_path).chars == tok.chars
    other = tokenizers.CharTokenizer.train("abcdefgz")
    with pytest.raises(CheckpointError, match="was trained with tokenizer"):
        Trainer(TinyLM(), data, None, _config(tmp_path, max_steps=5), tokenizer=other) \
            .resume(tmp_path / "out")


def test_resume_is_bit_exact_with_the_real_gpt(tmp_path):
    gpt = pytest.importorskip("npgpt.models.gpt")
    cfg = gpt.GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.1)
    data = _data()
    a = gpt.GPT(cfg, seed=0)
    Trainer(a, data, None, _config(tmp_path / "a", max_steps=6, eval_interval=3, lr=1e-2)).train()
    b = gpt.GPT(cfg, seed=0)
    Trainer(b, data, None, _config(tmp_path / "b", max_steps=6, eval_interval=3, lr=1e-2)).train(3)
    c = gpt.GPT(cfg, seed=5)
    Trainer(c, data, None, _config(tmp_path / "b", max_steps=6, eval_interval=3, lr=1e-2)) \
        .resume(tmp_path / "b" / "out").train()
    for (name, p), (_, q) in zip(a.named_parameters(), c.named_parameters()):
        assert np.array_equal(p.data, q.data), name
