"""What the layer contract's checks (npgpt.contract) cost: one module's forward + backward
with and without its wrapper, and the baby model's step beside it.

    python benchmarks/bench_contract.py
"""
import time

import numpy as np

from npgpt import GPT, GPTConfig
from npgpt.layers import Linear


def per_call(fn, n=20000):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main():
    layer, x = Linear(4, 4), np.zeros((1, 4), np.float32)
    forward, backward = Linear.forward.__wrapped__, Linear.backward.__wrapped__
    checked = per_call(lambda: (layer.forward(x), layer.backward(x)))
    raw = per_call(lambda: (forward(layer, x), backward(layer, x)))
    model = GPT(GPTConfig.preset("baby", vocab_size=65))
    idx = np.random.default_rng(0).integers(0, 65, (12, 64))
    step = per_call(lambda: (model.forward(idx, idx), model.backward()), n=5)
    n_modules = sum(1 for _ in model.modules())
    cost = n_modules * (checked - raw)
    print(f"forward+backward of one module: checked {1e6 * checked:.2f} us, unchecked "
          f"{1e6 * raw:.2f} us (+{1e6 * (checked - raw):.2f} us)")
    print(f"baby model ({n_modules} modules): step {1e3 * step:.1f} ms, checks at most "
          f"{1e3 * cost:.2f} ms of it ({100 * cost / step:.2f}%)")


if __name__ == "__main__":
    main()
