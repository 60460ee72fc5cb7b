"""Counting parameters (seed 000 "LLM参数量计算", seed 002's GPT-2 sizes).

Per layer: attention 4 C^2 + 4 C (Wq, Wk, Wv, Wo and biases), MLP 8 C^2 + 5 C (C -> 4C -> C),
two LayerNorms 4 C: 12 C^2 + 13 C. With L layers and a V x C embedding shared with the output
head: 12 C^2 L + 13 C L + V C. GPT-2 adds learned positions (block_size x C) and a final
LayerNorm (2 C).

    python examples/06_param_count.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.models import GPT, GPTConfig, count_params, params_formula

# published figures: GPT-2 (Radford et al. 2019, released checkpoints), GPT-3 (Brown et al. 2020)
GPT2_PUBLISHED = {"gpt2": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1.5B"}


def main():
    args = parse_args(__doc__)

    section("the formula against a built model (the seed's layout)")
    for C, L, V in ((64, 2, 100), (128, 4, 96)) if args.quick else ((64, 2, 100), (128, 4, 96),
                                                                  (256, 6, 512)):
        config = GPTConfig(vocab_size=V, block_size=64, n_layer=L, n_head=4, n_embd=C,
                           pos="sinusoidal", prenorm=False, mlp="relu")
        built = GPT(config).num_parameters()
        print(f"C={C:4d} L={L} V={V:4d}: 12C²L + 13CL + VC = {params_formula(config):>10,}   "
              f"built model = {built:>10,}   equal: {built == params_formula(config)}")

    section("GPT-2 sizes (V = 50257, block 1024, learned positions, final LayerNorm)")
    print(f"{'model':12s} {'L':>3s} {'C':>5s} {'H':>3s} {'formula':>15s} {'count_params':>15s} "
          f"{'published':>9s}")
    sizes = {}
    for name in GPT2_PUBLISHED:
        c = GPTConfig.preset(name)
        total = count_params(c)["total"]
        sizes[name] = total
        print(f"{name:12s} {c.n_layer:3d} {c.n_embd:5d} {c.n_head:3d} {params_formula(c):15,} "
              f"{total:15,} {GPT2_PUBLISHED[name]:>9s}")
    if not args.quick:     # building even one GPT-2 layer draws 39M random embedding values
        small = GPT(GPTConfig.preset("gpt2", n_layer=1)).num_parameters()
        print(f"check: a 1-layer GPT-2 built here has {small:,} parameters = count_params "
              f"{count_params(GPTConfig.preset('gpt2', n_layer=1))['total']:,}")

    section("GPT-3 175B from its published dimensions (L = 96, C = 12288, H = 96, context 2048)")
    gpt3 = GPTConfig(vocab_size=50257, block_size=2048, n_layer=96, n_head=96, n_embd=12288)
    parts = count_params(gpt3)
    for k, v in parts.items():
        print(f"  {k:10s} {v:>16,}")
    print(f"12C²L alone = {12 * 12288 ** 2 * 96:,}: the matrices are {12 * 12288 ** 2 * 96 / parts['total']:.1%} "
          f"of the total; the embedding V·C = {50257 * 12288:,} (the seed's 12288 x 50257)")
    sizes["gpt3-175B"] = parts["total"]

    plt = pyplot()
    if plt is None:
        skipped("06_param_counts.png")
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(sizes), np.array(list(sizes.values())) / 1e6)
        ax.set_yscale("log")
        ax.set(ylabel="parameters (millions, log scale)", title="parameter counts")
        for i, v in enumerate(sizes.values()):
            ax.text(i, v / 1e6, f"{v / 1e6:,.0f}M", ha="center", va="bottom")
        save(fig, args, "06_param_counts.png")
    done(args)


if __name__ == "__main__":
    main()
