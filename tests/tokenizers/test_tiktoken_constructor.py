"""``tiktoken_compat.Encoding`` takes tiktoken's constructor, ``get_encoding`` returns one
object per name, and a special token may share its id with a BPE rank: each against tiktoken."""
import pickle

import pytest

from npgpt.errors import TokenizerError
from npgpt.tokenizers import tiktoken_compat
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding

tiktoken = pytest.importorskip("tiktoken")
TEXTS = ["hello world", "<|pickle|> and <|endoftext|>", "IClient", " 12345 😀 你好\n\n"]


@pytest.fixture(scope="module")
def custom():
    """tiktoken's pickle test case, built on cl100k_base's ranks by both."""
    ref = tiktoken_encoding("cl100k_base")
    args = dict(name="custom_enc", pat_str=ref._pat_str, mergeable_ranks=ref._mergeable_ranks,
                special_tokens={"<|pickle|>": 100_000})
    return tiktoken_compat.Encoding(**args), tiktoken.Encoding(**args)


def test_tiktokens_pickle_case_runs_on_npgpt(custom):
    enc, ref = custom
    assert enc.encode("<|pickle|>", allowed_special="all") == [100_000]
    again = pickle.loads(pickle.dumps(enc))
    assert again.encode("<|pickle|>", allowed_special="all") == [100_000]
    assert again.name == "custom_enc"
    for text in TEXTS:
        kw = dict(allowed_special="all")
        assert enc.encode(text, **kw) == ref.encode(text, **kw) == again.encode(text, **kw)


def test_special_id_that_is_also_a_rank_behaves_as_tiktoken(custom):
    enc, ref = custom
    # the id decodes to the BPE token's bytes (ordinary tokens are looked up first)
    assert enc.decode([100_000]) == ref.decode([100_000]) == "IClient"
    assert enc.decode_single_token_bytes(100_000) == ref.decode_single_token_bytes(100_000)
    assert enc.encode("IClient") == ref.encode("IClient")
    assert enc.encode_single_token("<|pickle|>") == ref.encode_single_token("<|pickle|>")
    assert enc.encode_single_token(b"IClient") == ref.encode_single_token(b"IClient")
    assert enc.is_special_token(100_000) == ref.is_special_token(100_000)
    assert (enc.n_vocab, enc.max_token_value) == (ref.n_vocab, ref.max_token_value)
    assert enc.special_tokens_set == ref.special_tokens_set
    with pytest.raises(ValueError):
        enc.encode("<|pickle|>")            # disallowed by default, as in tiktoken
    with pytest.raises(ValueError):
        ref.encode("<|pickle|>")


def test_explicit_n_vocab_is_checked_as_tiktoken_checks_it():
    ref = tiktoken_encoding("cl100k_base")
    ranks = {t: r for t, r in ref._mergeable_ranks.items() if r < 300}
    ok = dict(name="small", pat_str=ref._pat_str, mergeable_ranks=ranks,
              special_tokens={"<|end|>": 300}, explicit_n_vocab=301)
    enc, twin = tiktoken_compat.Encoding(**ok), tiktoken.Encoding(**ok)
    assert enc.encode("hello there", allowed_special="all") == twin.encode("hello there", allowed_special="all")
    assert enc.n_vocab == twin.n_vocab == 301
    with pytest.raises(TokenizerError, match="explicit_n_vocab"):
        tiktoken_compat.Encoding(**{**ok, "explicit_n_vocab": 400})
    with pytest.raises(AssertionError):
        tiktoken.Encoding(**{**ok, "explicit_n_vocab": 400})


def test_get_encoding_returns_one_cached_object_per_name():
    enc = tiktoken_compat.get_encoding("cl100k_base")
    assert tiktoken_compat.get_encoding("cl100k_base") is enc
    data = pickle.dumps(enc)
    assert len(data) < 200                   # pickled by name, as tiktoken does
    assert pickle.loads(data).encode("hello world") == enc.encode("hello world")
    small = tiktoken_compat.Encoding(name="bytes", pat_str=enc._pat_str,
                                     mergeable_ranks={bytes([b]): b for b in range(256)},
                                     special_tokens={})
    assert len(pickle.dumps(small)) > 256    # a custom one carries its ranks
    assert pickle.loads(pickle.dumps(small)).encode("hi") == [ord("h"), ord("i")]
