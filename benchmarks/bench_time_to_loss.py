"""Time to quality: the validation loss a training recipe reaches within a time budget.

Each (setting, budget, seed) is one ``npgpt train --time-budget`` run on the embedded
Shakespeare corpus, alone in its own process; the table gives, per setting and budget, the
mean and spread (sample standard deviation) of the final validation loss (nats per
character, the four held-out plays) over the seeds, with the steps, the tokens seen, the time
per step and the load average beside it.

The settings form an ablation: today's recipe first, then each change added to the one
before (``SETTINGS``). ``--clock cpu`` counts the budget in the process's CPU time (with
``--threads 1`` the seconds of one core), which stays fair while other work shares the
machine; ``--clock wall`` is what ``npgpt train --time-budget`` does by default.

    python benchmarks/bench_time_to_loss.py --budgets 60 --seeds 3
    python benchmarks/bench_time_to_loss.py --budgets 60,300 --settings today,speedrun-1m
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the ablation, each setting adding to the one before it (flags of npgpt train)
STEPS = [
    ("today", ["--preset", "baby"]),            # the baby model, AdamW, cosine (lr 1e-3)
    ("+lr 3e-3 3 layers", ["--lr", "3e-3", "--min-lr", "3e-4", "--n-layer", "3"]),
    ("+wsd sqrt cooldown", ["--schedule", "wsd", "--cooldown", "sqrt", "--cooldown-frac", "0.4",
                            "--min-lr", "0"]),
    ("+rope rmsnorm no-bias", ["--pos", "rope", "--norm", "rmsnorm", "--no-bias"]),
    ("+relu2", ["--mlp", "relu2"]),
    ("+zero-init proj", ["--zero-init-proj"]),
    ("+qk-norm", ["--qk-norm"]),
    ("+softcap 15", ["--logit-softcap", "15"]),
    ("+muon", ["--optimizer", "muon", "--muon-lr", "0.02"]),
]


def settings() -> dict[str, list[str]]:
    out, flags = {}, []
    for name, more in STEPS:
        flags = flags + more
        out[name] = list(flags)
    return out


SETTINGS = settings()
# single settings (not cumulative) and the presets
SETTINGS.update({
    "speedrun-1m": ["--preset", "speedrun-1m"],
    "speedrun-5m": ["--preset", "speedrun-5m"],
    "default": [],                             # npgpt train's default (speedrun-1m)
})


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def one_run(flags: list[str], budget: str, seed: int, clock: str, threads: int,
            extra: list[str]) -> dict:
    """One training run in its own process; its final evaluation and speed."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "npgpt", "train", *flags, *extra, "--seed", str(seed),
                "--out", out, "--no-progress", "--no-plot", "--no-save-checkpoints",
                "--eval-interval", "1000000", "--log-interval", "50", "--threads", str(threads)]
        if budget != "steps":
            argv += ["--time-budget", budget, "--budget-clock", clock]
        load_before = loadavg()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        records = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "val_loss" in r][-1]
    logs = [r for r in records if "loss" in r]
    batch, block = _flag(flags + extra, "--batch-size", 12), _flag(flags + extra, "--block-size", 64)
    steps = final["step"]
    return {"val_loss": final["val_loss"], "train_loss": final["train_loss"], "steps": steps,
            "tokens": steps * batch * block, "wall_s": wall,
            "tok_s": statistics.median(r["tokens_per_s"] for r in logs) if logs else None,
            "load": round((load_before + loadavg()) / 2, 2)}


def _flag(flags, name, default):
    return int(flags[flags.index(name) + 1]) if name in flags else default


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", default="60,300", help="comma-separated durations, or steps "
                    "(run to max_steps)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1337)
    ap.add_argument("--settings", default=",".join(name for name, _ in STEPS),
                    help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra", default="", help="flags added to every run (one string)")
    ap.add_argument("--json", default=None, help="append one JSON line per run to this file")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (each its own "
                    "process; fair with --clock cpu only: a wall budget shares the cores)")
    args = ap.parse_args(argv)
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    extra = args.extra.split()
    print(f"clock {args.clock}, {args.threads} thread(s), {args.seeds} seeds; the runs take "
          "turns: each seed round goes through every setting", flush=True)
    for name in names:       # numba compiles on a first call: once here, not in a budget
        one_run(SETTINGS[name] + ["--eval-steps", "1"], "steps", 0, args.clock, args.threads,
                extra + ["--max-steps", "1", "--warmup-steps", "0"])
    for budget in args.budgets.split(","):
        results: dict[str, list[dict]] = {n: [] for n in names}
        # alternating rounds (every setting of a seed before the next seed): a change of load
        # hits every setting alike
        tasks = [(seed, name) for seed in range(args.first_seed, args.first_seed + args.seeds)
                 for name in names]

        def run(task):
            seed, name = task
            r = one_run(SETTINGS[name], budget, seed, args.clock, args.threads, extra)
            print(f"  {budget} {name!r} seed {seed}: val {r['val_loss']:.4f} "
                  f"(train {r['train_loss']:.4f}), {r['steps']} steps, load {r['load']}",
                  flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps({"budget": budget, "clock": args.clock,
                                        "threads": args.threads, "setting": name,
                                        "flags": SETTINGS[name] + extra, "seed": seed,
                                        **r}) + "\n")
            return task, r
        with ThreadPoolExecutor(args.parallel) as pool:
            for (seed, name), r in pool.map(run, tasks):
                results[name].append(r)
        print(f"\nbudget {budget} ({args.clock} clock, {args.threads} thread(s))")
        print(f"{'setting':<22} {'val loss':>16} {'steps':>7} {'tokens':>10} {'ms/step':>8} "
              f"{'load':>5}")
        for name in names:
            rs = results[name]
            losses = [r["val_loss"] for r in rs]
            spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
            steps = statistics.mean(r["steps"] for r in rs)
            tokens = statistics.mean(r["tokens"] for r in rs)
            seconds = _seconds(budget)
            ms = 1000 * seconds / steps if seconds and steps else float("nan")
            print(f"{name:<22} {statistics.mean(losses):>9.4f} ± {spread:.4f} {steps:>7.0f} "
                  f"{tokens:>10,.0f} {ms:>8.1f} {statistics.mean(r['load'] for r in rs):>5.1f}")


def _seconds(budget: str):
    if budget == "steps":
        return None
    from npgpt.time_budget import parse_duration
    return parse_duration(budget)


if __name__ == "__main__":
    main()
