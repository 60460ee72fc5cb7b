"""Training the baby GPT on Shakespeare, plotting its loss curve, then sampling (seed 000's
pipeline end to end: tokens -> embedding + positions -> blocks -> logits -> loss -> Adam).

A character tokenizer, the "baby" preset (4 layers, 4 heads, C = 128, block 64), npgpt's
Trainer (AdamW, warmup + cosine, clipping, periodic evaluation on held-out plays), then text
sampled at two temperatures.

    python examples/12_train_shakespeare.py [--quick] [--steps N] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.data import shakespeare_text
from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers import CharTokenizer
from npgpt.trainer import TrainConfig, Trainer


def main():
    args = parse_args(__doc__, steps=(int, 300, "training steps"))
    train_text, val_text = shakespeare_text("train"), shakespeare_text("val")
    tok = CharTokenizer.train(train_text + val_text)
    if args.quick:
        train_text, val_text = train_text[:200_000], val_text[:50_000]
    train_ids = np.array(tok.encode(train_text), dtype=np.uint16)
    val_ids = np.array(tok.encode(val_text), dtype=np.uint16)

    section("data and model")
    print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, "
          f"vocabulary {tok.vocab_size}")
    overrides = dict(n_layer=2, n_embd=64, block_size=32) if args.quick else {}
    config = GPTConfig.preset("baby", vocab_size=tok.vocab_size, **overrides)
    model = GPT(config, seed=args.seed)
    print(f"baby GPT: L={config.n_layer} H={config.n_head} C={config.n_embd} "
          f"T={config.block_size}: {model.num_parameters():,} parameters")
    print(f"loss at initialisation should be about ln(V) = {np.log(tok.vocab_size):.3f}")

    section("training")
    steps = 30 if args.quick else args.steps
    tc = TrainConfig(batch_size=8 if args.quick else 16, block_size=config.block_size,
                     max_steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=max(1, steps // 10),
                     eval_interval=max(1, steps // 5), eval_steps=4 if args.quick else 10,
                     log_interval=max(1, steps // 30), seed=args.seed,
                     out_dir=str(args.out / "12_shakespeare"), save_checkpoints=False,
                     progress=False, plot=False)
    trainer = Trainer(model, train_ids, val_ids, tc, tokenizer=tok)
    trainer.train()
    evals = [r for r in trainer.history if "val_loss" in r]
    for r in evals:
        print(f"  step {r['step']:5d}  train {r['train_loss']:.4f}  val {r['val_loss']:.4f}")
    print(f"final: train loss {evals[-1]['train_loss']:.4f}, val loss {evals[-1]['val_loss']:.4f} "
          f"(started near {np.log(tok.vocab_size):.3f})")

    section("sampling")
    prompt = np.array([tok.encode("ROMEO:\n")])
    for temperature in (0.8, 1.2):
        out = model.generate(prompt, 120 if args.quick else 300, temperature=temperature,
                             top_k=None, seed=args.seed)
        print(f"--- temperature {temperature}:\n{tok.decode(out[0].tolist())}\n")

    plt = pyplot()
    if plt is None:
        skipped("12_shakespeare_loss.png")
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        steps_logged = [(r["step"], r["loss"]) for r in trainer.history if "loss" in r]
        ax.plot(*zip(*steps_logged), alpha=0.5, label="training batch")
        ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-",
                label="train (eval)")
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-",
                label="validation (held-out plays)")
        ax.axhline(np.log(tok.vocab_size), color="gray", ls="--", label="ln(V)")
        ax.set(xlabel="step", ylabel="cross-entropy (nats per character)",
               title="baby GPT on Shakespeare")
        ax.legend()
        save(fig, args, "12_shakespeare_loss.png")
    done(args)


if __name__ == "__main__":
    main()
