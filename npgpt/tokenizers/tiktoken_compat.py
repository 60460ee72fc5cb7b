"""tiktoken's API on npgpt's byte-level BPE, so code written for ``tiktoken.Encoding`` runs
unchanged:

    from npgpt.tokenizers import tiktoken_compat
    enc = tiktoken_compat.get_encoding("cl100k_base")      # npgpt's encoder, tiktoken's ids
    enc.encode("hello <|endoftext|>", allowed_special="all")   # [15339, 220, 100257]
    enc.decode_with_offsets(enc.encode("hello world"))       # ('hello world', [0, 5])

``tiktoken_methods.TiktokenMethods`` holds the methods (ByteBPE inherits them); ``Encoding`` wraps a ByteBPE
with tiktoken's signatures (keyword-only special sets, ``allowed_special=set()`` by default)
and attribute names (``name``, ``n_vocab``, ``max_token_value``, ``eot_token``, ...).  Its
constructor is tiktoken's, so custom encodings on cl100k_base's ranks are built the same way:

    base = tiktoken_compat.get_encoding("cl100k_base")     # one object per name, cached
    enc = tiktoken_compat.Encoding(name="custom", pat_str=base._pat_str,
                                   mergeable_ranks=base._mergeable_ranks,
                                   special_tokens={**base._special_tokens, "<|pickle|>": 100_000})
"""
import base64
import hashlib

from ..errors import TokenizerError
from .bytebpe import ByteBPE

_ENCODINGS = {}     # name -> the one Encoding get_encoding returns for it


def _ranks_key(mergeable_ranks):
    """The SHA-256 of the rank file these ranks would be (``base64(token) rank`` per line, in
    rank order): the key under which their recovered merges are cached, the same one a rank
    file gives, so cl100k_base's ranks handed over as a dict reuse its cached merges."""
    lines = (f"{base64.b64encode(t).decode('ascii')} {r}\n"
             for t, r in sorted(mergeable_ranks.items(), key=lambda kv: kv[1]))
    return hashlib.sha256("".join(lines).encode("ascii")).hexdigest()


class Encoding:
    """A ``tiktoken.Encoding`` look-alike: the same constructor, over npgpt's ByteBPE.

    A special token may take an id that is also a BPE rank (``{"<|pickle|>": 100000}`` on
    cl100k_base's ranks), as tiktoken allows: its text encodes to that id when allowed, and
    decoding the id gives the BPE token's bytes (tiktoken looks ordinary tokens up first).
    """

    def __init__(self, name, *, pat_str, mergeable_ranks, special_tokens, explicit_n_vocab=None):
        self.name = name
        special_tokens = dict(special_tokens)
        if explicit_n_vocab is not None:
            largest = max([*mergeable_ranks.values(), *special_tokens.values()], default=-1)
            if len(mergeable_ranks) + len(special_tokens) != explicit_n_vocab \
                    or largest != explicit_n_vocab - 1:
                raise TokenizerError(
                    f"explicit_n_vocab={explicit_n_vocab}, but there are {len(mergeable_ranks)} "
                    f"ranks and {len(special_tokens)} special tokens, the largest id {largest}")
        ranks = set(mergeable_ranks.values())
        apart = {s: i for s, i in special_tokens.items() if i not in ranks}
        tokenizer = ByteBPE.from_ranks(mergeable_ranks, pat_str, apart,
                                       cache_key=_ranks_key(mergeable_ranks))
        # every special text maps to its id; the decoder keeps the BPE bytes of shared ids
        tokenizer.special_tokens = special_tokens
        self._init_from(tokenizer, name, pat_str, special_tokens, explicit_n_vocab)

    def _init_from(self, tokenizer, name, pat_str, special_tokens, explicit_n_vocab=None):
        self.tokenizer = tokenizer
        self.name = name
        self._pat_str = pat_str
        self._special_tokens = dict(special_tokens)
        self._explicit_n_vocab = explicit_n_vocab

    @classmethod
    def from_tokenizer(cls, tokenizer, name=None):
        """Wrap an existing ByteBPE (its ids, pattern and special tokens)."""
        enc = cls.__new__(cls)
        enc._init_from(tokenizer, name or tokenizer.name, tokenizer.pattern,
                       tokenizer.special_tokens)
        return enc

    def __getstate__(self):
        # as tiktoken: an encoding get_encoding made pickles as its name
        if _ENCODINGS.get(self.name) is self:
            return self.name
        return {"name": self.name, "pat_str": self._pat_str,
                "mergeable_ranks": self._mergeable_ranks,
                "special_tokens": self._special_tokens,
                "explicit_n_vocab": self._explicit_n_vocab}

    def __setstate__(self, state):
        if isinstance(state, str):
            self.__dict__ = get_encoding(state).__dict__
        else:
            self.__init__(**state)

    def __repr__(self):
        return f"<Encoding {self.name!r}>"

    @property
    def _mergeable_ranks(self):
        return self.tokenizer.tiktoken_ranks()

    def encode_ordinary(self, text):
        return self.tokenizer.encode_ordinary(text)

    def encode(self, text, *, allowed_special=frozenset(), disallowed_special="all"):
        # tiktoken adds no BOS, whatever file the wrapped tokenizer came from
        return self.tokenizer.encode(text, allowed_special, disallowed_special,
                                     add_special_tokens=False)

    def encode_to_numpy(self, text, *, allowed_special=frozenset(), disallowed_special="all"):
        return self.tokenizer.encode_to_numpy(text, allowed_special, disallowed_special)

    def encode_ordinary_batch(self, text, *, num_threads=8):
        return self.tokenizer.encode_ordinary_batch(text)

    def encode_batch(self, text, *, num_threads=8, allowed_special=frozenset(),
                     disallowed_special="all"):
        return self.tokenizer.encode_batch(text, allowed_special, disallowed_special,
                                           add_special_tokens=False)

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
    """tiktoken's ``get_encoding``, offline (``cl100k_base``): one Encoding per name, built on
    the first call and returned again after, as tiktoken does."""
    from .ranks import offline_encoding_spec
    found = _ENCODINGS.get(name)
    if found is None:
        spec = offline_encoding_spec(name)
        found = _ENCODINGS.get(spec["name"]) or Encoding.from_tokenizer(
            ByteBPE.from_tiktoken(name), name=spec["name"])
        _ENCODINGS[name] = _ENCODINGS[spec["name"]] = found
    return found
