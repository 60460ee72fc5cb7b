"""``npgpt inspect --ckpt DIR --prompt TEXT [--layer L] [--show NAME] [--json]``: the logit lens
of a prompt and a summary of every attention head, in the terminal.

:func:`inspect_prompt` is the library call (a dict, what ``--json`` prints); the rest formats it.
"""
from __future__ import annotations

import fnmatch
import json
import sys

import numpy as np

from ..errors import CheckpointError, InputError


def _encode(tokenizer, prompt: str, block_size: int) -> np.ndarray:
    if not prompt:
        raise InputError("the prompt is empty: give --prompt some text")
    ids = np.asarray(tokenizer.encode(prompt), dtype=np.int64)   # TokenizerError names a bad char
    if ids.size > block_size:
        raise InputError(f"the prompt is {ids.size} tokens; the model reads at most "
                         f"block_size={block_size}")
    return ids


def head_summary(pattern: np.ndarray, tokens: list[str]) -> list[dict]:
    """Per head of one layer's pattern (H, T, T): mean entropy of its rows (nats), the mean
    weight on the previous token, on the query's own token and on the first token, and the
    token the last position attends to most."""
    H, T, _ = pattern.shape
    p = pattern.astype(np.float64)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1).mean(-1)
    rows = []
    for h in range(H):
        prev = float(np.mean([p[h, t, t - 1] for t in range(1, T)])) if T > 1 else 0.0
        last = int(p[h, -1].argmax())
        rows.append({"head": h, "entropy": round(float(entropy[h]), 4),
                     "previous": round(prev, 4),
                     "self": round(float(np.diagonal(p[h]).mean()), 4),
                     "first": round(float(p[h, :, 0].mean()), 4),
                     "last_looks_at": {"position": last, "token": tokens[last],
                                       "weight": round(float(p[h, -1, last]), 4)}})
    return rows


def inspect_prompt(model, tokenizer, prompt: str, layer: int | None = None, show=(),
                   top_k: int = 5) -> dict:
    """The logit lens of ``prompt`` and its attention heads (all layers, or ``layer``), and
    the arrays named in ``show`` summarised: a dict of plain values."""
    from . import cache_names
    config = model.config
    ids = _encode(tokenizer, prompt, config.block_size)
    L = config.n_layer
    if layer is not None and not 0 <= layer < L:
        raise InputError(f"--layer {layer} is outside 0..{L - 1}")
    names = [f"h.{i}.resid_pre" for i in range(L)] + [f"h.{L - 1}.resid_post"]
    names += [f"h.{i}.attn.pattern" for i in range(L)] + list(show)
    _, cache = model.run_with_cache(ids[None], names=names)
    tokens = [tokenizer.decode([int(i)]) for i in ids]
    lens = cache.logit_lens(top_k)
    layers = range(L) if layer is None else [layer]
    out = {"prompt": prompt, "ids": ids.tolist(), "tokens": tokens,
           "lens": lens.to_dict(0, lambda i: tokenizer.decode([i])),
           "heads": {f"h.{i}": head_summary(cache[f"h.{i}.attn.pattern"][0], tokens)
                     for i in layers}}
    shown = {}
    for name in show:
        for n in [n for n in cache_names(model) if n in cache.keys()
                  and (n == name or fnmatch.fnmatch(n, name))]:
            a = cache[n]
            finite = a[np.isfinite(a)]          # the scores' masked entries are -inf
            shown[n] = {"shape": list(a.shape), "finite": int(finite.size),
                        "mean": float(finite.mean()), "std": float(finite.std()),
                        "min": float(finite.min()), "max": float(finite.max())}
    if shown:
        out["show"] = shown
    return out


def _show(token: str, width: int = 5) -> str:
    """A token as a short visible string: escapes as repr writes them, a space as a dot."""
    return repr(token)[1:-1].replace(" ", "·")[:width]


def _cell(token: str, prob: float, width: int = 11) -> str:
    return f"{_show(token):<6}{prob:.2f}".ljust(width)


def format_report(result: dict, header: str = "") -> str:
    lens, tokens = result["lens"], result["tokens"]
    labels = lens["labels"]
    lines = [header] if header else []
    lines.append(f"logit lens of {result['prompt']!r} ({len(tokens)} tokens): the most likely "
                 "next token read after each block, with its probability")
    lines.append("  pos token  next  | " + "".join(f"{lab:<11}" for lab in labels)
                 + "| true next: rank per row")
    for t, tok in enumerate(tokens):
        true = lens["true"][t]
        nxt = _show(tokens[t + 1]) if true >= 0 else "?"
        cells = "".join(_cell(lens["top_tokens"][r][t][0], lens["top_probs"][r][t][0])
                        for r in range(len(labels)))
        ranks = " ".join(str(lens["true_rank"][r][t]) for r in range(len(labels))) if true >= 0 else "-"
        lines.append(f"  {t:>3} {_show(tok):<6} {nxt:<5} | {cells}| {ranks}")
    kl = np.mean(lens["kl"], axis=1)
    ent = np.mean(lens["entropy"], axis=1)
    lines.append("  KL(final||row), mean: " + "  ".join(f"{lab} {v:.3f}" for lab, v in zip(labels, kl)))
    lines.append("  entropy (nats), mean:  " + "  ".join(f"{lab} {v:.3f}" for lab, v in zip(labels, ent)))
    lines.append("")
    lines.append("attention heads: mean row entropy (nats), mean weight on the previous / own / "
                 "first token, and where the last position looks")
    lines.append("  layer head  entropy  previous  self   first  | last position -> token (weight)")
    for layer, heads in result["heads"].items():
        for h in heads:
            last = h["last_looks_at"]
            lines.append(f"  {layer:<5} {h['head']:>4}  {h['entropy']:>7.3f}  {h['previous']:>8.3f}  "
                         f"{h['self']:>5.3f}  {h['first']:>5.3f}  | {last['position']:>3} "
                         f"{repr(last['token'])} ({last['weight']:.2f})")
    for name, s in result.get("show", {}).items():
        lines.append(f"{name}: shape {tuple(s['shape'])}, over its {s['finite']} finite values: "
                     f"mean {s['mean']:.4g}, std {s['std']:.4g}, min {s['min']:.4g}, "
                     f"max {s['max']:.4g}")
    return "\n".join(lines)


def inspect_checkpoint(ckpt, prompt: str, layer: int | None = None, show=(), top_k: int = 5):
    """(:func:`inspect_prompt`'s dict, the model, the directory read) for a checkpoint or a
    HuggingFace directory with a tokenizer: what ``npgpt inspect`` prints."""
    from ..checkpoints import load_model
    from . import cache_names, select
    model, tokenizer, _, path = load_model(ckpt)
    if tokenizer is None:
        raise CheckpointError(f"{ckpt} has no tokenizer to encode the prompt with")
    show = list(show or [])
    if show:
        select(show, cache_names(model))       # an unknown name: the valid ones, one line
    return inspect_prompt(model, tokenizer, prompt, layer, show, top_k), model, path


def cmd_inspect(args) -> int:
    result, model, path = inspect_checkpoint(args.ckpt, args.prompt, args.layer, args.show,
                                             args.top_k)
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        c = model.config
        print(format_report(result, f"{path}: GPT, {c.n_layer} layers, {c.n_head} heads, "
                                    f"{c.n_embd} channels\n"))
    return 0


def add_inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", help="the logit lens of a prompt and a summary of every "
                                       "attention head of a checkpoint")
    p.add_argument("--ckpt", default="out", help="npgpt checkpoint (or training output "
                                                 "directory) or HuggingFace directory")
    p.add_argument("--prompt", required=True, help="the text to run (at most block_size tokens)")
    p.add_argument("--layer", type=int, default=None,
                   help="summarise this layer's heads only (default: every layer)")
    p.add_argument("--show", action="append", default=None, metavar="NAME",
                   help="also summarise this activation (a cache name or glob, e.g. "
                        "h.0.attn.pattern); repeatable")
    p.add_argument("--top-k", type=int, default=5, help="tokens per lens cell kept in --json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)
