"""The character classes of the split patterns, pinned to one Unicode version.

``\\p{L}``, ``\\p{N}`` and ``\\s`` in a pattern would otherwise mean whatever the installed
``regex`` package's tables say, and every Unicode release assigns new letters: with a newer
``regex`` than tiktoken's, a character assigned in between is a letter for one and punctuation
for the other, and the ids differ (``"\\u0558:A"``).  tiktoken's cl100k_base splits by Unicode
16.0.0 (its Rust regex engine's tables; the tests sweep every code point of planes 0-3 and 14
against it), so the classes here are Unicode 16.0.0's, from ``_unicode_16.py``, whatever is
installed:

- ``pinned_pattern(p)`` writes ``\\p{L}``, ``\\p{N}``, ``\\s`` and ``\\S`` of a pattern as explicit
  ranges, for ``regex.compile``;
- ``PinnedSplit(p).findall(text)`` is ``regex.findall(pinned_pattern(p), text)``, fast: a set of
  ~800 ranges is matched range by range (much slower than ``\\p{L}``), so text without any
  character whose class differs between the installed tables and Unicode 16.0.0 (all ASCII
  text, nearly all other text) is split by the pattern as written, which then gives the same
  pieces; only text with such a character takes the spelled-out pattern;
- ``class_table()`` is one uint8 per code point (LETTER | DIGIT | SPACE bits and the contraction
  letter code) for the numba splitter.

Case-insensitive matching (the contractions' ``(?i:...)``) only ever involves ASCII letters
and U+017F (long s, which folds to s): stable across Unicode versions.
"""
import os
import re
import sys

import numpy as np
import regex

from . import _unicode_16 as ucd
from .patterns import GPT2_PATTERN, GPT4_PATTERN

UNICODE_VERSION = ucd.VERSION
LETTER, DIGIT, SPACE = 1, 2, 4
FOLD_SHIFT = 4                 # bits 4..7: 1..8 for s d m t l v r e (case-insensitive)
FOLDS = {"s": "sS\u017f", "d": "dD", "m": "mM", "t": "tT", "l": "lL", "v": "vV", "r": "rR", "e": "eE"}
_TABLE = None
_CLASSES = {}


def _pairs(flat):
    return list(zip(flat[0::2], flat[1::2]))


def _escape(c):
    return f"\\u{c:04X}" if c < 0x10000 else f"\\U{c:08X}"


def _set_body(pairs):
    """[(first, last), ...] -> the inside of a regex character class, e.g. ``\\u0041-\\u005A``."""
    return "".join(_escape(a) if a == b else _escape(a) + "-" + _escape(b) for a, b in pairs)


def _bodies():
    if not _CLASSES:
        _CLASSES.update(L=_set_body(_pairs(ucd.LETTER)), N=_set_body(_pairs(ucd.NUMBER)),
                        s=_set_body(_pairs(ucd.WHITE_SPACE)))
    return _CLASSES


def _ascii_bodies():
    below = {}
    for name, flat in (("L", ucd.LETTER), ("N", ucd.NUMBER), ("s", ucd.WHITE_SPACE)):
        below[name] = _set_body((a, min(b, 127)) for a, b in _pairs(flat) if a < 128)
    return below


def pinned_pattern(pattern, ascii_only=False):
    """``pattern`` with ``\\p{L}``, ``\\p{N}``, ``\\s`` and ``\\S`` spelled out as Unicode 16.0.0
    ranges, inside character classes and out.  ``\\S`` inside a class has no such spelling and
    is left as it is (neither published pattern has one).  ``ascii_only``: only the classes'
    ASCII members (``A-Za-z``, ``0-9``, ``\\t-\\r`` and space), the same pattern for text that
    is all ASCII."""
    body = _ascii_bodies() if ascii_only else _bodies()
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            esc = pattern[i:i + 2]
            name = {"\\s": "s", "\\S": "S"}.get(esc)
            size = 2
            if pattern.startswith(("\\p{L}", "\\p{N}"), i):
                name, size = pattern[i + 3], 5
            if name is None or (name == "S" and depth):
                out.append(pattern[i:i + size])
            elif depth:
                out.append(body[name])
            elif name == "S":
                out.append("[^" + body["s"] + "]")
            else:
                out.append("[" + body[name] + "]")
            i += size
            continue
        if c == "[" and depth == 0:
            depth = 1
            out.append(c)
            if pattern.startswith("^", i + 1):  # a leading ^ or ] belongs to the class
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):
                out.append("\\]")
                i += 1
        elif c == "]" and depth:
            depth = 0
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def class_table():
    """uint8 per code point (0..0x10FFFF): the LETTER, DIGIT and SPACE bits of Unicode 16.0.0
    and, in bits 4..7, which contraction letter (1..8 for s d m t l v r e) a character matches
    case-insensitively."""
    global _TABLE
    if _TABLE is None:
        table = np.zeros(0x110000, np.uint8)
        for bit, flat in ((LETTER, ucd.LETTER), (DIGIT, ucd.NUMBER), (SPACE, ucd.WHITE_SPACE)):
            for a, b in _pairs(flat):
                table[a:b + 1] |= bit
        for code, letter in enumerate("sdmtlvre", 1):
            for ch in FOLDS[letter]:
                table[ord(ch)] |= code << FOLD_SHIFT
        _TABLE = table
    return _TABLE


def _installed_table():
    """LETTER | DIGIT | SPACE per code point as the installed ``regex`` sees them."""
    every = "".join(map(chr, range(0x110000)))
    table = np.zeros(0x110000, np.uint8)
    for bit, pattern in ((LETTER, r"\p{L}+"), (DIGIT, r"\p{N}+"), (SPACE, r"\s+")):
        for m in regex.finditer(pattern, every):
            table[m.start():m.end()] |= bit
    return table


def changed_code_points():
    """The code points whose LETTER / DIGIT / SPACE class differs between the installed ``regex``
    and Unicode 16.0.0 (int64 array; empty when they agree), cached on disk per ``regex``
    version: comparing all 1.1 M code points is the slow part."""
    from .base import atomic_save_npy, cache_dir
    path = os.path.join(cache_dir(), f"unicode-{UNICODE_VERSION}-vs-regex-{regex.__version__}.npy")
    try:
        changed = np.load(path, allow_pickle=False)
        if changed.ndim == 1 and changed.dtype == np.int64:
            return changed
    except (OSError, ValueError):
        pass
    mask = LETTER | DIGIT | SPACE
    changed = np.flatnonzero((_installed_table() & mask) != (class_table() & mask)).astype(np.int64)
    atomic_save_npy(path, changed)
    return changed


class PinnedSplit:
    """``findall(text)``: the pieces of ``pattern`` with Unicode 16.0.0 classes (see the module
    docstring for why two compiled patterns).  ASCII text with a published pattern takes the
    standard library's ``re`` and the pattern's ASCII spelling, two to three times faster than
    ``regex`` (possessive quantifiers: Python 3.11 or later)."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.as_written = regex.compile(pattern)
        self._pinned = None
        self._changed = None
        self._ascii = None
        if pattern in (GPT2_PATTERN, GPT4_PATTERN) and sys.version_info >= (3, 11):
            self._ascii = re.compile(pinned_pattern(pattern, ascii_only=True))

    def findall(self, text):
        return self.compiled_for(text).findall(text)

    def finditer(self, text):
        return self.compiled_for(text).finditer(text)

    def sub(self, replacement, text):
        """Every match replaced by the literal ``replacement``."""
        return self.compiled_for(text).sub(lambda m: replacement, text)

    def compiled_for(self, text):
        """The compiled pattern that gives Unicode 16.0.0's pieces of ``text``."""
        if text.isascii():
            return self._ascii or self.as_written
        if self._changed_re() is None or self._changed_re().search(text) is None:
            return self.as_written
        if self._pinned is None:
            self._pinned = regex.compile(pinned_pattern(self.pattern))
        return self._pinned

    def _changed_re(self):
        if self._changed is None:
            changed = changed_code_points()
            if changed.size == 0:
                self._changed = False
            else:
                runs = np.split(changed, np.flatnonzero(np.diff(changed) != 1) + 1)
                self._changed = regex.compile("[" + _set_body((int(r[0]), int(r[-1])) for r in runs) + "]")
        return self._changed or None
