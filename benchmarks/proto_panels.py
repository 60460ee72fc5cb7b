"""The int8 decoding kernel's layouts, timed on the gpt2 head's product (one row, one thread).

    python benchmarks/proto_panels.py [--rounds 3]

Three ways to compute y = x @ dequantize(q, s)^T for the tied head (50,257 x 768, blocks of
32), each checked against its definition, then timed taking turns, CPU time, best of 9 per
round (docs/quantization.md, "The kernel"):

- ``rows``:   the weight stored (out, in), float x: each block a dot product over 32 bytes,
              ended by a horizontal sum across SIMD lanes and a scale (npgpt's first kernel);
- ``panels, float x``: the weight in panels of 128 outputs, (in, 128) each (the layout before
              the quads); per input, the float x times 128 widened weights added into 128
              float accumulators;
- ``quads, int8 x`` (npgpt's kernel, ``npgpt.kernels.int8``): the panels of
              ``npgpt.kernels.int8_layout`` (quads of 4 inputs x 8 outputs), x quantized in
              blocks too, AVX2 byte multiply-adds into int32 (the plain-numba kernel where the
              CPU has no AVX2).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numba  # noqa: E402

from npgpt.kernels import int8 as K  # noqa: E402
from npgpt.runtime.jit import jit  # noqa: E402


@jit()
def rows_float_x(x, q, s, y):
    """y = x @ w~^T, w~ stored (out, in): a dot product per block and output."""
    M, Kd = x.shape
    N, nb = s.shape
    bs = Kd // nb
    for n in range(N):
        qn, sn = q[n], s[n]
        for m in range(M):
            xm = x[m]
            acc = np.float32(0)
            for b in range(nb):
                xb, qb = xm[b * bs:(b + 1) * bs], qn[b * bs:(b + 1) * bs]
                part = np.float32(0)
                for k in range(bs):
                    part += xb[k] * np.float32(qb[k])
                acc += sn[b] * part
            y[m, n] = acc


def plain_panels(q, s, panel=128):
    """(qp (P, in, panel), sp (P, in / block, panel)): qp[c, k, j] = q[c * panel + j, k]."""
    N, C = q.shape
    n_pan = -(-N // panel)
    qp = np.zeros((n_pan * panel, C), np.int8)
    sp = np.zeros((n_pan * panel, s.shape[1]), np.float32)
    qp[:N], sp[:N] = q, s
    return (np.ascontiguousarray(qp.reshape(n_pan, panel, C).transpose(0, 2, 1)),
            np.ascontiguousarray(sp.reshape(n_pan, panel, -1).transpose(0, 2, 1)))


@jit()
def panels_float_x(x, qp, sp, y):
    """y = x @ w~^T over (in, 128) panels: vertical float multiply-adds."""
    M, Kd = x.shape
    n_pan, nb, P = sp.shape
    bs = Kd // nb
    N = y.shape[1]
    acc = np.empty(P, np.float32)
    tot = np.empty(P, np.float32)
    for c in range(n_pan):
        qc, sc = qp[c], sp[c]
        for m in range(M):
            xm = x[m]
            tot[:] = 0
            for b in range(nb):
                acc[:] = 0
                for k in range(b * bs, (b + 1) * bs):
                    xk, qk = xm[k], qc[k]
                    for j in range(P):
                        acc[j] += xk * np.float32(qk[j])
                sb = sc[b]
                for j in range(P):
                    tot[j] += sb[j] * acc[j]
            for j in range(min(P, N - c * P)):
                y[m, c * P + j] = tot[j]


def best_cpu_ms(fn, n=9):
    fn()
    times = []
    for _ in range(n):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return 1e3 * min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    N, C = 50257, 768
    q, s = K.quantize_ref(rng.standard_normal((N, C), dtype=np.float32) * 0.02, 32, np.float16)
    s = s.astype(np.float32)
    qp, sp = K.pack(q, s)
    pp, ps = plain_panels(q, s)
    x = rng.standard_normal((1, C), dtype=np.float32)
    y = np.empty((1, N), np.float32)
    exact = x @ K.dequantize_ref(q, s).T
    for fn, a in ((rows_float_x, (x, q, s, y)), (panels_float_x, (x, pp, ps, y))):
        fn(*a)
        assert np.abs(y - exact).max() <= 1e-5 * np.abs(exact).max(), fn.__name__
    assert np.allclose(K.int8_matmul_numba(x, qp, sp, N), K.int8_matmul_ref(x, qp, sp, N),
                       rtol=0, atol=1e-5 * np.abs(exact).max())
    ways = {"rows, float x": lambda: rows_float_x(x, q, s, y),
            "panels, float x": lambda: panels_float_x(x, pp, ps, y),
            "quads, int8 x": lambda: K.int8_matmul_numba(x, qp, sp, N)}
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            times[name].append(best_cpu_ms(fn))
    base = min(times["rows, float x"])
    for name, t in times.items():
        print(f"{name:16s} {min(t):6.2f} ms  {base / min(t):.2f}x  "
              f"({(q.nbytes + s.nbytes) / min(t) / 1e6:.1f} GB/s of int8 + scales)")
    print(f"load average {os.getloadavg()[0]:.2f} (best of 9 x {args.rounds} rounds, CPU time)")


if __name__ == "__main__":
    main()
