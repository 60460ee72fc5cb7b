"""One training step (forward + backward + AdamW) of npgpt against PyTorch eager, same machine.

    python benchmarks/bench_train_step.py [--config tiny|small|gpt2|all] [--threads 2]
                                          [--steps 10] [--min-seconds 2] [--warmup 3] [--isolated [--rounds 3]]
                                          [--data-parallel auto|on|off]
                                          [--cold-start] [--json out.json]

Four systems train the same GPT-2 architecture (learned positions, pre-LN LayerNorm, tanh
GELU, tied LM head, no dropout) on the same random batches:

- ``npgpt``        numba kernels (the default backend), the step run as npgpt's Trainer runs
                   it: the batch split across the threads when each shard keeps at least
                   n_embd token rows (``npgpt.runtime.parallel``; the ``shards`` column; change it
                   with ``--data-parallel``)
- ``plain``        the same model through the plain loop a user writes,
                   ``model.forward(x, y); model.backward(); opt.step()`` (the model splits a
                   large enough batch across the threads itself: ``npgpt.models.base``)
- ``npgpt-numpy``  the same model with every kernel swapped for its NumPy twin
                   (``npgpt.kernels.use("numpy")``)
- ``torch``        a PyTorch model of identical architecture defined below (eager,
                   ``F.scaled_dot_product_attention``, ``torch.optim.AdamW(fused=True)``: on a
                   CPU PyTorch defaults to its for-loop AdamW, and its documentation names the
                   fused implementation the fastest), when torch is installed
- ``torch-forloop`` the same with PyTorch's default (for-loop) AdamW, as measured before

The steps are interleaved (one step of each system in turn), so a change in machine load hits
all of them alike; the figures are medians after warm-up, of at least ``--steps`` steps and
``--min-seconds`` of each system's stepping. Interleaving has a cost of its own:
a thread pool left spinning by one system (OpenBLAS's, PyTorch's OpenMP) slows the next one's
first operations, and in one process npgpt's numba and PyTorch share one OpenMP runtime, set
up with PyTorch's long spin (see ``_util.start_torch``), which slows npgpt's kernels.
``--isolated`` runs each system alone in a fresh process instead, the systems taking turns
for ``--rounds`` rounds; report both. The sgemm rate (a large float32 matmul through NumPy's
BLAS) is measured in the same run, and each system's model FLOP rate
is given as a share of it, with model FLOPs per step = 6·P·B·T + 12·L·B·T²·C (P: parameters
without the position table, the usual count; the second term is attention's two products,
forward and backward).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

# OpenBLAS's workers spin ~2^28 cycles after each product, on the core numba's parallel
# kernels need next; 2^4 puts them to sleep at once (small: 0.90 -> 0.79 s/step). Set before
# NumPy loads (an explicit setting in the environment wins); ``import npgpt`` sets the same.
# numba's threading layer and OpenMP spin are npgpt's own choice (npgpt/runtime/jit.py).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import emit_json, load_note, machine, print_table, report_load, start_torch

import npgpt
from npgpt import kernels
from npgpt.runtime.memory import retain_freed_memory
from npgpt.optim import AdamW
from npgpt.runtime.parallel import MODES, DataParallel, shards_for
from npgpt.runtime.threads import get_num_threads, set_num_threads

CONFIGS = {
    "tiny": dict(vocab_size=512, T=64, n_embd=128, n_layer=4, n_head=4, batch=16),
    "small": dict(vocab_size=4096, T=256, n_embd=256, n_layer=6, n_head=8, batch=8),
    "gpt2": dict(vocab_size=50257, T=64, n_embd=768, n_layer=12, n_head=12, batch=4),
}
LR, BETAS, EPS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 1e-8, 0.1
LOAD_LIMIT = 1.5       # load average above which the figures are flagged as suspect


def set_threads(n: int) -> dict:
    """npgpt's one thread setting, then SciPy's OpenBLAS down to one thread.

    numba kernels call gemm through SciPy's own OpenBLAS (a second copy beside NumPy's)
    from inside loops that are already parallel over heads; with both OpenBLAS pools at n
    threads they spin against each other on 2 cores (small config, 2 threads: 2.0 s/step,
    against 0.86 s with SciPy's at 1). ``npgpt.runtime.threads.set_num_threads`` gives every BLAS n,
    so the limit is applied here. Returns ``{library path: threads}``.
    """
    set_num_threads(n)
    from threadpoolctl import ThreadpoolController

    pools = {}
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if "scipy.libs" in lib.filepath:
            lib.set_num_threads(1)
        pools[lib.filepath] = lib.num_threads
    return pools


# ---- PyTorch: the same architecture -------------------------------------------------------

def torch_model(cfg, seed=0):
    import torch
    import torch.nn.functional as F
    from torch import nn

    C, H, L, V, T = cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["vocab_size"], cfg["T"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            B, T_, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (a.view(B, T_, H, C // H).transpose(1, 2) for a in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, T_, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.normal_(p, std=0.02)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T          # tied head, as npgpt
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    torch.manual_seed(seed)
    return GPT()


def torch_system(cfg, fused=True):
    import torch

    model = torch_model(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS, fused=fused or None)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        opt.step()
        return loss.item()
    return step


# ---- npgpt ----------------------------------------------------------------------------------

def npgpt_config(cfg):
    return npgpt.GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["T"],
                           n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"])


def npgpt_system(cfg, backend="numba", model=None, data_parallel="auto"):
    """npgpt's step as its Trainer runs it: with ``data_parallel`` "auto" the batch is split
    across the threads (npgpt.runtime.parallel) when every shard keeps >= n_embd token rows."""
    retain_freed_memory()          # as npgpt's Trainer does: no page faults on every step
    model = model if model is not None else npgpt.GPT(npgpt_config(cfg), seed=0)
    opt = _adamw(model)
    n = shards_for(data_parallel, model, cfg["batch"], cfg["T"])   # starts numba's threads
    runner = DataParallel(model, n)

    def step(x, y):
        with kernels.use(backend):
            opt.zero_grad()
            loss = runner.forward_backward(x, y)
            opt.step()
        return loss
    step.shards = n
    return step, model


def plain_system(cfg, model=None):
    """The README's loop: forward, backward, AdamW, nothing else set up (no DataParallel, no
    memory setting: the model does what it needs itself)."""
    model = model if model is not None else npgpt.GPT(npgpt_config(cfg), seed=0)
    opt = _adamw(model)

    def step(x, y):
        opt.zero_grad()
        _, loss = model.forward(x, y)
        model.backward()
        opt.step()
        return float(loss)
    step.shards = shards_for(model.data_parallel, model, cfg["batch"], cfg["T"])
    return step, model


def _adamw(model):
    named = list(model.named_parameters())
    decay = [p for _, p in named if p.data.ndim >= 2]
    no_decay = [p for _, p in named if p.data.ndim < 2]
    return AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                  {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=EPS)


def model_flops(cfg) -> tuple[int, float]:
    """(P, FLOPs per training step) with FLOPs = 6·P·B·T + 12·L·B·T²·C."""
    counts = npgpt.count_params(npgpt_config(cfg))
    P = counts["total"] - counts["wpe"]
    B, T, C, L = cfg["batch"], cfg["T"], cfg["n_embd"], cfg["n_layer"]
    return P, 6 * P * B * T + 12 * L * B * T * T * C


def sgemm_gflops(n: int = 2048, repeat: int = 5) -> float:
    """The machine's float32 matmul rate through NumPy's BLAS (best of ``repeat``)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


# ---- cold start -----------------------------------------------------------------------------

_COLD_CHILD = """
import time
t0 = time.perf_counter()
import npgpt
t1 = time.perf_counter()
import sys
sys.path.insert(0, {bench_dir!r})
import numpy as np
from bench_train_step import CONFIGS, npgpt_system
cfg = CONFIGS[{config!r}]
step, _ = npgpt_system(cfg)
x = np.random.default_rng(0).integers(0, cfg["vocab_size"], (cfg["batch"], cfg["T"]))
t2 = time.perf_counter()
step(x, x)
t3 = time.perf_counter()
print(t1 - t0, t3 - t2)
"""


def cold_start(config="tiny") -> dict:
    """``import npgpt`` and the first training step, each in a fresh process: with an empty
    numba cache (NUMBA_CACHE_DIR a new temporary directory: every kernel compiles) and then
    with that cache filled (warm)."""
    import subprocess
    import tempfile

    code = _COLD_CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), config=config)
    out = {"config": config}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=True)
            imp, first = map(float, proc.stdout.split())
            out[f"import_s_{label}"], out[f"first_step_s_{label}"] = imp, first
    return out


# ---- the run --------------------------------------------------------------------------------

def bench_config(name, systems_wanted, steps, warmup, data_parallel="auto", min_seconds=0.0):
    """Median step time of each system, interleaved: one step of each in turn, ``warmup``
    steps, then at least ``steps`` timed ones and until each system has been timed for
    ``min_seconds`` (a 40 ms step sampled ten times spans under half a second, shorter
    than the bursts of load on a shared machine)."""
    cfg = CONFIGS[name]
    B, T, V = cfg["batch"], cfg["T"], cfg["vocab_size"]
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T)))
               for _ in range(warmup + steps)]
    systems = {}
    model = None
    for sysname in systems_wanted:
        if sysname in ("torch", "torch-forloop"):
            try:
                systems[sysname] = torch_system(cfg, fused=sysname == "torch")
            except ImportError:
                print("  torch is not installed: skipping it", file=sys.stderr)
        elif sysname == "plain":
            systems["plain"], model = plain_system(cfg, model)
        else:
            backend = "numpy" if sysname == "npgpt-numpy" else "numba"
            # one npgpt model serves both backends (gpt2-124M with Adam state is ~2 GB)
            systems[sysname], model = npgpt_system(cfg, backend, model, data_parallel)
    times = {s: [] for s in systems}
    faults = {s: [] for s in systems}
    first = {}
    i = 0
    while i < warmup + steps or any(sum(t) < min_seconds for t in times.values()):
        x, y = batches[i % len(batches)]
        for sysname, step in systems.items():      # interleaved: one step of each in turn
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            step(x, y)
            dt = time.perf_counter() - t0
            if i == 0:
                first[sysname] = dt
            if i >= warmup:
                times[sysname].append(dt)
                faults[sysname].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        i += 1
    P, flops = model_flops(cfg)
    rows = []
    for sysname, samples in times.items():
        ms = 1e3 * statistics.median(samples)
        rows.append({"config": name, "system": sysname, "ms_per_step": ms,
                     "best_ms": 1e3 * min(samples), "tokens_per_s": B * T / (ms / 1e3),
                     "gflops": flops / (ms / 1e3) / 1e9, "first_step_s": first[sysname],
                     "params": P, "flops_per_step": flops, "steps": len(samples),
                     "faults_per_step": statistics.median(faults[sysname]),
                     "shards": getattr(systems[sysname], "shards", None)})
    return rows


def bench_isolated(name, args) -> list[dict]:
    """Each system alone in a fresh process (no thread pool of one system left spinning
    while the other runs, and each keeps its own OpenMP settings), the systems taking turns
    for ``args.rounds`` rounds: a drift in the machine's load hits all of them alike. A
    system's figure is the median of its rounds' medians."""
    import subprocess
    import tempfile

    runs = {s: [] for s in args.systems.split(",")}
    for _ in range(args.rounds):
        for sysname in runs:
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                subprocess.run([sys.executable, os.path.abspath(__file__), "--config", name,
                                "--systems", sysname, "--threads", str(args.threads),
                                "--steps", str(args.steps), "--warmup", str(args.warmup),
                                "--min-seconds", str(args.min_seconds),
                                "--data-parallel", args.data_parallel,
                                "--json", f.name], check=True, capture_output=True)
                with open(f.name) as g:
                    runs[sysname] += json.load(g)["rows"]
    rows = []
    for sysname, rounds in runs.items():
        row = dict(rounds[0])
        ms = statistics.median(r["ms_per_step"] for r in rounds)
        tokens = row["tokens_per_s"] * row["ms_per_step"]     # tokens per step, times 1000
        row.update(ms_per_step=ms, best_ms=min(r["best_ms"] for r in rounds),
                   tokens_per_s=tokens / ms, gflops=row["flops_per_step"] / (ms / 1e3) / 1e9,
                   rounds_ms=[r["ms_per_step"] for r in rounds])
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per system")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0,
                    help="keep timing steps until each system has run this long (per round)")
    ap.add_argument("--systems", default="npgpt,plain,npgpt-numpy,torch")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --isolated: the systems take turns this many times (median)")
    ap.add_argument("--data-parallel", default="auto", choices=MODES,
                    help="npgpt's batch split across the threads, as TrainConfig.data_parallel")
    ap.add_argument("--isolated", action="store_true",
                    help="run each system alone in its own process instead of interleaved")
    ap.add_argument("--cold-start", action="store_true",
                    help="also time import npgpt and the first step with a cold and a warm cache")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    if any(s.startswith("torch") for s in args.systems.split(",")) and not args.isolated:
        start_torch(args.threads)           # before npgpt's threads: see start_torch
    blas_pools = set_threads(args.threads)
    load_before = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))
    print(load_before["note"], file=sys.stderr)
    if load_before["suspect"]:
        print(f"WARNING: load average above {LOAD_LIMIT}: other processes share the cores, "
              "the figures below are suspect", file=sys.stderr)
    sgemm = sgemm_gflops()
    configs = list(CONFIGS) if args.config == "all" else [args.config]
    rows = []
    for name in configs:
        print(f"  {name} ...", file=sys.stderr)
        if args.isolated:
            rows += bench_isolated(name, args)
        else:
            rows += bench_config(name, args.systems.split(","), args.steps, args.warmup,
                                 args.data_parallel, args.min_seconds)
    sgemm_after = sgemm_gflops()
    roof = max(sgemm, sgemm_after)
    for row in rows:
        row["share_of_sgemm"] = row["gflops"] / roof
        ref = next((r for r in rows if r["config"] == row["config"] and r["system"] == "torch"),
                   None)
        row["vs_torch"] = ref["ms_per_step"] / row["ms_per_step"] if ref else None
    load_after = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))
    cold = cold_start() if args.cold_start else None

    import numba
    print(f"\ntraining step, float32, {args.threads} threads, "
          f"{f'each system alone in its own process, {args.rounds} rounds taking turns' if args.isolated else 'interleaved'} (numba layer "
          f"{numba.threading_layer()}), median of at least {args.steps} steps and "
          f"{args.min_seconds:g} s after {args.warmup} warm-up; sgemm {sgemm:.0f} GFLOP/s before, "
          f"{sgemm_after:.0f} after")
    print_table(rows, [("config", "config", "s"), ("system", "system", "s"),
                       ("ms_per_step", "ms/step", ".1f"), ("tokens_per_s", "tokens/s", ",.0f"),
                       ("shards", "shards", "d"), ("faults_per_step", "faults/step", ",.0f"),
                       ("gflops", "GFLOP/s", ".1f"), ("share_of_sgemm", "of sgemm", ".0%"),
                       ("vs_torch", "vs torch", ".2f")])
    if cold:
        print(f"cold start (tiny, fresh processes): import npgpt {cold['import_s_cold']:.2f} s; "
              f"first training step {cold['first_step_s_cold']:.2f} s with an empty numba cache, "
              f"{cold['first_step_s_warm']:.2f} s with it warm")
    suspect = report_load(load_before, load_after, args.threads, LOAD_LIMIT)
    result = {"benchmark": "train_step", "isolated": args.isolated, "suspect": suspect, "cold_start": cold,
              "numba_threading_layer": numba.threading_layer(), "blas_threads": blas_pools, "threads": args.threads, "threads_set": get_num_threads(),
              "data_parallel": args.data_parallel, "steps": args.steps, "min_seconds": args.min_seconds, "warmup": args.warmup, "sgemm_gflops": [sgemm, sgemm_after],
              "load_before": load_before, "load_after": load_after, "machine": machine(),
              "rows": rows}
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
