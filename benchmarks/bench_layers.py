"""The choices made inside the kernels and layers, each timed against its alternative.

    python benchmarks/bench_layers.py [--threads 1] [--repeat 7] [--only attention-block,erf,...]

Each row times the two sides of one choice in the same run, taking turns (float32 unless
said otherwise; median of repeats after warm-up), and prints both and their ratio:

- attention-block   the attention kernel's query blocks of 16, 32, 64 (one head, T 64, hs 32)
- layernorm         the LayerNorm kernel at (512, 128), forward and backward (one call)
- accumulate        a tied GPT-2 head's weight gradient: ``matmul_accumulate`` in row blocks
                    against ``out += a @ b`` (V 50257, C 768, 256 token rows)
- linear-flat       ``x @ W`` on (B T, C) flattened against the (B, T, C) stack (tiny's c_fc)
- erf               the erf kernel against its reference (one million float64)
- rope              the rope kernel against its reference on llama-tiny's q, a strided view
- rope-step         a llama-tiny training step (the plain loop, AdamW) with RoPE on its kernel
                    against RoPE on its NumPy reference, every other op on its kernel
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import time_samples

from npgpt.kernels import attention as ka
from npgpt.kernels import kernel, registry
from npgpt.layers.linear import matmul_accumulate
from npgpt.runtime.threads import set_num_threads


def _turns(sides: dict, repeat: int, min_seconds: float = 0.05) -> dict:
    """Median seconds per call of each side, the sides taking turns ``repeat`` times."""
    samples = {name: [] for name in sides}
    for fn in sides.values():
        fn()                                                    # warm-up (and compile)
    for _ in range(repeat):
        for name, fn in sides.items():
            samples[name] += time_samples(fn, repeat=1, warmup=0, min_seconds=min_seconds)
    return {name: statistics.median(s) for name, s in samples.items()}


def attention_block(rng, repeat):
    q, k, v, dout = (rng.standard_normal((1, 1, 64, 32)).astype(np.float32) for _ in range(4))
    rows = []
    for block in (16, 32, 64):
        _, probs = ka.attention_forward_numba(q, k, v, True, block=block)
        rows.append((f"block {block}", {
            "forward": lambda b=block: ka.attention_forward_numba(q, k, v, True, block=b),
            "backward": lambda b=block, p=probs: ka.attention_backward_numba(
                dout, q, k, v, p, None, True, block=b)}))
    return rows


def layernorm(rng, repeat):
    x = rng.standard_normal((512, 128)).astype(np.float32)
    w, b = np.ones(128, np.float32), np.zeros(128, np.float32)
    y, mean, rstd = kernel("layernorm_forward", "numba")(x, w, b, 1e-5)
    return [("(512, 128)", {
        "forward": lambda: kernel("layernorm_forward", "numba")(x, w, b, 1e-5),
        "backward": lambda: kernel("layernorm_backward", "numba")(y, x, w, mean, rstd)})]


def accumulate(rng, repeat):
    V, C, N = 50257, 768, 256
    out = np.zeros((V, C), np.float32)
    a = rng.standard_normal((N, V)).astype(np.float32).T         # dlogits^T, as the head has it
    b = rng.standard_normal((N, C)).astype(np.float32)

    def plain():
        np.add(out, a @ b, out=out)
    return [("tied head dW", {"matmul_accumulate": lambda: matmul_accumulate(out, a, b),
                              "out += a @ b": plain})]


def linear_flat(rng, repeat):
    x = rng.standard_normal((16, 64, 128)).astype(np.float32)
    W = rng.standard_normal((128, 512)).astype(np.float32)
    return [("c_fc forward", {"flattened": lambda: x.reshape(-1, 128) @ W,
                              "stacked": lambda: np.matmul(x, W)})]


def erf(rng, repeat):
    x = rng.standard_normal(1_000_000)
    return [("1e6 float64", {"kernel": lambda: kernel("erf", "numba")(x),
                             "reference": lambda: kernel("erf", "numpy")(x)})]


def _llama_q(rng):
    B, T, H, Hkv, hs = 16, 64, 4, 2, 32
    qkv = rng.standard_normal((B, T, H + 2 * Hkv, hs)).astype(np.float32)
    angles = np.arange(T)[:, None] * 10000.0 ** (-np.arange(hs // 2) * 2 / hs)
    return (qkv[:, :, :H].transpose(0, 2, 1, 3), np.cos(angles).astype(np.float32),
            np.sin(angles).astype(np.float32))


def rope(rng, repeat):
    q, cos, sin = _llama_q(rng)
    return [("llama-tiny q", {"kernel": lambda: kernel("rope_forward", "numba")(q, cos, sin),
                              "reference": lambda: kernel("rope_forward", "numpy")(q, cos, sin)})]


def rope_step(rng, repeat):
    from npgpt import GPT, GPTConfig
    from npgpt.optim import AdamW

    model = GPT(GPTConfig.preset("llama-tiny"), seed=0)
    opt = AdamW(model.parameters(), lr=3e-4)
    x, y = rng.integers(0, 512, (2, 16, 64))

    def step():
        model.zero_grad()
        model.forward(x, y)
        model.backward()
        opt.step()

    def with_rope(backend):
        def run():
            for name in ("rope_forward", "rope_backward"):
                registry._resolved[(name, "numba")] = kernel(name, backend)
            try:
                step()
            finally:
                for name in ("rope_forward", "rope_backward"):
                    registry._resolved.pop((name, "numba"), None)
        return run
    return [("llama-tiny step", {"rope kernel": with_rope("numba"),
                                 "rope reference": with_rope("numpy")})]


COMPARED = {"accumulate", "linear-flat", "erf", "rope", "rope-step"}   # two alternatives
CASES = {"attention-block": attention_block, "layernorm": layernorm, "accumulate": accumulate,
         "linear-flat": linear_flat, "erf": erf, "rope": rope, "rope-step": rope_step}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7, help="turns per side (median)")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    args = ap.parse_args(argv)
    set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads {args.threads}, {args.repeat} turns per side, median")
    for case in args.only.split(","):
        for label, sides in CASES[case](rng, args.repeat):
            times = _turns(sides, args.repeat)
            names = list(times)
            shown = "   ".join(f"{n} {1e3 * t:9.3f} ms" for n, t in times.items())
            ratio = times[names[1]] / times[names[0]] if case in COMPARED else None
            print(f"{case:16s} {label:18s} {shown}" + (f"   ratio {ratio:.2f}" if ratio else ""))


if __name__ == "__main__":
    main()
