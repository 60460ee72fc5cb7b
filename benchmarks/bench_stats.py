"""What the glass box costs a training run: the default run's step time with training
statistics off, with ``--stats-interval 10``, and (``--before DIR``) on a source tree without
the statistics hook, e.g. an export of the commit before it.

    python benchmarks/bench_stats.py [--steps 60] [--rounds 5] [--interval 10] [--before DIR]

Each variant runs alone in a fresh process (the baby char-level Shakespeare model, the
TrainConfig defaults: batch 12, block 64), the variants taking turns for ``--rounds`` rounds;
a variant's figure is the mean time per step over ``--steps`` steps after 5 warm-up steps (so
the measured steps of a statistics run include its share of measuring steps), and the table
gives each variant's median over the rounds, with the machine's load average. On a busy
machine the runs' means drift with the load, so the statistics' cost is also given from
within each statistics run: its measuring steps against its other steps, a minute apart at
most.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(steps: int, interval: int) -> dict:
    import numpy as np
    from npgpt import GPT, GPTConfig
    from npgpt import tokenizers
    from npgpt.data import shakespeare_text
    from npgpt.trainer import TrainConfig, Trainer
    train, val = shakespeare_text("train"), shakespeare_text("val")
    tok = tokenizers.get("char", text=train + val)
    train_ids = np.asarray(tok.encode(train[:400_000]), dtype=np.int64)
    val_ids = np.asarray(tok.encode(val[:100_000]), dtype=np.int64)
    model = GPT(GPTConfig.preset("baby", vocab_size=tok.vocab_size))
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_stats_{os.getpid()}"
    config = TrainConfig(out_dir=str(out), stats_interval=interval, progress=False, plot=False,
                         save_checkpoints=False)
    trainer = Trainer(model, train_ids, val_ids, config, tokenizer=tok)
    model.train()
    if interval:
        from npgpt.glassbox.stats import training_stats
        out.mkdir(parents=True, exist_ok=True)
        trainer.stats = training_stats(trainer)
    for _ in range(5):
        trainer.train_step()
    each, measured = [], []
    t0 = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        measured.append(bool(interval) and (trainer.step + 1) % interval == 0)
        trainer.train_step()
        each.append(time.perf_counter() - t)
    ms = (time.perf_counter() - t0) / steps * 1e3
    lines = (out / "stats.jsonl").read_text().count("\n") if interval else 0
    plain = [t for t, m in zip(each, measured) if not m]
    stats = [t for t, m in zip(each, measured) if m]
    return {"ms_per_step": ms, "stats_lines": lines,
            "plain_ms": statistics.median(plain) * 1e3,
            "stats_step_ms": statistics.median(stats) * 1e3 if stats else None}


def run_variant(path: Path, steps: int, interval: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path)}
    out = subprocess.run([sys.executable, __file__, "--child", str(steps), str(interval)],
                         env=env, cwd=path, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--before", default=None, help="a source tree without the statistics hook")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    variants = [("stats off", ROOT, 0), (f"--stats-interval {args.interval}", ROOT, args.interval)]
    if args.before:
        variants.insert(0, ("without the hook", Path(args.before).resolve(), 0))
    times = {name: [] for name, _, _ in variants}
    loads, shares = [], []
    for r in range(args.rounds):
        for name, path, interval in variants:
            result = run_variant(path, args.steps, interval)
            times[name].append(result["ms_per_step"])
            loads.append(os.getloadavg()[0])
            if result["stats_step_ms"] is not None:     # the same process's plain steps
                extra = result["stats_step_ms"] - result["plain_ms"]
                shares.append(100 * extra / interval / result["plain_ms"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.1f} ms" for n, t in times.items()),
              flush=True)
    base = statistics.median(times["stats off"])
    print(f"\nmedian ms/step over {args.rounds} rounds of {args.steps} steps "
          f"(load average {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} cores)")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"  {name:<22} {m:8.2f} ms   {100 * (m / base - 1):+6.1f}% vs stats off")
    print(f"within each statistics run, (median measuring step - median other step) / interval,"
          f" as a share of the median other step: median {statistics.median(shares):.1f}% "
          f"(rounds: {', '.join(f'{x:.1f}' for x in shares)})")


if __name__ == "__main__":
    main()
