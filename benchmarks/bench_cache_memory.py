"""Memory of ``run_with_cache`` on GPT-2 124M (random weights): what a names filter saves.

    python benchmarks/bench_cache_memory.py [--tokens 256]

Each line runs in a fresh process: the model is built and put in eval mode, then one sequence
of ``--tokens`` ids goes through a plain ``no_grad`` forward, ``run_with_cache(names="h.3.*")``
or ``run_with_cache()`` (everything); the line gives the cache's size and the peak resident
memory above the loaded model (ru_maxrss).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time


def child(which: str, tokens: int) -> str:
    import numpy as np
    from npgpt import GPT, GPTConfig, no_grad
    model = GPT(GPTConfig.preset("gpt2"))
    model.eval()
    idx = np.random.default_rng(0).integers(0, 50257, (1, tokens))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    nbytes = 0
    if which == "none":
        with no_grad():
            model.forward(idx)
    else:
        _, cache = model.run_with_cache(idx, names=None if which == "all" else which)
        nbytes = cache.nbytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (f"{which:<8} cache {nbytes / 2**20:7.1f} MiB   peak RSS above the model "
            f"{(peak - base) / 1024:7.1f} MiB   {time.perf_counter() - t:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(child(args.child, args.tokens))
        return
    print(f"GPT-2 124M, 1 x {args.tokens} tokens, load average {os.getloadavg()[0]:.1f}")
    for which in ("none", "h.3.*", "all"):
        out = subprocess.run([sys.executable, __file__, "--child", which, "--tokens",
                              str(args.tokens)], capture_output=True, text=True, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
