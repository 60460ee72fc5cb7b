"""Attention pooling on a 1-D regression toy (seed 002 "注意力汇聚" and "Bahdanau注意力").

Keys x_i and values y_i are training points; a query x asks "what is y here?" and the answer
is a weighted average sum_i a(x, x_i) y_i, the weights a softmax over similarity scores:

* Nadaraya-Watson (1964): score = -(x - x_i)^2 / 2, a Gaussian kernel, nothing learned;
* the same with a learned width w: score = -((x - x_i) w)^2 / 2;
* dot-product attention: with q = (x, -1/2) and k_i = (x_i, x_i^2), q.k_i = -(x - x_i)^2/2 + x^2/2,
  and x^2/2 is the same for every key, so softmax(q.k) IS the Gaussian kernel;
* additive (Bahdanau) attention: score = v . tanh(w_q x + w_k x_i + b), a small learned net.
The learned ones are trained by gradient descent with hand-written gradients (leave-one-out:
a training point may not attend to itself).

    python examples/10_attention_pooling.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.layers import softmax


def f(x):
    return 2 * np.sin(x) + x ** 0.8


def pool(scores, values):
    """softmax over keys, then the weighted average of the values; returns (pred, weights)."""
    a = softmax(scores)
    return a @ values, a


def main():
    args = parse_args(__doc__)
    rng = np.random.default_rng(args.seed)
    n = 50
    x_train = np.sort(rng.uniform(0, 5, n))
    y_train = f(x_train) + rng.normal(0, 0.5, n)
    x_test = np.arange(0, 5, 0.1)
    y_truth = f(x_test)
    steps = 60 if args.quick else 400
    loo = ~np.eye(n, dtype=bool)            # leave-one-out: no attending to oneself

    def mse(pred):
        return float(((pred - y_truth) ** 2).mean())

    section("Nadaraya-Watson kernel regression (nothing learned)")
    diff = x_test[:, None] - x_train[None, :]                      # (queries, keys)
    nw, nw_weights = pool(-diff ** 2 / 2, y_train)
    print(f"queries {x_test.shape}, keys/values {x_train.shape}: weights {nw_weights.shape}, "
          f"rows sum to 1: {np.allclose(nw_weights.sum(1), 1)}")
    print(f"Nadaraya-Watson test MSE against the true curve: {mse(nw):.4f}")

    section("dot-product attention with q = (x, -1/2), k = (x_i, x_i^2)")
    q = np.stack([x_test, -0.5 * np.ones_like(x_test)], 1)
    k = np.stack([x_train, x_train ** 2], 1)
    dot, _ = pool(q @ k.T, y_train)
    print(f"max |dot-product pooling - Nadaraya-Watson| = {np.abs(dot - nw).max():.1e}")

    section(f"learned kernel width w ({steps} steps of gradient descent)")
    w = 1.0
    d_train = x_train[:, None] - x_train[None, :]
    for _ in range(steps):
        s = np.where(loo, -(d_train * w) ** 2 / 2, -np.inf)
        pred, a = pool(s, y_train)
        dpred = 2 * (pred - y_train) / n                             # d mean squared error
        da = dpred[:, None] * y_train[None, :]
        ds = a * (da - (a * da).sum(1, keepdims=True))               # softmax backward
        dw = (ds * np.where(loo, -d_train ** 2 * w, 0)).sum()        # ds/dw = -(d^2) w
        w -= 0.5 * dw
    learned, _ = pool(-(diff * w) ** 2 / 2, y_train)
    print(f"learned w = {w:.3f} (narrower kernel: {w > 1}); test MSE {mse(learned):.4f}")

    section("additive (Bahdanau) attention: score = v . tanh(w_q x + w_k x_i + b)")
    Hd = 8
    wq, wk, b, v = (rng.normal(0, 1, Hd) for _ in range(4))
    params = [wq, wk, b, v]
    m = [np.zeros(Hd) for _ in params]
    s2 = [np.zeros(Hd) for _ in params]
    for t in range(1, steps + 1):
        z = wq * x_train[:, None, None] + wk * x_train[None, :, None] + b   # (n, n, Hd)
        hidden = np.tanh(z)
        s = np.where(loo, hidden @ v, -np.inf)
        pred, a = pool(s, y_train)
        dpred = 2 * (pred - y_train) / n
        da = dpred[:, None] * y_train[None, :]
        ds = np.where(loo, a * (da - (a * da).sum(1, keepdims=True)), 0)
        dv = np.einsum("ij,ijh->h", ds, hidden)
        dz = ds[..., None] * v * (1 - hidden ** 2)
        grads = [np.einsum("ijh,i->h", dz, x_train), np.einsum("ijh,j->h", dz, x_train),
                 dz.sum((0, 1)), dv]
        for p, g, mi, si in zip(params, grads, m, s2):            # Adam, by hand
            mi[:] = 0.9 * mi + 0.1 * g
            si[:] = 0.999 * si + 0.001 * g * g
            p -= 0.05 * (mi / (1 - 0.9 ** t)) / (np.sqrt(si / (1 - 0.999 ** t)) + 1e-8)
    z = wq * x_test[:, None, None] + wk * x_train[None, :, None] + b
    additive, add_weights = pool(np.tanh(z) @ v, y_train)
    print(f"additive attention test MSE {mse(additive):.4f}")

    plt = pyplot()
    if plt is None:
        skipped("10_attention_pooling.png")
    else:
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4))
        a1.plot(x_test, y_truth, "k", label="truth")
        a1.plot(x_train, y_train, "o", alpha=0.4, label="training points")
        a1.plot(x_test, nw, label="Nadaraya-Watson")
        a1.plot(x_test, learned, label=f"learned width (w={w:.2f})")
        a1.plot(x_test, additive, label="additive attention")
        a1.set(title="attention pooling as regression", xlabel="x")
        a1.legend(fontsize=8)
        for ax, W, title in ((a2, nw_weights, "Nadaraya-Watson weights"),
                             (a3, add_weights, "additive attention weights")):
            ax.imshow(W, cmap="Reds", aspect="auto")
            ax.set(title=title, xlabel="sorted training inputs (keys)", ylabel="test inputs (queries)")
        save(fig, args, "10_attention_pooling.png")
    done(args)


if __name__ == "__main__":
    main()
