"""npgpt eval | export | lora, and npgpt train --lora-*, end to end in process."""
import json

import numpy as np
import pytest

from npgpt import from_pretrained
from npgpt.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from npgpt.cli import main
from npgpt.data import shakespeare_text
from npgpt.hf import save_pretrained
from npgpt.io import load_safetensors
from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers import get as get_tokenizer

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
        "--batch-size", "4", "--eval-steps", "2", "--no-progress", "--no-plot",
        "--warmup-steps", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "plays.txt"
    path.write_text(shakespeare_text("val")[:30000], encoding="utf-8")
    return path


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_train_bpe_export_and_transformers_pipeline_generates_npgpts_greedy_tokens(
        corpus, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    transformers.logging.set_verbosity_error()
    run, hf_dir = tmp_path / "run", tmp_path / "hf"
    # a GPT-2-shaped model (the baby preset): transformers has no class for the default
    # recipe's (RoPE, RMSNorm, ReLU², q/k norms), which export refuses
    assert main(["train", "--data", str(corpus), "--tokenizer", "bpe:512", "--max-steps", "20",
                 "--eval-interval", "20", "--out", str(run), "--preset", "baby", *TINY]) == 0
    assert main(["export", str(run / "checkpoint"), str(hf_dir)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= {p.name for p in hf_dir.iterdir()}

    pipe = transformers.pipeline("text-generation", model=str(hf_dir))
    prompt = "ROMEO:\nBut soft"
    out = pipe(prompt, max_new_tokens=12, do_sample=False, return_tensors=True)
    theirs = list(out[0]["generated_token_ids"])
    ours_model = from_pretrained(hf_dir)
    tok = get_tokenizer(next((run / "checkpoint").glob("tokenizer*")))
    ids = np.array([tok.encode(prompt)])
    ours = ours_model.generate(ids, 12, temperature=0)[0].tolist()
    assert theirs == ours and len(ours) == ids.shape[1] + 12

    # the checkpoint and its export measure the same perplexity
    capsys.readouterr()
    results = []
    for ckpt in (run, hf_dir):
        assert main(["eval", "--ckpt", str(ckpt), "--data", str(corpus), "--block", "32",
                     "--stride", "16", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["tokens"] == results[1]["tokens"] > 1000
    assert results[0]["nll"] == pytest.approx(results[1]["nll"], rel=1e-6)
    assert 0 < results[0]["bits_per_byte"] < 8


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small random GPT-2-layout HuggingFace directory with an npgpt BPE tokenizer."""
    path = tmp_path_factory.mktemp("base")
    tok = get_tokenizer("bpe:300", text=shakespeare_text("val")[:20000])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                          n_embd=16))
    save_pretrained(model, path, tokenizer=tok)
    return path


def test_lora_train_resume_and_merge(base, corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--init-from", str(base), "--out", str(run),
            "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "c_attn,c_proj",
            "--lora-dropout", "0.1", "--eval-interval", "3", "--batch-size", "4",
            "--block-size", "32", "--eval-steps", "2", "--no-progress", "--no-plot"]
    assert main(args + ["--max-steps", "3"]) == 0
    assert "trainable parameters" in capsys.readouterr().out
    config = json.loads((run / "adapter" / ADAPTER_CONFIG).read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["lora_dropout"] == 0.1
    assert sorted(config["target_modules"]) == ["c_attn", "c_proj"]
    tensors = load_safetensors(run / "adapter" / ADAPTER_WEIGHTS)
    assert tensors["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"].shape == (4, 16)
    assert tensors["base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"].shape == (16, 4)
    assert any(np.abs(v).max() > 0 for k, v in tensors.items() if "lora_B" in k)   # it trained
    optimizer = load_safetensors(run / "checkpoint" / "optimizer.safetensors")
    assert len(optimizer) == 1 + 2 * len(tensors)          # moments for the adapters only

    assert main(["train", "--data", str(corpus), "--out", str(run), "--resume",
                 "--max-steps", "6", "--no-progress", "--no-plot"]) == 0
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["step"] == 6
    base_model = from_pretrained(base)
    checkpoint = load_safetensors(run / "checkpoint" / "model.safetensors")
    for name, p in base_model.named_parameters():       # the base stayed frozen
        np.testing.assert_array_equal(checkpoint[name], p.data)

    merged = tmp_path / "merged"
    assert main(["lora", "merge", str(base), str(run / "adapter"), str(merged)]) == 0
    assert (merged / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    idx = np.random.default_rng(0).integers(0, 300, size=(2, 32))
    adapted = from_pretrained(base, adapter=run / "adapter").eval().forward(idx)[0]
    np.testing.assert_allclose(from_pretrained(merged).forward(idx)[0], adapted, rtol=1e-4,
                               atol=1e-5)
    assert np.abs(adapted - base_model.forward(idx)[0]).max() > 1e-4
    assert main(["export", str(run), str(tmp_path / "exported")]) == 0    # exported merged
    np.testing.assert_allclose(from_pretrained(tmp_path / "exported").forward(idx)[0], adapted,
                               rtol=1e-4, atol=1e-5)

    capsys.readouterr()       # eval on the base with the adapter, and the LoRA checkpoint
    results = []
    for extra in (["--ckpt", str(base), "--adapter", str(run / "adapter")], ["--ckpt", str(run)]):
        assert main(["eval", *extra, "--data", str(corpus), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out)["nll"])
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_bad_input_is_one_line_and_writes_nothing(base, corpus, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("To be", encoding="utf-8")
    assert "fewer than one window" in _error(capsys, ["eval", "--ckpt", str(base), "--data",
                                                      str(short)])
    assert "stride=40 is larger than block=32" in _error(
        capsys, ["eval", "--ckpt", str(base), "--data", str(corpus), "--stride", "40"])

    other = tmp_path / "other"         # a base of another shape, and its adapter
    save_pretrained(GPT(GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2,
                                  n_embd=24)), other)
    from npgpt.adapters import LoraConfig, apply_lora, save_adapter
    save_adapter(apply_lora(from_pretrained(other), LoraConfig(r=2)), tmp_path / "adapter")
    out = tmp_path / "merged"
    assert "mis-shaped" in _error(capsys, ["lora", "merge", str(base), str(tmp_path / "adapter"),
                                           str(out)])
    assert not out.exists()
    config_path = tmp_path / "adapter" / ADAPTER_CONFIG
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "use_dora": True}))
    assert "use_dora=True is not supported" in _error(
        capsys, ["lora", "merge", str(other), str(tmp_path / "adapter"), str(out)])
    assert not out.exists()
    assert "--init-from" in _error(capsys, ["train", "--data", str(corpus), "--lora-rank", "4",
                                            "--out", str(tmp_path / "run"), *TINY])
    assert "match no Linear" in _error(capsys, [
        "train", "--data", str(corpus), "--init-from", str(base), "--lora-rank", "2",
        "--lora-targets", "q_proj", "--out", str(tmp_path / "run2"), "--max-steps", "1",
        "--no-progress", "--no-plot", "--block-size", "32"])
    assert not (tmp_path / "run2" / "checkpoint").exists()
