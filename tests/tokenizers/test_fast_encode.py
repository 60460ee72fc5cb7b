"""The one-call numba encoder (npgpt/tokenizers/_split_kernels.py) and the merge cache of
from_tiktoken: the same pieces as regex.findall, the same ids as tiktoken and as the per-piece
Python encoder."""
import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import ByteBPE, bytebpe, ranks
from npgpt.tokenizers.patterns import GPT4_PATTERN
from npgpt.tokenizers.unicode_classes import PinnedSplit, pinned_pattern
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding

# every branch of the pattern: contractions in any case (and U+017F, which folds to "s"),
# letters after a space, tab or punctuation, digit runs longer than three, punctuation with
# trailing newlines, whitespace runs ending in text, in newlines and at the end, and the
# whitespace characters at the edges of \s (U+0085, U+00A0, U+2028, U+001C..U+001F)
tricky = st.sampled_from([
    "'s", "'S", "'ll", "'LL", "'lL", "'ve", "'VE", "'re", "'Re", "'d", "'M", "'t", "'ſ", "'x",
    "'", "''", "'l", "'v", " hello", "\thello", "\nhello", "!hello", "x", "你好", "😀",
    "👩‍👩‍👧", "1234567", "٣٤٥", "²³", "Ⅻ", " 12", " !!", " !!\n\n", "!!\r\n", "...", " ",
    "  ", "   ", "\n", "\r\n", " \n ", "\n\n\n", "  \n  x", "\t\t", "\x85", "\xa0", "\u2028",
    "\x1c", "\x1f", "\u3000", "_", "é", "e\u0301", "ﬁ", "<|endoftext|>",
])
drawn = st.lists(st.one_of(tricky, st.text(max_size=6)), max_size=16).map("".join)


@pytest.fixture(scope="module")
def cl100k():
    return ByteBPE.from_tiktoken("cl100k_base"), tiktoken_encoding("cl100k_base")


def numba_pieces(text):
    from npgpt.tokenizers._split_kernels import char_classes, split_gpt4
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    starts = split_gpt4(cp, char_classes())
    return [text[s:e] for s, e in zip(starts[:-1].tolist(), starts[1:].tolist())]


@settings(max_examples=300)
@given(text=drawn)
def test_numba_split_equals_regex_findall(text):
    # both with Unicode 16.0.0's classes (see unicode_classes.py)
    assert numba_pieces(text) == regex.findall(pinned_pattern(GPT4_PATTERN), text) \
        == PinnedSplit(GPT4_PATTERN).findall(text)


def test_numba_split_on_the_corpus_equals_regex_findall(shakespeare):
    part = shakespeare[:300_000]
    assert numba_pieces(part) == regex.findall(GPT4_PATTERN, part)


@settings(max_examples=150)
@given(text=drawn)
def test_one_call_encoder_matches_tiktoken_on_drawn_unicode(cl100k, text):
    ours, ref = cl100k
    assert ours._encode_fast(text) == ref.encode_ordinary(text)


@settings(max_examples=20)
@given(texts=st.lists(drawn, min_size=1, max_size=20))
def test_one_call_encoder_equals_the_python_encoder_on_a_trained_tokenizer(trained_small, texts):
    text = "".join(texts)
    expected = [i for w in PinnedSplit(GPT4_PATTERN).findall(text)
                for i in trained_small._encode_piece(w.encode("utf-8"))]
    assert trained_small._encode_fast(text) == expected


def one_call(tok, text, cache_bits):
    from npgpt.tokenizers._split_kernels import char_classes, encode_gpt4
    cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return encode_gpt4(cp, char_classes(), tok._byte_id_array(), *tok._pair_tables(),
                       tok._token_table(), cache_bits).tolist()


@settings(max_examples=40)
@given(texts=st.lists(drawn, min_size=1, max_size=30))
def test_piece_cache_of_any_size_gives_the_same_ids(cl100k, texts):
    # one slot: every other piece evicts it; 2 slots: collisions; repeats hit
    ours, ref = cl100k
    text = "".join(texts) * 3
    expected = ref.encode_ordinary(text)
    for bits in (0, 1, 16):
        assert one_call(ours, text, bits) == expected


def test_one_call_encoder_grows_its_output_past_one_id_per_code_point(cl100k):
    # characters of the supplementary planes are 4 bytes and mostly 2-4 ids each
    ours, ref = cl100k
    rng = np.random.default_rng(0)
    text = "".join(map(chr, rng.integers(0x20000, 0x2A6DF, 5000).tolist()))
    expected = ref.encode_ordinary(text)
    assert len(expected) > 2 * len(text)
    assert one_call(ours, text, 16) == expected


def test_long_texts_take_the_one_call_path_and_keep_parity(cl100k, shakespeare, monkeypatch):
    ours, ref = cl100k
    calls = []
    fast = ours._encode_fast
    monkeypatch.setattr(ours, "_encode_fast", lambda t: calls.append(len(t)) or fast(t))
    text = shakespeare[:1_000_000]
    assert ours.encode(text) == ref.encode(text)
    assert calls == [len(text)]


def test_ignore_merges_emits_a_piece_that_is_a_token_whole_on_both_paths():
    # "abc" (258) is a token, but its own BPE stops at "ab" "c": with ignore_merges the piece
    # "abc" is 258, without it [256, 99]; "abcabc" is no token, so it is merged either way
    a, b, c = b"abc"
    merges = [(a, b, 256), (b, c, 257), (a, 257, 258)]
    text = ("abc abc abcabc bc " * 2000)[:-1]
    whole, plain = ByteBPE(merges, "gpt4", ignore_merges=True), ByteBPE(merges, "gpt4")
    for tok, abc in ((whole, [258]), (plain, [256, c])):
        python_path = [i for w in PinnedSplit(GPT4_PATTERN).findall(text)
                       for i in tok._encode_piece(w.encode("utf-8"))]
        assert tok._encode_piece(b"abc") == abc
        assert tok._fast_path_applies() and tok._encode_fast(text) == python_path
    assert whole._encode_fast(text) != plain._encode_fast(text)


def test_duplicate_tokens_keep_the_first_id_in_the_one_call_encoder():
    # two merges make the bytes "ab": the whole-token lookup gives the first, as token_ids does
    a, b = b"ab"
    tok = ByteBPE([(a, b, 256), (a, b, 257)], "gpt4", ignore_merges=True)
    assert tok.token_ids[b"ab"] == 256
    assert tok._encode_piece(b"ab") == [256]
    assert tok._encode_fast("ab ab") == [256, 32, 256]


def test_surrogates_are_replaced_in_both_paths(cl100k):
    ours, ref = cl100k
    assert ours.encode_ordinary("a\ud800b") == ref.encode_ordinary("a\ud800b")
    assert ours.encode_ordinary("a\ud800b" * 10_000) == ref.encode_ordinary("a\ud800b" * 10_000)


@pytest.fixture(scope="module")
def trained_small(shakespeare):
    return ByteBPE.train(shakespeare[:100_000], 400)


def test_recovered_merges_are_cached_on_disk_and_a_damaged_cache_is_ignored(
        trained_small, tmp_path, monkeypatch):
    monkeypatch.setenv("NPGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ranks, "_MERGES", {})
    rank_file = tmp_path / "tok.tiktoken"
    trained_small.save_tiktoken(rank_file)
    first = ByteBPE.load_tiktoken(rank_file)
    cached = list((tmp_path / "cache" / "tokenizers").glob("merges-*.npy"))
    assert len(cached) == 1 and first.merges == trained_small.merges

    # from disk, without recovering again
    monkeypatch.setattr(ranks, "_MERGES", {})
    recover = ranks.recover_merges
    monkeypatch.setattr(ranks, "recover_merges", lambda ranks: pytest.fail("recovered again"))
    assert ByteBPE.load_tiktoken(rank_file).merges == trained_small.merges

    # a cache file whose merges build other tokens is recovered afresh (and rewritten)
    bad = np.array(trained_small.merges, dtype=np.int64)
    bad[[0, 1], :2] = bad[[1, 0], :2]
    np.save(cached[0], bad)
    monkeypatch.setattr(ranks, "_MERGES", {})
    monkeypatch.setattr(ranks, "recover_merges", recover)
    assert ByteBPE.load_tiktoken(rank_file).merges == trained_small.merges
    assert np.load(cached[0]).tolist() == [list(m) for m in trained_small.merges]
    # a file that is not an array at all
    cached[0].write_bytes(b"not numpy")
    monkeypatch.setattr(ranks, "_MERGES", {})
    assert ByteBPE.load_tiktoken(rank_file).merges == trained_small.merges


def test_whole_token_table_equals_token_ids(cl100k):
    # the numba table's twin is the dict ByteBPE.token_ids
    from npgpt.tokenizers._split_kernels import whole_token
    ours, _ = cl100k
    table = ours._token_table()
    rng = np.random.default_rng(1)
    tokens = [ours.vocab[i] for i in rng.choice(sorted(ours.vocab), 3000, replace=False).tolist()]
    tokens += [b"not a token at all", b"\xff\xfe", b"zqxjzqxj"]
    for t in tokens:
        buf = np.frombuffer(t, np.uint8).astype(np.int64)
        assert whole_token(buf, 0, buf.size, *table) == ours.token_ids.get(t, -1)


def test_the_piece_cache_rests_on_unique_text_and_comes_back(cl100k, shakespeare):
    # repetitive text fills the cache; 70,000 distinct words make it rest (fewer than 1 in 16
    # pieces of a 4,096-piece window hit) for 15 windows at a time; the repetitive text after
    # them is longer than a rest and a trial window together, so the cache comes back within it
    from npgpt.tokenizers._split_kernels import CACHE_REST, CACHE_WINDOW
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    unique = " ".join("".join(rng.choice(letters, 9)) for _ in range(70_000))
    again = shakespeare[:300_000]
    assert 70_000 > CACHE_WINDOW * (CACHE_REST + 1)     # " word" is one piece
    assert len(regex.findall(GPT4_PATTERN, again)) > CACHE_WINDOW * (CACHE_REST + 2)
    ours, ref = cl100k
    text = shakespeare[:60_000] + unique + again + unique[:50_000]
    assert ours._encode_fast(text) == ref.encode_ordinary(text)
