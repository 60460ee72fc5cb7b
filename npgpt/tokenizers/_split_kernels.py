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

The helpers that only read arrays (the cut, the hash, the comparison) are compiled without
reference counting (``_nrt=False``), so the trainer's counting kernel, which calls them, loads
without numba's runtime (runtime/numba_start.py); the encoder calls them as before.

Imported only when a large text is encoded or a tokenizer trained, never at ``import npgpt``.
"""
import numpy as np
from ..runtime.numba_start import njit

from ._encode_kernels import bpe
from .unicode_classes import DIGIT, FOLD_SHIFT, LETTER, SPACE, class_table

_S, _D, _M, _T, _L, _V, _R, _E = 1, 2, 3, 4, 5, 6, 7, 8
# the piece cache's watch (encode_gpt4): pieces per window, the fewest hits per window that
# keep it (1 in 16), and the windows it then rests
CACHE_WINDOW, CACHE_MIN_HITS, CACHE_REST = 4096, 16, 15


def char_classes():
    """The class of every code point (``unicode_classes.class_table``)."""
    return class_table()


@njit(cache=True, _nrt=False)
def _is_newline(c):
    return c == 10 or c == 13


@njit(cache=True, _nrt=False)
def _fold(cls, c):
    return cls[c] >> FOLD_SHIFT


@njit(cache=True, _nrt=False)
def _punct(cls, c):
    # [^\s\p{L}\p{N}]
    return (cls[c] & (LETTER | DIGIT | SPACE)) == 0


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def _hash(cp, s, e):
    h = np.uint64(14695981039346656037)
    for i in range(s, e):
        h = (h ^ np.uint64(cp[i])) * np.uint64(1099511628211)
    return h


@njit(cache=True, _nrt=False)
def _same(x, s1, e1, y, s2, e2):
    # x[s1:e1] == y[s2:e2]
    if e1 - s1 != e2 - s2:
        return False
    for i in range(e1 - s1):
        if x[s1 + i] != y[s2 + i]:
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
def build_token_table(merges, byte_ids):
    """For ``ignore_merges`` (a piece that is itself a token is emitted whole): every token's
    bytes and a hash table over them, ``(start, length, data, slots, seen)``.  Token t's bytes
    are data[start[t]:start[t] + length[t]] (length 0: no such token); a slot holds the top bits
    of the bytes' hash and the id (hash >> 22 << 21 | t, or -1), the first id of equal bytes as
    in ``ByteBPE.token_ids``.  ``seen`` is a bit per value of the hash's top 20 bits, set for
    the tokens: 128 kB that stay in cache, so most pieces that are no token (most pieces)
    are told so without a probe of the table.  ``merges``: int64 rows (a, b, new)."""
    size = 0
    for b in range(256):
        size = max(size, byte_ids[b] + 1)
    for r in range(merges.shape[0]):
        size = max(size, merges[r, 2] + 1)
    length = np.zeros(size, np.int64)
    start = np.zeros(size, np.int64)
    for b in range(256):
        length[byte_ids[b]] = 1
    for r in range(merges.shape[0]):
        length[merges[r, 2]] = length[merges[r, 0]] + length[merges[r, 1]]
    total = 0
    for t in range(size):
        start[t] = total
        total += length[t]
    data = np.empty(total, np.int64)
    for b in range(256):
        data[start[byte_ids[b]]] = b
    for r in range(merges.shape[0]):
        a, b, n = merges[r, 0], merges[r, 1], merges[r, 2]
        for i in range(length[a]):
            data[start[n] + i] = data[start[a] + i]
        for i in range(length[b]):
            data[start[n] + length[a] + i] = data[start[b] + i]
    cap = 16
    while cap < 2 * (merges.shape[0] + 256):
        cap *= 2
    slots = np.empty(cap, np.int64)
    for q in range(cap):
        slots[q] = -1
    order = np.empty(256 + merges.shape[0], np.int64)  # ids in vocabulary order
    for b in range(256):
        order[b] = byte_ids[b]
    for r in range(merges.shape[0]):
        order[256 + r] = merges[r, 2]
    seen = np.zeros(1 << 14, np.int64)
    for t in order:
        if whole_token(data, start[t], start[t] + length[t], start, length, data, slots, seen) == -1:
            h = _hash(data, start[t], start[t] + length[t])
            q = np.int64(h & np.uint64(cap - 1))
            while slots[q] != -1:
                q = (q + 1) & (cap - 1)
            slots[q] = (np.int64(h >> np.uint64(22)) << 21) | t
            bit = np.int64(h >> np.uint64(44))
            seen[bit >> 6] |= np.int64(1) << (bit & 63)
    return start, length, data, slots, seen


@njit(cache=True)
def whole_token(buf, s, e, start, length, data, slots, seen):
    """The id of the token whose bytes are buf[s:e], or -1 (``build_token_table``)."""
    h = _hash(buf, s, e)
    bit = np.int64(h >> np.uint64(44))
    if (seen[bit >> 6] >> (bit & 63)) & 1 == 0:
        return -1
    mask = slots.size - 1
    top = np.int64(h >> np.uint64(22))
    q = np.int64(h & np.uint64(mask))
    while slots[q] != -1:
        t = slots[q] & 0x1FFFFF
        if (slots[q] >> 21) == top and _same(data, start[t], start[t] + length[t], buf, s, e):
            return t
        q = (q + 1) & mask
    return -1


@njit(cache=True)
def encode_gpt4(cp, cls, byte_ids, table, news, tokens, cache_bits):
    """Code points -> token ids: cut the next piece, take its ids from the piece cache or run
    its BPE, append them.  ``table, news``: the merge table of
    ``_encode_kernels.build_pair_table``; ``tokens``: ``build_token_table``'s five arrays for
    ``ignore_merges`` (a piece that is a token is that token), or five empty arrays.

    The piece cache has 2**cache_bits slots, each the last piece whose hash picked it: (hash,
    where the piece starts in ``cp`` and its length, where its ids start in the output and how
    many).  A piece equal to its slot's copies those ids; any other runs its BPE and takes the
    slot.  Repeated pieces (most of ordinary text) are merged about once.  Text without
    repeats would pay a hash, a probe and a store per piece for nothing (a third of its
    time), so the cache watches itself: when fewer than 1 in ``CACHE_MIN_HITS`` pieces of a
    window of ``CACHE_WINDOW`` found their ids in it, the next ``CACHE_REST`` windows go
    without it, and then it is tried again."""
    n = cp.size
    cap = 1 << cache_bits
    slots = np.empty(4 * cap, np.int64)  # hash, start << 20 | length, out start << 20 | count
    for q in range(cap):
        slots[4 * q] = -1
    out = np.empty(n + 16, np.int64)
    identity = np.arange(256)
    t_start, t_length, t_data, t_slots, t_seen = tokens
    size = 64
    buf = np.empty(size, np.int64)
    rank = np.empty(size, np.int64)
    prv = np.empty(size, np.int64)
    heap = np.empty(3 * size, np.int64)
    o = 0
    s = 0
    window = hits = rest = 0  # pieces and cache hits in this window; windows left without
    h = q = 0
    while s < n:
        e = max(next_piece_end(cp, cls, s), s + 1)
        length = e - s
        cached = rest == 0
        if cached:
            h = np.int64(_hash(cp, s, e) >> np.uint64(1))  # >= 0, never the empty mark
            q = 4 * (h & (cap - 1))
        window += 1
        if window == CACHE_WINDOW:
            if rest > 0:
                rest -= 1
            elif hits * CACHE_MIN_HITS < CACHE_WINDOW:
                rest = CACHE_REST
            window = hits = 0
        if cached and slots[q] == h and (slots[q + 1] & 0xFFFFF) == length \
                and length < 0xFFFFF \
                and _same(cp, slots[q + 1] >> 20, (slots[q + 1] >> 20) + length, cp, s, e):
            hits += 1
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
            m = _utf8_ids(cp, s, e, identity, buf)
            t = -1
            if t_slots.size:
                t = whole_token(buf, 0, m, t_start, t_length, t_data, t_slots, t_seen)
            if t != -1:
                buf[0] = t
                m = 1
            else:
                for i in range(m):
                    buf[i] = byte_ids[buf[i]]
                m = bpe(buf, m, table, news, rank, prv, heap)
            if o + m > out.size:
                out = _grown(out, o + m)
            for i in range(m):
                out[o + i] = buf[i]
            if cached and length < 0xFFFFF and m < 0xFFFFF:
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
