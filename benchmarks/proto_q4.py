"""A 4-bit (Q4_0-style) decoding kernel prototype, timed against npgpt's int8 kernel.

    python benchmarks/proto_q4.py

Q4_0's layout: blocks of 32 weights along the input, one float scale each, two weights a
byte (the block's first 16 weights in the low nibbles, the last 16 in the high ones), values
q - 8 with q in 0..15 and scale = (the block's largest-magnitude weight) / -8. The kernel is
the (out, in) row loop int8 decoded with before its panels, nibbles unpacked; it is checked
against its own dequantize-then-matmul twin, then it and npgpt's int8 kernel run the gpt2
head's product (50,257 x 768, one row) on one thread, CPU time, best of 9. It exists to decide whether a 4-bit format is worth building
(docs/performance.md, "A 4-bit variant").
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numba  # noqa: E402

from npgpt.kernels import int8 as K  # noqa: E402
from npgpt.runtime.jit import jit  # noqa: E402


@jit()
def q4_rows(x, q, s, y, zero):
    """y = x @ dequantize4(q, s)^T; q: (N, K/2) uint8, s: (N, K/32)."""
    M = x.shape[0]
    N, nb = s.shape
    for n in range(N):
        qn, sn = q[n], s[n]
        for m in range(M):
            xm = x[m]
            acc = zero
            for b in range(nb):
                xb, qb = xm[b * 32:(b + 1) * 32], qn[b * 16:(b + 1) * 16]
                part = zero
                for k in range(16):
                    v = np.int32(qb[k])
                    part += xb[k] * np.float32((v & 15) - 8) + xb[k + 16] * np.float32((v >> 4) - 8)
                acc += sn[b] * part
            y[m, n] = acc


def q4_quantize(w):
    N, K = w.shape
    blocks = w.reshape(N, K // 32, 32)
    big = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1)[..., 0]
    s = (big / -8).astype(np.float32)
    q = np.clip(np.rint(blocks / np.where(s != 0, s, 1)[..., None]) + 8, 0, 15).astype(np.uint8)
    return (q[..., :16] | (q[..., 16:] << 4)).reshape(N, K // 2), s


def q4_dequantize(q, s):
    N, half = q.shape
    nb = s.shape[1]
    lo, hi = (q & 15).reshape(N, nb, 16), (q >> 4).reshape(N, nb, 16)
    w = (np.concatenate([lo, hi], -1).astype(np.float32) - 8) * s[..., None]
    return w.reshape(N, 2 * half)


def best_cpu_seconds(fn, n=9):
    fn()
    times = []
    for _ in range(n):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main():
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    N, C = 50257, 768
    w = rng.standard_normal((N, C), dtype=np.float32) * 0.02
    q8, s8 = K.quantize_ref(w, 32)
    q4, s4 = q4_quantize(w)
    x = rng.standard_normal((1, C), dtype=np.float32)
    y = np.empty((1, N), np.float32)
    q4_rows(x, q4, s4, y, np.float32(0))
    twin = x @ q4_dequantize(q4, s4).T
    assert np.abs(y - twin).max() <= 1e-5 * np.abs(twin).max(), "q4 kernel != its twin"
    q8p, s8p = K.pack(q8, s8)
    t8 = best_cpu_seconds(lambda: K.int8_matmul_numba(x, q8p, s8p, N))
    t4 = best_cpu_seconds(lambda: q4_rows(x, q4, s4, y, np.float32(0)))
    print(f"int8 {t8 * 1e3:.2f} ms, q4 {t4 * 1e3:.2f} ms: q4 runs at {t8 / t4:.2f}x int8's "
          f"speed (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
