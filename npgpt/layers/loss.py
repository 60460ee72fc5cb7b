"""Softmax, log-softmax and the softmax cross-entropy loss."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..contract import checked
from ..errors import InputError
from ..module import Module


@checked
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``axis``.

    Subtracting the max changes nothing mathematically and keeps exp from overflowing (the
    largest term becomes exp(0) = 1). Rows that are all -inf (fully masked) give NaN.
    """
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@checked
def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x) along ``axis``, computed as (x - max) - log(sum(exp(x - max)))."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


class CrossEntropyLoss(Module):
    """loss = mean over the counted targets of -log softmax(logits)[target].
    logits: (..., V) float; targets: (...) int in [0, V) or ``ignore_index``; loss: scalar
    (a 0-d array in the logits' dtype).

    Targets equal to ``ignore_index`` (padding) are not counted: they add nothing to the loss
    and get zero gradient; the mean divides by the number of counted targets n. If every
    target is ignored, n = 0: the loss is 0.0 and the gradient is zero (PyTorch returns NaN).

    backward(dloss=1.0) -> (dlogits, None), with p = softmax(logits):
        dlogits = dloss * (p - onehot(target)) / n    on counted rows, 0 on ignored rows
    """

    def __init__(self, ignore_index: int = -100, dtype=np.float32):
        super().__init__(dtype)
        self.ignore_index = ignore_index

    def forward(self, logits: np.ndarray, targets) -> np.ndarray:
        targets = np.asarray(targets)
        if not np.issubdtype(targets.dtype, np.integer):
            raise InputError(f"CrossEntropyLoss expects integer targets, got dtype {targets.dtype}")
        if logits.ndim < 1 or logits.shape[:-1] != targets.shape:
            raise InputError(f"CrossEntropyLoss expects logits (..., V) and targets (...) with the "
                             f"same leading shape, got logits {logits.shape} and targets "
                             f"{targets.shape}")
        V = logits.shape[-1]
        logits2 = logits.reshape(-1, V)
        targets1 = targets.reshape(-1)
        counted = targets1 != self.ignore_index
        bad = counted & ((targets1 < 0) | (targets1 >= V))
        if bad.any():
            raise InputError(f"CrossEntropyLoss: target {int(targets1[bad][0])} is outside "
                             f"[0, {V}) (V={V}) and is not ignore_index={self.ignore_index}")
        # one pass over the (N, V) logits gives the loss and dlogits (dloss = 1), as llm.c does;
        # npgpt.kernels.cross_entropy holds the NumPy reference
        loss, dlogits = kernels.cross_entropy_forward_backward(logits2, targets1,
                                                               self.ignore_index)
        self.save(dlogits, logits.shape)
        return np.asarray(loss, dtype=logits.dtype)

    def backward(self, dloss=1.0):
        dlogits, shape = self.saved()
        if not (np.ndim(dloss) == 0 and dloss == 1.0):   # the usual dloss = 1 costs no copy
            dlogits = dlogits * np.asarray(dloss, dtype=dlogits.dtype)
        return dlogits.reshape(shape), None
