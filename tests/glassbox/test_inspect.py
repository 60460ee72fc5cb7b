"""npgpt inspect: the lens table and head summary of a checkpoint; bad input is one line."""
import json

import numpy as np
import pytest

import npgpt
from npgpt import GPT, GPTConfig
from npgpt.checkpoints import load_model
from npgpt.cli import main
from npgpt.tokenizers.char import CharTokenizer
from npgpt.trainer import TrainConfig, Trainer

TEXT = "ROMEO: but soft, what light through yonder window breaks?\n" * 20


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2,
                          n_embd=16), seed=0)
    cfg = TrainConfig(batch_size=4, block_size=16, max_steps=4, eval_interval=4, eval_steps=1,
                      out_dir=str(out), progress=False, plot=False)
    Trainer(model, ids[:900], ids[900:], cfg, tokenizer=tok).train()
    return out


def test_inspect_prints_the_lens_and_every_head(ckpt, capsys):
    assert main(["inspect", "--ckpt", str(ckpt), "--prompt", "ROMEO:"]) == 0
    out = capsys.readouterr().out
    assert "logit lens of 'ROMEO:' (6 tokens)" in out
    assert "| embed      h.0        h.1        |" in out
    rows = [line for line in out.splitlines() if line.startswith("  h.")]
    assert [r.split()[:2] for r in rows] == [["h.0", "0"], ["h.0", "1"], ["h.1", "0"], ["h.1", "1"]]


def test_inspect_json_agrees_with_the_model(ckpt, capsys):
    assert main(["inspect", "--ckpt", str(ckpt), "--prompt", "ROMEO", "--layer", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model, tok, _, _ = load_model(ckpt)
    model.eval()
    logits, _ = model.forward(np.array([tok.encode("ROMEO")]))
    assert result["tokens"] == list("ROMEO") and list(result["heads"]) == ["h.1"]
    assert [cell[0] for cell in result["lens"]["top_ids"][-1]] == logits[0].argmax(-1).tolist()
    assert result["lens"]["true"] == tok.encode("ROMEO")[1:] + [-1]


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "ROMEO€"], "not in this char tokenizer"),
    (["--prompt", "R" * 17], "the prompt is 17 tokens; the model reads at most block_size=16"),
    (["--prompt", "ROMEO", "--show", "h.0.nope"], "unknown cache name 'h.0.nope'; valid names"),
    (["--prompt", "ROMEO", "--layer", "2"], "--layer 2 is outside 0..1"),
    (["--prompt", ""], "the prompt is empty"),
])
def test_bad_input_is_one_clear_line(ckpt, capsys, argv, message):
    assert main(["inspect", "--ckpt", str(ckpt), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_a_huggingface_directory_caches_like_the_model_it_came_from(tmp_path):
    model = GPT(GPTConfig(vocab_size=21, block_size=8, n_layer=2, n_head=2, n_embd=8), seed=1)
    loaded = npgpt.from_pretrained(model.save_pretrained(tmp_path / "hf"))
    idx = np.arange(6)[None] % 21
    _, ours = model.run_with_cache(idx)
    _, theirs = loaded.run_with_cache(idx)
    assert set(ours.keys()) == set(theirs.keys())
    for name in ours.keys():
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, err_msg=name)
