"""Token embedding and learned positional embedding (GPT-2's ``wte`` and ``wpe``)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import InputError
from ..module import Module, Parameter
from .linear import normal_init


def _check_ids(idx, name: str) -> np.ndarray:
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"{name} expects an integer array of ids, got dtype {idx.dtype}")
    return idx


class Embedding(Module):
    """y = W[idx], a row lookup.   idx: (...) int in [0, V), W: (V, C), y: (..., C)

    backward: dW[v] += sum of dy over the positions where idx == v (a scatter-add; a token
    that appears twice gets both gradients). The ids are integers, so the input gradient is
    None.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32,
                 rng: np.random.Generator | None = None, std: float = 0.02):
        super().__init__(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(
            normal_init((num_embeddings, embedding_dim), std, dtype, rng))

    def _validate(self, idx: np.ndarray) -> None:
        if idx.size == 0:
            return
        lo, hi = idx.min(), idx.max()
        if lo < 0 or hi >= self.num_embeddings:
            bad = lo if lo < 0 else hi
            raise InputError(f"{type(self).__name__}: id {int(bad)} is outside the vocabulary "
                             f"[0, {self.num_embeddings}) (V={self.num_embeddings})")

    def forward(self, idx) -> np.ndarray:
        idx = _check_ids(idx, type(self).__name__)
        self._validate(idx)
        self.save(idx)
        return self.weight.data[idx]

    def attend(self, x: np.ndarray) -> np.ndarray:
        """x @ W^T: scores of x (..., C) against every row (..., V), e.g. a tied LM head.
        (B, T, C) is flattened to (B·T, C) so BLAS sees one large product."""
        C = self.embedding_dim
        return kernels.matmul_t(x.reshape(-1, C), self.weight.data).reshape(x.shape[:-1] + (-1,))

    def backward(self, dy: np.ndarray) -> None:
        (idx,) = self.saved()
        if not self.weight.requires_grad:      # frozen (under LoRA)
            return None
        # a scatter-add that accumulates repeated ids (fancy-index assignment would keep one);
        # the kernel's reference is np.add.at
        kernels.embedding_backward(self.weight.grad, idx.reshape(-1),
                                   dy.reshape(-1, self.embedding_dim))
        return None


class LearnedPositionalEmbedding(Embedding):
    """y = W[positions], one trained vector per position.   positions: (T,) int, W: (block_size, C),
    y: (T, C), added to token embeddings (B, T, C) by broadcasting.

    backward: dy may be (..., T, C); the leading axes are summed (every sequence in the batch
    used the same rows), then dW[positions] += that sum.
    """

    def __init__(self, block_size: int, embedding_dim: int, dtype=np.float32,
                 rng: np.random.Generator | None = None, std: float = 0.02):
        super().__init__(block_size, embedding_dim, dtype=dtype, rng=rng, std=std)
        self.block_size = block_size

    def _validate(self, positions: np.ndarray) -> None:
        if positions.ndim != 1:
            raise InputError(f"LearnedPositionalEmbedding expects a 1-D array of positions (T,), "
                             f"got shape {positions.shape}")
        if positions.size == 0:
            return
        if positions.min() < 0:
            raise InputError(f"LearnedPositionalEmbedding: position {int(positions.min())} is "
                             "negative; positions start at 0")
        if positions.max() >= self.block_size:
            raise InputError(
                f"sequence length {int(positions.max()) + 1} exceeds block_size={self.block_size}: "
                f"learned positional embeddings exist only for positions 0..{self.block_size - 1}; "
                "crop the input to the last block_size tokens or use a model with a larger "
                "block_size")

    def backward(self, dy: np.ndarray) -> None:
        (positions,) = self.saved()
        if not self.weight.requires_grad:
            return None
        C = self.embedding_dim
        dy = dy.reshape(-1, positions.shape[0], C).sum(axis=0)
        kernels.embedding_backward(self.weight.grad, positions, dy)
        return None
