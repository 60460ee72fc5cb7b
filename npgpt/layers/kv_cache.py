"""The KV cache: keys and values of the positions decoded so far, preallocated."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InputError


class KVCache:
    """Keys and values of the positions seen so far, for decoding one token at a time.

        k, v: (B, Hkv, max_len, hs), preallocated; the first ``length`` positions are valid.

    ``append(k_new, v_new)`` writes (B, Hkv, T, hs) after them and returns views of all
    ``length`` keys and values; no array is reallocated while decoding.
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype=np.float32):
        for name, value in [("batch_size", batch_size), ("n_kv_head", n_kv_head),
                            ("max_len", max_len), ("head_dim", head_dim)]:
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"KVCache {name}={value} must be a positive integer")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.k.dtype

    def append(self, k_new: np.ndarray, v_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, Hkv, max_len, hs = self.k.shape
        if k_new.shape != v_new.shape or k_new.ndim != 4 or k_new.shape[:2] != (B, Hkv) \
                or k_new.shape[3] != hs:
            raise InputError(f"KVCache holds (B, Hkv, T, hs) = ({B}, {Hkv}, T, {hs}); "
                             f"got k {k_new.shape}, v {v_new.shape}")
        if k_new.dtype != self.dtype or v_new.dtype != self.dtype:
            raise InputError(f"KVCache is {self.dtype}, got k {k_new.dtype}, v {v_new.dtype}")
        T = k_new.shape[2]
        if self.length + T > max_len:
            raise InputError(f"KVCache overflow: {self.length} cached + {T} new positions > "
                             f"max_len={max_len}")
        self.k[:, :, self.length:self.length + T] = k_new
        self.v[:, :, self.length:self.length + T] = v_new
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def crop(self, n: int):
        """Keep the first n positions (e.g. to roll back rejected speculative tokens)."""
        if not 0 <= n <= self.length:
            raise InputError(f"KVCache.crop({n}): n must be in [0, length={self.length}]")
        self.length = n

    def reset(self):
        self.length = 0

    def __repr__(self):
        B, Hkv, max_len, hs = self.k.shape
        return (f"KVCache(batch_size={B}, n_kv_head={Hkv}, length={self.length}, "
                f"max_len={max_len}, head_dim={hs}, dtype={self.dtype})")
