"""The character tokenizer: one id per distinct character seen in the training text.

    CharTokenizer.train("hello") -> vocabulary ['e', 'h', 'l', 'o'] (sorted), ids 0..3
    encode("hell") -> [1, 0, 2, 2]

Characters never seen at training time have no id: ``encode`` raises TokenizerError naming
the first one (and its code point) instead of silently dropping or mapping it.
"""
from ..errors import TokenizerError
from .base import JsonFileTokenizer, token_ids

MAGIC = "npgpt-char"


class CharTokenizer(JsonFileTokenizer):
    kind = "char"
    MAGIC = MAGIC
    what = "char tokenizer file"

    def __init__(self, chars, special_tokens=None):
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("CharTokenizer needs a list of distinct single characters")
        if special_tokens is None:
            special_tokens = {}
        elif not isinstance(special_tokens, dict):  # a list of names: ids follow the characters
            special_tokens = {s: len(chars) + i for i, s in enumerate(special_tokens)}
        super().__init__(special_tokens)
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.itos = dict(enumerate(chars))
        self.itos.update({i: s for s, i in self.special_tokens.items()})

    @classmethod
    def train(cls, text, special_tokens=None):
        """Build the vocabulary from every distinct character of ``text`` (sorted)."""
        if not text or not isinstance(text, str):
            raise TokenizerError(f"CharTokenizer.train needs a non-empty str, got {text!r:.40}")
        return cls(sorted(set(text)), special_tokens)

    from_text = train

    def encode_ordinary(self, text):
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            for offset, c in enumerate(text):
                if c not in stoi:
                    raise TokenizerError(
                        f"character {c!r} (U+{ord(c):04X}) at offset {offset} is not in this "
                        f"char tokenizer's vocabulary of {len(self.chars)} characters") from None
            raise

    def decode(self, ids):
        ids = token_ids(ids, self.vocab_size)
        try:
            return "".join(self.itos[int(i)] for i in ids)
        except KeyError as e:
            raise TokenizerError(f"token id {e.args[0]} is outside the vocabulary "
                                 f"(0..{self.vocab_size - 1})") from None

    @property
    def vocab_size(self):
        return max([len(self.chars) - 1, *self.special_tokens.values()]) + 1

    def _fields(self):
        return {"chars": "".join(self.chars), "special_tokens": self.special_tokens}

    @classmethod
    def _from_fields(cls, obj):
        return cls(list(obj["chars"]), {str(k): int(v) for k, v in obj["special_tokens"].items()})
