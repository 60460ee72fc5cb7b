"""The skip-gram loss with negative sampling (word2vec's SGNS objective).

For a centre word with input vector ``v`` and, per pair, the output vectors of its true
context word and of K noise words drawn from the unigram distribution raised to 3/4, the
loss pushes the true pair's score up and the noise pairs' scores down:

    s[b, j] = v[b] . u[b, j]                      (j = 0 the context, 1..K the negatives)
    loss    = -mean_b ( log sigmoid(s[b, 0]) + sum_{j>=1} log sigmoid(-s[b, j]) )

It is logistic regression of "is this a real pair?" on the dot product, which is why the
learned vectors end up with similar words pointing the same way.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..module import Module
from .ffn import sigmoid


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-x))) = -log(1 + exp(-x)), without overflow for large |x|."""
    return -np.logaddexp(0.0, -x)


class NegativeSamplingLoss(Module):
    """loss = -mean_b sum_j log sigmoid(sign_j * v[b] . u[b, j]), sign = (+1, -1, ..., -1).

    v: (B, C) centre (input) vectors, u: (B, 1+K, C) output vectors, column 0 the true
    context word and columns 1..K the negatives; loss: a scalar.

    backward, with z = sign * s and dloss the upstream scalar:
        ds[b, j] = -dloss / B * sign_j * sigmoid(-z[b, j])    (d/dz -log sigmoid(z) = -sigmoid(-z))
        dv[b]    = sum_j ds[b, j] u[b, j]
        du[b, j] = ds[b, j] v[b]
    """

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)

    def forward(self, v: np.ndarray, u: np.ndarray) -> np.ndarray:
        if v.ndim != 2 or u.ndim != 3 or u.shape[0] != v.shape[0] or u.shape[2] != v.shape[1]:
            raise InputError(f"NegativeSamplingLoss expects v (B, C) and u (B, 1+K, C); got "
                             f"{v.shape} and {u.shape}")
        if u.shape[1] < 1 or v.shape[0] == 0:
            raise InputError(f"NegativeSamplingLoss needs at least one pair and the context "
                             f"column; got u of shape {u.shape}")
        sign = np.full(u.shape[1], -1.0, dtype=v.dtype)
        sign[0] = 1.0
        z = np.einsum("bc,bjc->bj", v, u) * sign
        self.save(v, u, z, sign)
        return np.asarray(-log_sigmoid(z).sum(axis=1).mean(), dtype=v.dtype)

    def backward(self, dloss=1.0):
        v, u, z, sign = self.saved()
        ds = (-float(dloss) / v.shape[0]) * sign * sigmoid(-z)
        dv = np.einsum("bj,bjc->bc", ds, u)
        du = ds[:, :, None] * v[:, None, :]
        return dv.astype(v.dtype, copy=False), du.astype(u.dtype, copy=False)
