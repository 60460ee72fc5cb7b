"""``npgpt report DIR``: one self-contained HTML page of a training run.

The page is drawn in the browser by a small inline script (``report.js``, beside this file)
from the run's numbers embedded as JSON: the curves of ``metrics.jsonl``, the statistics of
``stats.jsonl`` (layer x step heatmaps, the four panels of the activation/gradient lecture,
attention grids and the logit lens of the probe prompt at each evaluation) and the
checkpoint's token embedding (neighbours, a PCA projection). Numbers rather than pictures
because the page is interactive (a slider over steps, a probability / rank / KL switch, hover
for values), the numbers are smaller than images of them, and the page needs no matplotlib.
Its Content-Security-Policy allows no request at all: it opens from disk, offline.

What a run lacks (no statistics, no checkpoint) the page says, and shows the rest.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError, NpgptError, describe
from ..io import atomic_write
from .cache import neighbours

REPORT = "report.html"
_HERE = Path(__file__).resolve().parent
MAX_EMBED_ROWS = 2000        # token rows projected and labelled (ids 0..N-1 of a big vocabulary)


# --- reading the run ------------------------------------------------------------------------

def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of ``path``, one per line, and how many lines did not parse (a run
    stopped mid-write may leave half a line)."""
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _last_per_step(records: list[dict]) -> list[dict]:
    """One record per step (a resumed run may repeat steps: the later line wins), by step."""
    by_step = {}
    for r in records:
        if isinstance(r.get("step"), (int, float)):
            by_step[r["step"]] = r
    return [by_step[s] for s in sorted(by_step)]


def _num(v):
    """A finite float, or None (JSON has no NaN; the page draws None as a gap)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _sig(values, digits: int = 4):
    """Nested lists of numbers with ``digits`` significant digits (a smaller page)."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (list, tuple)):
        return [_sig(v, digits) for v in values]
    v = _num(values)
    return None if v is None else float(f"{v:.{digits}g}")


def curves(metrics: list[dict]) -> dict:
    """Training and evaluation series from metrics.jsonl's records."""
    train = _last_per_step([r for r in metrics if "loss" in r])
    evals = _last_per_step([r for r in metrics if any(k.endswith("_loss") for k in r)])
    out = {"step": [r["step"] for r in train]}
    for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
        out[key] = _sig([r.get(key) for r in train])
    splits = sorted({k[:-5] for r in evals for k in r if k.endswith("_loss")})
    out["eval"] = {"step": [r["step"] for r in evals],
                   **{s: _sig([r.get(f"{s}_loss") for r in evals]) for s in splits}}
    return out


def statistics(records: list[dict]) -> dict | None:
    """The ``step`` records of stats.jsonl as arrays the page draws (None without any)."""
    steps = _last_per_step([r for r in records if r.get("kind") == "step"])
    if not steps:
        return None
    metas = [r for r in records if r.get("kind") == "meta"]
    meta = metas[-1] if metas else {}
    layers = sorted({name for r in steps for name in r.get("layers", {})},
                    key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")])
    params = list(dict.fromkeys(name for r in steps for name in r.get("params", {})))
    shapes = {}
    for r in steps:
        for name, p in r.get("params", {}).items():
            shapes.setdefault(name, p.get("shape"))

    def per_layer(get):
        return _sig([[get(r.get("layers", {}).get(layer, {})) for r in steps] for layer in layers])

    def mean_entropy(s):
        e = [x for x in s.get("attn_entropy") or [] if _num(x) is not None]
        return sum(e) / len(e) if e else None

    layer_metrics = {
        "attention entropy (mean over heads, nats)": per_layer(mean_entropy),
        "residual norm": per_layer(lambda s: s.get("resid_norm")),
        "gradient norm": per_layer(lambda s: s.get("grad_norm")),
        "activation std (mlp.post)": per_layer(lambda s: (s.get("act") or {}).get("std")),
        "pre-activation std (mlp.pre)": per_layer(lambda s: (s.get("pre") or {}).get("std")),
        "saturated fraction": per_layer(lambda s: s.get("saturated")),
        "dead fraction": per_layer(lambda s: s.get("dead")),
    }
    param_metric = {key: _sig([[(r.get("params", {}).get(p) or {}).get(key) for r in steps]
                               for p in params])
                    for key in ("update_data", "grad_data", "w_std", "g_std")}

    def hist(kind):
        return _sig([[((r.get("layers", {}).get(layer) or {}).get(kind) or {}).get("hist")
                      for layer in layers] for r in steps], 3)

    return {"step": [r["step"] for r in steps], "layers": layers, "params": params,
            "shapes": [shapes.get(p) for p in params], "layer_metrics": layer_metrics,
            "param_metrics": param_metric, "hist_edges": meta.get("hist_edges"),
            "act_hist": hist("act"), "pre_hist": hist("pre"),
            "heads_entropy": _sig([[(r.get("layers", {}).get(layer) or {}).get("attn_entropy")
                                    for layer in layers] for r in steps], 3),
            "mlp": meta.get("mlp"), "measured_on": meta.get("measured_on")}


def probes(records: list[dict]) -> list[dict]:
    """The probe prompt's attention and logit lens at each evaluation."""
    out = []
    for r in _last_per_step([r for r in records if r.get("kind") == "probe"]):
        lens = r.get("lens") or {}
        out.append({"step": r["step"], "tokens": [str(t) for t in r.get("tokens", [])],
                    "ids": [int(i) for i in r.get("ids", [])],
                    "attention": _sig(r.get("attention") or [], 3),
                    "lens": {k: (_sig(v, 3) if k in ("top_probs", "pred_prob", "true_prob",
                                                     "kl", "entropy") else v)
                             for k, v in lens.items()}})
    return out


def embedding(run_dir: Path, probe_ids=(), k: int = 6) -> dict:
    """The checkpoint's token embedding: a 2-D PCA of its rows and the nearest rows of the
    probe's tokens. ``{"note": why}`` when there is no readable checkpoint."""
    from ..checkpoints import load_model          # the models, only when a report is written
    try:
        model, tokenizer, _, path = load_model(run_dir)
    except (NpgptError, OSError) as e:
        return {"note": f"no token embedding: {describe(e)}"}
    E = np.asarray(model.wte.weight.data, dtype=np.float64)
    V = E.shape[0]

    def label(i):
        if tokenizer is None or i >= tokenizer.vocab_size:
            return f"#{i}"
        try:
            return tokenizer.decode([int(i)])
        except Exception:                      # a byte piece that is not UTF-8 on its own
            return f"#{i}"

    n = min(V, MAX_EMBED_ROWS)
    X = E[:n] - E[:n].mean(axis=0)
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    xy = X @ Vt[:2].T
    explained = (s[:2] ** 2 / max((s ** 2).sum(), 1e-300)).tolist()
    queries = list(dict.fromkeys(int(i) for i in probe_ids if 0 <= int(i) < V))[:16]
    if not queries:
        queries = list(range(min(V, 16)))
    return {"checkpoint": str(path), "vocab_size": V, "shown": n,
            "labels": [label(i) for i in range(n)], "xy": _sig(xy, 4),
            "explained": _sig(explained, 3),
            "neighbours": [{"token": label(q), "near": [[label(j), round(c, 3)]
                                                        for j, c in neighbours(E, q, k)]}
                           for q in queries]}


def collect(run_dir) -> dict:
    """Everything the page shows, as JSON-ready data; an :class:`InputError` when ``run_dir``
    is not a directory or holds nothing to report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a directory (give a training output directory: "
                         "metrics.jsonl, stats.jsonl, checkpoint/)")
    metrics, bad_metrics = read_jsonl(run_dir / "metrics.jsonl")
    stats_records, bad_stats = read_jsonl(run_dir / "stats.jsonl")
    notes = []
    for name, bad in (("metrics.jsonl", bad_metrics), ("stats.jsonl", bad_stats)):
        if bad:
            notes.append(f"{name}: {bad} line(s) did not parse and are left out")
    stats = statistics(stats_records)
    probe = probes(stats_records)
    if stats is None:
        notes.append("this run has no training statistics (stats.jsonl): train with "
                     "--stats-interval N to see the heatmaps, the lecture's panels, the "
                     "attention maps and the logit lens")
    elif not probe:
        notes.append("stats.jsonl holds no probe records (they are written at each evaluation)")
    emb = embedding(run_dir, probe[-1]["ids"] if probe else ())
    if "note" in emb:
        notes.append(emb["note"])
    if not metrics and stats is None and "note" in emb:
        raise InputError(f"nothing to report in {run_dir}: no metrics.jsonl, no stats.jsonl "
                         "and no checkpoint")
    config = {}
    for candidate in (run_dir / "checkpoint" / "config.json", run_dir / "config.json"):
        if candidate.is_file():
            try:
                config = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError:
                notes.append(f"{candidate} does not parse")
            break
    return {"run": str(run_dir.resolve()), "config": config, "notes": notes,
            "curves": curves(metrics), "stats": stats, "probes": probe, "embedding": emb}


# --- writing the page -----------------------------------------------------------------------

# nothing may be fetched: no network, no file beside the page; inline script and style only
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data:")


def render(data: dict) -> str:
    """The page: the data as JSON in a script element, then the drawing script."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")       # a token "</script>" must not end the element
    script = (_HERE / "report.js").read_text(encoding="utf-8")
    style = (_HERE / "report.css").read_text(encoding="utf-8")
    title = html.escape(f"npgpt report: {Path(data['run']).name}")
    body = (_HERE / "report_body.html").read_text(encoding="utf-8")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f"<title>{title}</title>\n<style>\n{style}</style></head>\n<body>\n"
            f"<h1>{title}</h1>\n{body}\n"
            f'<script type="application/json" id="data">{payload}</script>\n'
            f"<script>\n{script}</script>\n</body></html>\n")


def write_report(run_dir, out=None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) at once (a temporary file renamed), and
    return its path."""
    page = render(collect(run_dir))
    path = Path(out) if out is not None else Path(run_dir) / REPORT
    atomic_write(path, page)
    return path
