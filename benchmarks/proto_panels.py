"""A prototype int8 decoding kernel over a panel layout, timed against npgpt's int8 kernel.

    python benchmarks/proto_panels.py

npgpt's int8 weight is stored (out, in), so each output's blocks are summed across SIMD lanes
(a horizontal sum per block of 32). Here the weight is stored in panels of 64 outputs, each
panel (in, 64) contiguous with its scales (in / 32, 64): a block adds x[k] * q[k, :] into 64
lane accumulators, then scales them, and no horizontal sum is left. Checked against the
dequantize-then-matmul definition, then the gpt2 head's product (50,240 x 768, one row) on one
thread, CPU time, best of 7 (docs/performance.md, "Decoding against the bandwidth ceiling").
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numba  # noqa: E402

from npgpt.kernels import int8 as K  # noqa: E402
from npgpt.runtime.jit import jit  # noqa: E402

P = 64


@jit()
def panel_rows(x, qp, sp, y):
    """y = x @ W~^T with qp: (N / P, K, P) int8 panels and sp: (N / P, K / bs, P) scales."""
    M, K_ = x.shape
    npan, nb, _ = sp.shape
    bs = K_ // nb
    acc = np.empty(P, y.dtype)
    tot = np.empty(P, y.dtype)
    for c in range(npan):
        qc, sc = qp[c], sp[c]
        for m in range(M):
            xm = x[m]
            tot[:] = 0
            for b in range(nb):
                acc[:] = 0
                for k in range(b * bs, b * bs + bs):
                    xk, qk = xm[k], qc[k]
                    for j in range(P):
                        acc[j] += xk * np.float32(qk[j])
                sb = sc[b]
                for j in range(P):
                    tot[j] += sb[j] * acc[j]
            ys = y[m, c * P:(c + 1) * P]
            for j in range(P):
                ys[j] = tot[j]


def best_cpu_seconds(fn, n=7):
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
    N, C = 50240, 768
    q, s = K.quantize_ref(rng.standard_normal((N, C), dtype=np.float32) * 0.02, 32)
    qp = np.ascontiguousarray(q.reshape(N // P, P, C).transpose(0, 2, 1))
    sp = np.ascontiguousarray(s.reshape(N // P, P, C // 32).transpose(0, 2, 1))
    x = rng.standard_normal((1, C), dtype=np.float32)
    y = np.empty((1, N), np.float32)
    panel_rows(x, qp, sp, y)
    ref = K.int8_matmul_ref(x, q, s)
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max(), "panel kernel != definition"
    t_rows = best_cpu_seconds(lambda: K._rows.serial(x, q, s, y, np.float32(0)))
    t_panel = best_cpu_seconds(lambda: panel_rows(x, qp, sp, y))
    print(f"int8 (out, in): {t_rows * 1e3:.2f} ms; panels of {P}: {t_panel * 1e3:.2f} ms: "
          f"{t_rows / t_panel:.2f}x (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
