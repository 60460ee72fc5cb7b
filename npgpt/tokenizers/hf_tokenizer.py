"""A HuggingFace ``tokenizer.json`` with a BPE model, run in full: added tokens, normalizer,
pre-tokenizer, BPE (byte-level or SentencePiece-style), decoder.

    text ─ added tokens cut out ─ normalizer ─ added tokens (normalized ones) cut out
         ─ pre-tokenizer: pieces ─ BPE per piece ─ ids

The BPE runs on a piece's characters: each character's id from the vocabulary (byte-level files
write bytes as characters, so there the characters are bytes), then the adjacent pair of lowest
merge rank merges, leftmost first (``bpe_encode.bpe_piece``).  A character with no id becomes
its UTF-8 bytes' ``<0xNN>`` tokens when the model has ``byte_fallback`` (SentencePiece-style
files: Gemma, LLaMA 2), else the ``unk_token`` (runs of them fused into one with ``fuse_unk``),
else nothing: a byte-level vocabulary without a token for some byte (SmolLM2's) drops that
byte, as the reference does.  ``ignore_merges``: a piece that is itself a token is that token.

Added tokens are matched leftmost-longest before anything else (``normalized`` ones after the
normalizer, on its output), with their ``lstrip`` / ``rstrip`` / ``single_word`` options.
Those marked ``special`` follow npgpt's rule for special text (``allowed_special``, see
base.py); the others are always cut out.  The file's ``post_processor`` (``hf_post``) adds
its special tokens (a BOS) around what ``encode`` returns unless ``add_special_tokens=False``,
as in HuggingFace; a rendered chat template, which writes its own, is encoded without them.
"""
import json
import os

import regex

from ..errors import TokenizerError
from . import hf_pipeline, hf_post
from .base import Tokenizer, atomic_write, short_hash, token_ids
from .bpe_encode import bpe_piece, fits_numba_table

_CACHE_LIMIT = 100_000
_NUMBA_MIN_SYMBOLS = 512    # a piece this long is merged by the numba kernel
_WORD = regex.compile(r"\w")
_SPACE = regex.compile(r"\s")


def parse_merges(model, where):
    """The model's merges as (a, b) string pairs (``"a b"`` strings or two-element lists)."""
    merges = []
    for n, m in enumerate(model.get("merges", [])):
        pair = m.split(" ") if isinstance(m, str) else list(m)
        if len(pair) != 2:
            raise TokenizerError(f"{where}: merge #{n} {m!r} is not a pair of tokens")
        merges.append(tuple(pair))
    return merges


class HFTokenizer(Tokenizer):
    """A ``tokenizer.json`` (``obj``: its parsed JSON) with a BPE model."""

    kind = "hf"

    def __init__(self, obj, where="tokenizer.json"):
        self.json = obj
        model = obj.get("model") or {}
        if model.get("type", "BPE") != "BPE" or "vocab" not in model:
            raise TokenizerError(f"{where}: model type {model.get('type')!r}; only BPE is supported")
        for option in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(option):
                raise TokenizerError(f"{where}: BPE option {option}={model[option]!r} is not supported")
        if model.get("dropout"):
            raise TokenizerError(f"{where}: BPE dropout={model['dropout']} samples its merges; "
                                 "only deterministic BPE is supported")
        self.vocab = {str(k): int(v) for k, v in model["vocab"].items()}
        self.ranks = {}
        for rank, (a, b) in enumerate(parse_merges(model, where)):
            missing = [t for t in (a, b, a + b) if t not in self.vocab]
            if missing:
                raise TokenizerError(f"{where}: merge #{rank} ({a!r}, {b!r}) uses {missing[0]!r}, "
                                     "which is not in the vocabulary")
            self.ranks[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[a + b])  # last wins
        self.byte_fallback = bool(model.get("byte_fallback", False))
        self.fuse_unk = bool(model.get("fuse_unk", False))
        self.ignore_merges = bool(model.get("ignore_merges", False))
        unk = model.get("unk_token")
        if unk is not None and unk not in self.vocab:
            raise TokenizerError(f"{where}: unk_token {unk!r} is not in the vocabulary")
        self.unk_id = None if unk is None else self.vocab[unk]
        self._fallback = {b: self.vocab.get(f"<0x{b:02X}>") for b in range(256)}
        self.normalize = hf_pipeline.normalizer(obj.get("normalizer"), where)
        self.pre_tokenize = hf_pipeline.pre_tokenizer(obj.get("pre_tokenizer"), where)
        self.decoder = hf_pipeline.decoder(obj.get("decoder"), where)
        self.post_processor = hf_post.post_processor(obj.get("post_processor"), where)
        self.added = {}           # content -> the added-token object
        for t in obj.get("added_tokens", []):
            self.added[t["content"]] = {"single_word": False, "lstrip": False, "rstrip": False,
                                        "normalized": not t.get("special", False),
                                        "special": False, **t}
        super().__init__({s: t["id"] for s, t in self.added.items() if t["special"]})
        self.id_to_token = {i: s for s, i in self.vocab.items()}
        self.id_to_token.update({t["id"]: s for s, t in self.added.items()})
        self._vocab_size = max(self.id_to_token) + 1 if self.id_to_token else 0
        if self.post_processor is not None:
            self.post_processor.check_ids(self._vocab_size, where)
        self._special_ids = {t["id"] for t in self.added.values() if t["special"]}
        self._normalized_forms = {s: (self.normalize(s) if self.normalize else s)
                                  for s, t in self.added.items() if t["normalized"]}
        self._matchers = {}
        self._cache = {}
        self._pair_table = None
        self._name = None

    # --- added tokens -------------------------------------------------------------------------
    def _matcher(self, allowed, normalized):
        """The regex of the added tokens cut out at this stage: the special ones ``allowed``
        and every other one, longest first (leftmost-longest, as an Aho-Corasick automaton)."""
        key = (frozenset(allowed), normalized)
        if key not in self._matchers:
            forms = {}
            for s, t in self.added.items():
                if t["normalized"] == normalized and (not t["special"] or s in allowed):
                    forms[self._normalized_forms[s] if normalized else s] = t
            alts = sorted((f for f in forms if f), key=len, reverse=True)
            pattern = regex.compile("|".join(map(regex.escape, alts))) if alts else None
            self._matchers[key] = (pattern, forms)
        return self._matchers[key]

    def _cut(self, text, at_start, allowed, normalized):
        """[(text, at_start) or token id]: ``text`` with its added tokens cut out."""
        pattern, forms = self._matcher(allowed, normalized)
        if pattern is None or not text:
            return [(text, at_start)]
        out, done = [], 0
        for m in pattern.finditer(text):
            start, stop = m.start(), m.end()
            token = forms[m.group(0)]
            if token["single_word"] and (
                    (start > 0 and _WORD.match(text[start - 1]))
                    or (stop < len(text) and _WORD.match(text[stop]))):
                continue
            if token["lstrip"]:
                while start > done and _SPACE.match(text[start - 1]):
                    start -= 1
            if token["rstrip"]:
                while stop < len(text) and _SPACE.match(text[stop]):
                    stop += 1
            if start > done:
                out.append((text[done:start], at_start and done == 0))
            out.append(token["id"])
            done = stop
        if done < len(text):
            out.append((text[done:], at_start and done == 0))
        return out

    # --- encoding -----------------------------------------------------------------------------
    def _encode(self, text, allowed):
        ids = []
        for part in self._cut(text, True, allowed, normalized=False):
            if isinstance(part, int):
                ids.append(part)
                continue
            segment, at_start = part
            if self.normalize is not None:
                segment = self.normalize(segment)
            for sub in self._cut(segment, at_start, allowed, normalized=True):
                if isinstance(sub, int):
                    ids.append(sub)
                elif sub[0]:
                    ids.extend(self._encode_segment(*sub))
        return ids

    def encode_ordinary(self, text):
        """``text`` -> ids with every special token's text as text (added tokens that are not
        special are still cut out, as they always are)."""
        return self._encode(text, set())

    def _encode_segment(self, text, at_start):
        pieces = [(text, at_start)]
        if self.pre_tokenize is not None:
            pieces = self.pre_tokenize(pieces)
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        ids = []
        for piece, _ in pieces:
            found = cache.get(piece)
            if found is None:
                found = cache[piece] = self._bpe(piece)
            ids.extend(found)
        return ids

    def _bpe(self, piece):
        """The BPE of one piece (its characters, see the module docstring)."""
        vocab = self.vocab
        if self.ignore_merges and piece in vocab:
            return [vocab[piece]]
        word, unk = [], None
        for ch in piece:
            i = vocab.get(ch)
            if i is not None:
                if unk is not None:
                    word.append(unk)
                    unk = None
                word.append(i)
                continue
            if self.byte_fallback:
                fallback = [self._fallback[b] for b in ch.encode("utf-8")]
                if None not in fallback:
                    word.extend(fallback)
                    continue
            if self.unk_id is not None:
                if unk is not None and not self.fuse_unk:
                    word.append(unk)
                unk = self.unk_id
        if unk is not None:
            word.append(unk)
        if len(word) > _NUMBA_MIN_SYMBOLS and self._numba_table() is not None:
            return self._bpe_numba(word)
        return bpe_piece(word, self.ranks)

    def _numba_table(self):
        """The merges as the numba kernels' pair table (``_encode_kernels``), built on first
        use, or None when the ids or ranks do not fit it."""
        if self._pair_table is None:
            import numpy as np
            order = sorted(self.ranks.items(), key=lambda kv: kv[1][0])
            if not fits_numba_table(len(order), max(self.id_to_token, default=0)):
                self._pair_table = False
            else:
                from ._encode_kernels import build_pair_table
                a = np.array([ab[0] for ab, _ in order], np.int64)
                b = np.array([ab[1] for ab, _ in order], np.int64)
                new = np.array([rn[1] for _, rn in order], np.int64)
                self._pair_table = build_pair_table(a, b, new)   # ranks: positions, same order
        return self._pair_table or None

    def _bpe_numba(self, word):
        """``bpe_piece`` of a long piece (SentencePiece-style files make a whole text without
        spaces one piece) by the numba kernel: the same rule, O(m log m) without Python's
        per-merge cost."""
        import numpy as np

        from ._encode_kernels import bpe
        m = len(word)
        buf = np.array(word, np.int64)
        nxt, prv = np.empty(m, np.int64), np.empty(m, np.int64)
        n = bpe(buf, m, *self._numba_table(), nxt, prv, np.empty(3 * m, np.int64))
        return buf[:n].tolist()

    # --- decoding -----------------------------------------------------------------------------
    def decode(self, ids, errors="replace", skip_special_tokens=False):
        """ids -> text through the file's decoder (ids inside the vocabulary's range that name
        no token are skipped, as the reference does; ``errors`` is accepted for the common
        signature: invalid bytes always become U+FFFD)."""
        ids = token_ids(ids, self.vocab_size)
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        tokens = [t for t in map(self.id_to_token.get, ids) if t is not None]
        if self.decoder is None:
            return " ".join(tokens)
        return "".join(self.decoder(tokens))

    def id_to_piece(self, i):
        """The token string of one id, as the file writes it."""
        return self.id_to_token.get(int(i), "")

    def token_to_id(self, token):
        """The id of a token string (added tokens too), or None."""
        added = self.added.get(token)
        return added["id"] if added is not None else self.vocab.get(token)

    @property
    def vocab_size(self):
        return self._vocab_size

    # --- files ----------------------------------------------------------------------------------
    def to_json_text(self):
        return json.dumps(self.json, ensure_ascii=False)

    @property
    def name(self):
        """``hf:`` and the hash of the file's content (computed once: files are megabytes)."""
        if self._name is None:
            self._name = "hf:" + short_hash(json.dumps(self.json, ensure_ascii=False,
                                                       sort_keys=True))
        return self._name

    def save(self, path):
        """Write the ``tokenizer.json`` back (``npgpt.tokenizers.load`` reads it)."""
        atomic_write(path, self.to_json_text())

    @classmethod
    def load(cls, path):
        from .base import read_text
        where = os.fspath(path)
        try:
            return cls(json.loads(read_text(path, "tokenizer.json")), where)
        except json.JSONDecodeError as e:
            raise TokenizerError(f"{where} is not valid JSON: {e}") from None
