"""One training step by hand (seed 000 "Word Embedding" batches, seed 002 疑问 "为什么可以直接用y").

x = data[i : i+T] and y = data[i+1 : i+T+1]: y is x shifted by one, so y[t] is the token
that follows x[0..t]. The model's logits at position t are its guess for that next token and
the causal mask stops position t from seeing x[t+1] = y[t]: that is why the loss can use y
directly, T predictions per window. Then: backward, a finite-difference check of one weight,
npgpt.gradcheck on the whole model, what its message says when a backward is wrong, and one
Adam update.

    python examples/07_training_step.py [--quick] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt import gradcheck
from npgpt.data import get_batch, shakespeare_text
from npgpt.errors import GradcheckError
from npgpt.models import GPT, GPTConfig
from npgpt.optim import AdamW
from npgpt.tokenizers import CharTokenizer


def main():
    args = parse_args(__doc__)
    text = shakespeare_text("all")[:50_000]
    tok = CharTokenizer.train(text)
    data = np.array(tok.encode(text), dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    B, T = 4, 8

    section("a batch: y is x shifted by one")
    x, y = get_batch(data, B, T, rng)
    print(f"x (B, T) = {x.shape}, y (B, T) = {y.shape}")
    print(f"x[0] = {x[0].tolist()}  {tok.decode(x[0])!r}")
    print(f"y[0] = {y[0].tolist()}  {tok.decode(y[0])!r}")
    for t in range(3):
        print(f"  position {t}: context {tok.decode(x[0, :t + 1])!r:12s} -> target {tok.decode(y[0, t:t + 1])!r}")

    section("forward and loss")
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=2, n_head=2, n_embd=16,
                       dtype="float64")
    model = GPT(config, seed=args.seed)
    logits, loss = model.forward(x, y)
    print(f"logits (B, T, V) = {logits.shape}; loss = mean over B*T = {B * T} predictions of "
          f"-log p(y) = {float(loss):.4f}")
    print(f"at initialisation every token is about equally likely: ln(V) = ln({tok.vocab_size}) = "
          f"{np.log(tok.vocab_size):.4f}")
    x2 = x.copy()
    x2[:, -1] = (x2[:, -1] + 1) % tok.vocab_size
    logits2, _ = model.forward(x2, y)
    print("changing the last input token changes the logits at earlier positions:",
          not np.allclose(logits2[:, :-1], logits[:, :-1]), "(causal mask: no peeking at y)")

    section("backward, and one weight checked by finite differences")
    model.zero_grad()
    model.forward(x, y)
    model.backward()
    W = model.h[0].attn.c_attn.weight
    i, j, eps = 3, 5, 1e-6
    old = W.data[i, j]
    W.data[i, j] = old + eps
    lp = float(model.forward(x, y)[1])
    W.data[i, j] = old - eps
    lm = float(model.forward(x, y)[1])
    W.data[i, j] = old
    numeric = (lp - lm) / (2 * eps)
    print(f"h.0.attn.c_attn.weight[{i}, {j}]: analytic {W.grad[i, j]:.8e}, "
          f"numeric (L(w+eps) - L(w-eps)) / 2eps = {numeric:.8e}")

    section("npgpt.gradcheck over every parameter")
    report = gradcheck(model, x, max_elements=8 if args.quick else 32)
    lines = str(report).splitlines()
    print("\n".join(lines[:6] + ["  ..."] + lines[-3:]))
    print(f"largest relative error: {report.max_error:.2e} (<= 1e-6 passes)")

    section("a broken backward: what gradcheck says")
    # the embedding is used twice (input lookup and tied output head), so its gradient must be
    # accumulated. A backward that assigns (dW = ...) instead of adding (dW += ...) loses the
    # head's share: simulate that bug and let gradcheck find it.
    lookup_backward = model.wte.backward

    def assigns_instead_of_adding(dy):
        model.wte.weight.grad[...] = 0.0
        return lookup_backward(dy)

    model.wte.backward = assigns_instead_of_adding
    try:
        gradcheck(model, x, max_elements=16)
    except GradcheckError as e:
        print(str(e).splitlines()[0])
    finally:
        model.wte.backward = lookup_backward

    section("one Adam update")
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    steps = 5 if args.quick else 30
    for _ in range(steps):
        model.zero_grad()
        _, loss = model.forward(x, y)
        model.backward()
        opt.step()
        losses.append(float(loss))
    m = opt.state[0]            # the first parameter's state arrays, made at its first step
    print("Adam: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g², w -= lr m̂ / (sqrt(v̂) + eps)")
    if m:
        print("state kept per parameter:", ", ".join(f"{k} {v.shape}" for k, v in m.items()))
    print(f"loss on this batch over {steps} steps: {losses[0]:.4f} -> {losses[-1]:.4f}")

    plt = pyplot()
    if plt is None:
        skipped("07_training_step.png")
    else:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(losses, marker="o")
        ax.axhline(np.log(tok.vocab_size), color="gray", ls="--", label="ln(V)")
        ax.set(xlabel="Adam step (same batch)", ylabel="loss", title="overfitting one batch")
        ax.legend()
        save(fig, args, "07_training_step.png")
    done(args)


if __name__ == "__main__":
    main()
