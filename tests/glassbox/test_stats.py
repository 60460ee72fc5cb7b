"""Training statistics (stats.jsonl): what is written, when, and that the numbers are right."""
import json
import math

import numpy as np
import pytest

from npgpt import GPT, GPTConfig
from npgpt.errors import ConfigError, NpgptError
from npgpt.glassbox.stats import HIST_EDGES, attention_entropy, histogram, saturation
from npgpt.tokenizers.char import CharTokenizer
from npgpt.trainer import TrainConfig, Trainer

TEXT = "the quick brown fox jumps over the lazy dog; " * 20


def _trainer(tmp_path, **kw):
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2,
                          n_embd=16), seed=0)
    base = dict(batch_size=4, block_size=16, max_steps=6, lr=0.01, min_lr=0.001, warmup_steps=1,
                eval_interval=3, eval_steps=1, log_interval=1, out_dir=str(tmp_path / "out"),
                progress=False, plot=False, save_checkpoints=False)
    return Trainer(model, ids[:700], ids[700:], TrainConfig(**{**base, **kw}), tokenizer=tok)


def _lines(trainer):
    return [json.loads(line) for line in (trainer.out_dir / "stats.jsonl").read_text().splitlines()]


def test_stats_are_written_every_interval_with_the_documented_fields(tmp_path):
    trainer = _trainer(tmp_path, stats_interval=2, probe_prompt="the fox")
    trainer.train()
    lines = _lines(trainer)
    kinds = [(r["kind"], r["step"]) for r in lines]
    assert kinds == [("meta", 0), ("step", 2), ("probe", 3), ("step", 4), ("step", 6), ("probe", 6)]
    meta, step, probe = lines[0], lines[1], lines[2]
    assert meta["hist_edges"] == HIST_EDGES.tolist() and meta["probe"]["tokens"] == list("the fox")
    assert set(step["params"]) == set(meta["params"]) == {n for n, _ in trainer.model.named_parameters()}
    p = step["params"]["h.0.attn.c_attn.weight"]
    assert p["grad_data"] == pytest.approx(p["g_std"] / p["w_std"], rel=1e-4)
    layer = step["layers"]["h.1"]
    assert len(layer["attn_entropy"]) == 2 and sum(layer["act"]["hist"]) == pytest.approx(1, abs=1e-3)
    assert 0 <= layer["saturated"] <= 1 and 0 <= layer["dead"] <= 1 and layer["resid_norm"] > 0
    att = np.array(probe["attention"])
    assert att.shape == (2, 2, 7, 7) and np.allclose(att.sum(-1), 1, atol=1e-3)
    assert probe["lens"]["labels"] == ["embed", "h.0", "h.1"] and probe["tokens"] == list("the fox")
    assert np.array(probe["lens"]["top_ids"]).shape == (3, 7, 5)


def test_update_ratio_is_the_optimizers_actual_update(tmp_path):
    trainer = _trainer(tmp_path, stats_interval=1, max_steps=2)
    trainer.train(until=1)
    before = {n: p.data.copy() for n, p in trainer.model.named_parameters()}
    trainer.train(until=2)
    record = [r for r in _lines(trainer) if r["kind"] == "step"][-1]
    assert record["step"] == 2
    for name, p in trainer.model.named_parameters():
        w0 = before[name]
        if w0.std() == 0:
            continue
        expected = math.log10((p.data - w0).std(dtype=np.float64) / w0.std(dtype=np.float64))
        assert record["params"][name]["update_data"] == pytest.approx(expected, abs=1e-3), name


def test_stats_off_writes_nothing_and_measures_nothing(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.train()
    assert trainer.stats is None and not (trainer.out_dir / "stats.jsonl").exists()


def test_a_probe_prompt_that_cannot_run_is_a_clear_error(tmp_path):
    with pytest.raises(NpgptError):
        _trainer(tmp_path, stats_interval=2, probe_prompt="ZZZ unknown chars").train()
    with pytest.raises(ConfigError, match="block_size"):
        _trainer(tmp_path, stats_interval=2, probe_prompt="the " * 10).train()


def test_histogram_entropy_and_saturation_helpers():
    a = np.array([-10.0, -5.0, 0.0, 0.1, 4.99, 5.0, 7.0])
    h = histogram(a)
    assert len(h) == 40 and sum(h) == pytest.approx(1, abs=1e-4) and h[0] == pytest.approx(2 / 7, abs=1e-5)
    assert h[-1] == pytest.approx(3 / 7, abs=1e-5)
    uniform = np.full((1, 1, 1, 4), 0.25)
    assert attention_entropy(uniform) == [pytest.approx(math.log(4), abs=1e-5)]
    pre = np.array([[[-4.0, 0.5], [-3.5, 4.0]]])             # unit 0 is flat at both positions
    assert saturation(pre, "gelu_tanh") == (0.75, 0.5)
    assert saturation(pre, "relu") == (0.5, 0.5)


def test_stats_under_the_in_process_data_parallel_split(tmp_path):
    trainer = _trainer(tmp_path, stats_interval=2, max_steps=4, data_parallel="on")
    trainer.train()
    steps = [r for r in _lines(trainer) if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [2, 4]
    assert all(r["params"]["wte.weight"]["update_data"] is not None for r in steps)


def test_stats_on_a_llama_style_model(tmp_path):
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    model = GPT(GPTConfig.preset("llama-tiny", vocab_size=tok.vocab_size, block_size=16,
                                 n_layer=2, n_embd=32, mlp_hidden=64), seed=0)
    cfg = TrainConfig(batch_size=2, block_size=16, max_steps=2, eval_interval=2, eval_steps=1,
                      stats_interval=1, out_dir=str(tmp_path / "out"), progress=False,
                      plot=False, save_checkpoints=False)
    trainer = Trainer(model, ids[:700], ids[700:], cfg, tokenizer=tok)
    trainer.train()
    step = [r for r in _lines(trainer) if r["kind"] == "step"][-1]
    assert "h.1.mlp.gate_proj.weight" in step["params"] and len(step["layers"]["h.1"]["attn_entropy"]) == 4


def test_a_bad_probe_prompt_leaves_no_output_directory(tmp_path):
    trainer = _trainer(tmp_path, stats_interval=2, probe_prompt="ZZZ")
    with pytest.raises(NpgptError):
        trainer.train()
    assert not trainer.out_dir.exists()
