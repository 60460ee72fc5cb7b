"""RoPE, rotary positional embedding (seed 001 "RoPE 旋转位置编码").

Each pair of channels (a, b) of q and k is rotated by the angle m * theta_i, m the position:
a' = a cos(m theta) - b sin(m theta), b' = a sin(m theta) + b cos(m theta). A rotation keeps
lengths, and rotating q by m and k by n leaves q . k depending only on m - n: attention sees
relative positions.

    python examples/05_rope.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers.rope import apply_rope, inverse_frequencies


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    hs = 8
    np.set_printoptions(precision=4, suppress=True, linewidth=110)

    section("the angles theta_i = 10000^(-2i/hs)")
    theta = inverse_frequencies(hs)
    print(f"hs = {hs}: {hs // 2} pairs, theta = {theta}")

    section("rotating one pair by hand")
    q = rng.standard_normal(hs)
    m = 3
    a, b = q[0], q[hs // 2]          # the "half" layout pairs channel i with channel i + hs/2
    c, s = np.cos(m * theta[0]), np.sin(m * theta[0])
    rotated = apply_rope(np.tile(q, (m + 1, 1)))[m]
    print(f"pair (q[0], q[{hs // 2}]) = ({a:.4f}, {b:.4f}) at position {m}:")
    print(f"  by hand  ({a * c - b * s:.4f}, {a * s + b * c:.4f})")
    print(f"  apply_rope ({rotated[0]:.4f}, {rotated[hs // 2]:.4f})")
    print(f"lengths: |q| = {np.linalg.norm(q):.6f}, |R q| = {np.linalg.norm(rotated):.6f}")

    section("q . k after rotation depends only on m - n")
    k = rng.standard_normal(hs)
    n_pos = 24 if args.quick else 64

    def score(m, n):
        qs = apply_rope(np.tile(q, (max(m, n) + 1, 1)))[m]
        ks = apply_rope(np.tile(k, (max(m, n) + 1, 1)))[n]
        return qs @ ks

    for d in (0, 2, 5):
        vals = [score(n + d, n) for n in (0, 3, 10, 17)]
        print(f"m - n = {d}: q_m . k_n for n = 0, 3, 10, 17 -> {np.round(vals, 6)}")
    R = apply_rope(np.tile(q, (n_pos, 1)))
    Kr = apply_rope(np.tile(k, (n_pos, 1)))
    grid = R @ Kr.T                               # (m, n)
    spread = max(np.ptp(np.diagonal(grid, offset=-d)) for d in range(n_pos - 1))
    print(f"largest spread along any diagonal m - n = const of the {n_pos}x{n_pos} grid: {spread:.1e}")

    plt = pyplot()
    if plt is None:
        skipped("05_rope.png")
    else:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        im = a1.imshow(grid, cmap="RdBu")
        a1.set(title="q_m . k_n: constant along diagonals", xlabel="n (key position)",
               ylabel="m (query position)")
        fig.colorbar(im, ax=a1)
        a2.plot(np.arange(n_pos), grid[:, 0], label="q_m . k_0")
        a2.set(title="score against relative distance m - n", xlabel="m - n")
        a2.legend()
        save(fig, args, "05_rope.png")
    done(args)


if __name__ == "__main__":
    main()
