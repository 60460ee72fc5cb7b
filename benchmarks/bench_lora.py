"""LoRA fine-tuning against full fine-tuning (and LoRA on an int8 base): step time and peak
memory, each in its own process.

    python benchmarks/bench_lora.py [--config gpt2] [--rank 8] [--targets c_attn,c_proj]
                                    [--steps 6] [--warmup 2] [--rounds 2] [--threads 2]
                                    [--modes full,lora] [--json out.json]

Modes: ``full`` (every weight trains), ``lora`` (adapters on the float base), ``qlora``
(adapters on the int8 base: the model built without writing its float weights, quantized
empty, and its int8 weights and scales filled at random, so the float weights are never
resident, as when the base is read from an ``npgpt quantize`` directory).

Each side runs in a fresh subprocess, the two taking turns for ``--rounds`` rounds: build a
GPT of the config's shape (random weights: the step costs the same), for ``lora`` put rank
``--rank`` adapters (alpha 2 r) on ``--targets`` and freeze the rest, then train as npgpt's
Trainer does (AdamW over the trainable parameters, global-norm clipping, the batch split
across threads when each shard keeps >= n_embd rows) on random batches of the config's
shape. The child reports the median step time after ``--warmup`` steps and
``ru_maxrss``, the peak resident set of the whole process (weights, gradients, AdamW moments,
activations, libraries).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import emit_json, load_note, machine, print_table


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def child(mode: str, config: str, rank: int, targets: str, steps: int, warmup: int,
          threads: int) -> dict:
    import numpy as np
    from bench_train_step import CONFIGS, npgpt_config, set_threads

    import npgpt
    from npgpt.adapters import LoraConfig, apply_lora
    from npgpt.optim import AdamW, clip_grad_norm
    from npgpt.runtime.memory import retain_freed_memory
    from npgpt.runtime.parallel import DataParallel, shards_for
    from npgpt.trainer import param_groups

    cfg = CONFIGS[config]
    set_threads(threads)
    retain_freed_memory()
    if mode == "qlora":
        from npgpt.layers.linear import no_init
        from npgpt.layers.quantized import QuantizedEmbedding, QuantizedLinear, quantize_model
        with no_init():
            model = npgpt.GPT(npgpt_config(cfg), seed=0)
        quantize_model(model, "int8", 32, empty=True)
        fill = np.random.default_rng(0)
        for m in model.modules():
            if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
                rows = m.out_features if isinstance(m, QuantizedLinear) else m.num_embeddings
                K = m.qpanels.shape[1]
                m.set_weights(fill.integers(-127, 128, (rows, K), dtype=np.int8),   # |w| up to
                              np.full((rows, K // m.block), 0.06 / 127, np.float32))   # 3 std
    else:
        model = npgpt.GPT(npgpt_config(cfg), seed=0)
    if mode in ("lora", "qlora"):
        apply_lora(model, LoraConfig(r=rank, alpha=2 * rank,
                                     target_modules=tuple(targets.split(","))))
    params = model.trainable_parameters()
    opt = AdamW(param_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    runner = DataParallel(model, shards_for("auto", model, cfg["batch"], cfg["T"]))
    rng = np.random.default_rng(0)
    times = []
    for i in range(warmup + steps):
        x = rng.integers(0, cfg["vocab_size"], (cfg["batch"], cfg["T"]))
        y = rng.integers(0, cfg["vocab_size"], (cfg["batch"], cfg["T"]))
        start = time.perf_counter()
        opt.zero_grad()
        runner.forward_backward(x, y)
        clip_grad_norm(params, 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    runner.close()
    return {"mode": mode, "step_ms": 1e3 * statistics.median(times),
            "step_ms_min": 1e3 * min(times), "peak_rss_mb": _peak_mb(),
            "trainable": sum(p.size for p in params), "parameters": model.num_parameters(),
            "shards": runner.n_shards}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="gpt2")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--targets", default="c_attn,c_proj")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="full,lora", help="of full, lora, qlora")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    common = ["--config", args.config, "--rank", str(args.rank), "--targets", args.targets,
              "--steps", str(args.steps), "--warmup", str(args.warmup),
              "--threads", str(args.threads)]
    if args.child:
        print(json.dumps(child(args.child, args.config, args.rank, args.targets, args.steps,
                               args.warmup, args.threads)))
        return None

    load_before = load_note()
    runs = []
    for r in range(args.rounds):
        for mode in args.modes.split(","):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode,
                                   *common], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["round"] = r + 1
            runs.append(row)
            print(f"round {r + 1} {mode}: {row['step_ms']:.0f} ms/step, "
                  f"{row['peak_rss_mb']:,.0f} MB peak", flush=True)
    rows = []
    for mode in args.modes.split(","):
        mine = [row for row in runs if row["mode"] == mode]
        if mine:
            rows.append({**mine[0], "step_ms": statistics.median(x["step_ms"] for x in mine),
                         "step_ms_min": min(x["step_ms_min"] for x in mine),
                         "peak_rss_mb": max(x["peak_rss_mb"] for x in mine)})
    full = next((row for row in rows if row["mode"] == "full"), rows[0] if rows else None)
    for row in rows:
        row["time_vs_full"] = row["step_ms"] / full["step_ms"] if full else None
        row["rss_vs_full"] = row["peak_rss_mb"] / full["peak_rss_mb"] if full else None
    from bench_train_step import CONFIGS
    cfg = CONFIGS[args.config]
    print(f"\n{args.config} training step, batch {cfg['batch']} x {cfg['T']}, {args.threads} "
          f"threads; lora: rank {args.rank} on {args.targets}; each side in its own process, "
          f"{args.rounds} rounds taking turns")
    first = full["mode"] if full else "full"
    print_table(rows, [("mode", "mode", "s"), ("trainable", "trainable", ",d"),
                       ("step_ms", "median ms", ".0f"), ("step_ms_min", "best ms", ".0f"),
                       ("time_vs_full", f"of {first}", ".2f"), ("peak_rss_mb", "peak MB", ",.0f"),
                       ("rss_vs_full", f"of {first}", ".2f")])
    load_after = load_note()
    print(f"load: before {load_before['note']}; after {load_after['note']}")
    result = {"benchmark": "lora", "config": args.config, "rank": args.rank,
              "targets": args.targets, "threads": args.threads, "load_before": load_before,
              "load_after": load_after, "machine": machine(), "runs": runs, "rows": rows}
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
