"""Inside a training run: the baby GPT trained with statistics on, what they show, and the
report page.

Every 10 steps the trainer writes stats.jsonl (weights, gradients and updates per parameter;
activations, saturation and attention entropy per layer), and at each evaluation the probe
prompt's attention patterns and logit lens. This script reads those numbers back and says
what a learner should look at, then writes report.html (open it in any browser, offline):

* the update : data ratio log10(std(lr-scaled update) / std(w)), about -3 for a weight matrix
  that learns at a healthy pace;
* attention entropy per layer: it starts near that of a uniform row (the heads look
  everywhere) and falls as heads specialise;
* the logit lens: the residual stream after each block read through the final norm and head;
  the final prediction becomes more probable, and the KL to the final distribution smaller,
  block by block.

    python examples/15_inside_training.py [--quick] [--steps N] [--out DIR]
"""
import numpy as np
from _common import done, parse_args, section

from npgpt.data import shakespeare_text
from npgpt.glassbox.report import read_jsonl, write_report
from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers import CharTokenizer
from npgpt.trainer import TrainConfig, Trainer


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def update_ratios(first, last):
    section("update : data ratios (log10), weight matrices")
    matrices = [n for n, p in last["params"].items() if len(p["shape"]) == 2]
    for record in (first, last):
        ratios = [record["params"][n]["update_data"] for n in matrices]
        print(f"step {record['step']:4d}: median {np.median(ratios):+.2f}, "
              f"from {min(ratios):+.2f} to {max(ratios):+.2f} over {len(ratios)} matrices")
    ratios = {n: last["params"][n]["update_data"] for n in matrices}
    near = [n for n, r in ratios.items() if -3.5 <= r <= -2.5]
    high, low = max(ratios, key=ratios.get), min(ratios, key=ratios.get)
    median = np.median(list(ratios.values()))
    verdict = ("near the rule of thumb of -3 (each step moves a weight by about a thousandth)"
               if -3.5 <= median <= -2.5 else
               "above -3: steps are large for these weights (a lower lr would be gentler)"
               if median > -2.5 else "below -3: these weights learn slowly (the lr could be larger)")
    print(f"-> at the end the median is {median:+.2f}, {verdict}; {len(near)} of {len(ratios)} "
          f"matrices lie within [-3.5, -2.5]. Fastest: {high} ({ratios[high]:+.2f}); "
          f"slowest: {low} ({ratios[low]:+.2f}).")


def attention_entropy(first, last, block_size):
    section("attention entropy per layer (nats, mean over heads and queries)")
    uniform = np.mean(np.log(np.arange(1, block_size + 1)))    # a row spread over all t keys
    falls = 0
    for layer in sorted(last["layers"]):
        e0, e1 = mean(first["layers"][layer]["attn_entropy"]), mean(last["layers"][layer]["attn_entropy"])
        heads = last["layers"][layer]["attn_entropy"]
        falls += e1 < e0 - 0.05             # by more than a twentieth of a nat
        print(f"{layer}: step {first['step']} {e0:.2f} -> step {last['step']} {e1:.2f}; heads now "
              + ", ".join(f"{h:.2f}" for h in heads))
    print(f"-> a uniform row over the keys has {uniform:.2f} on average; entropy fell (by more than "
          f"0.05) in {falls} of {len(last['layers'])} layers: "
          + ("heads stop looking everywhere and pick out a few positions." if falls else
             "not yet: the heads still look almost everywhere (train longer)."))


def saturation(last):
    sat = {layer: s["saturated"] for layer, s in last["layers"].items()}
    dead = {layer: s["dead"] for layer, s in last["layers"].items()}
    print(f"\nsaturated MLP inputs at step {last['step']}: "
          + ", ".join(f"{k} {100 * v:.1f}%" for k, v in sat.items())
          + "; dead units: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in dead.items()))


def logit_lens(probe):
    section(f"logit lens of the probe prompt at step {probe['step']}")
    lens = probe["lens"]
    T = len(probe["tokens"])
    rows = []
    print(f"{'after':>7}  {'p(final prediction)':>19}  {'KL(final || row)':>16}  {'rank of true next':>17}")
    for r, label in enumerate(lens["labels"]):
        p = mean(lens["pred_prob"][r])
        kl = mean(lens["kl"][r])
        ranks = [lens["true_rank"][r][t] for t in range(T) if lens["true"][t] >= 0]
        rows.append((p, kl))
        print(f"{label:>7}  {p:19.3f}  {kl:16.3f}  {np.median(ranks):17.1f}")
    rising = sum(b[0] > a[0] for a, b in zip(rows, rows[1:]))
    falling = sum(b[1] < a[1] for a, b in zip(rows, rows[1:]))
    print(f"-> from one row to the next, p(final prediction) rose {rising} of {len(rows) - 1} times "
          f"and the KL fell {falling} of {len(rows) - 1} times: "
          + ("the prediction sharpens layer by layer." if rising == falling == len(rows) - 1 else
             "mostly sharper with depth, not at every block." if rising + falling > len(rows) - 1
             else "the later blocks do not sharpen it yet."))
    top = [lens["top_tokens"][r][T - 1][0] if "top_tokens" in lens else lens["top_ids"][r][T - 1][0]
           for r in range(len(lens["labels"]))]
    print(f"top guess after {probe['tokens'][-1]!r}, row by row: " + " -> ".join(map(repr, top)))
    first = lens["top_tokens"][0] if "top_tokens" in lens else None
    if first is not None:
        same = sum(first[t][0] == probe["tokens"][t] for t in range(T))
        print(f"the embedding row's top guess is the input token itself at {same} of {T} positions"
              + (": with tied embeddings a token's own row scores highest against itself, so the "
                 "blocks, not the embedding, make the prediction." if same > T // 2 else "."))


def main():
    args = parse_args(__doc__, steps=(int, 300, "training steps"))
    text = shakespeare_text("train")
    val = shakespeare_text("val")
    tok = CharTokenizer.train(text + val)
    if args.quick:
        text, val = text[:200_000], val[:50_000]
    train_ids = np.array(tok.encode(text), dtype=np.uint16)
    val_ids = np.array(tok.encode(val), dtype=np.uint16)
    overrides = dict(n_layer=2, n_embd=64, block_size=32) if args.quick else {}
    config = GPTConfig.preset("baby", vocab_size=tok.vocab_size, **overrides)
    steps = 40 if args.quick else args.steps
    out = args.out / "15_inside_training"
    tc = TrainConfig(batch_size=8 if args.quick else 12, block_size=config.block_size,
                     max_steps=steps, lr=3e-3, min_lr=3e-4, warmup_steps=max(1, steps // 10),
                     eval_interval=max(1, steps // 4), eval_steps=4 if args.quick else 10,
                     log_interval=max(1, steps // 30), seed=args.seed, out_dir=str(out),
                     progress=False, plot=False, stats_interval=5 if args.quick else 10,
                     probe_prompt="ROMEO:\nBut, soft! what light")
    section("training")
    print(f"baby GPT L={config.n_layer} H={config.n_head} C={config.n_embd} T={config.block_size}, "
          f"{steps} steps, statistics every {tc.stats_interval} steps -> {out}/stats.jsonl")
    Trainer(GPT(config, seed=args.seed), train_ids, val_ids, tc, tokenizer=tok).train()

    records, _ = read_jsonl(out / "stats.jsonl")
    steps_ = [r for r in records if r.get("kind") == "step"]
    probes = [r for r in records if r.get("kind") == "probe"]
    first, last = steps_[0], steps_[-1]
    update_ratios(first, last)
    attention_entropy(first, last, config.block_size)
    saturation(last)
    logit_lens(probes[-1])

    section("the report")
    page = write_report(out)
    print(f"report written: {page} ({page.stat().st_size / 1e6:.2f} MB; open it in a browser, "
          f"offline)")
    done(args)


if __name__ == "__main__":
    main()
