"""numba counting of the GPT-4 pattern's pieces for the BPE trainer.

The definition is ``bpe_train.count_words``: ``findall`` with the pattern, then a Counter of
the pieces.  That makes one Python string per piece (a quarter of a million in a megabyte of
Shakespeare) and hashes each in a dict; here one kernel cuts the text's code points with the
encoder's cut (``_split_kernels.next_piece_end``, the pattern's own leftmost-first rule on
Unicode 16.0.0 classes) and counts the distinct pieces in an open-addressing table of their
first occurrences, so only the few ten thousand distinct pieces become Python strings.

The caller allocates every buffer (the kernel allocates nothing and returns no array) and
grows the table: ``count_pieces`` stops when it is half full, and ``reinsert`` moves the
pieces counted so far into a bigger one.

Imported only when training starts, never at ``import npgpt``.
"""
import numpy as np

from ..runtime.numba_start import njit

from ._split_kernels import _hash, _same, next_piece_end


@njit(cache=True, _nrt=False)
def _find(cp, starts, ends, slots, s, e):
    """The slot of piece cp[s:e]: where it is, or the empty slot (-1) where it goes."""
    mask = slots.size - 1
    q = np.int64(_hash(cp, s, e) >> np.uint64(20)) & mask
    while slots[q] != -1 and not _same(cp, starts[slots[q]], ends[slots[q]], cp, s, e):
        q = (q + 1) & mask
    return q


@njit(cache=True, _nrt=False)
def count_pieces(cp, cls, i, n_distinct, starts, ends, counts, slots):
    """Cut cp from position i into the GPT-4 pattern's pieces and count them: a piece seen
    before adds one to its count, a new one is appended (starts, ends: its first occurrence;
    counts) and takes an empty slot.  Stops at the end of the text, or before a piece when the
    table is half full; returns (where it stopped, the number of distinct pieces)."""
    n = cp.size
    limit = slots.size >> 1
    while i < n and n_distinct < limit:
        e = max(next_piece_end(cp, cls, i), i + 1)
        q = _find(cp, starts, ends, slots, i, e)
        if slots[q] == -1:
            slots[q] = n_distinct
            starts[n_distinct] = i
            ends[n_distinct] = e
            counts[n_distinct] = 1
            n_distinct += 1
        else:
            counts[slots[q]] += 1
        i = e
    return i, n_distinct


@njit(cache=True, _nrt=False)
def reinsert(cp, starts, ends, n_distinct, slots):
    """Put the first n_distinct pieces into an empty (bigger) table."""
    for d in range(n_distinct):
        slots[_find(cp, starts, ends, slots, starts[d], ends[d])] = d

