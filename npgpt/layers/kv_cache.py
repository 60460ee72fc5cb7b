"""The KV cache: keys and values of the positions decoded so far, preallocated."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, InputError


class KVCache:
    """Keys and values of the positions seen so far, for decoding one token at a time.

        k, v: (B, Hkv, max_len, hs), preallocated; the first ``length`` positions are valid.

    ``append(k_new, v_new)`` writes (B, Hkv, T, hs) after them and returns views of all
    ``length`` keys and values; no array is reallocated while decoding.

    With a sliding ``window`` W (a layer whose query i sees only keys i - W < j <= i), a full
    cache drops all but its last W - 1 positions before appending, which are all the next
    query can still see: ``max_len`` can then be about W, whatever the sequence's length. The
    kept keys are the last ``length`` of ``position`` seen (``offset`` = position - length
    dropped), and the attention's mask, relative to the last key, stays right. A block of new
    positions longer than the room left grows the arrays once (a long prompt).
    """

    def __init__(self, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype=np.float32, window: int | None = None):
        for name, value in [("batch_size", batch_size), ("n_kv_head", n_kv_head),
                            ("max_len", max_len), ("head_dim", head_dim)]:
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"KVCache {name}={value} must be a positive integer")
        if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
            raise ConfigError(f"KVCache window={window} must be a positive integer or None")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0
        self.offset = 0                  # positions dropped from the front (window caches)
        self.window = None if window is None else int(window)

    @property
    def position(self) -> int:
        """How many positions the cache has seen: the next one's index."""
        return self.offset + self.length

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
        if self.window is not None and self.length + T > max_len:
            self._slide(T)
            max_len = self.max_len
        if self.length + T > max_len:
            raise InputError(f"KVCache overflow: {self.length} cached + {T} new positions > "
                             f"max_len={max_len}")
        self.k[:, :, self.length:self.length + T] = k_new
        self.v[:, :, self.length:self.length + T] = v_new
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def _slide(self, T: int):
        """Keep the last W - 1 positions at the front (growing the arrays if T more do not fit)."""
        keep = min(self.length, self.window - 1)
        start = self.length - keep
        if keep + T > self.max_len:
            B, Hkv, _, hs = self.k.shape
            k, v = (np.zeros((B, Hkv, keep + T, hs), self.dtype) for _ in range(2))
        else:
            k, v = self.k, self.v
        k[:, :, :keep] = self.k[:, :, start:self.length].copy()
        v[:, :, :keep] = self.v[:, :, start:self.length].copy()
        self.k, self.v = k, v
        self.offset += start
        self.length = keep

    def crop(self, n: int):
        """Keep the first n positions (e.g. to roll back rejected speculative tokens); a window
        cache can go back only to positions it still holds."""
        if not self.offset <= n <= self.position:
            raise InputError(f"KVCache.crop({n}): n must be in [{self.offset}, "
                             f"position={self.position}]")
        self.length = n - self.offset

    def reset(self):
        self.length = 0
        self.offset = 0

    def __repr__(self):
        B, Hkv, max_len, hs = self.k.shape
        return (f"KVCache(batch_size={B}, n_kv_head={Hkv}, length={self.length}, "
                f"max_len={max_len}, head_dim={hs}, dtype={self.dtype}, window={self.window})")
