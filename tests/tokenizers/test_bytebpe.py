import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import ByteBPE, get, load
from npgpt.tokenizers.bpe_train import count_words, train_merges, train_merges_reference
from npgpt.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding

import regex

SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>"]
# text that stresses the split pattern: CJK, emoji (with ZWJ), runs of whitespace, digits,
# apostrophes, and special-token lookalikes
pieces = st.sampled_from(["你好", "世界", "😀", "👩‍👩‍👧", "  ", "\n\n", "\t", " \r\n", "123456",
                          "'s", "'LL", "<|endoftext|>", "<|endoftext", "|>", "<|fim_prefix|>",
                          "Hello", " world", "ÿ", "é", "\u00a0", "ﬁ", "  \n "])
unicode_text = st.lists(st.one_of(pieces, st.text(max_size=8)), max_size=12).map("".join)


@pytest.fixture(scope="module")
def cl100k():
    return ByteBPE.from_tiktoken("cl100k_base"), tiktoken_encoding("cl100k_base")


@pytest.fixture(scope="module")
def corpus_ids(cl100k, shakespeare):
    ours, ref = cl100k
    return ours.encode_ordinary(shakespeare), ref.encode_ordinary(shakespeare)


@pytest.fixture(scope="module")
def trained(shakespeare):
    return ByteBPE.train(shakespeare[:200_000], 512, special_tokens=["<|endoftext|>"])


def test_cl100k_matches_tiktoken_on_the_whole_shakespeare_corpus(corpus_ids, shakespeare):
    ours, ref = corpus_ids
    assert len(shakespeare) > 1_000_000
    assert ours == ref


@settings(max_examples=60)
@given(text=unicode_text)
def test_cl100k_matches_tiktoken_on_drawn_unicode(cl100k, text):
    ours, ref = cl100k
    assert ours.encode(text, allowed_special="none") == ref.encode(text, disallowed_special=())
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert ours.decode(ours.encode(text, allowed_special="none")) == text


@settings(max_examples=10)
@given(texts=st.lists(unicode_text, min_size=1, max_size=40))
def test_batched_numba_encoder_equals_python_encoder(cl100k, texts):
    ours, ref = cl100k
    fresh = ByteBPE(ours.merges, ours.pattern, ours.special_tokens, ours.byte_ids, ignore_merges=False)
    words = sorted({w for t in texts for w in fresh._split.findall(t)})
    fresh._encode_many(words)
    for w in words:
        assert fresh._cache[w] == fresh._encode_piece(w.encode("utf-8")) == ref.encode_ordinary(w)


def test_special_tokens_raise_by_default_and_are_emitted_when_allowed(cl100k):
    ours, ref = cl100k
    text = "a<|endoftext|>b"
    with pytest.raises(TokenizerError, match="endoftext"):
        ours.encode(text)
    assert ours.encode(text, allowed_special={"<|endoftext|>"}) == ref.encode(text, allowed_special="all")
    assert 100257 in ours.encode(text, allowed_special="all")
    assert 100257 not in ours.encode(text, allowed_special="none")


def test_decode_replaces_invalid_utf8_and_rejects_unknown_ids(cl100k):
    ours, _ = cl100k
    euro = ours.encode("€")  # multi-byte: decode a prefix of its bytes
    partial = [ours.byte_ids[b] for b in "€".encode()[:2]]
    assert ours.decode(partial) == "\ufffd"
    assert ours.decode(euro) == "€"
    with pytest.raises(TokenizerError, match="999999"):
        ours.decode([999999])


@settings(max_examples=15)
@given(text=st.text(min_size=1, max_size=300), vocab=st.integers(256, 330),
       pattern=st.sampled_from(["gpt2", "gpt4", None]))
def test_fast_trainer_equals_the_reference_trainer(text, vocab, pattern):
    split = None if pattern is None else regex.compile({"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}[pattern])
    words = count_words(text, split)
    fast = train_merges(words, vocab - 256)
    ref = train_merges_reference(words, vocab - 256)
    np.testing.assert_array_equal(fast, ref)


def test_ties_break_to_the_smallest_pair():
    merges = train_merges({b"ab": 1, b"cd": 1, b"ba": 1}, 2)
    assert merges.tolist() == [[97, 98], [98, 97]]


@settings(max_examples=40)
@given(text=unicode_text)
def test_trained_tokenizer_roundtrips_any_string(trained, text):
    assert trained.decode(trained.encode(text, allowed_special="none")) == text
    ids = trained.encode(text, allowed_special="all")
    assert trained.decode(ids) == text


def test_trained_tokenizer_has_the_vocab_and_specials_asked_for(trained):
    assert trained.vocab_size == 512
    assert trained.special_tokens == {"<|endoftext|>": 511}
    assert len(trained.merges) == 511 - 256
    assert trained.encode("<|endoftext|>", allowed_special="all") == [511]


def test_save_load_roundtrip_and_tiktoken_rank_file(trained, shakespeare, tmp_path):
    sample = shakespeare[:20_000]
    trained.save(tmp_path / "tok.bpe")
    back = load(tmp_path / "tok.bpe")
    assert back.name == trained.name and back.name.startswith("bpe:")
    assert back.encode(sample) == trained.encode(sample)
    text = (tmp_path / "tok.bpe").read_text(encoding="utf-8")
    assert text.startswith("npgpt-bytebpe v1") and "\t" in text  # merges shown as text
    trained.save_tiktoken(tmp_path / "tok.tiktoken")
    again = ByteBPE.load_tiktoken(tmp_path / "tok.tiktoken", "gpt4", trained.special_tokens)
    assert again.encode(sample) == trained.encode(sample)
    assert trained.to_tiktoken().encode_ordinary(sample) == trained.encode(sample)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_bad_files_raise_tokenizer_error(tmp_path):
    (tmp_path / "bad.bpe").write_text("npgpt-bytebpe v1\nmerges 3\n1 2 256\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="3 merges"):
        load(tmp_path / "bad.bpe")
    (tmp_path / "junk").write_text("hello\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="junk"):
        load(tmp_path / "junk")
    with pytest.raises(TokenizerError, match="vocab_size"):
        ByteBPE.train("abc", 100)


def test_get_names(shakespeare):
    assert get("cl100k_base").name == "cl100k_base"
    assert get("cl100k_base").encode("hello world") == [15339, 1917]
    assert get("bpe:300", text=shakespeare[:5000]).vocab_size == 300
    with pytest.raises(TokenizerError, match="unknown tokenizer"):
        get("nonsense")


def test_importing_npgpt_neither_imports_numba_nor_compiles():
    code = ("import sys, npgpt, npgpt.tokenizers as t; t.ByteBPE([], 'gpt2').encode('hi'); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_pair_table_that_grows_many_times_gives_the_reference_merges(monkeypatch, shakespeare):
    # a table just big enough for the first pairs must grow (dropping the pairs merged away)
    # over and over
    from npgpt.tokenizers import _bpe_kernels, bpe_train
    from npgpt.tokenizers.unicode_classes import PinnedSplit
    word_counts = count_words(shakespeare[:20_000], PinnedSplit(GPT4_PATTERN))
    monkeypatch.setattr(bpe_train, "_table_size", lambda n_keys: 1 << (2 * n_keys).bit_length())
    grown = []
    rehash = _bpe_kernels.rehash
    monkeypatch.setattr(_bpe_kernels, "rehash", lambda *a: grown.append(a[0].size) or rehash(*a))
    fast = train_merges(word_counts, 400)
    assert len(grown) >= 2
    assert np.array_equal(fast, train_merges_reference(word_counts, 400))
