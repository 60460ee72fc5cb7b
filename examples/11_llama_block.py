"""A LLaMA-style block by hand (seed 003 "结合Numpy实现的llama实例"): RMSNorm, RoPE, grouped-
query attention, SwiGLU, with LLaMA's projection names q_proj, k_proj, v_proj, o_proj,
gate_proj, up_proj, down_proj; checked against npgpt's GPT built with the LLaMA options.

    h = x + o_proj(attention(rope(q_proj(rms_1(x))), rope(k_proj(.)), v_proj(.)))   causal, GQA
    y = h + down_proj(silu(gate_proj(rms_2(h))) * up_proj(rms_2(h)))

    python examples/11_llama_block.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers import softmax
from npgpt.layers.rope import apply_rope
from npgpt.models import GPT, GPTConfig


def rmsnorm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def main():
    args = parse_args(__doc__)
    B, T = 2, 6
    config = GPTConfig.preset("llama-tiny", vocab_size=64, n_layer=1, n_embd=32, n_head=4,
                              n_kv_head=2, mlp_hidden=88, dtype="float64")
    H, Hkv, C, hs = config.n_head, config.n_kv_head, config.n_embd, config.head_size
    G = H // Hkv
    block = GPT(config, seed=args.seed).h[0]
    rng = np.random.default_rng(args.seed)
    for p in block.parameters():
        p.data += rng.normal(0, 0.1, p.shape)      # away from the init, so every term matters

    section("LLaMA's names for the block's weights")
    Wqkv = block.attn.c_attn.weight.data          # npgpt fuses q | k | v into one matrix
    weights = {
        "input_layernorm (RMSNorm)": block.ln_1.weight.data,
        "q_proj": Wqkv[:, :H * hs],
        "k_proj": Wqkv[:, H * hs:(H + Hkv) * hs],
        "v_proj": Wqkv[:, (H + Hkv) * hs:],
        "o_proj": block.attn.c_proj.weight.data,
        "post_attention_layernorm": block.ln_2.weight.data,
        "gate_proj": block.mlp.gate_proj.weight.data,
        "up_proj": block.mlp.up_proj.weight.data,
        "down_proj": block.mlp.down_proj.weight.data,
    }
    for name, w in weights.items():
        print(f"  {name:28s} {w.shape!s:12s} {w.size:7,} parameters")
    print(f"H = {H} query heads share Hkv = {Hkv} key/value heads (groups of {G}): k_proj and "
          f"v_proj are {C}x{Hkv * hs}, not {C}x{C}; no biases anywhere")

    section("the forward by hand")
    x = rng.standard_normal((B, T, C))
    h = rmsnorm(x, weights["input_layernorm (RMSNorm)"], config.norm_eps)
    q = (h @ weights["q_proj"]).reshape(B, T, H, hs).transpose(0, 2, 1, 3)
    k = (h @ weights["k_proj"]).reshape(B, T, Hkv, hs).transpose(0, 2, 1, 3)
    v = (h @ weights["v_proj"]).reshape(B, T, Hkv, hs).transpose(0, 2, 1, 3)
    q, k = apply_rope(q), apply_rope(k)                 # rotate pairs by position * theta
    k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)   # each k/v head serves G queries
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(hs)
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    attn = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    x1 = x + attn @ weights["o_proj"]
    h2 = rmsnorm(x1, weights["post_attention_layernorm"], config.norm_eps)
    y_hand = x1 + (silu(h2 @ weights["gate_proj"]) * (h2 @ weights["up_proj"])) @ weights["down_proj"]
    print(f"x {x.shape} -> q {q.shape}, k and v {(B, Hkv, T, hs)} repeated to {k.shape} -> y {y_hand.shape}")
    y = block(x)
    print(f"max |by hand - npgpt block| = {np.abs(y_hand - y).max():.1e}")

    section("SwiGLU's gate")
    z = np.linspace(-4, 4, 9)
    print("z       ", np.round(z, 2))
    print("silu(z) ", np.round(silu(z), 3), " (smooth, slightly negative below 0, ~z above)")

    plt = pyplot()
    if plt is None:
        skipped("11_llama_block.png")
    else:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        zz = np.linspace(-5, 5, 200)
        a1.plot(zz, np.maximum(zz, 0), label="ReLU (2017 Transformer)")
        a1.plot(zz, 0.5 * zz * (1 + np.tanh(0.79788456 * (zz + 0.044715 * zz ** 3))),
                label="GELU (GPT-2)")
        a1.plot(zz, silu(zz), label="SiLU (LLaMA's gate)")
        a1.set(title="activations", xlabel="z")
        a1.legend()
        names = [n.split(" ")[0] for n in weights]
        a2.barh(names, [w.size for w in weights.values()])
        a2.set(title="parameters per weight in one block", xlabel="parameters")
        save(fig, args, "11_llama_block.png")
    done(args)


if __name__ == "__main__":
    main()
