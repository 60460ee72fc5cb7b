"""npgpt sample | eval | train --init-from on a family directory (a random-weight Llama 3 or
Gemma 3 made by transformers, with its kind of tokenizer.json, BOS post-processor included),
end to end in process: the prompt's ids are transformers' (BOS first), greedy sampling and
perplexity are theirs, and a few training steps from the directory lower the loss."""
import json
import math

import numpy as np
import pytest

from npgpt import infer
from npgpt.cli import main
from npgpt.hf import from_pretrained
from npgpt.io import load_safetensors

from .test_hf_families import FAMILIES, random_model
from .tokenizers import families

KINDS = {"llama3": "llama3", "gemma3_text": "gemma"}     # model family -> tokenizer kind
TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles "
        "and by opposing end them. To die, to sleep; no more. ") * 12
PROMPT = "To be, or not"


@pytest.fixture(scope="module", params=list(KINDS))
def family_dir(request, tt, tmp_path_factory):
    torch, transformers = tt
    family = request.param
    folder = tmp_path_factory.mktemp(family)
    tok = families.with_post_processor(families.build(KINDS[family], TEXT, vocab_size=300),
                                       KINDS[family])
    config = FAMILIES[family](transformers)
    config.vocab_size = tok.get_vocab_size()
    config.max_position_embeddings = 128
    model = random_model(torch, transformers, config)
    model.save_pretrained(folder)
    families.save(tok, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast",
         "bos_token": families.BOS[KINDS[family]]}))
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    return folder, model.eval(), hf_tok, tok.token_to_id(families.BOS[KINDS[family]])


def test_sample_feeds_transformers_prompt_ids_and_generates_its_greedy_tokens(
        tt, family_dir, capsys):
    torch, _ = tt
    folder, hf_model, hf_tok, bos = family_dir
    ids = hf_tok(PROMPT)["input_ids"]
    assert ids[0] == bos and ids.count(bos) == 1             # the case under test
    _, ours = infer.load(str(folder))
    assert ours.encode(PROMPT) == ids
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                pad_token_id=0)[0].tolist()
    expected = hf_tok.decode(out[1:])                        # printed without the BOS
    texts = infer.sample(ckpt=str(folder), prompt=PROMPT, max_new_tokens=8, temperature=0)
    assert texts == [expected]
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(folder), "--prompt", PROMPT, "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_eval_scores_the_text_after_transformers_bos(tt, family_dir, tmp_path, capsys):
    torch, _ = tt
    folder, hf_model, hf_tok, bos = family_dir
    text = TEXT[:140]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    ids = hf_tok(text)["input_ids"]
    assert ids[0] == bos
    with torch.no_grad():
        logits = hf_model(torch.tensor([ids[:-1]])).logits[0]
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:])).item()
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(folder), "--data", str(tmp_path / "t.txt"),
                 "--block", str(len(ids)), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == len(ids) - 1                  # every text token, not the BOS
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    bpb = result["nll"] / math.log(2) * (len(ids) - 1) / len(text.encode("utf-8"))
    assert result["bits_per_byte"] == pytest.approx(bpb, rel=1e-12)


def test_train_init_from_a_family_directory_lowers_the_loss(family_dir, tmp_path, capsys):
    folder, _, _, _ = family_dir
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--init-from", str(folder), "--data", str(tmp_path / "t.txt"),
                 "--out", str(run), "--max-steps", "8", "--batch-size", "4",
                 "--block-size", "32", "--lr", "3e-3", "--warmup-steps", "1",
                 "--eval-interval", "8", "--eval-steps", "2", "--no-progress",
                 "--no-plot"]) == 0
    capsys.readouterr()
    before = infer.eval(ckpt=str(folder), data=str(tmp_path / "t.txt"), block=32)
    after = infer.eval(ckpt=str(run), data=str(tmp_path / "t.txt"), block=32)
    assert after.tokens == before.tokens and after.nll < before.nll - 0.05, (before, after)
    # the checkpoint loads, with the family's layout and tokenizer, and moved off the init
    model, tokenizer = infer.load(str(run))
    base = from_pretrained(folder)
    assert model.config == base.config
    assert tokenizer.encode(PROMPT) == infer.load(str(folder))[1].encode(PROMPT)
    saved = load_safetensors(run / "checkpoint" / "model.safetensors")
    moved = [n for n, p in base.named_parameters() if not np.array_equal(saved[n], p.data)]
    assert len(moved) == len(list(base.named_parameters()))
    idx = np.array([tokenizer.encode(PROMPT)])
    assert np.abs(model.forward(idx)[0] - base.forward(idx)[0]).max() > 1e-3
