"""numba kernels of the BPE trainer (see bpe_train.py for the algorithm).

Imported only when training starts, never at ``import npgpt``; compiled once and cached on
disk (``cache=True``).  The pair counts and the heads of the position lists live in one
open-addressing table of arrays (``keys``, ``count``, ``head``) rather than numba typed
dicts, whose machinery takes far longer to load in a fresh process than the training itself
on a small corpus.  The table is sized once for every pair a run can create (at most one per
pool entry), so it never grows; a pair merged away keeps its slot with count 0.
"""
import numpy as np
from numba import njit

from ._encode_kernels import _slot, key_of


@njit(cache=True)
def find(keys, k):
    """The slot of pair key ``k``: where it is, or the empty slot where it goes."""
    mask = keys.size - 1
    q = _slot(k, mask)
    while keys[q] != -1 and keys[q] != k:
        q = (q + 1) & mask
    return q

@njit(cache=True)
def better(c1, k1, c2, k2):
    # heap order: higher count first, then smaller key (smaller a, then smaller b)
    return c1 > c2 or (c1 == c2 and k1 < k2)

@njit(cache=True)
def heap_push(hc, hk, n, c, k):
    if n >= hc.size:
        hc2 = np.empty(hc.size * 2, np.int64)
        hk2 = np.empty(hk.size * 2, np.int64)
        hc2[:n] = hc[:n]
        hk2[:n] = hk[:n]
        hc, hk = hc2, hk2
    i = n
    hc[i] = c
    hk[i] = k
    while i > 0:
        p = (i - 1) // 2
        if better(hc[i], hk[i], hc[p], hk[p]):
            hc[i], hc[p] = hc[p], hc[i]
            hk[i], hk[p] = hk[p], hk[i]
            i = p
        else:
            break
    return hc, hk, n + 1

@njit(cache=True)
def heap_pop(hc, hk, n):
    c, k = hc[0], hk[0]
    n -= 1
    hc[0] = hc[n]
    hk[0] = hk[n]
    i = 0
    while True:
        l_ = 2 * i + 1
        r = l_ + 1
        m = i
        if l_ < n and better(hc[l_], hk[l_], hc[m], hk[m]):
            m = l_
        if r < n and better(hc[r], hk[r], hc[m], hk[m]):
            m = r
        if m == i:
            break
        hc[i], hc[m] = hc[m], hc[i]
        hk[i], hk[m] = hk[m], hk[i]
        i = m
    return c, k, n

@njit(cache=True)
def pool_add(pos, nxt, size, keys, head, k, p):
    # prepend position p to the singly linked list of pair k (pool never outgrows 3N)
    q = find(keys, k)
    keys[q] = k
    pos[size] = p
    nxt[size] = head[q]
    head[q] = size
    return size + 1


@njit(cache=True)
def add_count(keys, count, k, f):
    q = find(keys, k)
    keys[q] = k
    count[q] += f

@njit(cache=True)
def init_state(symbols, word_start, counts):
    N = symbols.size
    W = counts.size
    nxt = np.full(N, -1, np.int64)
    prv = np.full(N, -1, np.int64)
    freq = np.zeros(N, np.int64)
    cap = 16
    while cap < 2 * (3 * N + 16):
        cap *= 2
    keys = np.full(cap, -1, np.int64)
    count = np.zeros(cap, np.int64)
    head = np.full(cap, -1, np.int64)
    pool_pos = np.empty(3 * N + 16, np.int64)
    pool_nxt = np.empty(3 * N + 16, np.int64)
    size = 0
    for w in range(W):
        s, e = word_start[w], word_start[w + 1]
        for i in range(s, e):
            freq[i] = counts[w]
            if i + 1 < e:
                nxt[i] = i + 1
            if i > s:
                prv[i] = i - 1
        for i in range(s, e - 1):
            k = key_of(symbols[i], symbols[i + 1])
            add_count(keys, count, k, counts[w])
            size = pool_add(pool_pos, pool_nxt, size, keys, head, k, i)
    n_pairs = 0
    for q in range(cap):
        n_pairs += keys[q] != -1
    hc = np.empty(max(16, 2 * n_pairs), np.int64)
    hk = np.empty(max(16, 2 * n_pairs), np.int64)
    n = 0
    for q in range(cap):
        if keys[q] != -1:
            hc, hk, n = heap_push(hc, hk, n, count[q], keys[q])
    return nxt, prv, freq, keys, count, head, pool_pos, pool_nxt, size, hc, hk, n

@njit(cache=True)
def merge_steps(symbols, nxt, prv, freq, keys, count, head, pool_pos, pool_nxt, size,
                hc, hk, n, next_id, n_steps, out):
    """Do up to n_steps merges, writing (a, b) rows into out; returns the count done."""
    done = 0
    touched = np.empty(64, np.int64)
    while done < n_steps and n > 0:
        c, k, n = heap_pop(hc, hk, n)
        qk = find(keys, k)
        cur = count[qk] if keys[qk] == k else 0
        if cur != c:  # stale entry: put the pair back with its current count
            if cur > 0:
                hc, hk, n = heap_push(hc, hk, n, cur, k)
            continue
        if c <= 0:
            break
        a = k >> 32
        b = k & 0xFFFFFFFF
        new = next_id + done
        # collect this pair's positions, left to right ("a a a" -> "(aa) a")
        m = 0
        j = head[qk]
        while j != -1:
            m += 1
            j = pool_nxt[j]
        ps = np.empty(m, np.int64)
        j = head[qk]
        m = 0
        while j != -1:
            ps[m] = pool_pos[j]
            m += 1
            j = pool_nxt[j]
        ps.sort()
        head[qk] = -1
        nt = 0
        for p in ps:
            q = nxt[p]
            if symbols[p] != a or q == -1 or symbols[q] != b:
                continue  # consumed by an earlier merge in this step, or stale
            f = freq[p]
            count[qk] -= f
            left = prv[p]
            right = nxt[q]
            if left != -1:
                kl = key_of(symbols[left], a)
                add_count(keys, count, kl, -f)
                kn = key_of(symbols[left], new)
                add_count(keys, count, kn, f)
                size = pool_add(pool_pos, pool_nxt, size, keys, head, kn, left)
                if nt + 2 > touched.size:
                    t2 = np.empty(touched.size * 2, np.int64)
                    t2[:nt] = touched[:nt]
                    touched = t2
                touched[nt] = kl
                touched[nt + 1] = kn
                nt += 2
            if right != -1:
                kr = key_of(b, symbols[right])
                add_count(keys, count, kr, -f)
                kn = key_of(new, symbols[right])
                add_count(keys, count, kn, f)
                size = pool_add(pool_pos, pool_nxt, size, keys, head, kn, p)
                if nt + 2 > touched.size:
                    t2 = np.empty(touched.size * 2, np.int64)
                    t2[:nt] = touched[:nt]
                    touched = t2
                touched[nt] = kr
                touched[nt + 1] = kn
                nt += 2
            symbols[p] = new
            symbols[q] = -1
            nxt[p] = right
            if right != -1:
                prv[right] = p
        count[qk] = 0
        # push each touched pair once with its final count (decreases surface lazily,
        # but pushing them too keeps the heap tight)
        tk = np.unique(touched[:nt])
        for t in tk:
            qt = find(keys, t)
            ct = count[qt] if keys[qt] == t else 0
            if ct > 0:
                hc, hk, n = heap_push(hc, hk, n, ct, t)
        out[done, 0] = a
        out[done, 1] = b
        done += 1
    return done, size, hc, hk, n
