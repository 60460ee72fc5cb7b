"""numba kernels of the BPE trainer (see bpe_train.py for the algorithm).

Imported only when training starts, never at ``import npgpt``; compiled once and cached on
disk (``cache=True``).  A cold compile is what a user's first ``npgpt tokenizer train`` pays,
so the kernels stay few and plain: every array int64 (one signature per kernel), no typed
containers and no array allocation inside a kernel: the caller (bpe_train.py) allocates every
buffer, so loading a kernel from the cache does not bring in numba's array library (its
environment imports ``numba.np.arrayobj`` and, through it, numba's string and hashing code).

- No kernel allocates or returns an array, so they are compiled without numba's reference
  counting (``_nrt=False``) and load without its runtime (see runtime/numba_start.py).
- The pair counts and the heads of the position lists live in one open-addressing table of
  arrays (``keys``, ``count``, ``head``) kept at most half full.  It starts sized for the
  corpus's byte pairs, so it stays in the CPU's cache (a run of 4,096 merges on Shakespeare
  ends with a few ten thousand pairs), and grows between merges: before a merge that could
  fill it, ``merge_steps`` stops and asks for a bigger table (``scalars[_GROW]``), and
  ``rehash`` moves the live pairs over.  A pair merged away (count 0) keeps its slot until then.
- The heap of (count, key) never grows: it is sized for one entry per pair of the corpus, and
  each merged occurrence (at most N - 1 of them in a run) pushes at most four.
- A merge of (a, b) with a != b visits its positions in any order (two occurrences cannot
  overlap).  For a == a it walks each run of a's from its left end, so "a a a" -> "(aa) a",
  the left-to-right rule, without sorting the positions.
- The pairs a merge touched are gathered once each (``mark`` holds the id of the merge that
  last touched a slot) and pushed with their final counts.
"""
import numpy as np
from ..runtime.numba_start import njit

from ._encode_kernels import _slot, key_of

# indices into the int64 ``scalars`` array that carries the state between calls: positions
# used in the pool, heap entries, occupied table slots, and 1 when merge_steps stopped for a
# bigger table
_POOL_SIZE, _HEAP_SIZE, _N_KEYS, _GROW = 0, 1, 2, 3
N_SCALARS = 4


@njit(cache=True, _nrt=False)
def find(keys, k):
    """The slot of pair key ``k``: where it is, or the empty slot where it goes."""
    mask = keys.size - 1
    q = _slot(k, mask)
    while keys[q] != -1 and keys[q] != k:
        q = (q + 1) & mask
    return q


@njit(cache=True, _nrt=False)
def better(c1, k1, c2, k2):
    # heap order: higher count first, then smaller key (smaller a, then smaller b)
    return c1 > c2 or (c1 == c2 and k1 < k2)


@njit(cache=True, _nrt=False)
def heap_push(hc, hk, n, c, k):
    i = n
    while i > 0:
        p = (i - 1) // 2
        if not better(c, k, hc[p], hk[p]):
            break
        hc[i] = hc[p]
        hk[i] = hk[p]
        i = p
    hc[i] = c
    hk[i] = k
    return n + 1


@njit(cache=True, _nrt=False)
def heap_pop(hc, hk, n):
    """Remove the top; returns the new size (the top was hc[0], hk[0] before the call)."""
    n -= 1
    c, k = hc[n], hk[n]
    i = 0
    while True:
        m = 2 * i + 1
        if m >= n:
            break
        if m + 1 < n and better(hc[m + 1], hk[m + 1], hc[m], hk[m]):
            m += 1
        if not better(hc[m], hk[m], c, k):
            break
        hc[i] = hc[m]
        hk[i] = hk[m]
        i = m
    hc[i] = c
    hk[i] = k
    return n


@njit(cache=True, _nrt=False)
def touch(keys, count, mark, touched, nt, k, f, new):
    """count[k] += f, and k's slot gathered into touched[:nt] once per merge ``new``;
    returns (the slot, the new nt, 1 if k took an empty slot else 0)."""
    q = find(keys, k)
    added = 0
    if keys[q] == -1:
        keys[q] = k
        added = 1
    count[q] += f
    if mark[q] != new:
        mark[q] = new
        touched[nt] = q
        nt += 1
    return q, nt, added


@njit(cache=True, _nrt=False)
def init_state(symbols, word_start, counts, nxt, prv, freq, keys, count, head, pool_pos,
               pool_nxt, hc, hk, scalars):
    """Fill the linked lists, the pair table (given empty: keys -1, count 0, head -1), the
    position pool and the heap from a packed corpus."""
    size = 0
    n_keys = 0
    for w in range(counts.size):
        s, e = word_start[w], word_start[w + 1]
        for i in range(s, e):
            freq[i] = counts[w]
            nxt[i] = i + 1 if i + 1 < e else -1
            prv[i] = i - 1 if i > s else -1
        for i in range(s, e - 1):
            k = key_of(symbols[i], symbols[i + 1])
            q = find(keys, k)
            if keys[q] == -1:
                keys[q] = k
                n_keys += 1
            count[q] += counts[w]
            pool_pos[size] = i
            pool_nxt[size] = head[q]
            head[q] = size
            size += 1
    n = np.int64(0)  # not the literal 0: heap_push compiles for int64 only
    for q in range(keys.size):
        if keys[q] != -1:
            n = heap_push(hc, hk, n, count[q], keys[q])
    scalars[_POOL_SIZE] = size
    scalars[_HEAP_SIZE] = n
    scalars[_N_KEYS] = n_keys
    scalars[_GROW] = 0


@njit(cache=True, _nrt=False)
def rehash(keys, count, head, new_keys, new_count, new_head):
    """Move the pairs still counted into a bigger (empty) table; returns how many moved.
    A pair with count 0 has no occurrence left, so its position list is all stale."""
    n_keys = 0
    for q in range(keys.size):
        if keys[q] != -1 and count[q] > 0:
            r = find(new_keys, keys[q])
            new_keys[r] = keys[q]
            new_count[r] = count[q]
            new_head[r] = head[q]
            n_keys += 1
    return n_keys


@njit(cache=True, _nrt=False)
def merge_steps(symbols, nxt, prv, freq, keys, count, head, mark, touched, pool_pos, pool_nxt,
                hc, hk, scalars, next_id, n_steps, out):
    """Do up to n_steps merges, writing (a, b) rows into out; returns the count done."""
    size = scalars[_POOL_SIZE]
    n = scalars[_HEAP_SIZE]
    n_keys = scalars[_N_KEYS]
    scalars[_GROW] = 0
    done = 0
    while done < n_steps and n > 0:
        c, k = hc[0], hk[0]
        n = heap_pop(hc, hk, n)
        qk = find(keys, k)
        cur = count[qk] if keys[qk] == k else 0
        if cur != c:  # stale entry: put the pair back with its current count
            if cur > 0:
                n = heap_push(hc, hk, n, cur, k)
            continue
        if c <= 0:
            break
        a = k >> 32
        b = k & 0xFFFFFFFF
        new = next_id + done
        # the merge adds at most two pairs per occurrence (at most c of them) and per
        # distinct neighbour id (new or below): stop for a bigger table if they might not fit
        if n_keys + 2 * min(c, new + 1) > (keys.size >> 1):
            n = heap_push(hc, hk, n, c, k)
            scalars[_GROW] = 1
            break
        nt = np.int64(0)
        j = head[qk]
        head[qk] = -1
        while j != -1:
            p = pool_pos[j]
            j = pool_nxt[j]
            if a == b and symbols[p] == a and prv[p] != -1 and symbols[prv[p]] == a:
                continue  # inside a run of a's: merged from the run's left end
            while True:
                q = nxt[p]
                if symbols[p] != a or q == -1 or symbols[q] != b:
                    break  # consumed by an earlier merge in this step, or stale
                f = freq[p]
                count[qk] -= f
                left = prv[p]
                right = nxt[q]
                if left != -1:
                    x = symbols[left]
                    _, nt, added = touch(keys, count, mark, touched, nt, key_of(x, a), -f, new)
                    n_keys += added  # 0: the pair is there
                    qt, nt, added = touch(keys, count, mark, touched, nt, key_of(x, new), f, new)
                    n_keys += added
                    pool_pos[size] = left
                    pool_nxt[size] = head[qt]
                    head[qt] = size
                    size += 1
                if right != -1:
                    y = symbols[right]
                    _, nt, added = touch(keys, count, mark, touched, nt, key_of(b, y), -f, new)
                    n_keys += added
                    qt, nt, added = touch(keys, count, mark, touched, nt, key_of(new, y), f, new)
                    n_keys += added
                    pool_pos[size] = p
                    pool_nxt[size] = head[qt]
                    head[qt] = size
                    size += 1
                symbols[p] = new
                symbols[q] = -1
                nxt[p] = right
                if right != -1:
                    prv[right] = p
                if a != b or right == -1:
                    break
                p = right  # the run of a's goes on
        count[qk] = 0
        # push each touched pair once with its final count (decreases surface lazily,
        # but pushing them too keeps the heap tight)
        for i in range(nt):
            qt = touched[i]
            if count[qt] > 0:
                n = heap_push(hc, hk, n, count[qt], keys[qt])
        out[done, 0] = a
        out[done, 1] = b
        done += 1
    scalars[_POOL_SIZE] = size
    scalars[_HEAP_SIZE] = n
    scalars[_N_KEYS] = n_keys
    return done
