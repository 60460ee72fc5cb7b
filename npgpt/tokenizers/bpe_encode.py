"""The BPE of one pre-split piece, in plain Python: the definition and its O(m log m) form.

    ranks {(h,e): (0, 256), (l,l): (1, 257), (256,257): (2, 258)}:
    h e l l o -> 256 l l o -> 256 257 o -> 258 o

``bpe_reference`` is the rule as stated: merge the adjacent pair of lowest rank, the leftmost
of equal ones, until no adjacent pair is a merge; each merge rescans every pair, so a piece of
m tokens costs O(m^2).  ``bpe_heap`` gives the same result from a min-heap of (rank, position)
over a doubly linked list of the tokens, O(m log m), so one long piece (a run of a hundred
thousand spaces, a DNA string, a minified file) is not quadratic.  ``bpe_piece`` takes the
route the length calls for; the numba twins are in ``_encode_kernels.py``.
"""
import heapq

LONG_PIECE = 48  # tokens; above this the heap wins over rescanning
ID_BITS = 21  # the numba merge table packs two ids and a rank in an int64, 21 bits each


def fits_numba_table(n_merges, largest_id):
    """Whether the numba kernels can hold a merge table: every id below 2**ID_BITS, every
    rank below 2**ID_BITS - 1 (the mark of "no merge"); two million tokens."""
    return n_merges < (1 << ID_BITS) - 1 and largest_id < (1 << ID_BITS)


def bpe_reference(ids, ranks):
    """ids (list of token ids) -> the merged ids; ``ranks``: {(a, b): (rank, new id)}."""
    ids = list(ids)
    while len(ids) > 1:
        best, pos = None, -1
        for i in range(len(ids) - 1):
            r = ranks.get((ids[i], ids[i + 1]))
            if r is not None and (best is None or r[0] < best[0]):
                best, pos = r, i
        if best is None:
            break
        ids[pos:pos + 2] = [best[1]]
    return ids


def bpe_heap(ids, ranks):
    """Same result as ``bpe_reference``.  A heap entry (rank, i) is current when node i is
    alive, has a right neighbour, and their pair still has that rank (a rank names one pair);
    otherwise a merge next to it has changed it, and it is skipped."""
    tok = list(ids)
    m = len(tok)
    nxt = list(range(1, m)) + [-1]
    prv = list(range(-1, m - 1))
    heap = []
    for i in range(m - 1):
        r = ranks.get((tok[i], tok[i + 1]))
        if r is not None:
            heap.append((r[0], i))
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i]
        if tok[i] is None or j == -1:
            continue
        r = ranks.get((tok[i], tok[j]))
        if r is None or r[0] != rank:
            continue
        tok[i], tok[j] = r[1], None
        k = nxt[j]
        nxt[i] = k
        if k != -1:
            prv[k] = i
            r = ranks.get((tok[i], tok[k]))
            if r is not None:
                heapq.heappush(heap, (r[0], i))
        p = prv[i]
        if p != -1:
            r = ranks.get((tok[p], tok[i]))
            if r is not None:
                heapq.heappush(heap, (r[0], p))
    return [t for t in tok if t is not None]


def bpe_piece(ids, ranks):
    """The BPE of one piece by the faster route for its length."""
    return bpe_heap(ids, ranks) if len(ids) > LONG_PIECE else bpe_reference(ids, ranks)
