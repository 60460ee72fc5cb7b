"""numba kernels of BPE encoding: the merge table as arrays, and the BPE of one piece.

The rule (``bpe_encode.bpe_reference`` is its definition in plain Python, ``bpe_encode.bpe_heap``
the heap route's twin): merge the adjacent
pair of lowest rank, the leftmost of equal ones, until no adjacent pair is a merge.

A piece of m tokens takes one of two routes with the same result:

- ``bpe_scan``: scan the ranks of all m - 1 pairs per merge (kept in an array, so a merge
  looks up only its two new pairs), O(m^2); the fastest for the short pieces that make up
  almost all text.
- ``bpe_heap``: a min-heap of (rank, position) over a doubly linked list of the tokens, for
  pieces longer than ``LONG_PIECE``: each merge pops its pair, relinks two nodes and pushes the
  two new neighbour pairs, O(m log m).  A popped entry whose pair has changed since it was
  pushed is skipped: it is current exactly when both nodes are alive, adjacent, and their pair
  still has the popped rank (a rank names one pair).  Keys are rank << 32 | position, so the
  heap's order is the rule's: lowest rank, then leftmost.

Imported only when a large text is encoded, never at ``import npgpt``.
"""
import numpy as np
from ..runtime.numba_start import njit

from .bpe_encode import ID_BITS, LONG_PIECE


@njit(cache=True)
def key_of(a, b):
    return (np.int64(a) << 32) | np.int64(b)


@njit(cache=True)
def _slot(k, mask):
    return np.int64((np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


# a pair table entry: a << 42 | b << 21 | rank, one int64 (-1: empty), so a probe reads one
# word (ids and ranks below 2**21: bpe_encode.fits_numba_table)
NO_MERGE = (1 << ID_BITS) - 1  # ``lookup``'s rank for a pair that is not a merge


@njit(cache=True)
def _packed(a, b):
    return (np.int64(a) << ID_BITS) | np.int64(b)


@njit(cache=True)
def build_pair_table(a, b, new):
    """The merges (a[r], b[r]) -> new[r], rank r, as an open-addressing table ``table`` of
    entries a << 42 | b << 21 | r (-1 when empty), and ``news`` (news[r] = new[r]).  Arrays
    rather than a typed dict: built in milliseconds, probed without a call.  The caller
    checks ``bpe_encode.fits_numba_table``."""
    cap = 16
    while cap < 2 * a.size:
        cap *= 2
    table = np.empty(cap, np.int64)
    for q in range(cap):
        table[q] = -1
    news = np.empty(a.size, np.int64)
    for r in range(a.size):
        news[r] = new[r]
        k = _packed(a[r], b[r])
        q = _slot(k, cap - 1)
        while table[q] != -1 and (table[q] >> ID_BITS) != k:
            q = (q + 1) & (cap - 1)
        if table[q] == -1:  # a repeated pair keeps its first (lowest) rank
            table[q] = (k << ID_BITS) | r
    return table, news


@njit(cache=True)
def lookup(table, a, b):
    """The rank of the merge (a, b), or ``NO_MERGE`` when it is not one."""
    mask = table.size - 1
    want = _packed(a, b)
    q = _slot(want, mask)
    while True:
        e = table[q]
        if e == -1:
            return NO_MERGE
        if (e >> ID_BITS) == want:
            return e & NO_MERGE
        q = (q + 1) & mask


@njit(cache=True)
def bpe_scan(buf, m, table, news, key):
    """BPE of buf[:m] in place by scanning every pair per merge; returns the new length.
    ``key`` (>= m) is scratch: key[i] = rank << 32 | i for the pair (i, i + 1) (rank
    ``NO_MERGE`` for none), so the smallest key is the rule's pair, lowest rank then leftmost,
    found by a plain ``min`` (no branch on the data for the CPU to mispredict), and a merge
    looks up only the two pairs it changed."""
    for i in range(m - 1):
        key[i] = (lookup(table, buf[i], buf[i + 1]) << 32) | i
    none = np.int64(NO_MERGE) << 32
    while m > 1:
        best = key[0]
        for i in range(1, m - 1):
            best = min(best, key[i])
        if best >= none:
            break
        pos = best & 0xFFFFFFFF
        buf[pos] = news[best >> 32]
        for i in range(pos + 1, m - 1):
            buf[i] = buf[i + 1]
            key[i] = key[i + 1] - 1         # one place to the left
        m -= 1
        if pos > 0:
            key[pos - 1] = (lookup(table, buf[pos - 1], buf[pos]) << 32) | (pos - 1)
        if pos + 1 < m:
            key[pos] = (lookup(table, buf[pos], buf[pos + 1]) << 32) | pos
    return m


@njit(cache=True)
def _push(heap, n, key):
    i = n
    heap[i] = key
    while i > 0:
        p = (i - 1) >> 1
        if heap[p] <= key:
            break
        heap[i] = heap[p]
        i = p
    heap[i] = key
    return n + 1


@njit(cache=True)
def _pop(heap, n):
    top = heap[0]
    n -= 1
    last = heap[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[c] >= last:
            break
        heap[i] = heap[c]
        i = c
    if n > 0:
        heap[i] = last
    return top, n


@njit(cache=True)
def _push_pair(heap, n, buf, i, j, table):
    r = lookup(table, buf[i], buf[j])
    if r == NO_MERGE:
        return n
    return _push(heap, n, (r << 32) | np.int64(i))


@njit(cache=True)
def bpe_heap(buf, m, table, news, nxt, prv, heap):
    """BPE of buf[:m] in place with a heap over a linked list (see the module docstring);
    ``nxt``, ``prv`` (>= m) and ``heap`` (>= 3m) are scratch.  Returns the new length."""
    if m < 2:
        return m
    n = 0
    for i in range(m):
        nxt[i] = i + 1 if i + 1 < m else -1
        prv[i] = i - 1
    for i in range(m - 1):
        n = _push_pair(heap, n, buf, i, i + 1, table)
    while n > 0:
        key, n = _pop(heap, n)
        i = key & 0xFFFFFFFF
        j = nxt[i]
        if buf[i] == -1 or j == -1:
            continue
        r = lookup(table, buf[i], buf[j])
        if r != (key >> 32):
            continue  # stale: this pair changed after the entry was pushed
        buf[i] = news[r]
        buf[j] = -1
        k = nxt[j]
        nxt[i] = k
        if k != -1:
            prv[k] = i
            n = _push_pair(heap, n, buf, i, k, table)
        if prv[i] != -1:
            n = _push_pair(heap, n, buf, prv[i], i, table)
    out = 0
    i = 0
    while i != -1:
        buf[out] = buf[i]
        out += 1
        i = nxt[i]
    return out


@njit(cache=True)
def bpe(buf, m, table, news, nxt, prv, heap):
    """BPE of buf[:m] in place, by the route its length calls for; returns the new length."""
    if m > LONG_PIECE:
        return bpe_heap(buf, m, table, news, nxt, prv, heap)
    return bpe_scan(buf, m, table, news, nxt)


@njit(cache=True)
def encode_pieces(data, starts, byte_ids, table, news):
    """BPE of many pieces at once: piece j is data[starts[j]:starts[j+1]] (bytes).  Returns
    (ids, id_starts): piece j's ids are ids[id_starts[j]:id_starts[j+1]]."""
    n = starts.size - 1
    longest = 1
    for j in range(n):
        longest = max(longest, starts[j + 1] - starts[j])
    nxt = np.empty(longest, np.int64)
    prv = np.empty(longest, np.int64)
    heap = np.empty(3 * longest, np.int64)
    buf = np.empty(longest, np.int64)
    out = np.empty(data.size, np.int64)
    out_starts = np.zeros(n + 1, np.int64)
    o = 0
    for j in range(n):
        s, e = starts[j], starts[j + 1]
        for i in range(e - s):
            buf[i] = byte_ids[data[s + i]]
        m = bpe(buf, e - s, table, news, nxt, prv, heap)
        out[o:o + m] = buf[:m]
        o += m
        out_starts[j + 1] = o
    return out[:o], out_starts
