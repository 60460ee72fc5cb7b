"""numba pre-split + BPE for the GPT-4 (cl100k_base) pattern: a whole text in one call.

``regex.findall`` makes one Python string per piece (a million for Shakespeare) and the
cache lookups then cost one dict access per piece; here the text is a uint32 array of code
points, and one kernel cuts it piece by piece, takes the ids of a piece it has just seen from
a small direct-mapped cache of pieces (see ``encode_gpt4``), runs the BPE of the others, and
appends the ids.

The cut is the pattern's own leftmost-first rule, alternative by alternative:

    1 '(?i:[sdmt]|ll|ve|re)         an apostrophe and a contraction
    2 [^\\r\\n\\p{L}\\p{N}]?+\\p{L}++     one optional non-letter, non-digit, non-newline, then letters
    3 \\p{N}{1,3}+                    one to three digits
    4  ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+     optional space, punctuation run, newlines
    5 \\s++$                          whitespace to the end of the text
    6 \\s*[\\r\\n]                      whitespace up to its last newline
    7 \\s+(?!\\S)                      whitespace but its last character
    8 \\s                             one whitespace character

The character classes (letter, digit, whitespace, and which contraction letter a character
matches case-insensitively) are one byte per code point from ``unicode_classes.class_table``,
Unicode 16.0.0's, the same that ``unicode_classes.pinned_pattern`` writes into the regex.

Imported only when a large text is encoded, never at ``import npgpt``.
"""
import numpy as np
from ..runtime.numba_start import njit

from ._encode_kernels import bpe
from .unicode_classes import DIGIT, FOLD_SHIFT, LETTER, SPACE, class_table

_S, _D, _M, _T, _L, _V, _R, _E = 1, 2, 3, 4, 5, 6, 7, 8


def char_classes():
    """The class of every code point (``unicode_classes.class_table``)."""
    return class_table()


@njit(cache=True)
def _is_newline(c):
    return c == 10 or c == 13


@njit(cache=True)
def _fold(cls, c):
    return cls[c] >> FOLD_SHIFT


@njit(cache=True)
def _punct(cls, c):
    # [^\s\p{L}\p{N}]
    return (cls[c] & (LETTER | DIGIT | SPACE)) == 0


@njit(cache=True)
def next_piece_end(cp, cls, i):
    """End (exclusive) of the GPT-4 pattern's match starting at i (see the module docstring)."""
    n = cp.size
    c = cp[i]
    k = cls[c]
    # 1: contractions
    if c == 39 and i + 1 < n:
        f1 = _fold(cls, cp[i + 1])
        if f1 == _S or f1 == _D or f1 == _M or f1 == _T:
            return i + 2
        if i + 2 < n:
            f2 = _fold(cls, cp[i + 2])
            if (f1 == _L and f2 == _L) or (f1 == _V and f2 == _E) or (f1 == _R and f2 == _E):
                return i + 3
    # 2: the optional prefix is possessive: taken whenever it can be, never given back
    j = i
    if not _is_newline(c) and (k & (LETTER | DIGIT)) == 0:
        j = i + 1
    if j < n and (cls[cp[j]] & LETTER):
        j += 1
        while j < n and (cls[cp[j]] & LETTER):
            j += 1
        return j
    # 3: up to three digits
    if k & DIGIT:
        j = i + 1
        while j < n and j < i + 3 and (cls[cp[j]] & DIGIT):
            j += 1
        return j
    # 4: " ?" backtracks, so a space counts only when punctuation follows it
    j = -1
    if c == 32 and i + 1 < n and _punct(cls, cp[i + 1]):
        j = i + 2
    elif _punct(cls, c):
        j = i + 1
    if j != -1:
        while j < n and _punct(cls, cp[j]):
            j += 1
        while j < n and _is_newline(cp[j]):
            j += 1
        return j
    # 5..8: whitespace (every character left is whitespace)
    e = i
    last_newline = -1
    while e < n and (cls[cp[e]] & SPACE):
        if _is_newline(cp[e]):
            last_newline = e
        e += 1
    if e == i:
        return i + 1  # unreachable: every character is a letter, digit, space or punctuation
    if e == n:
        return n
    if last_newline != -1:
        return last_newline + 1
    if e - 1 > i:
        return e - 1
    return i + 1


@njit(cache=True)
def split_gpt4(cp, cls):
    """Piece boundaries of the code points ``cp``: piece j is cp[starts[j]:starts[j+1]]."""
    n = cp.size
    starts = np.empty(n + 1, np.int64)
    m = 0
    i = 0
    while i < n:
        starts[m] = i
        m += 1
        i = max(next_piece_end(cp, cls, i), i + 1)  # always advance: starts has n + 1 slots
    starts[m] = n
    return starts[:m + 1]


@njit(cache=True)
def _hash(cp, s, e):
    h = np.uint64(14695981039346656037)
    for i in range(s, e):
        h = (h ^ np.uint64(cp[i])) * np.uint64(1099511628211)
    return h


@njit(cache=True)
def _same(cp, s1, e1, s2, e2):
    if e1 - s1 != e2 - s2:
        return False
    for i in range(e1 - s1):
        if cp[s1 + i] != cp[s2 + i]:
            return False
    return True


@njit(cache=True)
def _utf8_ids(cp, s, e, byte_ids, buf):
    """The UTF-8 bytes of cp[s:e], each as its byte token id, into buf; returns the count."""
    m = 0
    for i in range(s, e):
        c = np.int64(cp[i])
        if c < 0x80:
            buf[m] = byte_ids[c]
            m += 1
        elif c < 0x800:
            buf[m] = byte_ids[0xC0 | (c >> 6)]
            buf[m + 1] = byte_ids[0x80 | (c & 0x3F)]
            m += 2
        elif c < 0x10000:
            buf[m] = byte_ids[0xE0 | (c >> 12)]
            buf[m + 1] = byte_ids[0x80 | ((c >> 6) & 0x3F)]
            buf[m + 2] = byte_ids[0x80 | (c & 0x3F)]
            m += 3
        else:
            buf[m] = byte_ids[0xF0 | (c >> 18)]
            buf[m + 1] = byte_ids[0x80 | ((c >> 12) & 0x3F)]
            buf[m + 2] = byte_ids[0x80 | ((c >> 6) & 0x3F)]
            buf[m + 3] = byte_ids[0x80 | (c & 0x3F)]
            m += 4
    return m


@njit(cache=True)
def encode_gpt4(cp, cls, byte_ids, table, news, cache_bits):
    """Code points -> token ids: cut the next piece, take its ids from the piece cache or run
    its BPE, append them.  ``table, news``: the merge table of
    ``_encode_kernels.build_pair_table``.

    The piece cache has 2**cache_bits slots, each the last piece whose hash picked it: (hash,
    where the piece starts in ``cp`` and its length, where its ids start in the output and how
    many).  A piece equal to its slot's copies those ids; any other runs its BPE and takes the
    slot.  Repeated pieces (most of ordinary text) are merged about once, and text without
    repeats pays one probe of a table that stays small, not a set of every piece."""
    n = cp.size
    cap = 1 << cache_bits
    slots = np.empty(4 * cap, np.int64)  # hash, start << 20 | length, out start << 20 | count
    for q in range(cap):
        slots[4 * q] = -1
    out = np.empty(n + 16, np.int64)
    size = 64
    buf = np.empty(size, np.int64)
    rank = np.empty(size, np.int64)
    prv = np.empty(size, np.int64)
    heap = np.empty(3 * size, np.int64)
    o = 0
    s = 0
    while s < n:
        e = max(next_piece_end(cp, cls, s), s + 1)
        h = np.int64(_hash(cp, s, e) >> np.uint64(1))  # >= 0, never the empty mark
        q = 4 * (h & (cap - 1))
        length = e - s
        if slots[q] == h and (slots[q + 1] & 0xFFFFF) == length and length < 0xFFFFF \
                and _same(cp, slots[q + 1] >> 20, (slots[q + 1] >> 20) + length, s, e):
            at = slots[q + 2] >> 20
            m = slots[q + 2] & 0xFFFFF
            if o + m > out.size:
                out = _grown(out, o + m)
            for i in range(m):
                out[o + i] = out[at + i]
        else:
            if 4 * length + 4 > size:
                size = 2 * (4 * length + 4)
                buf = np.empty(size, np.int64)
                rank = np.empty(size, np.int64)
                prv = np.empty(size, np.int64)
                heap = np.empty(3 * size, np.int64)
            m = bpe(buf, _utf8_ids(cp, s, e, byte_ids, buf), table, news, rank, prv, heap)
            if o + m > out.size:
                out = _grown(out, o + m)
            for i in range(m):
                out[o + i] = buf[i]
            if length < 0xFFFFF and m < 0xFFFFF:
                slots[q] = h
                slots[q + 1] = (s << 20) | length
                slots[q + 2] = (o << 20) | m
        o += m
        s = e
    return out[:o]


@njit(cache=True)
def _grown(out, need):
    bigger = np.empty(max(2 * out.size, need), np.int64)
    for i in range(out.size):
        bigger[i] = out[i]
    return bigger
