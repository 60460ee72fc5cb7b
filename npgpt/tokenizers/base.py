"""What every tokenizer shares: special-token handling, atomic saving, the identity string.

The interface (the trainer, the data cache and the generator rely on exactly this):

    encode(text, allowed_special="none_raise") -> list[int]
    decode(ids) -> str                 # invalid UTF-8 is replaced, never raised
    vocab_size, special_tokens, name   # name: stable identity, e.g. "bpe:1f2e3d4c5b6a"
    save(path) / Tokenizer.load(path)  # save writes a temp file and renames it

``allowed_special`` decides what happens to special-token text such as ``<|endoftext|>``
found inside ``text``: ``"all"`` (or a set of names) emits their ids, ``"none"`` encodes them
as ordinary text, ``"none_raise"`` (the default) raises TokenizerError, as tiktoken does.
"""
import hashlib
import os

import regex

from ..errors import TokenizerError
from ..io import atomic_write, cache_root


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

    def encode(self, text, allowed_special="none_raise"):
        """text -> list of token ids; see the module docstring for ``allowed_special``."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        try:
            return self._encode(text, allowed_special)
        except UnicodeEncodeError:   # a lone surrogate has no UTF-8 bytes to encode
            at = next((i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
            where = f"U+{ord(text[at]):04X} at offset {at}" if at is not None else "a character"
            raise TokenizerError(f"text has {where}, a lone surrogate, which is not valid "
                                 "Unicode text and cannot be encoded") from None

    def _encode(self, text, allowed_special):
        allowed = self._allowed(allowed_special)
        if not self.special_tokens or (allowed_special == "none"):
            return self.encode_ordinary(text)
        if self._special_re is None:
            alternatives = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
        if allowed_special == "none_raise" or allowed != set(self.special_tokens):
            for m in self._special_re.finditer(text):
                if m.group(0) not in allowed:
                    raise TokenizerError(
                        f"text contains the special token {m.group(0)!r} at offset {m.start()}; "
                        "pass allowed_special='all' (or a set naming it) to emit its id, or "
                        "allowed_special='none' to encode it as ordinary text")
        ids = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:  # the captured separators: the special tokens themselves
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_batch(self, texts, allowed_special="none_raise"):
        return [self.encode(t, allowed_special=allowed_special) for t in texts]

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"
