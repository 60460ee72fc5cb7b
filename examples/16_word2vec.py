"""word2vec on Shakespeare: skip-gram with negative sampling, its nearest neighbours and
analogies, beside the same questions asked of the token embedding a GPT learned.

The word vectors (npgpt.models.word2vec.SkipGram: two Embedding layers and the
NegativeSamplingLoss, each with its hand-written backward) are trained on the words of the
spoken lines. The comparison is a small GPT trained on the same word ids (same vocabulary,
same text) for a similar time; its ``wte`` rows are asked the same questions. A char-level
GPT, like the baby Shakespeare model, has no word rows to ask, so it is left out of this
comparison; a BPE GPT would split many of these words into pieces.

An analogy a : b :: c : ? is answered by the word nearest to b - a + c (cosine, the three
query words left out); "rank" is where the expected word comes among all words (1 = the answer).

    python examples/16_word2vec.py [--quick] [--steps N] [--gpt-steps N]
"""
import time

import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.data import get_batch, shakespeare_text
from npgpt.models import GPT, GPTConfig
from npgpt.glassbox.cache import neighbours
from npgpt.models.word2vec import (PairSampler, SkipGram, Vocabulary, analogy, rank_of,
                                   spoken_words)
from npgpt.optim import Adam, AdamW

QUERIES = ["king", "lord", "father", "night", "love", "france", "eyes", "sword", "thou", "good"]
ANALOGIES = [("man", "woman", "he", "she"), ("he", "she", "his", "her"),
             ("he", "him", "she", "her"), ("thou", "thy", "you", "your"),
             ("brother", "sister", "father", "mother"), ("father", "mother", "son", "daughter"),
             ("husband", "wife", "man", "woman"), ("king", "queen", "lord", "lady"),
             ("king", "queen", "man", "woman"), ("is", "was", "are", "were"),
             ("thou", "thee", "i", "me"), ("good", "better", "bad", "worse"),
             ("france", "french", "england", "english")]


def train_word2vec(ids, vocab, steps, batch, n_embd, seed):
    rng = np.random.default_rng(seed)
    model = SkipGram(len(vocab), n_embd, rng=rng)
    sampler = PairSampler(ids, vocab.counts, window=5, negatives=5, sample=1e-4, rng=rng)
    lr = 0.01
    opt = Adam(model.parameters(), lr=lr)
    per_epoch, losses = max(1, len(sampler.stream) // batch), []
    for step in range(steps):
        if step and step % per_epoch == 0:
            sampler.subsample()                 # a new thinning each pass over the text
        centre, words = sampler.batch(batch)
        model.zero_grad()
        losses.append(float(model(centre, words)))
        model.backward()
        opt.set_lr(lr * (1 - step / steps))     # linear decay, as in the reference code
        opt.step()
    return model.wte.weight.data, losses


def train_gpt(ids, vocab, steps, seed):
    config = GPTConfig(vocab_size=len(vocab), block_size=16, n_layer=2, n_head=4, n_embd=64)
    model = GPT(config, seed=seed)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng, losses = np.random.default_rng(seed), []
    for _ in range(steps):
        x, y = get_batch(ids, 32, config.block_size, rng)
        model.zero_grad()
        losses.append(float(model(x, y)[1]))
        model.backward()
        opt.step()
    return model.wte.weight.data, losses


def words_of(vocab, pairs):
    return ", ".join(f"{vocab.itos[i]} {cos:.2f}" for i, cos in pairs)


def main():
    args = parse_args(__doc__, steps=(int, 3000, "word2vec steps of 1,024 pairs"),
                      gpt_steps=(int, 250, "steps of the word-level GPT compared with"))
    steps, gpt_steps = (200, 20) if args.quick else (args.steps, args.gpt_steps)

    section("the corpus")
    words = spoken_words(shakespeare_text("all"))
    vocab = Vocabulary.build(words, min_count=5)
    ids = vocab.encode(words)
    print(f"{len(words):,} spoken words, {len(vocab):,} in the vocabulary (seen 5 times or more; "
          f"the rest, {vocab.counts[0] / len(words):.1%} of the text, are <unk>)")

    section("training")
    started = time.perf_counter()
    E_w2v, losses = train_word2vec(ids, vocab, steps, 1024, 64, args.seed)
    print(f"word2vec: {steps} steps of 1,024 (centre, context) pairs with 5 negatives each, "
          f"{time.perf_counter() - started:.1f} s; loss {np.mean(losses[:20]):.3f} -> "
          f"{np.mean(losses[-20:]):.3f} (log 2 * 6 = {6 * np.log(2):.3f} at the start)")
    started = time.perf_counter()
    E_gpt, gpt_losses = train_gpt(ids, vocab, gpt_steps, args.seed)
    print(f"GPT on the same word ids (2 layers, n_embd 64, block 16): {gpt_steps} steps of 32 "
          f"windows, {time.perf_counter() - started:.1f} s; loss {np.mean(gpt_losses[:5]):.3f} "
          f"-> {np.mean(gpt_losses[-5:]):.3f}")

    section("nearest neighbours (cosine)")
    for word in QUERIES:
        i = vocab.id(word)
        print(f"{word:>7}  word2vec: {words_of(vocab, neighbours(E_w2v, i, 5))}")
        print(f"{'':>7}  GPT wte:  {words_of(vocab, neighbours(E_gpt, i, 5))}")

    section("analogies a : b :: c : ?")
    held = {"word2vec": [], "GPT wte": []}
    near = {"word2vec": 0, "GPT wte": 0}
    print(f"{'a : b :: c : d':<34} {'word2vec answer (rank of d)':<30} GPT wte answer (rank of d)")
    for a, b, c, d in ANALOGIES:
        q = [vocab.id(w) for w in (a, b, c, d)]
        cells = []
        for name, E in (("word2vec", E_w2v), ("GPT wte", E_gpt)):
            best = vocab.itos[analogy(E, *q[:3], k=1)[0][0]]
            rank = rank_of(E, *q)
            if rank == 1:
                held[name].append(f"{a}:{b}::{c}:{d}")
            near[name] += rank <= 10
            cells.append(f"{best} ({rank})")
        print(f"{f'{a} : {b} :: {c} : {d}':<34} {cells[0]:<30} {cells[1]}")
    for name, found in held.items():
        print(f"{name}: {len(found)} of {len(ANALOGIES)} analogies hold (rank 1): "
              f"{', '.join(found) or 'none'}; the expected word is in the top 10 for "
              f"{near[name]} of {len(ANALOGIES)}")

    plt = pyplot()
    if plt is None:
        skipped("16_word2vec.png")
    else:
        picked = [vocab.id(w) for w in sorted({w for row in ANALOGIES for w in row})]
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for ax, (name, E) in zip(axes, (("word2vec", E_w2v), ("GPT wte", E_gpt))):
            X = E[picked] / np.linalg.norm(E[picked], axis=1, keepdims=True)
            X = X - X.mean(0)
            xy = X @ np.linalg.svd(X, full_matrices=False)[2][:2].T     # PCA, 2 components
            ax.scatter(xy[:, 0], xy[:, 1], s=8)
            for (x, y), i in zip(xy, picked):
                ax.annotate(vocab.itos[i], (x, y), fontsize=8)
            ax.set_title(f"{name}: the analogy words, PCA")
        save(fig, args, "16_word2vec.png")
    done(args)


if __name__ == "__main__":
    main()
