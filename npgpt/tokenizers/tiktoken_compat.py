"""tiktoken's API on npgpt's byte-level BPE, so code written for ``tiktoken.Encoding`` runs
unchanged:

    from npgpt.tokenizers import tiktoken_compat
    enc = tiktoken_compat.get_encoding("cl100k_base")      # npgpt's encoder, tiktoken's ids
    enc.encode("hello <|endoftext|>", allowed_special="all")   # [15339, 220, 100257]
    enc.decode_with_offsets(enc.encode("hello world"))       # ('hello world', [0, 5])

``tiktoken_methods.TiktokenMethods`` holds the methods (ByteBPE inherits them); ``Encoding`` wraps a ByteBPE
with tiktoken's signatures (keyword-only special sets, ``allowed_special=set()`` by default)
and attribute names (``name``, ``n_vocab``, ``max_token_value``, ``eot_token``, ...).
"""
from .bytebpe import ByteBPE


class Encoding:
    """A ``tiktoken.Encoding`` look-alike over a ByteBPE (``tokenizer``)."""

    def __init__(self, tokenizer, name=None):
        self.tokenizer = tokenizer
        self.name = name or tokenizer.name
        self._pat_str = tokenizer.pattern
        self._special_tokens = dict(tokenizer.special_tokens)

    def __repr__(self):
        return f"<Encoding {self.name!r}>"

    @property
    def _mergeable_ranks(self):
        return self.tokenizer.tiktoken_ranks()

    def encode_ordinary(self, text):
        return self.tokenizer.encode_ordinary(text)

    def encode(self, text, *, allowed_special=frozenset(), disallowed_special="all"):
        return self.tokenizer.encode(text, allowed_special, disallowed_special)

    def encode_to_numpy(self, text, *, allowed_special=frozenset(), disallowed_special="all"):
        return self.tokenizer.encode_to_numpy(text, allowed_special, disallowed_special)

    def encode_ordinary_batch(self, text, *, num_threads=8):
        return self.tokenizer.encode_ordinary_batch(text)

    def encode_batch(self, text, *, num_threads=8, allowed_special=frozenset(),
                     disallowed_special="all"):
        return self.tokenizer.encode_batch(text, allowed_special, disallowed_special)

    def encode_single_token(self, text_or_bytes):
        return self.tokenizer.encode_single_token(text_or_bytes)

    def decode_bytes(self, tokens):
        return self.tokenizer.decode_bytes(list(tokens))

    def decode(self, tokens, errors="replace"):
        return self.tokenizer.decode(tokens, errors=errors)

    def decode_single_token_bytes(self, token):
        return self.tokenizer.decode_single_token_bytes(token)

    def decode_tokens_bytes(self, tokens):
        return self.tokenizer.decode_tokens_bytes(tokens)

    def decode_with_offsets(self, tokens):
        return self.tokenizer.decode_with_offsets(tokens)

    def decode_batch(self, batch, *, errors="replace", num_threads=8):
        return self.tokenizer.decode_batch(batch, errors=errors)

    def decode_bytes_batch(self, batch, *, num_threads=8):
        return self.tokenizer.decode_bytes_batch(batch)

    def token_byte_values(self):
        return self.tokenizer.token_byte_values()

    @property
    def eot_token(self):
        return self.tokenizer.eot_token

    @property
    def special_tokens_set(self):
        return set(self._special_tokens)

    def is_special_token(self, token):
        return self.tokenizer.is_special_token(token)

    @property
    def max_token_value(self):
        return self.tokenizer.max_token_value

    @property
    def n_vocab(self):
        return self.tokenizer.n_vocab

    def _encode_bytes(self, text):
        return self.tokenizer._encode_bytes(text)

    def _encode_single_piece(self, text_or_bytes):
        raw = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
        return self.tokenizer._encode_piece(raw)


def get_encoding(name="cl100k_base"):
    """tiktoken's ``get_encoding``, offline: ``cl100k_base`` as npgpt's ByteBPE."""
    return Encoding(ByteBPE.from_tiktoken(name), name="cl100k_base")
