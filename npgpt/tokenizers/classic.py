"""Classic BPE (Sennrich, Haddow and Birch, 2016): the word-level algorithm with ``</w>``.

Training, as in the paper: split the text into words on whitespace and count them; write each
word as its characters plus the end-of-word symbol ``</w>``; then repeatedly count every adjacent
symbol pair (weighted by word frequency), merge the most frequent pair everywhere, and append it
to the ordered merge table.  With the paper's dictionary

    {"low": 5, "lower": 2, "newest": 6, "widest": 3}

the first merges are (e, s), (es, t), (est, </w>), (l, o), (lo, w), ...  Ties go to the pair
seen first (words in first-appearance order, pairs left to right), as the paper's code does.

Encoding a new word applies the merges in their learned order (lowest rank first), so the
``</w>`` marks where a word ends: ``est</w>`` is a suffix token, ``est`` is not.  Decoding joins
the symbols and turns ``</w>`` back into spaces, so whitespace is normalised to single spaces
(the classic BPE works on words, not on raw text).  This is the teaching version: it recounts
pairs after every merge like the paper; ByteBPE is the fast one.
"""
import collections

from ..errors import TokenizerError
from .base import JsonFileTokenizer, token_ids

EOW = "</w>"
MAGIC = "npgpt-classicbpe"


def pair_stats(vocab):
    """{("l","o","w","</w>"): 5, ...} -> Counter of adjacent pairs weighted by word count, in
    first-seen order: {("l","o"): 5, ("o","w"): 5, ...}."""
    stats = collections.Counter()
    for word, freq in vocab.items():
        for pair in zip(word, word[1:]):
            stats[pair] += freq
    return stats


def merge_word(word, pair):
    """("n","e","w") merged on ("n","e") -> ("ne","w"); left to right, non-overlapping."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


class ClassicBPE(JsonFileTokenizer):
    kind = "classicbpe"
    MAGIC = MAGIC
    what = "classic BPE file"
    json_indent = 0

    def __init__(self, symbols, merges, special_tokens=None):
        super().__init__(special_tokens if isinstance(special_tokens, dict) else None)
        self.symbols = list(symbols)
        self.merges = [tuple(m) for m in merges]
        self.tokens = list(self.symbols)
        seen = set(self.tokens)
        for a, b in self.merges:
            if a + b not in seen:
                seen.add(a + b)
                self.tokens.append(a + b)
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {m: r for r, m in reversed(list(enumerate(self.merges)))}
        if special_tokens and not isinstance(special_tokens, dict):  # names: ids follow
            self.special_tokens = {s: len(self.tokens) + i for i, s in enumerate(special_tokens)}
        self.id_to_token = dict(enumerate(self.tokens))
        self.id_to_token.update({i: s for s, i in self.special_tokens.items()})
        self._cache = {}

    @classmethod
    def train(cls, text, num_merges, special_tokens=None, verbose=False):
        """Learn ``num_merges`` merges from ``text`` (a string, or a {word: count} dict)."""
        if not isinstance(text, (str, dict)):
            raise TokenizerError(f"ClassicBPE.train needs a str or a {{word: count}} dict, "
                                 f"got {type(text).__name__}")
        if isinstance(num_merges, bool) or not isinstance(num_merges, int) or num_merges < 0:
            raise TokenizerError(f"num_merges={num_merges!r} must be an integer >= 0")
        counts = collections.Counter(text.split()) if isinstance(text, str) else dict(text)
        vocab = {tuple(w) + (EOW,): c for w, c in counts.items()}
        symbols = sorted({s for w in vocab for s in w})
        merges = []
        for step in range(num_merges):
            stats = pair_stats(vocab)
            if not stats:
                break
            best = max(stats, key=stats.get)  # first-seen pair wins a tie
            vocab = {merge_word(w, best): c for w, c in vocab.items()}
            merges.append(best)
            if verbose:
                print(f"merge {step + 1}: {best[0]} + {best[1]} -> {best[0] + best[1]} ({stats[best]})")
        return cls(symbols, merges, list(special_tokens or []))

    def encode_word(self, word):
        """One word -> its symbols: characters + ``</w>``, merged lowest rank first."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        for offset, c in enumerate(word):
            if c not in self.token_to_id:
                raise TokenizerError(f"character {c!r} (U+{ord(c):04X}) in word {word!r} was "
                                     "never seen when this classic BPE was trained")
        parts = tuple(word) + (EOW,)
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, len(self.ranks)), p) for p in zip(parts, parts[1:])]
            rank, best = min(pairs)
            if rank == len(self.ranks):
                break
            parts = merge_word(parts, best)
        self._cache[word] = parts
        return parts

    def encode_ordinary(self, text):
        return [self.token_to_id[s] for w in text.split() for s in self.encode_word(w)]

    def tokenize(self, text):
        """text -> the symbol strings, e.g. ``"lowest"`` -> ``["low", "est</w>"]``."""
        return [s for w in text.split() for s in self.encode_word(w)]

    def decode(self, ids):
        ids = token_ids(ids, self.vocab_size)
        try:
            pieces = [self.id_to_token[int(i)] for i in ids]
        except KeyError as e:
            raise TokenizerError(f"token id {e.args[0]} is outside the vocabulary "
                                 f"(0..{self.vocab_size - 1})") from None
        return "".join(pieces).replace(EOW, " ").rstrip(" ")

    @property
    def vocab_size(self):
        return max([len(self.tokens) - 1, *self.special_tokens.values()]) + 1

    def merges_txt(self):
        """The merge table in the subword-nmt / HuggingFace ``merges.txt`` layout."""
        return "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges)

    def _fields(self):
        return {"symbols": self.symbols, "merges": [list(m) for m in self.merges],
                "special_tokens": self.special_tokens}

    @classmethod
    def _from_fields(cls, obj):
        return cls(obj["symbols"], [tuple(m) for m in obj["merges"]],
                   {str(k): int(v) for k, v in obj["special_tokens"].items()})
