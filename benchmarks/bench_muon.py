"""Muon's orthogonalisation of the default model's hidden matrices, three ways, in one process.

    python benchmarks/bench_muon.py [--rounds 5] [--threads 2]

The 12 update matrices of ``speedrun-1m`` (3 layers of 128 x 384, 128 x 128, 128 x 512 and
512 x 128) go through five Newton–Schulz steps:
- ``stacked``: one batch per shape, each product on ``--threads`` BLAS threads;
- ``one thread``: matrix after matrix, one BLAS thread;
- ``shared out``: what ``npgpt.optim.Muon`` does, the matrices shared out among
  ``--threads`` threads, one BLAS thread each.
The three take turns; each figure is the median over the rounds of the mean of 20 calls,
with the load average beside it. On a busy machine ``stacked`` shows why Muon shares the
matrices out: a BLAS thread that is not scheduled stalls its partner.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

SHAPES = [(128, 384), (128, 128), (128, 512), (512, 128)] * 3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from npgpt.optim import Muon
    from npgpt.optim.muon import newton_schulz
    from npgpt.module import Parameter
    from npgpt.runtime.threads import serial, set_num_threads

    set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    stacks = [np.stack([m for m in mats if m.shape == s]) for s in dict.fromkeys(SHAPES)]
    params = [Parameter(m.copy()) for m in mats]
    for p, m in zip(params, mats):
        p.grad[...] = m
    muon = Muon(params, lr=0.0)          # lr 0: the weights stay, the work is the same

    def stacked():
        for s in stacks:
            newton_schulz(s)

    def one_thread():
        with serial():
            for m in mats:
                newton_schulz(m)

    def shared_out():
        muon.step()

    ways = {"stacked": stacked, "one thread": one_thread, "shared out": shared_out}
    times = {name: [] for name in ways}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, fn in ways.items():
            fn()
            t = time.perf_counter()
            for _ in range(20):
                fn()
            times[name].append((time.perf_counter() - t) / 20)
    print(f"{args.threads} thread(s), load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, ts in times.items():
        print(f"{name:<12} {1e3 * statistics.median(ts):8.2f} ms   (rounds: "
              f"{', '.join(f'{1e3 * t:.1f}' for t in ts)})")


if __name__ == "__main__":
    main()
