"""Chat end to end on each family: a random-weight directory made by transformers, with a
tokenizer.json of the family's kind and a chat template in its style. npgpt's prompt ids
equal transformers' ``apply_chat_template``, and two greedy turns (the second reusing the KV
cache) equal transformers' ``generate`` on the whole conversation."""
import json

import pytest

from npgpt.chat import Chat

from ..test_hf_families import FAMILIES, random_model
from ..tokenizers import families
from . import templates

# model family -> (tokenizer kind, template, template variables)
CASES = {
    "llama3": ("llama3", templates.LLAMA3, templates.VARIABLES["llama3"]),
    "qwen2": ("qwen2", templates.CHATML, templates.VARIABLES["chatml"]),
    "qwen3": ("qwen2", templates.CHATML, templates.VARIABLES["chatml"]),
    "smollm3": ("qwen2", templates.CHATML, templates.VARIABLES["chatml"]),
    "gemma3_text": ("gemma", templates.GEMMA, templates.VARIABLES["gemma"]),
    "smollm2": ("smollm2", templates.CHATML, templates.VARIABLES["chatml"]),
}
END = {"llama3": "<|eot_id|>", "qwen2": "<|im_end|>", "smollm2": "<|im_end|>",
       "gemma": "<end_of_turn>"}
TURNS = ["To be, or not to be?", "Whether 'tis nobler in the mind 😀"]
NEW = 6
TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles "
        "and by opposing end them. To die, to sleep; no more. ") * 30


def _config(transformers, family):
    if family == "smollm2":        # LLaMA tensors, tied head
        return transformers.LlamaConfig(hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        tie_word_embeddings=True, rope_theta=1000.0)
    return FAMILIES[family](transformers)


@pytest.fixture(scope="module", params=list(CASES))
def family_dir(request, tt, tmp_path_factory):
    torch, transformers = tt
    family = request.param
    kind, template, variables = CASES[family]
    folder = tmp_path_factory.mktemp(family)
    # with the family's post-processor: the template's own BOS must not be doubled
    tok = families.with_post_processor(families.build(kind, TEXT, vocab_size=500), kind)
    config = _config(transformers, family)
    config.vocab_size = tok.get_vocab_size() + 3       # rows the tokenizer never names
    config.max_position_embeddings = 256
    model = random_model(torch, transformers, config)
    model.save_pretrained(folder)
    families.save(tok, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template, **variables}))
    end = tok.token_to_id(END[kind])
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [end]}))
    return family, folder, model.eval(), tok.get_vocab_size(), end


def test_each_family_chats_as_transformers_generates(tt, family_dir):
    torch, transformers = tt
    family, folder, hf_model, n_tokens, end = family_dir
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    chat = Chat.from_pretrained(folder, temperature=0, max_new_tokens=NEW)
    assert end in chat.stop_ids
    messages = []
    for turn, text in enumerate(TURNS):
        messages.append({"role": "user", "content": text})
        expect_prompt = hf_tok.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)
        if isinstance(expect_prompt, dict):
            expect_prompt = expect_prompt["input_ids"]
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([expect_prompt]), max_new_tokens=NEW,
                                    do_sample=False, eos_token_id=[end], pad_token_id=end,
                                    suppress_tokens=list(range(n_tokens, hf_model.config.vocab_size)))
        expect = [i for i in out[0, len(expect_prompt):].tolist() if i != end]
        fed_before = chat.fed
        reply = chat.send(text)
        assert chat.prompt_ids()[:len(expect_prompt)] == expect_prompt
        assert chat._cached[len(expect_prompt):] == expect, family
        assert reply == hf_tok.decode(expect)
        if turn:                          # the first turn's tokens were not computed again
            assert chat.fed - fed_before < len(expect_prompt)
        messages.append({"role": "assistant", "content": reply})
