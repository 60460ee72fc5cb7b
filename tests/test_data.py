import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt.data import (
    VAL_PLAYS,
    TokenData,
    get_batch,
    load_tokens,
    markdown_play_to_text,
    read_text,
    shakespeare_plays,
    shakespeare_text,
    tokenize,
    tokenize_file,
    tokenizer_identity,
)
from npgpt.errors import DataError


class CharStandIn:
    """The smallest tokenizer: one id per distinct character of a given alphabet."""

    def __init__(self, alphabet, vocab_size=None):
        self.chars = sorted(set(alphabet))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = vocab_size or len(self.chars)
        self.name = "char-standin"
        self.calls = 0

    def encode(self, text):
        self.calls += 1
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


# --- the corpus -----------------------------------------------------------------------------

def test_shakespeare_plays_are_all_there_in_a_fixed_order():
    plays = shakespeare_plays()
    assert len(plays) == 38
    assert [g for _, g, _ in plays] == sorted(g for _, g, _ in plays)
    titles = [t for t, _, _ in plays]
    assert "Romeo and Juliet" in titles and "Hamlet" in titles
    assert shakespeare_plays() is plays          # cached


def test_shakespeare_text_is_plain_tiny_shakespeare_style():
    text = shakespeare_text()
    assert len(text) > 4_000_000
    assert ("ROMEO:\nHe jests at scars that never felt a wound.\n\n"
            "[JULIET appears above at a window]\n\n"
            "ROMEO:\nBut, soft! what light through yonder window breaks?\n") in text
    assert "[Enter SAMPSON and GREGORY, of the house of Capulet, armed with swords and bucklers]" \
        in text
    for markup in ("**", "_", "#", "\\", "  \n", "\u2014"):
        assert markup not in text, markup
    # every paragraph is a speech (NAME: then lines) or a bracketed stage direction
    paragraphs = text.split("\n\n")
    speeches = [p for p in paragraphs if p.split("\n")[0].endswith(":") and "\n" in p]
    directions = [p for p in paragraphs if p.startswith("[")]
    assert len(speeches) + len(directions) > 0.99 * len(paragraphs)


def test_validation_split_is_whole_held_out_plays():
    train, val = shakespeare_text("train"), shakespeare_text("val")
    assert len(VAL_PLAYS) >= 3
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.2
    assert "If music be the food of love, play on;" in val          # Twelfth Night
    assert "If music be the food of love" not in train
    assert "But, soft! what light" in train and "But, soft! what light" not in val
    assert len(train) + len(val) + 1 == len(shakespeare_text("all"))


def test_unknown_split_is_a_clear_error():
    with pytest.raises(DataError, match="split='test'"):
        shakespeare_text("test")


def test_markdown_play_to_text_strips_markup():
    md = ("# A Play\n\n## ACT I\n\n### SCENE I. A heath. Thunder and\n\nlightning.\n\n"
          "_Enter FIRST WITCH and\nSECOND WITCH_\n\n"
          "**FIRST WITCH**  \nWhen shall we three meet again  \n_\\[Aside]_  \n"
          "In thunder\\--or in rain?\n\n_Thunder_\n\nWhen the hurlyburly's done.\n\n"
          "**SECOND WITCH**  \nThat will be ere the set of sun\u2014\n")
    title, text = markdown_play_to_text(md)
    assert title == "A Play"
    assert text == ("[Enter FIRST WITCH and SECOND WITCH]\n\n"
                    "FIRST WITCH:\nWhen shall we three meet again\n[Aside]\nIn thunder--or in rain?"
                    "\n\n[Thunder]\n\nFIRST WITCH:\nWhen the hurlyburly's done.\n\n"
                    "SECOND WITCH:\nThat will be ere the set of sun--\n")


def test_read_text_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_text(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8.*0xe9 at offset 3"):
        read_text(bad)


# --- token files ----------------------------------------------------------------------------

def test_tokenize_writes_a_memory_mapped_cache_and_reuses_it(tmp_path):
    text = "hello world, hello numpy\n" * 10
    tok = CharStandIn(text)
    data = tokenize(text, tok, cache_dir=tmp_path)
    assert isinstance(data, TokenData) and isinstance(data.tokens, np.memmap)
    assert data.tokens.dtype == np.uint16 and len(data) == len(text)
    assert data.tokens.tolist() == tok.encode(text)
    meta = json.loads(data.path.with_suffix(".json").read_text())
    assert meta["tokenizer"] == tokenizer_identity(tok) and meta["n_tokens"] == len(text)
    calls = tok.calls
    again = tokenize(text, tok, cache_dir=tmp_path)
    assert tok.calls == calls and again.path == data.path          # no re-encoding
    other = tokenize(text[:-3], tok, cache_dir=tmp_path)            # a new source: new file
    assert other.path != data.path and len(other) == len(text) - 3
    assert not list(tmp_path.glob("*.tmp"))                         # atomic writes left nothing


def test_tokenizers_with_the_same_name_and_size_but_other_alphabets_do_not_share_a_cache(tmp_path):
    a, b = CharStandIn("abcd"), CharStandIn("abce")
    assert tokenizer_identity(a) != tokenizer_identity(b)
    da, db = tokenize("abab", a, cache_dir=tmp_path), tokenize("abab", b, cache_dir=tmp_path)
    assert da.path != db.path


def test_large_vocabularies_use_uint32(tmp_path):
    tok = CharStandIn("ab", vocab_size=70_000)
    tok.decode = None
    data = tokenize("abba", tok, cache_dir=tmp_path)
    assert data.tokens.dtype == np.uint32 and data.tokens.tolist() == [0, 1, 1, 0]


def test_ids_outside_the_vocabulary_are_rejected(tmp_path):
    tok = CharStandIn("ab", vocab_size=1)
    tok.decode = None
    with pytest.raises(DataError, match="id 1, outside the vocabulary 0..0"):
        tokenize("ab", tok, cache_dir=tmp_path)


def test_damaged_token_files_are_clear_errors_and_rebuilt_by_the_cache(tmp_path):
    text = "to be or not to be"
    tok = CharStandIn(text)
    data = tokenize(text, tok, cache_dir=tmp_path)
    path = data.path
    del data
    with open(path, "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="is 10 bytes, but .* says 18 uint16 tokens"):
        load_tokens(path)
    assert len(tokenize(text, tok, cache_dir=tmp_path)) == len(text)     # rebuilt
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(DataError, match="does not parse"):
        load_tokens(path)


def test_tokenize_file(tmp_path):
    src = tmp_path / "poem.txt"
    src.write_text("shall i compare thee", encoding="utf-8")
    data = tokenize_file(src, CharStandIn("shall i compare thee"), cache_dir=tmp_path / "cache")
    assert data.path.name.startswith("poem-char-standin-") and len(data) == 20


# --- batches --------------------------------------------------------------------------------

@given(n=st.integers(2, 60), B=st.integers(1, 5), T=st.integers(1, 5), seed=st.integers(0, 99))
def test_get_batch_targets_are_inputs_shifted_by_one(n, B, T, seed):
    data = np.arange(n, dtype=np.uint16) * 3
    if n < T + 1:
        with pytest.raises(DataError, match=f"has {n} tokens.*at least block_size \\+ 1 = {T + 1}"):
            get_batch(data, B, T, np.random.default_rng(seed))
        return
    x, y = get_batch(data, B, T, np.random.default_rng(seed))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == np.int64
    assert x.flags.c_contiguous and y.flags.c_contiguous
    starts = x[:, 0] // 3
    assert np.all(x == (starts[:, None] + np.arange(T)) * 3)
    assert np.all(y == (starts[:, None] + np.arange(1, T + 1)) * 3)
    assert np.all(starts + T < n)
    x2, y2 = get_batch(data, B, T, np.random.default_rng(seed))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_get_batch_reaches_both_ends_and_reads_token_data(tmp_path):
    text = "abcdefgh"
    data = tokenize(text, CharStandIn(text), cache_dir=tmp_path)
    x, y = get_batch(data, 500, 6, np.random.default_rng(0))
    assert set(x[:, 0].tolist()) == {0, 1} and y.max() == 7


def test_bad_batch_sizes_are_clear_errors():
    with pytest.raises(DataError, match="batch_size=0"):
        get_batch(np.arange(10), 0, 2, np.random.default_rng(0))
