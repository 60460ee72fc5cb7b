"""Embedding lookup and the sinusoidal positional encoding (seed 000 "Word Embedding" and
"Positional Embedding"; seed 001's 正余弦位置编码).

A token id picks one row of the (V, C) embedding matrix; the position adds a fixed vector
PE[pos]. Because each pair of PE columns is (sin(pos w), cos(pos w)), moving k positions is a
rotation of every pair by k w: PE(pos + k) = M_k PE(pos) for one matrix M_k whatever pos is.

    python examples/02_embedding_positions.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers import Embedding, SinusoidalPositionalEncoding, sinusoidal_table


def rotation_for_shift(k: int, C: int, base: float = 10000.0) -> np.ndarray:
    """M_k (C, C): block-diagonal, one 2x2 rotation per (sin, cos) pair, angle k * w_i."""
    M = np.zeros((C, C))
    for i in range(C // 2):
        w = 1.0 / base ** (2 * i / C)
        c, s = np.cos(k * w), np.sin(k * w)
        # sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b - sin a sin b
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    return M


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    V, C, T = 10, 8, 5

    section("embedding lookup: token id -> one row of W (V, C)")
    emb = Embedding(V, C, rng=rng, std=1.0)
    ids = np.array([[3, 1, 4, 1, 5]])
    x = emb(ids)
    print(f"ids {ids.tolist()} (B, T) = {ids.shape} -> embeddings (B, T, C) = {x.shape}")
    print("row for id 1 == W[1]:", np.array_equal(x[0, 1], emb.weight.data[1]),
          "| the two 1s share one vector:", np.array_equal(x[0, 1], x[0, 3]))

    section("sinusoidal positions: PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(...)")
    pe = SinusoidalPositionalEncoding(C)
    table = pe(np.arange(T))
    np.set_printoptions(precision=3, suppress=True, linewidth=110)
    print(f"PE for positions 0..{T - 1} (T, C) = {table.shape}:\n{table}")
    print("input to the first layer = embedding + PE, shape", (x + table).shape)

    section("PE(pos + k) = M_k PE(pos): a shift is a rotation, the same for every pos")
    n, C_big = (64, 32) if args.quick else (128, 64)
    big = sinusoidal_table(n + 10, C_big, dtype=np.float64)
    for k in (1, 3, 10):
        M = rotation_for_shift(k, C_big)
        err = np.abs(big[:n] @ M.T - big[k:n + k]).max()
        print(f"k = {k:2d}: max |M_k PE(pos) - PE(pos + k)| over pos 0..{n - 1} = {err:.1e}")
    dots = big[:n] @ big[20]
    print("PE(20) . PE(20 + d) for d = -3..3:", np.round(dots[17:24], 3),
          "(symmetric: depends on |d| only)")

    plt = pyplot()
    if plt is None:
        skipped("02_positional_encoding.png")
    else:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        im = a.imshow(big[:n], aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
        a.set(title="sinusoidal PE (rows: position, columns: channel)", xlabel="channel",
              ylabel="position")
        fig.colorbar(im, ax=a)
        b.plot(np.arange(n) - 20, dots)
        b.set(title="PE(20) . PE(20 + d)", xlabel="d")
        save(fig, args, "02_positional_encoding.png")
    done(args)


if __name__ == "__main__":
    main()
