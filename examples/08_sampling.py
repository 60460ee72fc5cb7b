"""Sampling the next token (seed 004 "Softmax" and "Temperature").

P(w_i) = exp(logit_i / T) / sum_j exp(logit_j / T): a temperature T < 1 sharpens the
distribution (the likeliest token takes more), T > 1 flattens it. top-k keeps the k likeliest
tokens; top-p (nucleus) keeps the fewest likeliest tokens whose probabilities add up to p.

    python examples/08_sampling.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.generate import filter_logits, sample_next, softmax_with_temperature

WORDS = ["the", "a", "king", "queen", "love", "death", "sword", "night"]
LOGITS = np.array([[3.0, 2.5, 2.0, 1.6, 1.0, 0.5, 0.0, -1.0]])
TEMPERATURES = (0.5, 1.0, 2.0)


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    n = 2_000 if args.quick else 20_000

    section("softmax at several temperatures")
    print(f"{'':8s}" + "".join(f"{w:>8s}" for w in WORDS))
    print(f"{'logit':8s}" + "".join(f"{v:8.2f}" for v in LOGITS[0]))
    probs = {}
    for T in TEMPERATURES:
        p = softmax_with_temperature(LOGITS, T)[0]
        probs[T] = p
        entropy = -(p * np.log(p)).sum()
        print(f"{'T=' + str(T):8s}" + "".join(f"{v:8.3f}" for v in p) + f"   entropy {entropy:.3f}")
    print("greedy (T -> 0) always picks:", WORDS[int(sample_next(LOGITS, rng, temperature=0)[0])])

    section(f"sampling {n:,} times at T = 1: frequencies match the probabilities")
    draws = np.array([sample_next(LOGITS, rng)[0] for _ in range(n)])
    freq = np.bincount(draws, minlength=len(WORDS)) / n
    print(f"{'freq':8s}" + "".join(f"{v:8.3f}" for v in freq))
    print(f"max |freq - p| = {np.abs(freq - probs[1.0]).max():.3f}")

    section("top-k and top-p")
    for k in (1, 3):
        kept = np.isfinite(filter_logits(LOGITS, top_k=k))[0]
        print(f"top_k={k}: keeps {[w for w, m in zip(WORDS, kept) if m]}")
    p1 = probs[1.0]
    print("cumulative probability in order:", np.round(np.cumsum(np.sort(p1)[::-1]), 3))
    for top_p in (0.5, 0.9):
        kept = np.isfinite(filter_logits(LOGITS, top_p=top_p))[0]
        renorm = softmax_with_temperature(filter_logits(LOGITS, top_p=top_p))[0]
        print(f"top_p={top_p}: keeps {[w for w, m in zip(WORDS, kept) if m]}, renormalised "
              f"{np.round(renorm[kept], 3)}")

    plt = pyplot()
    if plt is None:
        skipped("08_temperature.png")
    else:
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / len(TEMPERATURES)
        for i, T in enumerate(TEMPERATURES):
            ax.bar(np.arange(len(WORDS)) + (i - 1) * width, probs[T], width, label=f"T = {T}")
        ax.set_xticks(range(len(WORDS)), WORDS)
        ax.set(ylabel="probability", title="softmax(logits / T)")
        ax.legend()
        save(fig, args, "08_temperature.png")
    done(args)


if __name__ == "__main__":
    main()
