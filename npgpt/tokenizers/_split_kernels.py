"""numba pre-split + BPE for the GPT-4 (cl100k_base) pattern: a whole text in one call.

``regex.findall`` makes one Python string per piece (a million for Shakespeare) and the
cache lookups then cost one dict access per piece; here the text is a uint32 array of code
points, and one kernel cuts it into pieces, finds each distinct piece once (an open-addressing
hash table over the code points), runs the BPE of each distinct piece, and gathers the ids.

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
def encode_gpt4(cp, cls, byte_ids, keys, values):
    """Code points -> token ids: split, BPE each distinct piece once, gather in text order.
    ``keys, values``: the merge table of ``_encode_kernels.build_pair_table``."""
    starts = split_gpt4(cp, cls)
    n_pieces = starts.size - 1
    # distinct pieces: open addressing over (hash, first occurrence), grown at half load
    cap = 1 << 12
    slots = np.full(cap, -1, np.int64)
    u_start = np.empty(1024, np.int64)
    u_end = np.empty(1024, np.int64)
    u_hash = np.empty(1024, np.uint64)
    n_u = 0
    uid = np.empty(n_pieces, np.int64)
    for p in range(n_pieces):
        s, e = starts[p], starts[p + 1]
        h = _hash(cp, s, e)
        slot = np.int64(h & np.uint64(cap - 1))
        while True:
            u = slots[slot]
            if u == -1:
                if n_u == u_start.size:
                    u_start = np.concatenate((u_start, np.empty(n_u, np.int64)))
                    u_end = np.concatenate((u_end, np.empty(n_u, np.int64)))
                    u_hash = np.concatenate((u_hash, np.empty(n_u, np.uint64)))
                u_start[n_u] = s
                u_end[n_u] = e
                u_hash[n_u] = h
                slots[slot] = n_u
                u = n_u
                n_u += 1
                if 2 * n_u > cap:
                    cap *= 2
                    slots = np.full(cap, -1, np.int64)
                    for v in range(n_u):
                        q = np.int64(u_hash[v] & np.uint64(cap - 1))
                        while slots[q] != -1:
                            q = (q + 1) & (cap - 1)
                        slots[q] = v
                break
            if u_hash[u] == h and _same(cp, u_start[u], u_end[u], s, e):
                break
            slot = (slot + 1) & (cap - 1)
        uid[p] = u
    # BPE of each distinct piece
    longest = 0
    for u in range(n_u):
        longest = max(longest, u_end[u] - u_start[u])
    buf = np.empty(4 * longest + 4, np.int64)
    nxt = np.empty(buf.size, np.int64)
    prv = np.empty(buf.size, np.int64)
    heap = np.empty(3 * buf.size, np.int64)
    id_starts = np.zeros(n_u + 1, np.int64)
    ids = np.empty(16, np.int64)
    for u in range(n_u):
        m = bpe(buf, _utf8_ids(cp, u_start[u], u_end[u], byte_ids, buf), keys, values, nxt, prv, heap)
        o = id_starts[u]
        while o + m > ids.size:
            ids = np.concatenate((ids, np.empty(ids.size, np.int64)))
        ids[o:o + m] = buf[:m]
        id_starts[u + 1] = o + m
    # gather
    total = 0
    for p in range(n_pieces):
        total += id_starts[uid[p] + 1] - id_starts[uid[p]]
    out = np.empty(total, np.int64)
    o = 0
    for p in range(n_pieces):
        u = uid[p]
        m = id_starts[u + 1] - id_starts[u]
        out[o:o + m] = ids[id_starts[u]:id_starts[u + 1]]
        o += m
    return out
