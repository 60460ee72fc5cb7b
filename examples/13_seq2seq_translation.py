"""The encoder-decoder Transformer on a toy translation task (seed 001 "Encoder-Decoder 架构").

Source: a number spelled out in English words ("two thousand forty-one"); target: its digits
("2041"). The script makes every pair for 0..9999 itself, holds out a random set that training
never sees, trains npgpt's Transformer (post-LN, as in the paper, by default) and reports the
exact-match accuracy on the held-out pairs, greedy and with beam search. It plots the loss
and the cross-attention of one example: which source words each output digit looks at.

    python examples/13_seq2seq_translation.py [--quick] [--steps N] [--prenorm] [--out DIR]
"""
import time

import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.models import Seq2SeqConfig, Transformer
from npgpt.optim import AdamW, clip_grad_norm, cosine_schedule

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SPECIALS = ["<pad>", "<bos>", "<eos>"]
PAD, BOS, EOS = 0, 1, 2


def spell(n: int) -> list[str]:
    """1234 -> ['one', 'thousand', 'two', 'hundred', 'thirty', '-', 'four']"""
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + (["-", ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [ONES[n // 100], "hundred"] + (spell(n % 100) if n % 100 else [])
    return spell(n // 1000) + ["thousand"] + (spell(n % 1000) if n % 1000 else [])


def make_data(rng, n_test: int):
    src_vocab = SPECIALS + ONES + TENS[2:] + ["hundred", "thousand", "-"]
    tgt_vocab = SPECIALS + list("0123456789")
    s2i, t2i = {w: i for i, w in enumerate(src_vocab)}, {c: i for i, c in enumerate(tgt_vocab)}
    numbers = rng.permutation(10_000)
    src = [[s2i[w] for w in spell(int(n))] for n in numbers]
    tgt = [[t2i[c] for c in str(n)] + [EOS] for n in numbers]
    S, T = max(map(len, src)), max(map(len, tgt))
    src_arr = np.full((len(src), S), PAD)
    tgt_arr = np.full((len(tgt), T), PAD)
    for i, (s, t) in enumerate(zip(src, tgt)):
        src_arr[i, :len(s)] = s
        tgt_arr[i, :len(t)] = t
    test, train = slice(0, n_test), slice(n_test, None)
    return (src_arr[train], tgt_arr[train]), (src_arr[test], tgt_arr[test]), src_vocab, tgt_vocab


def shift_right(tgt):
    """decoder input: bos, then the target without its last position (teacher forcing)."""
    return np.concatenate([np.full((len(tgt), 1), BOS), tgt[:, :-1]], axis=1)


def exact_match(pred, tgt):
    """Rows whose tokens up to and including eos all equal the target's."""
    T = tgt.shape[1]
    pred = np.pad(pred, ((0, 0), (0, max(0, T - pred.shape[1]))), constant_values=PAD)[:, :T]
    real = tgt != PAD
    return float(((pred == tgt) | ~real).all(axis=1).mean())


def main():
    args = parse_args(__doc__, steps=(int, 500, "training steps"),
                      prenorm=(int, 0, "1: pre-LN instead of the paper's post-LN"))
    rng = np.random.default_rng(args.seed)
    steps = 60 if args.quick else args.steps
    n_test = 200 if args.quick else 500
    (src, tgt), (src_test, tgt_test), src_vocab, tgt_vocab = make_data(rng, n_test)

    section("the task")
    for i in range(3):
        words = " ".join(src_vocab[j] for j in src[i] if j != PAD)
        digits = "".join(tgt_vocab[j] for j in tgt[i] if j not in (PAD, EOS))
        print(f"  {words:50s} -> {digits}")
    print(f"{len(src):,} training pairs, {len(src_test)} held out; source (N, S) = {src.shape}, "
          f"target (N, T) = {tgt.shape}; vocabularies {len(src_vocab)} and {len(tgt_vocab)}")

    config = Seq2SeqConfig(src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab),
                           n_encoder_layer=2, n_decoder_layer=2, n_head=4, n_embd=64,
                           mlp_hidden=128, prenorm=bool(args.prenorm), pad_id=PAD, bos_id=BOS,
                           eos_id=EOS)
    model = Transformer(config, seed=args.seed)
    print(f"model: {model.num_parameters():,} parameters, "
          f"{'pre-LN' if config.prenorm else 'post-LN (the paper)'}")

    section(f"training, {steps} steps of 64 pairs")
    opt = AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.0)
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        opt.set_lr(cosine_schedule(step, 2e-3, 1e-4, min(100, steps // 10), steps))
        batch = rng.integers(0, len(src), size=64)
        model.zero_grad()
        _, loss = model.forward(src[batch], shift_right(tgt[batch]), tgt[batch])
        model.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
        if step % max(1, steps // 8) == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {float(loss):.4f}")
    print(f"trained in {time.perf_counter() - t0:.1f} s")

    section("held-out exact match")
    greedy = model.greedy_decode(src_test, max_len=tgt.shape[1])
    acc = exact_match(greedy, tgt_test)
    print(f"greedy: {acc:.1%} of {len(src_test)} held-out numbers translated exactly")
    n_beam = 20 if args.quick else 100
    beams = model.beam_search(src_test[:n_beam], max_len=tgt.shape[1], beam_size=3)
    beam_arr = np.full((n_beam, tgt.shape[1]), PAD)
    for i, b in enumerate(beams):
        beam_arr[i, :len(b)] = b[:tgt.shape[1]]
    print(f"beam search (3 beams) on the first {n_beam}: {exact_match(beam_arr, tgt_test[:n_beam]):.1%}")
    for i in range(4):
        words = " ".join(src_vocab[j] for j in src_test[i] if j != PAD)
        out = "".join(tgt_vocab[j] for j in greedy[i] if j not in (PAD, EOS))
        print(f"  {words:50s} -> {out}")
    print(f"EXACT_MATCH {acc:.4f}")

    # the cross-attention of the last decoder layer, for one held-out example
    i = next(k for k in range(len(src_test)) if (src_test[k] != PAD).sum() >= 5)
    words = [src_vocab[j] for j in src_test[i] if j != PAD]
    out = [tgt_vocab[j] for j in greedy[i] if j != PAD]
    layer = model.decoder[-1].cross_attn
    layer.attention.keep_weights = True
    model.eval()
    model.forward(src_test[i:i + 1], shift_right(greedy[i:i + 1]))
    weights = layer.weights[0].mean(0)[:len(out), :len(words)]      # heads averaged
    layer.attention.keep_weights = False

    plt = pyplot()
    if plt is None:
        skipped("13_seq2seq.png")
    else:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
        a1.plot(losses)
        a1.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="training loss")
        a2.imshow(weights, cmap="viridis")
        a2.set_xticks(range(len(words)), words, rotation=45)
        a2.set_yticks(range(len(out)), out)
        a2.set(title="cross-attention (last decoder layer, heads averaged)",
               xlabel="source word", ylabel="output token")
        save(fig, args, "13_seq2seq.png")
    done(args)


if __name__ == "__main__":
    main()
