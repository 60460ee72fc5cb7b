"""Peak memory (RSS) of a gpt2-124M training step, npgpt against PyTorch, each in its own process.

    python benchmarks/bench_memory.py [--config gpt2] [--steps 2] [--threads 2] [--json out.json]

Each system runs in a fresh subprocess: build the model and AdamW, then ``--steps`` training
steps (forward + backward + AdamW step; the optimizer's moments exist from the first step on)
at batch 4, T 64; the child reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the peak
resident set of the whole process (interpreter, libraries, weights, gradients, Adam state and
activations), and the peak after importing and building only, for reference.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

# OpenBLAS's workers spin ~2^28 cycles after each product, on the core numba's parallel
# kernels need next; 2^4 puts them to sleep at once (small: 0.90 -> 0.79 s/step). Set before
# NumPy loads (an explicit setting in the environment wins); ``import npgpt`` sets the same.
# numba's threading layer and OpenMP spin are npgpt's own choice (npgpt/runtime/jit.py).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import emit_json, load_note, machine, print_table


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def child(system: str, config: str, steps: int, threads: int) -> dict:
    import numpy as np
    from bench_train_step import CONFIGS, npgpt_system, set_threads, torch_system
    cfg = CONFIGS[config]
    if system == "torch":
        import torch
        torch.set_num_threads(threads)
        step = torch_system(cfg)
    else:
        set_threads(threads)
        step, _ = npgpt_system(cfg, "numpy" if system == "npgpt-numpy" else "numba")
    built = _peak_mb()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.integers(0, cfg["vocab_size"], (cfg["batch"], cfg["T"]))
        y = rng.integers(0, cfg["vocab_size"], (cfg["batch"], cfg["T"]))
        step(x, y)
    return {"system": system, "peak_rss_mb": _peak_mb(), "after_build_mb": built}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="gpt2")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--systems", default="npgpt,torch")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.config, args.steps, args.threads)))
        return None

    rows = []
    for system in args.systems.split(","):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", system,
                               "--config", args.config, "--steps", str(args.steps),
                               "--threads", str(args.threads)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{system}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ref = next((r for r in rows if r["system"] == "torch"), None)
    for row in rows:
        row["vs_torch"] = row["peak_rss_mb"] / ref["peak_rss_mb"] if ref else None
    from bench_train_step import CONFIGS
    cfg = CONFIGS[args.config]
    print(f"\npeak RSS of a {args.config} training step (batch {cfg['batch']}, T {cfg['T']}, "
          f"AdamW, {args.steps} steps), one process per system")
    print_table(rows, [("system", "system", "s"), ("after_build_mb", "built MB", ",.0f"),
                       ("peak_rss_mb", "peak MB", ",.0f"), ("vs_torch", "of torch's", ".2f")])
    result = {"benchmark": "memory", "config": args.config, "steps": args.steps,
              "load": load_note(), "machine": machine(), "rows": rows}
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
