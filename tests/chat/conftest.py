import json

import numpy as np
import pytest

from . import templates


@pytest.fixture(scope="session")
def chat_dir(tmp_path_factory):
    """A tiny random LLaMA-shaped model saved as a HuggingFace directory, with a Qwen-style
    tokenizer.json (NFC, ChatML specials), a ChatML template and a generation_config.json.
    The embedding has more rows than the tokenizer has ids, as real checkpoints often do."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("jinja2")
    from npgpt.hf import save_pretrained
    from npgpt.models import GPT, GPTConfig
    from npgpt.tokenizers import load

    from ..tokenizers import families
    folder = tmp_path_factory.mktemp("chat")
    text = ("To be, or not to be, that is the question. Whether tis nobler in the mind to "
            "suffer the slings and arrows of outrageous fortune. ") * 40
    hf = families.build("qwen2", text, vocab_size=400)
    tokenizer = load(families.save(hf, folder))
    config = GPTConfig(vocab_size=tokenizer.vocab_size + 6, block_size=256, n_layer=2, n_head=4,
                       n_embd=32, pos="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                       n_kv_head=2, tie_embeddings=False, mlp_hidden=48, init_std=0.5)
    model = GPT(config, seed=7)
    out = folder / "model"
    save_pretrained(model, out, tokenizer)
    config_path = out / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    tok_config.update(chat_template=templates.CHATML, eos_token="<|im_end|>")
    config_path.write_text(json.dumps(tok_config))
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [tokenizer.special_tokens["<|im_end|>"],
                          tokenizer.special_tokens["<|endoftext|>"]]}))
    return out


@pytest.fixture
def greedy():
    return dict(temperature=0, max_new_tokens=12, seed=0)


def full_forward_reply(chat, prompt_ids, n):
    """The greedy reply to ``prompt_ids`` by full forwards (no cache): the reference."""
    ids = list(prompt_ids)
    out = []
    for _ in range(n):
        logits = chat.model.forward(np.array([ids]))[0][0, -1]
        logits[chat.tokenizer.vocab_size:] = -np.inf
        token = int(np.argmax(logits))
        if token in chat.stop_ids:
            break
        out.append(token)
        ids.append(token)
    return out
