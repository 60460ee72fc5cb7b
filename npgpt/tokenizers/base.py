"""What every tokenizer shares: special-token handling, atomic saving, the identity string.

The interface (the trainer, the data cache and the generator rely on exactly this):

    encode(text, allowed_special="none_raise", disallowed_special="all") -> list[int]
    decode(ids) -> str                 # invalid UTF-8 is replaced, never raised
    vocab_size, special_tokens, name   # name: stable identity, e.g. "bpe:1f2e3d4c5b6a"
    save(path) / Tokenizer.load(path)  # save writes a temp file and renames it

Special-token text such as ``<|endoftext|>`` inside ``text`` is handled as tiktoken does:
``allowed_special`` ("all" or a set of names) is what is emitted as a special id; then
``disallowed_special`` ("all": every special token not allowed; or a set; ``()`` for none) is
what raises TokenizerError (a ValueError) when found; any other special text is encoded as
ordinary text.  ``"none"`` (nothing allowed, nothing disallowed) and ``"none_raise"`` (nothing
allowed, the default) are npgpt's names for the two common cases:

    encode(t)                                            # any special text raises
    encode(t, allowed_special="all")                     # all of them become their ids
    encode(t, allowed_special={"<|endoftext|>"}, disallowed_special=())   # the rest as text

A tokenizer read from a HuggingFace ``tokenizer.json`` whose ``post_processor`` adds special
tokens (Llama 3 and Gemma: a BOS) adds them in ``encode``, as ``tokenizer(text)`` does there;
``encode(t, add_special_tokens=False)`` leaves them out (a rendered chat template, which
writes its own BOS, is encoded so).  Every other tokenizer adds nothing either way.

Surrogates as tiktoken: a pair in a Python str is joined into its character, a lone one is
replaced by U+FFFD.
"""
import hashlib
import json
import os

import numpy as np
import regex

from ..errors import TokenizerError
from ..io import atomic_write, cache_root


def token_ids(ids, vocab_size) -> list:
    """``ids`` (a list, tuple or 1-D array of integers) as a list of ints in 0..vocab_size-1,
    or TokenizerError naming the first id that is not one (1.7, True, "a")."""
    if hasattr(ids, "tolist") and getattr(ids, "ndim", 1) == 1:
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)):
        raise TokenizerError(f"decode expects a sequence of token ids, got {type(ids).__name__}")
    for i in ids:
        if type(i) is not int and not isinstance(i, np.integer) or not 0 <= i < vocab_size:
            raise TokenizerError(f"token id {i!r} is outside the vocabulary "
                                 f"(integer ids 0..{vocab_size - 1})")   # 1.7, True, "a"
    return [int(i) for i in ids]


def cache_dir():
    """Where derived tokenizer data is cached: ``tokenizers/`` under ``io.cache_root()``."""
    return os.fspath(cache_root() / "tokenizers")


def atomic_save_npy(path, array):
    """Save ``array`` as .npy through a temp file and a rename; a cache that cannot be written
    (read-only home, full disk) is skipped silently: it only ever saves time."""
    import io

    import numpy as np
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    try:
        atomic_write(path, buf.getvalue())
    except OSError:
        pass


def without_surrogates(text):
    """What tiktoken encodes for a str with surrogates: each pair joined into its character,
    each lone one replaced by U+FFFD.  ``"\\ud83d\\udc4d" -> "\U0001f44d"``."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def short_hash(data):
    """First 12 hex digits of the SHA-256 of ``data`` (str or bytes): the identity in ``name``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:12]


def read_text(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise TokenizerError(f"cannot read {what} {os.fspath(path)!r}: {e}") from e
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{what} {os.fspath(path)!r} is not UTF-8 text: {e}") from e


class Tokenizer:
    """Base class: holds ``special_tokens`` ({text: id}) and splits text around them."""

    kind = "tokenizer"
    post_processor = None   # hf_post.PostProcessor: the ids a tokenizer.json adds (BOS, ...)

    def __init__(self, special_tokens=None):
        self.special_tokens = dict(special_tokens or {})
        self._special_re = None

    # --- to be provided by subclasses -------------------------------------------------------
    def encode_ordinary(self, text):
        """Encode ``text`` with no special-token handling at all."""
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError

    @property
    def vocab_size(self):
        raise NotImplementedError

    @property
    def name(self):
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------
    @property
    def special_tokens_set(self):
        return set(self.special_tokens)

    def _allowed(self, allowed_special):
        if allowed_special == "all":
            return set(self.special_tokens)
        if allowed_special in ("none", "none_raise"):
            return set()
        if isinstance(allowed_special, str):
            raise TokenizerError(
                f"allowed_special={allowed_special!r}: expected 'all', 'none', 'none_raise' "
                "or a set of special-token strings")
        allowed = set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise TokenizerError(f"allowed_special names unknown special tokens {sorted(unknown)}; "
                                 f"this tokenizer has {sorted(self.special_tokens)}")
        return allowed

    def _disallowed(self, allowed_special, disallowed_special, allowed):
        if allowed_special == "none":
            return set()
        if disallowed_special == "all":
            return set(self.special_tokens) - allowed
        if isinstance(disallowed_special, str):
            raise TokenizerError(f"disallowed_special={disallowed_special!r}: expected 'all' or "
                                 "a collection of special-token strings (() for none)")
        return set(disallowed_special)

    def _specials_re(self, names):
        key = frozenset(names)
        found = self._special_re.get(key) if self._special_re else None
        if found is None:
            alternatives = sorted(key, key=len, reverse=True)
            found = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
            self._special_re = {**(self._special_re or {}), key: found}
        return found

    def encode(self, text, allowed_special="none_raise", disallowed_special="all", *,
               add_special_tokens=True):
        """text -> list of token ids; see the module docstring for the two special sets.
        ``add_special_tokens``: also the ids the tokenizer's ``post_processor`` puts around
        every encoding (a BOS, from a tokenizer.json that says so; most tokenizers have none)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        allowed = self._allowed(allowed_special)
        disallowed = self._disallowed(allowed_special, disallowed_special, allowed)
        if disallowed:
            m = self._specials_re(disallowed).search(text)
            if m:
                token = m.group(0)
                raise TokenizerError(
                    f"Encountered text corresponding to disallowed special token {token!r} at "
                    f"offset {m.start()}: pass allowed_special={{{token!r}, ...}} to encode it as "
                    f"a special token, disallowed_special=(enc.special_tokens_set - {{{token!r}}}) "
                    "to encode it as text, or disallowed_special=() for every special token")
        try:
            ids = self._encode(text, allowed)
        except UnicodeEncodeError:
            ids = self._encode(without_surrogates(text), allowed)
        if add_special_tokens and self.post_processor is not None:
            ids = self.post_processor(ids)
        return ids

    def _encode(self, text, allowed):
        if not allowed:
            return self.encode_ordinary(text)
        ids = []
        for i, part in enumerate(self._specials_re(allowed).split(text)):
            if i % 2:  # the captured separators: the special tokens themselves
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_batch(self, texts, allowed_special="none_raise", disallowed_special="all", *,
                     add_special_tokens=True):
        return [self.encode(t, allowed_special, disallowed_special,
                            add_special_tokens=add_special_tokens) for t in texts]

    def num_special_tokens_to_add(self):
        """How many ids ``encode`` adds around a text (``add_special_tokens``), as
        HuggingFace's method of that name says for one sequence."""
        post = self.post_processor
        return 0 if post is None else post.num_special_tokens_to_add

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


class JsonFileTokenizer(Tokenizer):
    """Save and load for the tokenizers stored as one JSON object ``{"type": MAGIC, ...}``
    (char, classic BPE): a subclass gives ``MAGIC``, ``what`` (for messages), ``_fields()``
    (what to store) and ``_from_fields(obj)``."""

    MAGIC = None
    what = "tokenizer file"
    json_indent = 1

    def _serialize(self):
        return json.dumps({"type": self.MAGIC, "version": 1, **self._fields()},
                          ensure_ascii=False, indent=self.json_indent) + "\n"

    @property
    def name(self):
        return f"{self.kind}:" + short_hash(self._serialize())

    def save(self, path):
        atomic_write(path, self._serialize())

    @classmethod
    def load(cls, path):
        return cls.from_json(read_text(path, cls.what), path)

    @classmethod
    def from_json(cls, text, path="<string>"):
        try:
            obj = json.loads(text)
            if obj.get("type") != cls.MAGIC:
                raise ValueError(f"type is {obj.get('type')!r}, expected {cls.MAGIC!r}")
            return cls._from_fields(obj)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise TokenizerError(f"{path!s} is not a valid {cls.what}: {e}") from None
