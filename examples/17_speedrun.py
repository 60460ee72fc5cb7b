"""Time to quality: the old and the new training recipe, each given the same minute.

The old recipe is the baby GPT as npgpt used to train it (4 layers, learned positions,
LayerNorm, GELU, AdamW at lr 1e-3 with a cosine decay). The new one is the ``speedrun-1m``
preset: 3 layers, RoPE, RMSNorm with q/k norms, no biases, ReLU², zero-initialised output
projections, soft-capped logits, lr 3e-3 held and then cooled down (warmup-stable-decay with
a 1 - sqrt cooldown). Both train under a time budget (``TrainConfig.time_budget``): the
learning rate follows the elapsed share of the budget, and the run stops when it is spent.
The picture puts the two validation curves on one axis of training seconds.

    python examples/17_speedrun.py [--quick] [--budget 60] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, pyplot, save, section, skipped

from npgpt.data import shakespeare_text
from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers import CharTokenizer
from npgpt.train_config import TRAIN_PRESETS
from npgpt.trainer import TrainConfig, Trainer

OLD = dict(preset="baby", train=dict(lr=1e-3, min_lr=1e-4, warmup_steps=100))
NEW = dict(preset="speedrun-1m", train=TRAIN_PRESETS["speedrun-1m"])


def run(recipe, budget, train_ids, val_ids, vocab, args):
    model_overrides = dict(n_layer=2, n_embd=64) if args.quick else {}
    config = GPTConfig.preset(recipe["preset"], vocab_size=vocab, **model_overrides)
    model = GPT(config, seed=args.seed)
    train = {**recipe["train"], "time_budget": f"{budget}s"}
    tc = TrainConfig(**train, batch_size=12, block_size=config.block_size,
                     eval_interval=10 if args.quick else 100, eval_steps=2 if args.quick else 10,
                     log_interval=10, seed=args.seed, save_checkpoints=False, progress=False,
                     plot=False, out_dir=str(args.out / "17_speedrun" / recipe["preset"]))
    trainer = Trainer(model, train_ids, val_ids, tc)
    curve = []                       # (training seconds, validation loss) at each evaluation
    evaluate = trainer.evaluate

    def timed_evaluate():
        losses = evaluate()
        curve.append((trainer.clock.elapsed, losses["val"]))
        return losses
    trainer.evaluate = timed_evaluate
    last = trainer.train()
    print(f"{recipe['preset']:>12}: {model.num_parameters():,} parameters, {trainer.step} steps "
          f"in {trainer.clock.elapsed:.1f} s of training, final val loss {last['val_loss']:.4f}")
    return curve, last["val_loss"]


def main():
    args = parse_args(__doc__, budget=(float, 60.0, "seconds of training per recipe"))
    budget = 3.0 if args.quick else args.budget
    train_text, val_text = shakespeare_text("train"), shakespeare_text("val")
    tok = CharTokenizer.train(train_text + val_text)
    if args.quick:
        train_text, val_text = train_text[:200_000], val_text[:50_000]
    train_ids = np.array(tok.encode(train_text), dtype=np.uint16)
    val_ids = np.array(tok.encode(val_text), dtype=np.uint16)

    section(f"two recipes, {budget:g} s of training each")
    curves = {}
    for name, recipe in (("old (baby, AdamW, cosine)", OLD), ("new (speedrun-1m)", NEW)):
        curves[name] = run(recipe, budget, train_ids, val_ids, tok.vocab_size, args)
    (_, old), (_, new) = curves.values()
    print(f"validation loss after {budget:g} s: old {old:.4f}, new {new:.4f} "
          f"({'better' if new < old else 'not better'} by {abs(old - new):.4f} nats per character)")

    plt = pyplot()
    if plt is None:
        skipped("17_speedrun.png")
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, (curve, _) in curves.items():
            ax.plot(*zip(*curve), "o-", label=name)
        ax.set(xlabel="training seconds (evaluation not counted)",
               ylabel="validation loss (nats per character)",
               title=f"the same {budget:g} s, two recipes")
        ax.legend()
        save(fig, args, "17_speedrun.png")
    done(args)


if __name__ == "__main__":
    main()
