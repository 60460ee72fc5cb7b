"""Attention step by step (seed 000 "QKV" and "Mask"; seed 004 Query/Key/Value).

Q = X Wq, K = X Wk, V = X Wv; scores = Q K^T / sqrt(d_k); the causal mask sets the entries
above the diagonal to -inf before the softmax, so the weights form the lower-triangular
matrix the seed prints (first row [1, 0, 0, ...]); the output is weights @ V. Then the
multi-head version: split C into H heads of hs = C / H, attend per head, concatenate, W_o.

    python examples/03_attention.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers import MultiHeadAttention, softmax


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    T, C, H = 6, 16, 4
    hs = C // H
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    X = rng.standard_normal((T, C))

    section("one head by hand")
    Wq, Wk, Wv = (rng.standard_normal((C, hs)) / np.sqrt(C) for _ in range(3))
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    print(f"X {X.shape}  Q = X Wq {Q.shape}  K {K.shape}  V {V.shape}")
    scores = Q @ K.T / np.sqrt(hs)
    print(f"scores = Q K^T / sqrt(d_k = {hs}) (T, T):\n{scores}")
    print(f"without the 1/sqrt(d_k): std of Q K^T = {np.std(Q @ K.T):.3f}, "
          f"with it = {np.std(scores):.3f} (softmax stays out of saturation)")
    mask = np.tril(np.ones((T, T), dtype=bool))
    masked = np.where(mask, scores, -np.inf)
    print(f"causal mask: above the diagonal -> -inf:\n{masked}")
    weights = softmax(masked)
    print(f"softmax over each row = attention weights (lower triangular, rows sum to 1):\n{weights}")
    print("row sums:", weights.sum(-1))
    out = weights @ V
    print(f"output = weights @ V {out.shape}: row t mixes the values of positions 0..t")

    section(f"multi-head: {H} heads of hs = C / H = {hs}, concatenated, then W_o")
    mha = MultiHeadAttention(C, H, causal=True, dtype=np.float64, rng=rng, keep_weights=True)
    mha.c_attn.weight.data *= 15       # a larger init than 0.02, so the heads differ visibly
    y = mha(X[None])
    Wqkv, bqkv = mha.c_attn.weight.data, mha.c_attn.bias.data
    qkv = X @ Wqkv + bqkv                                 # (T, 3C): q | k | v
    heads = []
    for h in range(H):
        sl = slice(h * hs, (h + 1) * hs)
        q, k, v = qkv[:, sl], qkv[:, C + h * hs:C + (h + 1) * hs], qkv[:, 2 * C + h * hs:2 * C + (h + 1) * hs]
        heads.append(softmax(np.where(mask, q @ k.T / np.sqrt(hs), -np.inf)) @ v)
    A = np.concatenate(heads, axis=-1)                    # concat: (T, C)
    by_hand = A @ mha.c_proj.weight.data + mha.c_proj.bias.data
    print(f"concat of heads A {A.shape}; output = A W_o {by_hand.shape}")
    print(f"max |by hand - MultiHeadAttention| = {np.abs(by_hand - y[0]).max():.1e}")
    W = mha.weights[0]                                    # (H, T, T)
    print(f"weights of head 0 from the layer:\n{W[0]}")

    plt = pyplot()
    if plt is None:
        skipped("03_attention_heads.png")
    else:
        fig, axes = plt.subplots(1, H + 1, figsize=(3 * (H + 1), 3))
        axes[0].imshow(weights, cmap="viridis", vmin=0, vmax=1)
        axes[0].set_title("by hand (one head)")
        for h in range(H):
            axes[h + 1].imshow(W[h], cmap="viridis", vmin=0, vmax=1)
            axes[h + 1].set_title(f"head {h}")
        for a in axes:
            a.set(xlabel="key position", ylabel="query position")
        save(fig, args, "03_attention_heads.png")
    done(args)


if __name__ == "__main__":
    main()
