"""Training throughput over MPI ranks against one process, and what the gradient sum costs.

    python benchmarks/bench_distributed.py [--config tiny|small|gpt2|all] [--steps 8]
                                           [--warmup 2] [--rounds 1] [--json out.json]
                                           [--setups 1x1,2x1,...]

For each config of bench_train_step (same model and global batch), the Trainer's step is
timed in four setups, each alone in a fresh process, taking turns round by round:

- ``1x1``       one process, one thread
- ``1x2``       one process, two threads (the Trainer's own path: the batch split across the
                threads by npgpt.runtime.parallel when each shard keeps n_embd rows, else the threads
                work inside each operation)
- ``2x1``       ``mpiexec -n 2``, one thread per rank, the global batch split between them
- ``2x1 zero``  the same with ``--zero 1`` (AdamW moments sharded), for its memory
- ``ceiling``   one process, one thread, half the global batch: one rank's share of the work
                alone on the machine. Its tokens/s counts the whole global batch, so it is the
                most any split of the batch over two ranks could reach (no sum to wait for,
                no second process beside it)

Reported: tokens/s (global batch tokens / median step time) and the ratio to 1x1; for the
MPI runs the bytes summed per step, the time one blocking bucketed allreduce of them takes
alone (the ranks idle otherwise), the time still waited for it after the backward (by the
rank that finished its backward last, so the other's skew is not counted), and the share
hidden behind the backward, 1 - waited / alone; peak resident memory per rank.

From the measured bytes and compute per step it then projects the scaling efficiency of a
ring allreduce at 8 and 64 ranks (see ``project``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

SETUPS = {"1x1": (1, 1, 0), "1x2": (1, 2, 0), "2x1": (2, 1, 0), "2x1 zero": (2, 1, 1),
          "ceiling": (1, 1, 0)}
LINKS = {"10 GbE": 10e9 / 8, "100 GbE": 100e9 / 8}    # bytes/s
LATENCY = 20e-6             # seconds per ring hop on Ethernet (TCP); a few us on RDMA


# --- one setup, in its own process (under mpiexec for the MPI ones) ------------------------

def worker(args) -> None:
    import numpy as np

    from bench_train_step import CONFIGS
    from npgpt.distributed.launch import start
    from npgpt.models import GPT, GPTConfig
    from npgpt.trainer import TrainConfig, Trainer

    world = start("bench_distributed", threads=args.threads)
    from npgpt.runtime.threads import set_num_threads
    set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    global_tokens = cfg["batch"] * cfg["T"]
    if args.half_batch:
        cfg = {**cfg, "batch": cfg["batch"] // 2}
    model = GPT(GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["T"], n_layer=cfg["n_layer"],
                          n_head=cfg["n_head"], n_embd=cfg["n_embd"]), seed=0)
    data = np.random.default_rng(0).integers(0, cfg["vocab_size"], 200_000).astype(np.uint16)
    trainer = Trainer(model, data, None, TrainConfig(
        batch_size=cfg["batch"], block_size=cfg["T"], max_steps=10 ** 6, warmup_steps=10,
        progress=False, plot=False, save_checkpoints=False, zero=args.zero,
        out_dir=os.path.join(args.tmp, "out")))
    for _ in range(args.warmup):
        trainer.train_step()
    sync = trainer.dist.sync if trainer.dist is not None else None
    if sync is not None:
        sync.stats.update(steps=0, bytes=0, exposed_s=0.0)
    times = []
    for _ in range(args.steps):
        if world is not None:
            world.barrier("the benchmark's step")       # every rank starts the step together
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    result = {"step_s": statistics.median(times), "tokens": global_tokens,
              "params": model.num_parameters()}
    if sync is not None:
        steps = sync.stats["steps"]
        # the rank that reaches the sum last waits for the sum alone; the others wait for it
        # too (its backward's skew), which is not the allreduce's cost
        from mpi4py import MPI
        exposed = world.allreduce([sync.stats["exposed_s"] / steps], "the wait", op=MPI.MIN)[0]
        result.update(bytes=sync.stats["bytes"] / steps, exposed_s=float(exposed),
                      alone_s=_allreduce_alone(world, sync), buckets=len(sync.buckets))
        peak = world.allgather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss")
    else:
        peak = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]
    result["peak_mb"] = [kb / 1024 for kb in peak]
    step = result["step_s"]
    result["tokens_per_s"] = result["tokens"] / step
    if world is None or world.is_main:
        print("RESULT " + json.dumps(result), flush=True)


def _allreduce_alone(world, sync, repeat: int = 3) -> float:
    """Median time of one step's bucketed allreduce with nothing else running."""
    from mpi4py import MPI
    times = []
    for _ in range(repeat):
        world.barrier("the allreduce timing")
        t0 = time.perf_counter()
        requests = [world.comm.Iallreduce(MPI.IN_PLACE, sync.flat.grad[b.key][b.start:b.stop])
                    for b in sync.buckets]
        world.wait(requests, "the allreduce timing")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- the driver -------------------------------------------------------------------------

def run_setup(config: str, setup: str, args) -> dict | None:
    ranks, threads, zero = SETUPS[setup]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", config,
           "--threads", str(threads), "--zero", str(zero), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--tmp", args.tmp]
    if setup == "ceiling":
        cmd.append("--half-batch")
    if ranks > 1:
        cmd = ["mpiexec", "-n", str(ranks), *cmd]
    env = {**os.environ, "PYTHONPATH": ROOT, "NPGPT_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"  {config} {setup} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return None


def project(bytes_per_step: float, compute_s: float, backward_share: float = 2 / 3) -> list[dict]:
    """Scaling efficiency of N ranks, each keeping the measured per-rank batch (so compute per
    step stays ``compute_s``), with a ring allreduce of ``bytes_per_step``:

        t_ring(N) = 2 (N - 1) / N * S / BW  +  2 (N - 1) * latency
        efficiency = t_c / (t_c + max(0, t_ring - h * t_c))

    h = 0: nothing overlapped; h = ``backward_share`` (the backward's ~2/3 of a step): the
    sum hidden behind the whole backward, as the buckets allow."""
    rows = []
    for link, bw in LINKS.items():
        for n in (8, 64):
            ring = 2 * (n - 1) / n * bytes_per_step / bw + 2 * (n - 1) * LATENCY
            rows.append({"link": link, "ranks": n, "ring_s": ring,
                         "eff_no_overlap": compute_s / (compute_s + ring),
                         "eff_overlap": compute_s / (compute_s + max(0.0, ring - backward_share
                                                                      * compute_s))})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="all", choices=["tiny", "small", "gpt2", "all"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated setups to run (default: all, 1x1 among them)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--zero", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--half-batch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if shutil.which("mpiexec") is None:
        sys.exit("bench_distributed needs mpiexec on PATH (pip install '.[mpi]')")
    import tempfile

    from _util import load_note, print_table, report_load
    configs = ["tiny", "small", "gpt2"] if args.config == "all" else [args.config]
    setups = [x.strip() for x in args.setups.split(",") if x.strip()]
    unknown = [x for x in setups if x not in SETUPS] + ([] if "1x1" in setups else ["(no 1x1)"])
    if unknown:
        sys.exit(f"bench_distributed: --setups takes 1x1 and any of {', '.join(SETUPS)}; "
                 f"got {', '.join(unknown)}")
    before = load_note()
    results = {c: {s: [] for s in setups} for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for _ in range(args.rounds):
            for config in configs:
                for setup in setups:        # taking turns: one setup at a time
                    r = run_setup(config, setup, args)
                    if r is not None:
                        results[config][setup].append(r)
    summary = {}
    for config in configs:
        best = {s: min(rs, key=lambda r: r["step_s"]) for s, rs in results[config].items() if rs}
        if "1x1" not in best:
            continue
        base = best["1x1"]["tokens_per_s"]
        rows = []
        for setup, r in best.items():
            row = {"setup": setup, "tok_s": r["tokens_per_s"], "ratio": r["tokens_per_s"] / base,
                   "step_ms": 1e3 * r["step_s"], "peak_mb": max(r["peak_mb"])}
            if "bytes" in r:
                row.update(mb=r["bytes"] / 1e6, alone_ms=1e3 * r["alone_s"],
                           waited_ms=1e3 * r["exposed_s"],
                           hidden=max(0.0, 1 - r["exposed_s"] / r["alone_s"]))
            rows.append(row)
        print(f"\n{config} ({best['1x1']['params']:,} parameters, "
              f"{best['1x1']['tokens']} tokens per step)")
        print_table(rows, [("setup", "setup", "s"), ("tok_s", "tokens/s", ",.0f"),
                           ("ratio", "vs 1x1", ".2f"), ("step_ms", "step ms", ".1f"),
                           ("mb", "allreduce MB", ".1f"), ("alone_ms", "alone ms", ".1f"),
                           ("waited_ms", "waited ms", ".1f"), ("hidden", "hidden", ".0%"),
                           ("peak_mb", "peak MB/rank", ",.0f")])
        summary[config] = rows
        if "2x1" in best:
            r = best["2x1"]
            compute = r["step_s"] - r["exposed_s"]      # one rank's share of the global batch
            proj = project(r["bytes"], compute)
            print(f"projected ring allreduce of {r['bytes'] / 1e6:.1f} MB beside {1e3 * compute:.0f} "
                  "ms of compute per step (each rank keeping its batch):")
            print_table(proj, [("link", "link", "s"), ("ranks", "ranks", "d"),
                               ("ring_s", "ring s", ".3f"),
                               ("eff_no_overlap", "eff, no overlap", ".0%"),
                               ("eff_overlap", "eff, overlapped", ".0%")])
            summary[config + "_projection"] = proj
    after = load_note()
    report_load(before, after, 2, 1.5)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
