"""A tiny training run directory for the report's tests: a real checkpoint and metrics.jsonl
from a few steps of a small GPT, and a stats.jsonl in the documented schema (docs/glassbox.md)
whose numbers are made up but shaped like a run's: update ratios settling towards -3,
attention entropy falling, the lens sharpening by layer."""
import json

import numpy as np

from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers.char import CharTokenizer
from npgpt.train_config import TrainConfig
from npgpt.trainer import Trainer

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\n" * 20
PROBE = "ROMEO: But, soft"


def train_tiny(out_dir, steps=6):
    tokenizer = CharTokenizer.train(TEXT)
    ids = np.array(tokenizer.encode(TEXT), dtype=np.uint16)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2,
                       n_embd=16)
    train = TrainConfig(batch_size=4, block_size=16, max_steps=steps, warmup_steps=1,
                        eval_interval=3, eval_steps=2, log_interval=1, out_dir=str(out_dir),
                        progress=False, plot=False)
    Trainer(GPT(config, seed=0), ids, ids, train, tokenizer=tokenizer).train()
    return tokenizer, config


def write_stats(out_dir, tokenizer, config, steps=(2, 4, 6), probe_steps=(3, 6)):
    rng = np.random.default_rng(0)
    L, H = config.n_layer, config.n_head
    edges = np.linspace(-5, 5, 41).tolist()
    params = ["wte.weight", "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias",
              "h.1.mlp.c_fc.weight", "ln_f.weight"]
    shapes = [[config.vocab_size, 16], [16, 48], [48], [16, 64], [16]]
    ids = tokenizer.encode(PROBE)
    tokens = [tokenizer.decode([i]) for i in ids]
    lines = [{"kind": "meta", "version": 1, "step": 0, "stats_interval": 2, "n_layer": L,
              "n_head": H, "n_embd": 16, "mlp": "gelu_tanh", "hist_edges": edges,
              "params": params, "measured_on": "the whole batch",
              "probe": {"ids": ids, "tokens": tokens}}]
    for k, step in enumerate(steps):
        hist = rng.random(40)
        lines.append({
            "kind": "step", "step": step, "lr": 1e-3, "loss": 3.0 - 0.1 * k, "grad_norm": 0.5,
            "params": {p: {"shape": s, "w_std": 0.02, "g_std": 0.001, "grad_data": 0.05,
                           "update_data": -2.0 - 0.3 * k} for p, s in zip(params, shapes)},
            "layers": {f"h.{i}": {"resid_norm": 4.0 + i, "grad_norm": 0.2,
                                  "attn_entropy": [2.0 - 0.2 * k] * H,
                                  "act": {"mean": 0.0, "std": 0.5, "hist": (hist / hist.sum()).tolist()},
                                  "pre": {"mean": 0.0, "std": 1.0, "hist": (hist / hist.sum()).tolist()},
                                  "saturated": 0.01, "dead": 0.0} for i in range(L)}})
    T = len(ids)
    for k, step in enumerate(probe_steps):
        scores = rng.standard_normal((L, H, T, T)) * (1 + 3 * k)
        scores[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] = -np.inf
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        R = L + 1
        probs = np.sort(rng.random((R, T, 5)), axis=-1)[..., ::-1] / 2
        top = rng.integers(0, tokenizer.vocab_size, (R, T, 5))
        lines.append({"kind": "probe", "step": step, "tokens": tokens, "ids": ids,
                      "attention": np.round(att, 4).tolist(),
                      "lens": {"labels": ["embed"] + [f"h.{i}" for i in range(L)],
                               "top_ids": top.tolist(),
                               "top_tokens": [[[tokenizer.decode([int(i)]) for i in pos] for pos in row]
                                              for row in top],
                               "top_probs": probs.tolist(), "pred": top[-1, :, 0].tolist(),
                               "pred_rank": rng.integers(1, 30, (R, T)).tolist(),
                               "pred_prob": probs[..., 0].tolist(), "true": ids[1:] + [-1],
                               "true_rank": rng.integers(1, 30, (R, T)).tolist(),
                               "true_prob": [[0.1] * (T - 1) + [None]] * R,
                               "kl": rng.random((R, T)).tolist(),
                               "entropy": rng.random((R, T)).tolist()}})
    with open(out_dir / "stats.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def make_run(out_dir, stats=True):
    tokenizer, config = train_tiny(out_dir)
    if stats:
        write_stats(out_dir, tokenizer, config)
    return out_dir
