"""Training statistics: what the weights, the updates and the activations do while a model
trains, written to ``OUT_DIR/stats.jsonl`` every ``stats_interval`` steps (schema:
docs/glassbox.md).

The trainer calls three methods: :meth:`TrainingStats.before_update` just before the
optimizer's step (the gradients it will use, and a copy of the weights), :meth:`after_update`
just after it (the update actually made, then the activations of a fixed sample of windows),
and :meth:`probe` at each evaluation (a prompt's attention patterns and logit lens). With
``stats_interval`` 0 there is no TrainingStats at all, so an ordinary run does none of this.

Under ``mpiexec`` rank 0 measures and writes; its parameters and gradients are every rank's
(after the allreduce), its activation sample is its own forward.
"""
from __future__ import annotations

import math

import numpy as np

from .. import metrics
from ..errors import ConfigError, TrainingError
from ..runtime.threads import serial

HIST_EDGES = np.linspace(-5.0, 5.0, 41)
SAMPLE_ROWS = 2            # windows of the fixed activation sample
PROBE_TOKENS = 32          # the default probe: this many tokens of the validation text
VERSION = 1


def histogram(a: np.ndarray) -> list[float]:
    """Fractions of ``a`` in the 40 bins of HIST_EDGES (values beyond fall in the end bins)."""
    width = a.dtype.type(HIST_EDGES[1] - HIST_EDGES[0])
    scaled = (a.ravel() - a.dtype.type(HIST_EDGES[0])) / width
    bins = np.clip(scaled, 0, len(HIST_EDGES) - 2).astype(np.int64)
    counts = np.bincount(bins, minlength=len(HIST_EDGES) - 1)
    return np.round(counts / max(1, a.size), 5).tolist()


def summary(a: np.ndarray) -> dict:
    return {"mean": round(float(a.mean()), 6), "std": round(float(a.std()), 6),
            "hist": histogram(a)}


def attention_entropy(pattern: np.ndarray) -> list[float]:
    """Per head: mean over batch and queries of -sum_s p log p (nats).  pattern: (B, H, T, S)"""
    p = pattern.astype(np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return np.round(-(p * logp).sum(-1).mean(axis=(0, 2)), 5).tolist()


def saturation(pre: np.ndarray, activation: str) -> tuple[float, float]:
    """(fraction of saturated inputs, fraction of dead hidden units) of an MLP's activation
    input (..., hidden): flat or linear to 1% (|x| > 3) for the smooth activations, x <= 0
    for ReLU; a dead unit is on the flat side at every position."""
    flat = pre <= 0 if activation.startswith("relu") else pre < -3.0
    saturated = flat if activation.startswith("relu") else flat | (pre > 3.0)
    dead = flat.reshape(-1, pre.shape[-1]).all(axis=0)
    return round(float(saturated.mean()), 6), round(float(dead.mean()), 6)


def _std(a: np.ndarray) -> float:
    return float(a.std())        # float32 pairwise sums: ample for a 4-digit statistic


def _ratio(num: float, den: float):
    return None if den == 0 or not math.isfinite(num / den) else round(num / den, 6)


class TrainingStats:
    """Measures a Trainer's model every ``stats_interval`` steps (see the module docstring)."""

    def __init__(self, trainer):
        from ..models.gpt import GPT
        if not isinstance(trainer.model, GPT):
            raise ConfigError(f"stats_interval: training statistics read a GPT's layers; this "
                              f"model is a {type(trainer.model).__name__}")
        self.trainer = trainer
        c = trainer.config
        self.interval = c.stats_interval
        self.model = trainer.model
        self.path = trainer.out_dir / "stats.jsonl"
        self.writes = trainer.is_main
        self.activation = getattr(getattr(self.model, "config", None), "mlp", "gelu")
        data = trainer.val_data if trainer.val_data is not None else trainer.train_data
        T = c.block_size
        rng = np.random.default_rng(c.seed + 1)           # not the batch sampler's draws
        starts = rng.integers(0, len(data) - T, SAMPLE_ROWS)
        self.sample = np.stack([np.asarray(data[s:s + T]) for s in starts]).astype(np.int64)
        self.probe_ids = self._probe_ids(c.probe_prompt, data)
        self._before: dict | None = None
        self._start_step = trainer.step
        self._started = False

    def _probe_ids(self, prompt: str, data) -> np.ndarray:
        block = self.model.config.block_size
        tok = self.trainer.tokenizer
        if prompt:
            if tok is None:
                raise ConfigError("probe_prompt needs the run's tokenizer to encode it")
            ids = np.asarray(tok.encode(prompt), dtype=np.int64)
            if ids.size == 0 or ids.size > block:
                raise ConfigError(f"probe_prompt is {ids.size} tokens; it must be 1..{block} "
                                  "(the model's block_size)")
            return ids
        return np.asarray(data[:min(PROBE_TOKENS, block, len(data))], dtype=np.int64)

    def _tokens(self, ids) -> list[str]:
        tok = self.trainer.tokenizer
        if tok is None:
            return [str(int(i)) for i in ids]
        return [tok.decode([int(i)]) for i in ids]

    def _write(self, record: dict) -> None:
        if not self.writes:
            return
        if not self._started:       # the first line of this run: the meta line before it
            self._started = True
            self.start()
        try:
            metrics.append(self.path, record)
        except OSError as e:
            raise TrainingError(f"cannot write {self.path}: {e.strerror or e}") from None

    # --- the run -------------------------------------------------------------------------
    def start(self) -> None:
        """The meta line (after dropping lines beyond the step a resumed run restarts at);
        written with the run's first statistics, so a run stopped before any writes none."""
        self._started = True
        if not self.writes:
            return
        try:
            metrics.trim(self.path, self._start_step)
        except OSError as e:
            raise TrainingError(f"cannot write {self.path}: {e.strerror or e}") from None
        c = self.model.config
        self._write({"kind": "meta", "version": VERSION, "step": self._start_step,
                     "stats_interval": self.interval, "n_layer": c.n_layer, "n_head": c.n_head,
                     "n_embd": c.n_embd, "mlp": c.mlp, "hist_edges": HIST_EDGES.tolist(),
                     "params": [n for n, p in self.model.named_parameters() if p.requires_grad],
                     "measured_on": "rank 0; activations on a fixed sample of "
                                    f"{SAMPLE_ROWS} windows of the validation text",
                     "probe": {"ids": self.probe_ids.tolist(),
                               "tokens": self._tokens(self.probe_ids)}})

    def due(self, step: int) -> bool:
        """Whether the step about to be taken (numbered ``step``) is measured."""
        return self.writes and step % self.interval == 0

    def before_update(self) -> None:
        """The gradients the optimizer will use and the weights before it uses them."""
        self._before = {n: (p.data.copy(), _std(p.grad))
                        for n, p in self.model.named_parameters() if p.requires_grad}

    def after_update(self, lr: float, grad_norm: float) -> None:
        before, self._before = self._before, None
        params, block_sq = {}, {}
        for name, p in self.model.named_parameters():
            if name not in before:
                continue
            w0, g_std = before[name]
            w_std, w0_std = _std(p.data), _std(w0)
            delta = p.data - w0
            update = _ratio(_std(delta), w0_std)
            params[name] = {"shape": list(p.shape), "w_std": round(w_std, 7),
                            "g_std": round(g_std, 9), "grad_data": _ratio(g_std, w_std),
                            "update_data": None if not update else round(math.log10(update), 4)}
            if name.startswith("h."):
                block = ".".join(name.split(".")[:2])
                g = p.grad.ravel()
                block_sq[block] = block_sq.get(block, 0.0) + float(np.dot(g, g))
        record = {"kind": "step", "step": self.trainer.step, "lr": lr,
                  "grad_norm": round(float(grad_norm), 6), "params": params,
                  "layers": self._activations(block_sq)}
        self._write(record)

    def _activations(self, block_sq: dict) -> dict:
        names = ["h.*.resid_post", "h.*.attn.pattern", "h.*.mlp.pre", "h.*.mlp.post"]
        with serial():               # a few windows: one thread does it (npgpt.runtime.threads)
            _, cache = self.model.run_with_cache(self.sample, names=names)
        layers = {}
        for i in range(self.model.config.n_layer):
            pre, post = cache[f"h.{i}.mlp.pre"], cache[f"h.{i}.mlp.post"]
            saturated, dead = saturation(pre, self.activation)
            resid = cache[f"h.{i}.resid_post"]
            layers[f"h.{i}"] = {
                "resid_norm": round(float(np.linalg.norm(resid, axis=-1).mean()), 5),
                "grad_norm": round(math.sqrt(block_sq.get(f"h.{i}", 0.0)), 7),
                "attn_entropy": attention_entropy(cache[f"h.{i}.attn.pattern"]),
                "act": summary(post), "pre": summary(pre),
                "saturated": saturated, "dead": dead}
        return layers

    def probe(self) -> None:
        """The probe prompt's attention patterns and logit lens (at an evaluation)."""
        if not self.writes:
            return
        ids = self.probe_ids[None]
        with serial():
            _, cache = self.model.run_with_cache(ids, names=["h.*.resid_pre", "h.*.resid_post",
                                                              "h.*.attn.pattern"])
        L = self.model.config.n_layer
        attention = np.stack([cache[f"h.{i}.attn.pattern"][0] for i in range(L)])
        tok = self.trainer.tokenizer
        decode = (lambda i: tok.decode([i])) if tok is not None else None
        self._write({"kind": "probe", "step": self.trainer.step, "ids": self.probe_ids.tolist(),
                     "tokens": self._tokens(self.probe_ids),
                     "attention": np.round(attention.astype(np.float64), 4).tolist(),
                     "lens": cache.logit_lens(top_k=5).to_dict(0, decode)})


def training_stats(trainer) -> TrainingStats | None:
    """The Trainer's TrainingStats (its probe prompt checked, nothing written yet), or None
    when ``stats_interval`` is 0."""
    if not trainer.config.stats_interval:
        return None
    return TrainingStats(trainer)
