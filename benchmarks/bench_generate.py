"""KV-cache decoding speed of npgpt against PyTorch eager with a KV cache, same machine.

    python benchmarks/bench_generate.py [--threads 2] [--prompt 16] [--new 128] [--repeat 5]
                                        [--json out.json]

The small config (vocab 4096, block 256, C 256, 6 layers, 8 heads), batch 1: a 16-token
prompt goes through the model once (prefill), then 128 tokens are decoded one at a time, each
step feeding one token and reading every earlier key and value from the cache. Greedy
decoding on both sides (npgpt: ``model.generate(..., top_k=1)``; torch: argmax), so the
work is the model, not the sampler. tokens/s = new tokens / (prefill + decode) seconds,
median of repeats, the two systems interleaved.
"""
from __future__ import annotations

import argparse
import os
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
from bench_train_step import CONFIGS, LOAD_LIMIT, npgpt_config, set_threads, torch_model

import npgpt
from npgpt.runtime.threads import get_num_threads


def npgpt_decoder(cfg):
    model = npgpt.GPT(npgpt_config(cfg), seed=0)
    model.eval()

    def run(prompt, n_new):
        return model.generate(prompt, n_new, top_k=1, seed=0)
    return run


def torch_decoder(cfg):
    """The benchmark's PyTorch GPT, decoded with a preallocated per-layer KV cache."""
    import torch
    import torch.nn.functional as F

    model = torch_model(cfg).eval()
    C, H = cfg["n_embd"], cfg["n_head"]
    hs = C // H

    def forward(idx, cache, start):
        B, T = idx.shape
        x = model.wte(idx) + model.wpe(torch.arange(start, start + T))
        for block, (k_cache, v_cache) in zip(model.h, cache):
            q, k, v = block.c_attn(block.ln_1(x)).split(C, dim=2)
            q, k, v = (a.view(B, T, H, hs).transpose(1, 2) for a in (q, k, v))
            k_cache[:, :, start:start + T] = k
            v_cache[:, :, start:start + T] = v
            k, v = k_cache[:, :, :start + T], v_cache[:, :, :start + T]
            # the prompt is causal; one new token sees every cached key
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
            x = x + block.c_proj(y.transpose(1, 2).reshape(B, T, C))
            x = x + block.mlp_proj(F.gelu(block.c_fc(block.ln_2(x)), approximate="tanh"))
        return model.ln_f(x[:, -1]) @ model.wte.weight.T

    def run(prompt, n_new):
        with torch.inference_mode():
            idx = torch.from_numpy(prompt)
            B, T = idx.shape
            cache = [(torch.zeros(B, H, T + n_new, hs), torch.zeros(B, H, T + n_new, hs))
                     for _ in model.h]
            logits = forward(idx, cache, 0)
            out = [idx]
            for i in range(n_new):
                nxt = logits.argmax(-1, keepdim=True)
                out.append(nxt)
                if i + 1 < n_new:
                    logits = forward(nxt, cache, T + i)
            return torch.cat(out, 1).numpy()
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    have_torch = start_torch(args.threads)  # before npgpt's threads: see start_torch
    set_threads(args.threads)
    cfg = CONFIGS["small"]
    systems = {"npgpt": npgpt_decoder(cfg)}
    if have_torch:
        systems["torch"] = torch_decoder(cfg)
    else:
        print("torch is not installed: npgpt only", file=sys.stderr)
    load_before = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))
    print(load_before["note"], file=sys.stderr)
    prompt = np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, args.prompt))
    times = {name: [] for name in systems}
    for i in range(args.repeat + 1):                 # the first round warms up
        for name, run in systems.items():
            t0 = time.perf_counter()
            out = run(prompt, args.new)
            dt = time.perf_counter() - t0
            assert out.shape == (1, args.prompt + args.new), out.shape
            if i:
                times[name].append(dt)
    rows = []
    for name, samples in times.items():
        s = statistics.median(samples)
        rows.append({"system": name, "seconds": s, "tokens_per_s": args.new / s,
                     "ms_per_token": 1e3 * s / args.new})
    ref = next((r for r in rows if r["system"] == "torch"), None)
    for row in rows:
        row["vs_torch"] = ref["seconds"] / row["seconds"] if ref else None
    load_after = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))

    print(f"\nKV-cache decoding, small config, batch 1, {args.prompt}-token prompt, {args.new} new "
          f"tokens, float32, {args.threads} threads, median of {args.repeat}")
    print_table(rows, [("system", "system", "s"), ("ms_per_token", "ms/token", ".2f"),
                       ("tokens_per_s", "tokens/s", ",.0f"), ("vs_torch", "vs torch", ".2f")])
    suspect = report_load(load_before, load_after, args.threads, LOAD_LIMIT)
    result = {"benchmark": "generate", "suspect": suspect, "threads": args.threads, "threads_set": get_num_threads(),
              "prompt": args.prompt, "new_tokens": args.new, "repeat": args.repeat,
              "load_before": load_before, "load_after": load_after, "machine": machine(),
              "rows": rows}
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
