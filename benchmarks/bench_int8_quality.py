"""What int8 weights cost in quality: logits drift on gpt2-124M-shaped random weights, and on a
trained checkpoint perplexity and greedy text beside float32's.

    python benchmarks/bench_int8_quality.py [--block 32] [--ckpt DIR --data shakespeare-val]
                                            [--prompt "ROMEO:"] [--new 200] [--json out.json]

Drift: a GPT of gpt2-124M's shape with random weights (std 0.02, GPT-2's init) and the same
model quantized (``quantize_model``) score the same 4 x 64 random tokens; reported are the
largest logit difference relative to the largest logit, the mean absolute difference, and how
often the two agree on the most likely next token. With ``--ckpt`` (an npgpt checkpoint, e.g.
from ``npgpt train``) the float model and its int8 copy are evaluated on ``--data`` (as
``npgpt eval`` does) and decode ``--prompt`` greedily, printed side by side.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _util import emit_json, load_note  # noqa: E402

import npgpt  # noqa: E402
from npgpt.layers.quantized import quantize_model  # noqa: E402


def drift(block: int) -> dict:
    model = npgpt.GPT(npgpt.GPTConfig(), seed=0).eval()
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (4, 64))
    ref = model.forward(ids)[0]
    got = quantize_model(model, block=block).forward(ids)[0]
    diff = np.abs(got - ref)
    return {"max_rel": float(diff.max() / np.abs(ref).max()), "mean_abs": float(diff.mean()),
            "logit_std": float(ref.std()),
            "top1_agree": float((got.argmax(-1) == ref.argmax(-1)).mean())}


def checkpoint(path: str, data: str, prompt: str, new: int, block: int) -> dict:
    from npgpt.checkpoints import load_model
    from npgpt.data import read_text, shakespeare_text
    from npgpt.evaluate import perplexity

    out = {}
    for name, quant in (("float32", None), ("int8", "int8")):
        model, tokenizer, _, _ = load_model(path, quant)
        if quant is not None and block != 32:
            model, tokenizer, _, _ = load_model(path)
            quantize_model(model, block=block)
        text = shakespeare_text("val") if data == "shakespeare-val" else read_text(data)
        ppl = perplexity(model, np.asarray(tokenizer.encode(text)), progress=False)
        start = tokenizer.encode(prompt)
        text = tokenizer.decode(model.generate(np.array([start]), new, temperature=0)[0].tolist())
        out[name] = {"perplexity": ppl.perplexity, "text": text}
    out["perplexity_change"] = out["int8"]["perplexity"] / out["float32"]["perplexity"] - 1
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--ckpt")
    ap.add_argument("--data", default="shakespeare-val")
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    result = {"benchmark": "int8_quality", "block": args.block, "load": load_note(),
              "drift": drift(args.block)}
    d = result["drift"]
    print(f"gpt2-124M shape, random weights, block {args.block}: max |dlogit| / max |logit| "
          f"{d['max_rel']:.2e}, mean |dlogit| {d['mean_abs']:.2e} (logit std "
          f"{d['logit_std']:.3f}), top-1 agreement {d['top1_agree']:.1%}")
    if args.ckpt:
        c = result["checkpoint"] = checkpoint(args.ckpt, args.data, args.prompt, args.new,
                                              args.block)
        print(f"{args.ckpt} on {args.data}: perplexity float32 {c['float32']['perplexity']:.4f}, "
              f"int8 {c['int8']['perplexity']:.4f} ({c['perplexity_change']:+.3%})")
        for name in ("float32", "int8"):
            print(f"--- greedy, {name} ---\n{c[name]['text']}")
    return emit_json(result, args.json)


if __name__ == "__main__":
    main()
