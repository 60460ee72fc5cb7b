"""Sinusoidal positional encoding ("Attention Is All You Need", section 3.5).

The learned positional embedding lives in ``embedding.py`` and rotary embeddings in
``rope.py``.
"""
from __future__ import annotations

import numpy as np

from ..contract import checked
from ..errors import InputError
from ..module import Module


@checked
def sinusoidal_table(n_positions: int, dim: int, base: float = 10000.0,
                     dtype=np.float32) -> np.ndarray:
    """The fixed table PE: (n_positions, dim) with

        PE[pos, 2i]   = sin(pos / base^(2i/dim))
        PE[pos, 2i+1] = cos(pos / base^(2i/dim))

    For an odd ``dim`` the last column is a sine (its cosine partner is dropped). Computed in
    float64, then cast, so float32 tables are correctly rounded.

    >>> sinusoidal_table(2, 4, dtype=np.float64)[1].round(4)
    array([0.8415, 0.5403, 0.01  , 1.    ])
    """
    if n_positions < 0 or dim < 1:
        raise InputError(f"sinusoidal_table needs n_positions >= 0 and dim >= 1, "
                         f"got n_positions={n_positions}, dim={dim}")
    pos = np.arange(n_positions, dtype=np.float64)[:, None]
    two_i = np.arange(0, dim, 2, dtype=np.float64)             # 2i for i = 0 .. ceil(dim/2)-1
    angle = pos / base ** (two_i / dim)                         # (n, ceil(dim/2))
    table = np.empty((n_positions, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return table.astype(dtype)


class SinusoidalPositionalEncoding(Module):
    """y = PE[positions], no parameters.   positions: (T,) int >= 0 (any shape works), y: (T, dim)

    There is no length limit: the table is cached and grown (doubled) when a position beyond it
    is asked for. backward has nothing to train and the positions are integers: it returns None.
    """

    def __init__(self, dim: int, base: float = 10000.0, dtype=np.float32):
        super().__init__(dtype)
        self.dim, self.base = dim, base
        self._table = sinusoidal_table(0, dim, base, self.dtype)

    def table(self, n_positions: int) -> np.ndarray:
        """The first ``n_positions`` rows, growing the cache if needed."""
        if n_positions > self._table.shape[0] or self._table.dtype != self.dtype:
            n = max(n_positions, 2 * self._table.shape[0], 64)
            self._table = sinusoidal_table(n, self.dim, self.base, self.dtype)
        return self._table[:n_positions]

    def forward(self, positions) -> np.ndarray:
        positions = np.asarray(positions)
        if not np.issubdtype(positions.dtype, np.integer):
            raise InputError(f"SinusoidalPositionalEncoding expects integer positions, "
                             f"got dtype {positions.dtype}")
        if positions.size and positions.min() < 0:
            raise InputError(f"SinusoidalPositionalEncoding: position {int(positions.min())} "
                             "is negative; positions start at 0")
        n = int(positions.max()) + 1 if positions.size else 0
        self.save(positions)
        return self.table(n)[positions]

    def backward(self, dy: np.ndarray) -> None:
        self.saved()
        return None
