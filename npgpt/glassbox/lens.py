"""The logit lens: read the residual stream after every block as if it were the last.

Row l of the lens puts the residual after block l - 1 (row 0: the embeddings) through the
model's own ln_f and head, so the last row is exactly the model's output. Per row, batch row
and position it gives the top-k tokens with their probabilities, the rank and probability of
the model's final prediction and of the true next token, KL(final || this row) and the
entropy (nats). Ranks count from 1 (the most likely token).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..layers.loss import log_softmax


@dataclass
class LogitLens:
    labels: list[str]            # R rows: "embed", "h.0", ..., "h.{L-1}" (after that block)
    top_ids: np.ndarray          # (R, B, T, k)
    top_probs: np.ndarray        # (R, B, T, k)
    pred: np.ndarray             # (B, T) the model's final prediction (argmax of its logits)
    pred_rank: np.ndarray        # (R, B, T)
    pred_prob: np.ndarray        # (R, B, T)
    true: np.ndarray             # (B, T) the next token (-1 where unknown: the last position)
    true_rank: np.ndarray        # (R, B, T) (0 where unknown)
    true_prob: np.ndarray        # (R, B, T) (nan where unknown)
    kl: np.ndarray               # (R, B, T) KL(final || row), nats
    entropy: np.ndarray          # (R, B, T) nats
    extra: dict = field(default_factory=dict)

    def to_dict(self, b: int = 0, decode=None) -> dict:
        """Batch row ``b`` as plain lists (JSON), tokens decoded with ``decode(id)`` if given."""
        def r(a, nd=4):
            return np.round(a[:, b].astype(float), nd).tolist()
        out = {"labels": self.labels, "top_ids": self.top_ids[:, b].tolist(),
               "top_probs": r(self.top_probs), "pred": self.pred[b].tolist(),
               "pred_rank": self.pred_rank[:, b].tolist(), "pred_prob": r(self.pred_prob),
               "true": self.true[b].tolist(), "true_rank": self.true_rank[:, b].tolist(),
               "true_prob": [[None if np.isnan(p) else round(float(p), 4) for p in row]
                             for row in self.true_prob[:, b]],
               "kl": r(self.kl), "entropy": r(self.entropy)}
        if decode is not None:
            out["top_tokens"] = [[[decode(int(i)) for i in pos] for pos in row]
                                 for row in self.top_ids[:, b]]
        return out


def _rank(logp: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """1 + how many tokens are strictly more likely than ``ids`` (B, T) in logp (B, T, V)."""
    chosen = np.take_along_axis(logp, ids[..., None], -1)
    return 1 + (logp > chosen).sum(-1)


def logit_lens(cache, top_k: int = 5) -> LogitLens:
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k={top_k!r} must be a positive integer")
    stack, labels = cache.accumulated_resid(apply_ln=True)
    R = stack.shape[0]
    final = log_softmax(cache.logits.astype(np.float64))
    p_final = np.exp(final)
    B, T, V = final.shape
    k = min(int(top_k), V)
    pred = final.argmax(-1)
    idx = np.asarray(cache.idx)
    if cache.targets is not None:
        true = np.asarray(cache.targets)
    else:
        true = np.full((B, T), -1)
        true[:, :-1] = idx[:, 1:]
    known = true >= 0
    safe_true = np.where(known, true, 0)
    out = {n: np.zeros((R, B, T)) for n in ("pred_prob", "true_prob", "kl", "entropy")}
    pred_rank = np.zeros((R, B, T), np.int64)
    true_rank = np.zeros((R, B, T), np.int64)
    top_ids = np.zeros((R, B, T, k), np.int64)
    top_probs = np.zeros((R, B, T, k))
    for r in range(R):                    # a row at a time: (B, T, V) each, not (R, B, T, V)
        logp = final if r == R - 1 else log_softmax(cache.unembed(stack[r]).astype(np.float64))
        p = np.exp(logp)
        order = np.argpartition(-logp, k - 1, axis=-1)[..., :k]
        order = np.take_along_axis(order, np.argsort(-np.take_along_axis(logp, order, -1), -1), -1)
        top_ids[r], top_probs[r] = order, np.take_along_axis(p, order, -1)
        pred_rank[r] = _rank(logp, pred)
        out["pred_prob"][r] = np.take_along_axis(p, pred[..., None], -1)[..., 0]
        true_rank[r] = np.where(known, _rank(logp, safe_true), 0)
        out["true_prob"][r] = np.where(known, np.take_along_axis(p, safe_true[..., None], -1)[..., 0],
                                       np.nan)
        out["kl"][r] = np.maximum((p_final * (final - logp)).sum(-1), 0.0)
        out["entropy"][r] = -(p * logp).sum(-1)
    return LogitLens(labels, top_ids, top_probs, pred, pred_rank, out["pred_prob"], true,
                     true_rank, out["true_prob"], out["kl"], out["entropy"])
