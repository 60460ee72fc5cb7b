"""Byte-level BPE training: incremental pair counts over the unique pre-split words.

The corpus is cut by the split pattern into pieces; equal pieces are counted once with their
frequency (Shakespeare's 1.3 M pieces are 36 k unique words).  The words, as bytes, are laid end
to end in one array of symbols with a doubly linked list per word.  Every adjacent pair has a
weighted count (each occurrence adds its word's frequency) and a list of the positions where it
starts.  One merge of the best pair (a, b) -> n then only visits that pair's positions:

    ... x a b y ...  ->  ... x n y ...     count[x,a] -= f, count[a,b] -= f, count[b,y] -= f
                                            count[x,n] += f, count[n,y] += f

so the cost of a merge is the number of its occurrences, never a rescan of the corpus.

Tie-breaking (deterministic, documented): the pair with the highest count wins; among equal
counts the pair with the smaller first id a wins, then the smaller second id b.  The best pair
comes from a max-heap with lazy deletion: stale entries (whose count changed since they were
pushed) are re-pushed with the current count when they surface.

``train_merges_reference`` is the same algorithm as plain Python that recounts every pair per
merge; the tests check the fast trainer against it.  numba is imported only when training
starts, and the kernels are cached on disk (``cache=True``), so ``import npgpt`` compiles nothing.
"""
import collections
import time

import numpy as np

from ..errors import TokenizerError

def count_words(text, pattern):
    """Split ``text`` with the compiled ``pattern`` (None: the whole text is one word) and count
    the pieces as UTF-8 bytes.  ``"ab ab"`` with GPT-2 -> ``{b"ab": 1, b" ab": 1}``."""
    pieces = [text] if pattern is None else pattern.findall(text)
    counts = collections.Counter(pieces)
    return {w.encode("utf-8"): c for w, c in counts.items() if w}


def count_words_gpt4(text):
    """``count_words(text, PinnedSplit(GPT4_PATTERN))`` (the definition, which the tests hold
    it to) by one numba kernel over the code points (see _count_kernels.py); the same pieces
    in the same order."""
    from . import _count_kernels as K
    from .unicode_classes import class_table
    cp = np.frombuffer(text.encode("utf-32-le"), np.uint32)   # one element per code point
    cls = class_table()
    size = 1 << 12
    starts, ends, counts = (np.empty(size // 2, np.int64) for _ in range(3))
    slots = np.full(size, -1, np.int64)
    i, n = K.count_pieces(cp, cls, 0, 0, starts, ends, counts, slots)
    while i < cp.size:          # the table is half full: twice the size, and go on
        size *= 2
        starts, ends, counts = (np.concatenate([a[:n], np.empty(size // 2 - n, np.int64)])
                                for a in (starts, ends, counts))
        slots = np.full(size, -1, np.int64)
        K.reinsert(cp, starts, ends, n, slots)
        i, n = K.count_pieces(cp, cls, i, n, starts, ends, counts, slots)
    return {text[s:e].encode("utf-8"): c
            for s, e, c in zip(starts[:n].tolist(), ends[:n].tolist(), counts[:n].tolist())}


def _pack(word_counts):
    """{bytes: count} -> (symbols int64 (N,), word_start int64 (W+1,), counts int64 (W,))."""
    words = list(word_counts)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    word_start = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(lengths, out=word_start[1:])
    symbols = np.frombuffer(b"".join(words), dtype=np.uint8).astype(np.int64)
    counts = np.fromiter((word_counts[w] for w in words), dtype=np.int64, count=len(words))
    return symbols, word_start, counts


def train_merges(word_counts, n_merges, first_id=256, progress=None, chunk=256):
    """Learn up to ``n_merges`` merges from ``{word bytes: count}``; byte b has id b and the
    i-th merge creates id ``first_id + i``.  Returns an int64 array (n, 2) of the merged pairs
    (fewer than asked when no adjacent pair is left).  ``progress(done, total)`` is called
    every ``chunk`` merges."""
    if n_merges <= 0 or not word_counts:
        return np.zeros((0, 2), np.int64)
    from . import _bpe_kernels as K  # numba loads here, not at import
    symbols, word_start, counts = _pack(word_counts)
    N, W = symbols.size, counts.size
    n_pairs = _byte_pairs(symbols, word_start)
    table = _empty_table(_table_size(n_pairs))
    pool = 3 * N + 16  # every first pair, and per merged occurrence at most two new ones
    nxt, prv, freq = (np.empty(N, np.int64) for _ in range(3))
    pool_pos, pool_nxt = np.empty(pool, np.int64), np.empty(pool, np.int64)
    heap = n_pairs + 4 * N + 16
    hc, hk = np.empty(heap, np.int64), np.empty(heap, np.int64)
    scalars = np.zeros(K.N_SCALARS, np.int64)
    K.init_state(symbols, word_start, counts, nxt, prv, freq, *table[:3], pool_pos, pool_nxt,
                 hc, hk, scalars)
    out = np.zeros((n_merges, 2), np.int64)
    done = 0
    while done < n_merges:
        step = min(chunk, n_merges - done)
        got = K.merge_steps(symbols, nxt, prv, freq, *table, pool_pos, pool_nxt, hc, hk,
                            scalars, first_id + done, step, out[done:done + step])
        done += got
        if scalars[K._GROW]:
            bigger = _empty_table(2 * table[0].size)
            scalars[K._N_KEYS] = K.rehash(*table[:3], *bigger[:3])
            table = bigger
            continue
        if progress is not None:
            progress(done, n_merges)
        if got < step:
            break
    return out[:done]


def _byte_pairs(symbols, word_start):
    """How many distinct adjacent byte pairs lie inside the words."""
    inside = np.ones(max(symbols.size - 1, 0), bool)
    ends = word_start[1:-1] - 1                      # a word's last byte and the next's first
    inside[ends[ends < inside.size]] = False
    pairs = symbols[:-1][inside] * 256 + symbols[1:][inside]
    return int(np.count_nonzero(np.bincount(pairs, minlength=1)))


def _table_size(n_keys):
    """The pair table's slots for ``n_keys`` pairs and room to grow: a power of two, at least
    four times as many (merge_steps keeps it at most half full)."""
    size = 4096
    while size < 4 * n_keys:
        size *= 2
    return size


def _empty_table(size):
    """(keys, count, head, mark, touched) of an empty pair table of ``size`` slots."""
    return (np.full(size, -1, np.int64), np.zeros(size, np.int64), np.full(size, -1, np.int64),
            np.full(size, -1, np.int64), np.empty(size, np.int64))


def train_merges_reference(word_counts, n_merges, first_id=256):
    """The definition, in plain Python: recount every pair of every word per merge, take the
    highest count (ties: smallest (a, b)), merge it left to right in every word."""
    words = [(list(w), c) for w, c in word_counts.items()]
    merges = []
    for i in range(n_merges):
        stats = collections.Counter()
        for ids, c in words:
            for pair in zip(ids, ids[1:]):
                stats[pair] += c
        if not stats:
            break
        best = min(stats, key=lambda p: (-stats[p], p))
        new = first_id + i
        for ids, _ in words:
            j = 0
            while j < len(ids) - 1:
                if ids[j] == best[0] and ids[j + 1] == best[1]:
                    ids[j:j + 2] = [new]
                j += 1
        merges.append(best)
    return np.array(merges, dtype=np.int64).reshape(-1, 2)


class Progress:
    """Prints ``merges 1024/3840 (27%) 0.4 s`` lines on long runs (after the first second)."""

    def __init__(self, stream=None, every=1.0):
        import sys
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = self.start
        self.every = every

    def __call__(self, done, total):
        now = time.perf_counter()
        if now - self.last >= self.every or (done >= total and now - self.start >= self.every):
            self.last = now
            print(f"merges {done}/{total} ({100 * done // max(total, 1)}%) "
                  f"{now - self.start:.1f} s", file=self.stream, flush=True)


def check_vocab_size(vocab_size, n_special):
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 256 + n_special:
        raise TokenizerError(f"vocab_size={vocab_size!r}: a byte-level BPE needs at least 256 "
                             f"byte tokens + {n_special} special tokens")
