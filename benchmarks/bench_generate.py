"""KV-cache decoding against the memory-bandwidth ceiling, npgpt beside PyTorch, same machine.

    python benchmarks/bench_generate.py [--configs small,gpt2] [--batches 1,8]
                                        [--systems npgpt,torch] [--threads 2] [--prompt 16]
                                        [--new 64] [--repeat 3] [--rounds 3] [--json out.json]
    python benchmarks/bench_generate.py --configs smollm2-135m,qwen2.5-0.5b,qwen3-0.6b,\
        gemma3-270m,llama3.2-1b --batches 1 [--cache-dir DIR]

Decoding one token reads every weight once (batch 1), so its ceiling is memory bandwidth,
not arithmetic. For each model shape (``small``: vocab 4096, C 256, 6 layers; ``gpt2``:
gpt2-124M's shape) and batch size, a ``--prompt``-token prompt goes through the model once
(prefill), then ``--new`` tokens are decoded one step at a time (greedy on every side, so the
work is the model, not the sampler). Reported per row:

- ``tok/s``     new tokens (all rows of the batch) / (prefill + decode) seconds
- ``ms/step``   one decoding step (every row gets one token), prefill excluded
- ``CPU ms``    the process's CPU time over a step, all its threads: the work a step takes,
                which other processes' load moves far less than the wall time
- ``MB/step``   bytes of weights that one step reads: every weight array, the tied head's
                embedding table in full (it is the LM head); a table that is only gathered
                from (positions, an untied token embedding) counts nothing
- ``GB/s``      MB/step / ms/step: the weight stream the decoder achieves
- ``ceiling``   the machine's streaming bandwidth measured in the same process just before:
                ``np.copyto`` between two 256 MiB float32 arrays (far beyond the caches),
                bytes read + bytes written (STREAM's convention), best of 5
- ``share``     GB/s / ceiling

Where npgpt float32 and int8 both ran, a last line per shape and batch gives int8's tokens/s
over float32's, the ratio of their decoding steps, and of their CPU time a step.

Each (system, shape, batch) runs alone in a fresh process, the systems taking turns for
``--rounds`` rounds (a neighbour's load hits each alike); the figures are the medians over
rounds of each process's median of ``--repeat`` generations, after a warm-up one. The KV
cache's own reads (a few MB at these lengths) are not counted in MB/step.

Systems: ``npgpt`` (float32), ``npgpt-int8`` (the same weights quantized to int8 in blocks of
32, ``npgpt.layers.quantized.quantize_model``; MB/step counts the int8 bytes and their
scales), ``torch`` (PyTorch eager, float32, the same architecture with a preallocated KV
cache, when installed).

The model families (``smollm2-135m``, ``qwen2.5-0.5b``, ``qwen3-0.6b``, ``gemma3-270m``,
``llama3.2-1b``; see generate_families.py) run at their real shapes from a random-weight
bfloat16 directory: npgpt's ``GPT.from_pretrained`` + ``generate`` against transformers'
``AutoModelForCausalLM.from_pretrained`` (float32) + ``generate``, both greedy. Their rows add
``load s`` (reading the directory into a float32 model) and ``prompt tok/s`` (prefill).
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

# OpenBLAS's workers spin ~2^28 cycles after each product, on the core numba's parallel
# kernels need next; 2^4 puts them to sleep at once. Set before NumPy loads (an explicit
# setting in the environment wins); ``import npgpt`` sets the same.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _util import emit_json, load_note, machine, print_table, report_load
from generate_families import FAMILIES, npgpt_family_decoder, torch_family_decoder

LOAD_LIMIT = 1.5       # load average above which the figures are flagged as suspect
SHAPES = {
    "small": dict(vocab_size=4096, n_embd=256, n_layer=6, n_head=8),
    "gpt2": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12),
}
SYSTEMS = ("npgpt", "npgpt-int8", "torch")


def stream_bandwidth(mib: int = 256, repeat: int = 5) -> float:
    """GB/s of ``np.copyto`` between two float32 arrays of ``mib`` MiB: bytes read + written,
    best of ``repeat`` (the arrays are written first, so no page is faulted in the timing)."""
    src = np.ones(mib * (1 << 20) // 4, np.float32)
    dst = np.zeros_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def step_weight_bytes(model) -> int:
    """Bytes of weights one decoding step of an npgpt model reads (see the module docstring):
    every array a module holds, except embedding tables that are only gathered from."""
    from npgpt.layers.embedding import Embedding
    from npgpt.layers.quantized import QuantizedEmbedding

    head = model.wte if model.config.tie_embeddings else None
    total = 0
    for _, module in model.named_modules():
        if isinstance(module, (Embedding, QuantizedEmbedding)) and module is not head:
            continue
        total += sum(p.data.nbytes for _, p in module._own_parameters())
        total += getattr(module, "buffer_nbytes", 0)    # weights held outside Parameters
    return total


def model_config(shape: str, block_size: int):
    import npgpt
    return npgpt.GPTConfig(block_size=max(1024, block_size), **SHAPES[shape])


# ---- the systems: each returns run(prompt, n_new) -> (ids, prefill s, decode s) and bytes ----

def npgpt_decoder(shape: str, block_size: int, quantize: str | None = None):
    import npgpt

    model = npgpt.GPT(model_config(shape, block_size), seed=0)
    model.eval()
    if quantize is not None:
        from npgpt.layers.quantized import quantize_model
        quantize_model(model, quantize)

    def run(prompt, n_new):
        stamps, cpu = [], []

        def on_token(_):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
        t0 = time.perf_counter()
        out = model.generate(prompt, n_new, temperature=0, on_token=on_token)
        return out, stamps[0] - t0, stamps[-1] - stamps[0], cpu[-1] - cpu[0]
    return run, step_weight_bytes(model)


def torch_decoder(shape: str, block_size: int):
    """A PyTorch GPT of the same architecture, decoded with a preallocated per-layer KV cache."""
    import torch
    import torch.nn.functional as F
    from bench_train_step import torch_model

    cfg = dict(SHAPES[shape], T=max(1024, block_size))
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
            t0 = time.perf_counter()
            idx = torch.from_numpy(prompt)
            B, T = idx.shape
            cache = [(torch.zeros(B, H, T + n_new, hs), torch.zeros(B, H, T + n_new, hs))
                     for _ in model.h]
            logits = forward(idx, cache, 0)
            out = [idx]
            for i in range(n_new):
                nxt = logits.argmax(-1, keepdim=True)
                out.append(nxt)
                if i == 0:
                    t1, c1 = time.perf_counter(), time.process_time()
                if i + 1 < n_new:
                    logits = forward(nxt, cache, T + i)
            t2, c2 = time.perf_counter(), time.process_time()
            return torch.cat(out, 1).numpy(), t1 - t0, t2 - t1, c2 - c1
    weights = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                  if name != "wpe.weight")           # wpe is only gathered from
    return run, weights


DECODERS = {"npgpt": npgpt_decoder, "npgpt-int8": lambda *a: npgpt_decoder(*a, quantize="int8"),
            "torch": torch_decoder}


FAMILY_DECODERS = {"npgpt": npgpt_family_decoder, "torch": torch_family_decoder,
                   "npgpt-int8": lambda *a: npgpt_family_decoder(*a, quantize="int8")}


def measure(system: str, shape: str, batch: int, args) -> dict:
    """One process's figures for one (system, shape, batch): median of ``args.repeat``."""
    if system == "torch":
        import torch            # before npgpt's threads (see _util.start_torch)
        torch.set_num_threads(args.threads)
    from npgpt.runtime.threads import set_num_threads
    set_num_threads(args.threads)
    load = None
    if shape in FAMILIES:
        run, weights, load = FAMILY_DECODERS[system](shape, args.cache_dir)
    else:
        run, weights = DECODERS[system](shape, args.prompt + args.new)
    ceiling = stream_bandwidth()
    vocab = (FAMILIES.get(shape) or SHAPES[shape])["vocab_size"]
    prompt = np.random.default_rng(0).integers(0, vocab, (batch, args.prompt))
    prefill, decode, total, cpu = [], [], [], []
    for i in range(args.repeat + 1):              # the first one warms up
        t0 = time.perf_counter()
        res = run(prompt, args.new)               # (ids, prefill s, decode s[, decode CPU s])
        dt = time.perf_counter() - t0
        out, t_prefill, t_decode = res[:3]
        assert out.shape == (batch, args.prompt + args.new), out.shape
        if i:
            prefill.append(t_prefill)
            decode.append(t_decode)
            total.append(dt)
            if len(res) > 3:
                cpu.append(res[3])
    step = statistics.median(decode) / (args.new - 1)
    return {"system": system, "shape": shape, "batch": batch,
            "tokens_per_s": batch * args.new / statistics.median(total),
            "prefill_ms": 1e3 * statistics.median(prefill), "ms_per_step": 1e3 * step,
            "cpu_ms_per_step": 1e3 * statistics.median(cpu) / (args.new - 1) if cpu else None,
            "load_s": load, "prompt_tok_per_s": batch * args.prompt / statistics.median(prefill),
            "decode_tok_per_s": batch / step,
            "mb_per_step": weights / 1e6, "gb_per_s": weights / step / 1e9,
            "ceiling_gb_per_s": ceiling, "share": weights / step / 1e9 / ceiling}


def run_isolated(system: str, shape: str, batch: int, args) -> dict:
    """:func:`measure` in a fresh process (its figures come back as JSON on the last line)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", f"{system},{shape},{batch}",
           "--threads", str(args.threads), "--prompt", str(args.prompt), "--new",
           str(args.new), "--repeat", str(args.repeat), "--cache-dir", args.cache_dir]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def available(systems: list[str]) -> list[str]:
    keep = []
    for s in systems:
        if s == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                print("torch is not installed: skipping it", file=sys.stderr)
                continue
        keep.append(s)
    return keep


def int8_ratios(rows: list[dict], samples: dict | None = None) -> list[str]:
    """One line per (shape, batch) that ran both npgpt float32 and int8: int8's tokens/s
    over float32's, the decoding steps' alone, and their CPU time per step (ratios of the
    medians); and, from ``samples`` (each round's rows), the median and range of the
    decoding steps' ratio within each round, where the two ran one after the other."""
    by = {(r["shape"], r["batch"], r["system"]): r for r in rows}
    lines = []
    for (shape, batch, system), i8 in by.items():
        f32 = by.get((shape, batch, "npgpt"))
        if system != "npgpt-int8" or f32 is None:
            continue
        cpu = (f"{f32['cpu_ms_per_step'] / i8['cpu_ms_per_step']:.2f}x"
               if f32["cpu_ms_per_step"] and i8["cpu_ms_per_step"] else "n/a")
        line = (f"int8 / float32, {shape} batch {batch}: tokens/s "
                f"{i8['tokens_per_s'] / f32['tokens_per_s']:.2f}x, decoding steps "
                f"{f32['ms_per_step'] / i8['ms_per_step']:.2f}x, CPU time a step {cpu}")
        pairs = zip((samples or {}).get((shape, batch, "npgpt"), []),
                    (samples or {}).get((shape, batch, "npgpt-int8"), []))
        within = [a["ms_per_step"] / b["ms_per_step"] for a, b in pairs]
        if len(within) > 1:
            line += (f"; decoding steps within a round {statistics.median(within):.2f}x "
                     f"({min(within):.2f}-{max(within):.2f})")
        lines.append(line)
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="small,gpt2",
                    help=f"model shapes: {', '.join([*SHAPES, *FAMILIES])}")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "npgpt-families"),
                    help="where the families' random-weight directories are written once")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="generations per process (median)")
    ap.add_argument("--rounds", type=int, default=3, help="turns of the systems (median)")
    ap.add_argument("--one", help=argparse.SUPPRESS)   # system,shape,batch: a child process
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.new < 2:
        ap.error("--new must be at least 2 (a decoding step is timed between two tokens)")
    if args.one:
        system, shape, batch = args.one.split(",")
        print(json.dumps(measure(system, shape, int(batch), args)))
        return None

    shapes = args.configs.split(",")
    for s in shapes:
        if s not in SHAPES and s not in FAMILIES:
            ap.error(f"unknown config {s!r}; choose from {', '.join([*SHAPES, *FAMILIES])}")
    systems = available(args.systems.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    load_before = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))
    print(load_before["note"], file=sys.stderr)
    samples: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for shape in shapes:
            for batch in batches:
                for system in systems:
                    row = run_isolated(system, shape, batch, args)
                    samples.setdefault((shape, batch, system), []).append(row)
                    print(f"  round {r + 1}: {system} {shape} batch {batch}: "
                          f"{row['ms_per_step']:.2f} ms/step, {row['gb_per_s']:.1f} GB/s of "
                          f"{row['ceiling_gb_per_s']:.1f}", file=sys.stderr)
    rows = []
    for (shape, batch, system), runs in samples.items():
        row = {"system": system, "shape": shape, "batch": batch}
        for key in ("tokens_per_s", "prefill_ms", "ms_per_step", "cpu_ms_per_step", "mb_per_step",
                    "gb_per_s", "ceiling_gb_per_s", "share", "load_s", "prompt_tok_per_s",
                    "decode_tok_per_s"):
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        rows.append(row)
    load_after = load_note(threshold_per_core=LOAD_LIMIT / (os.cpu_count() or 1))

    print(f"\nKV-cache decoding, {args.prompt}-token prompt, {args.new} new tokens, greedy, "
          f"{args.threads} threads, each system in its own process, median of {args.rounds} "
          f"rounds x {args.repeat} generations")
    print_table(rows, [("system", "system", "s"), ("shape", "shape", "s"),
                       ("batch", "batch", "d"), ("load_s", "load s", ".1f"),
                       ("prompt_tok_per_s", "prompt tok/s", ",.1f"),
                       ("decode_tok_per_s", "decode tok/s", ",.2f"),
                       ("tokens_per_s", "tok/s", ",.1f"),
                       ("ms_per_step", "ms/step", ".2f"), ("cpu_ms_per_step", "CPU ms", ".2f"),
                       ("mb_per_step", "MB/step", ",.1f"), ("gb_per_s", "GB/s", ".1f"), ("ceiling_gb_per_s", "ceiling", ".1f"),
                       ("share", "share", ".0%")])
    for ratio in int8_ratios(rows, samples):
        print(ratio)
    suspect = report_load(load_before, load_after, args.threads, LOAD_LIMIT)
    result = {"benchmark": "generate", "suspect": suspect, "threads": args.threads,
              "prompt": args.prompt, "new_tokens": args.new, "repeat": args.repeat,
              "rounds": args.rounds, "load_before": load_before, "load_after": load_after,
              "machine": machine(), "rows": rows,
              "samples": [r for runs in samples.values() for r in runs]}
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
