"""A one-layer attention text classifier, with and without LayerNorm (seed 003, 案例实践:
"Embedding + 单层SelfAttention + MLP" against "... + LayerNorm + MLP", ~5K binary samples).

Data: lines of Shakespeare labelled by the kind of play they come from, comedy (0) or tragedy
(1), from the corpus package's folders; balanced, ~5,000 lines, 20% held out. Words are ids of
a vocabulary built on the training split (rare words share <unk>). Both variants train with the
same data, seed and steps; the script prints and plots train/validation loss and accuracy.

    python examples/14_text_classifier.py [--quick] [--steps N] [--out DIR]
"""
import re
import time

import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.data import shakespeare_plays
from npgpt.models import TextClassifier
from npgpt.optim import AdamW

PAD, UNK = 0, 1
LABELS = {"comedies": 0, "tragedies": 1}


def load_lines(rng, per_class: int, max_len: int):
    """Spoken lines (not speaker names, not stage directions) with at least 5 words."""
    lines = {0: [], 1: []}
    for _, genre, text in shakespeare_plays():
        if genre not in LABELS:
            continue
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("[") or line.endswith(":"):
                continue
            words = re.findall(r"[a-z']+", line.lower())
            if len(words) >= 5:
                lines[LABELS[genre]].append(words[:max_len])
    data = []
    for label, items in lines.items():
        pick = rng.choice(len(items), size=per_class, replace=False)
        data += [(items[i], label) for i in pick]
    order = rng.permutation(len(data))
    return [data[i] for i in order], {k: len(v) for k, v in lines.items()}


def encode(samples, vocab, max_len):
    idx = np.full((len(samples), max_len), PAD)
    for i, (words, _) in enumerate(samples):
        idx[i, :len(words)] = [vocab.get(w, UNK) for w in words]
    return idx, np.array([label for _, label in samples])


def evaluate(model, idx, y):
    model.eval()
    logits, loss = model.forward(idx, y)
    model.train()
    return float(loss), float((logits.argmax(-1) == y).mean())


def train(layernorm, train_set, val_set, vocab_size, max_len, steps, seed, eval_every):
    model = TextClassifier(vocab_size, max_len, n_embd=32, n_head=2, layernorm=layernorm,
                           rng=np.random.default_rng(seed))
    opt = AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    (x, y), history = train_set, []
    for step in range(1, steps + 1):
        batch = rng.integers(0, len(x), size=64)
        model.zero_grad()
        model.forward(x[batch], y[batch])
        model.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            history.append((step, *evaluate(model, *train_set), *evaluate(model, *val_set)))
    return model, history


def main():
    args = parse_args(__doc__, steps=(int, 600, "training steps per variant"))
    rng = np.random.default_rng(args.seed)
    per_class, steps = (600, 60) if args.quick else (2500, args.steps)
    max_len = 16

    section("data: Shakespeare lines, comedy (0) vs tragedy (1)")
    samples, available = load_lines(rng, per_class, max_len)
    n_val = len(samples) // 5
    val, tr = samples[:n_val], samples[n_val:]
    counts = {}
    for words, _ in tr:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for w, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        if c >= 2:
            vocab[w] = len(vocab)
    train_set, val_set = encode(tr, vocab, max_len), encode(val, vocab, max_len)
    print(f"lines available: {available[0]:,} comedy, {available[1]:,} tragedy; using "
          f"{len(samples):,} balanced ({len(tr):,} train, {len(val):,} validation)")
    print(f"vocabulary: {len(vocab):,} words seen twice or more in training; x (N, T) = "
          f"{train_set[0].shape}")
    for words, label in tr[:3]:
        print(f"  [{'comedy' if label == 0 else 'tragedy'}] {' '.join(words)}")

    results = {}
    for layernorm in (False, True):
        name = "with LayerNorm" if layernorm else "without LayerNorm"
        section(f"{name}: embedding + self-attention{' + LayerNorm' if layernorm else ''} + MLP "
                f"+ mean pooling + linear head")
        t0 = time.perf_counter()
        model, history = train(layernorm, train_set, val_set, len(vocab), max_len, steps,
                               args.seed, max(1, steps // 10))
        for step, tl, ta, vl, va in history:
            print(f"  step {step:4d}  train loss {tl:.3f} acc {ta:.1%}   val loss {vl:.3f} "
                  f"acc {va:.1%}")
        print(f"  {model.num_parameters():,} parameters, {time.perf_counter() - t0:.1f} s")
        results[name] = history

    section("accuracy reached on the held-out lines (chance is 50%)")
    for name, history in results.items():
        best = max(h[4] for h in history)
        print(f"  {name:18s} final {history[-1][4]:.1%}, best {best:.1%}")
        print(f"VAL_ACCURACY {name.replace(' ', '_')} {history[-1][4]:.4f}")

    plt = pyplot()
    if plt is None:
        skipped("14_text_classifier.png")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for name, history in results.items():
            h = np.array(history)
            for col, ax, what in ((1, axes[0], "loss"), (2, axes[1], "accuracy")):
                line, = ax.plot(h[:, 0], h[:, col], label=f"{name}, train")
                ax.plot(h[:, 0], h[:, col + 2], ls="--", color=line.get_color(),
                        label=f"{name}, validation")
                ax.set(xlabel="step", ylabel=what, title=what)
        axes[0].legend(fontsize=8)
        save(fig, args, "14_text_classifier.png")
    done(args)


if __name__ == "__main__":
    main()
