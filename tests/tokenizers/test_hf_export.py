"""npgpt's tokenizers written as tokenizer.json + tokenizer_config.json and read back by
HuggingFace's tokenizers and transformers: the same ids and the same text.

A third of the held-out plays stands for the corpus here (all of it takes HuggingFace's
Oniguruma splitter ~25 s per tokenizer on two busy cores; ``python
benchmarks/check_tokenizer_export.py`` compares the whole corpus); hypothesis draws the rest
of Unicode.
"""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import tokenizers
from npgpt.data import shakespeare_text
from npgpt.errors import TokenizerError
from npgpt.tokenizers.hf import (
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    save_pretrained_tokenizer,
)

from .families import ASSIGNED

hf_tokenizers = pytest.importorskip("tokenizers")

# letters, digits, punctuation, accents, CJK, emoji (with a joiner and a variation selector),
# and every kind of whitespace run the split patterns treat specially
ALPHABET = list("abcXYZ019'.,!?-_") + list("éüßñçØ") + list("日本語中文한국어漢字") + \
    ["🎉", "👍🏽", "👨\u200d👩\u200d👧", "❤\ufe0f", "🦀"] + \
    [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u3000", "\xa0", "   \n "]
unicode_texts = st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join) | \
    st.text(ASSIGNED, max_size=30)


def _named(name):
    if name == "bpe":      # a byte-level BPE trained by npgpt (GPT-4 split pattern)
        return tokenizers.get("bpe:300", text=shakespeare_text("val")[:20000])
    if name == "gpt2":
        try:
            return tokenizers.get("gpt2")
        except TokenizerError as e:
            pytest.skip(str(e))
    return tokenizers.get(name)


@pytest.fixture(scope="module", params=["bpe", "gpt2", "cl100k_base"])
def exported(request, tmp_path_factory):
    tok = _named(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    save_pretrained_tokenizer(tok, folder, model_max_length=64)
    return tok, folder, hf_tokenizers.Tokenizer.from_file(str(folder / TOKENIZER_JSON))


def test_tokenizer_json_gives_npgpts_ids_on_the_held_out_plays(exported):
    tok, _, hf = exported
    text = shakespeare_text("val")[:150_000]
    ids = hf.encode(text).ids
    assert ids == list(tok.encode(text))
    assert hf.decode(ids) == text


@settings(max_examples=40)
@given(text=unicode_texts)
def test_tokenizer_json_gives_npgpts_ids_on_any_unicode(exported, text):
    tok, _, hf = exported
    ids = list(tok.encode_ordinary(text))
    assert hf.encode(text).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == tok.decode(ids)


def test_transformers_autotokenizer_loads_it_with_the_special_tokens(exported):
    transformers = pytest.importorskip("transformers")
    tok, folder, _ = exported
    auto = transformers.AutoTokenizer.from_pretrained(folder)
    text = "  Hello,  wörld!\n\n日本語 🎉🎉\t x   "
    assert auto(text)["input_ids"] == list(tok.encode(text))
    assert auto.decode(tok.encode(text)) == text
    for special, i in tok.special_tokens.items():
        assert auto.convert_tokens_to_ids(special) == i
    config = json.loads((folder / TOKENIZER_CONFIG).read_text())
    assert config["model_max_length"] == 64
    assert config.get("eos_token") == ("<|endoftext|>" if tok.special_tokens else None)


def test_the_char_tokenizer_is_exported_exactly(tmp_path):
    text = shakespeare_text("val")
    tok = tokenizers.get("char", text=text)
    save_pretrained_tokenizer(tok, tmp_path)
    hf = hf_tokenizers.Tokenizer.from_file(str(tmp_path / TOKENIZER_JSON))
    sample = text[:50000]
    assert hf.encode(sample).ids == tok.encode(sample)
    assert hf.decode(tok.encode(sample)) == sample
    with pytest.raises(Exception, match="UNK"):     # a character outside the vocabulary:
        hf.encode("日")                              # both refuse
    with pytest.raises(TokenizerError):
        tok.encode("日")


def test_a_tokenizer_without_an_exact_form_is_refused_and_nothing_written(tmp_path):
    tok = tokenizers.ClassicBPE.train("low lower lowest newer wider " * 20, 40)
    with pytest.raises(TokenizerError, match="no exact tokenizer.json form"):
        save_pretrained_tokenizer(tok, tmp_path)
    assert list(tmp_path.iterdir()) == []
