"""tiktoken's API on npgpt's cl100k encoder: the behaviours tiktoken's own public cl100k tests
check (special-token sets, surrogates, bytes that are not UTF-8, offsets, batches, single
tokens), each compared with tiktoken itself."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import tiktoken_compat
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding

SPECIAL_TEXT = "<|endoftext|> hello <|fim_prefix|> there <|fim_middle|>"


@pytest.fixture(scope="module")
def pair():
    return tiktoken_compat.get_encoding("cl100k_base"), tiktoken_encoding("cl100k_base")


def test_attributes_match(pair):
    enc, ref = pair
    assert (enc.n_vocab, enc.max_token_value, enc.eot_token) == (ref.n_vocab, ref.max_token_value, ref.eot_token)
    assert enc.special_tokens_set == ref.special_tokens_set
    assert enc.token_byte_values() == ref.token_byte_values()
    assert enc.name == "cl100k_base" and repr(enc) == "<Encoding 'cl100k_base'>"
    assert enc.is_special_token(100257) and not enc.is_special_token(15339)


@pytest.mark.parametrize("kwargs", [
    dict(disallowed_special=()), dict(allowed_special="all", disallowed_special=()),
    dict(allowed_special="all"), dict(allowed_special={"<|fim_prefix|>"}, disallowed_special=()),
    dict(allowed_special={"<|endoftext|>"}, disallowed_special=()),
    dict(allowed_special={"<|fim_middle|>"}, disallowed_special=()),
    dict(allowed_special={"<|endoftext|>"}, disallowed_special={"<|endofprompt|>"})])
def test_special_sets_have_tiktokens_meaning(pair, kwargs):
    enc, ref = pair
    assert enc.encode(SPECIAL_TEXT, **kwargs) == ref.encode(SPECIAL_TEXT, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, dict(disallowed_special="all"),
                                    dict(disallowed_special={"<|fim_prefix|>"}),
                                    dict(allowed_special={"<|endoftext|>"})])
def test_disallowed_special_text_raises_a_value_error(pair, kwargs):
    enc, ref = pair
    with pytest.raises(ValueError):
        ref.encode(SPECIAL_TEXT, **kwargs)
    with pytest.raises(TokenizerError, match="disallowed special token '<|"):
        enc.encode(SPECIAL_TEXT, **kwargs)


def test_the_npgpt_names_still_work(pair):
    enc, ref = pair
    tok = enc.tokenizer
    assert tok.encode(SPECIAL_TEXT, allowed_special="none") == ref.encode(SPECIAL_TEXT, disallowed_special=())
    with pytest.raises(TokenizerError):
        tok.encode(SPECIAL_TEXT)


def test_surrogates_as_tiktoken(pair):
    enc, ref = pair
    assert enc.encode("\ud83d\udc4d") == enc.encode("👍") == [9468, 239, 235]
    assert enc.encode("\ud83d") == enc.encode("\ufffd") == ref.encode("\ud83d")
    text = "a\ud83d\udc4db\udc4d c" * 30_000           # long: the one-call numba path too
    assert enc.encode_ordinary(text) == ref.encode_ordinary(text)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=16),
                      st.text(alphabet="a \n\t\xe9x", max_size=8).map(lambda t: t.encode() + b"\x80"),
                      st.text(max_size=6).map(lambda t: t.encode()[:-1])))
def test_encode_bytes_as_tiktoken(pair, data):
    enc, ref = pair
    ids = enc._encode_bytes(data)
    assert ids == ref._encode_bytes(data)
    assert enc.decode_bytes(ids) == data


def test_encode_bytes_cases_from_tiktoken(pair):
    enc, _ = pair
    assert enc._encode_bytes(b" \xec\x8b\xa4\xed") == [62085]
    for i in range(10):
        assert enc.decode_bytes(enc._encode_bytes(b"\x80" * i)) == b"\x80" * i


@pytest.mark.parametrize("prompt", ["hello world", "hello world<|endoftext|> green cow",
                                    "我非常渴望与人工智能一起工作", "நடிகர் சூர்யா", " Ġ除"])
def test_offsets(pair, prompt):
    enc, ref = pair
    ids = ref.encode(prompt, allowed_special="all")
    assert enc.decode_with_offsets(ids) == ref.decode_with_offsets(ids)


def test_single_tokens_round_trip(pair):
    enc, ref = pair
    for token in list(range(0, 100_256, 97)) + sorted(enc._special_tokens.values()):
        raw = enc.decode_single_token_bytes(token)
        assert raw == ref.decode_single_token_bytes(token)
        assert enc.encode_single_token(raw) == token
    assert enc.encode_single_token("<|endoftext|>") == enc.eot_token
    with pytest.raises(KeyError):
        enc.encode_single_token("not one token at all")
    with pytest.raises(KeyError):
        enc.decode_single_token_bytes(100_300)
    assert enc.decode_tokens_bytes([15339, 1917]) == [b"hello", b" world"]


def test_batches_and_cases_from_tiktoken(pair):
    enc, ref = pair
    texts = ["hello world", "goodbye world", "", "请考试我的软件！12345", "today\n  \n"]
    assert enc.encode_batch(texts) == ref.encode_batch(texts)
    assert enc.encode_ordinary_batch(texts) == ref.encode_ordinary_batch(texts)
    ids = enc.encode_batch(texts, allowed_special="all")
    assert enc.decode_batch(ids) == texts
    assert enc.decode_bytes_batch(ids) == [t.encode() for t in texts]
    for text, expected in [("rer", [38149]), ("'rer", [2351, 81]), ("today\n ", [31213, 198, 220]),
                           ("today\n \n", [31213, 27907]), (" \x850", [220, 126, 227, 15])]:
        assert enc.encode(text) == expected
    assert enc.encode_to_numpy("hello world").tolist() == [15339, 1917]
    for c in ["^", "0", "a", "'s", " ", "\n"]:
        for big in (c * 10_000, " " + c * 10_000, " " + c * 10_000 + "\n"):
            assert enc.encode(big) == ref.encode(big)


@settings(max_examples=100, deadline=None)
@given(text=st.text())
def test_hypothesis_text_round_trips_and_matches(pair, text):
    enc, ref = pair
    assert enc.encode_ordinary(text) == ref.encode_ordinary(text)
    assert enc.encode(text, disallowed_special=()) == enc.encode_ordinary(text)
    assert enc.decode(enc.encode(text, disallowed_special=())) == ref.decode(ref.encode_ordinary(text))
