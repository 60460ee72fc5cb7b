"""What a decoding step is made of: the weight products against everything else, CPU time.

    python benchmarks/bench_decode_parts.py [--system float32|int8] [--threads 1]
                                            [--batch 1] [--rounds 5] [--profile 12]
                                            [--clock cpu|wall]

A gpt2-124M-shaped GPT (random weights; ``int8``: quantized in blocks of 32) decodes 8 tokens
after a 16-token prompt, ``--rounds`` times; a step's CPU time is the process's (all
threads) between two tokens, best and median over the rounds. Then the same step's weight
products alone: every Linear (or QuantizedLinear) and the tied head called on ``--batch``
rows, best and median of ``--rounds``. Their difference is the rest of the step: attention
over the cache, layer norms, GELU, residual adds, sampling and the Python between them.
Last, the split inside a step, by the wall clock: one more generation with each product
timed where the model calls it, and one with the products replaced by zeros of their shape.
Streaming the weights evicts from the caches what the rest of the step reads (the KV cache,
the small arrays, the interpreter's own data), so the rest costs more among the products
than alone. ``--profile N`` lists the N functions with the most CPU time of one more generation
(cProfile on the process's CPU clock; its own overhead inflates the small calls).
CPU time, not wall time, so that other processes' load moves the figures less; a comparison
(``--system``, ``--threads``, ``--batch``) is two runs taking turns. With more than one thread
the CPU time counts a waiting thread's spin too; ``--clock wall`` times by the wall clock
instead (for a quiet machine).
"""
import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")     # as npgpt sets it

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import npgpt  # noqa: E402
from npgpt.layers.linear import Linear  # noqa: E402
from npgpt.layers.quantized import QuantizedLinear, quantize_model  # noqa: E402
from npgpt.runtime.threads import set_num_threads  # noqa: E402


def clock_ms(fn, rounds, clock):
    fn()
    times = []
    for _ in range(rounds):
        t = clock()
        fn()
        times.append(1e3 * (clock() - t))
    return min(times), statistics.median(times)


def split_inside(model, prompt, layers, zeros=False):
    """(products, rest) of a step in ms by the wall clock: each product timed where the model
    calls it (or replaced by zeros of its shape: then products ~0)."""
    spent = []

    def timed(fn, n_out):
        def call(x, *args):
            t = time.perf_counter()
            y = (np.zeros(x.shape[:-1] + (n_out,), x.dtype) if zeros else fn(x, *args))
            spent.append(time.perf_counter() - t)
            return y
        return call
    for m in layers:
        m.forward = timed(m.forward, m.out_features)
    model.wte.attend = timed(model.wte.attend, model.wte.num_embeddings)
    try:
        steps, products = [], []
        for _ in range(3):
            spent.clear()
            walls = []
            model.generate(prompt, 9, temperature=0,
                           on_token=lambda _: walls.append(time.perf_counter()))
            per = len(spent) // 9                    # the prompt's products, then 8 steps'
            steps += list(np.diff(walls) * 1e3)
            products += [1e3 * sum(spent[per * (i + 1):per * (i + 2)]) for i in range(8)]
    finally:
        for m in layers + [model.wte]:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("attend", None)
    step, prod = statistics.median(steps), statistics.median(products)
    return prod, step - prod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", choices=("float32", "int8"), default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    set_num_threads(args.threads)
    model = npgpt.GPT(npgpt.GPTConfig(block_size=1024, vocab_size=50257, n_embd=768,
                                      n_layer=12, n_head=12), seed=0).eval()
    if args.system == "int8":
        quantize_model(model)
    prompt = np.random.default_rng(0).integers(0, 50257, (args.batch, 16))
    stamps = []

    def generate():
        stamps.clear()
        model.generate(prompt, 9, temperature=0,
                       on_token=lambda _: stamps.append(clock()))
    generate()
    steps = []
    for _ in range(args.rounds):
        generate()
        steps.append(1e3 * (stamps[-1] - stamps[0]) / 8)
    rng = np.random.default_rng(1)
    xs = {k: rng.standard_normal((args.batch, k), dtype=np.float32) for k in (768, 3072)}
    layers = [m for m in model.modules() if isinstance(m, (Linear, QuantizedLinear))]

    def products():
        for m in layers:
            m.forward(xs[m.in_features])
        model.wte.attend(xs[768])
    p_best, p_median = clock_ms(products, args.rounds, clock)
    print(f"{args.system}, batch {args.batch}, {args.threads} thread(s): a step {min(steps):.2f} "
          f"ms {args.clock} (median {statistics.median(steps):.2f}); its {len(layers) + 1} weight products "
          f"alone {p_best:.2f} ms (median {p_median:.2f}); the rest ~{min(steps) - p_best:.2f} "
          f"ms (load average {os.getloadavg()[0]:.1f})")
    inside, rest = split_inside(model, prompt, layers)
    zero_rest = split_inside(model, prompt, layers, zeros=True)[1]
    print(f"inside a step (wall clock, median of 8 steps): the products {inside:.2f} ms, the "
          f"rest {rest:.2f} ms; with the products replaced by zeros, the rest {zero_rest:.2f} ms")
    if args.profile:
        profile = cProfile.Profile(clock)
        profile.runcall(generate)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
