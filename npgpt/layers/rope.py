"""Rotary position embedding (RoPE, Su et al., "RoFormer", 2021).

RoPE encodes a token's position m by rotating pairs of channels of its query and key by the
angles m * theta_k, theta_k = base^(-2k/hs), k = 0 .. hs/2 - 1. A dot product of two rotated
vectors then depends on the positions only through m - n:

    <R(m) q, R(n) k> = <q, R(n - m) k>

because rotations are orthogonal and compose by adding angles. Which channels form a pair is a
matter of layout:

* ``"interleaved"``: (x[2k], x[2k+1]), as in the RoFormer paper;
* ``"half"``: (x[k], x[k + hs/2]), as LLaMA and the HuggingFace checkpoints do (``rotate_half``).

The two are the same rotation up to a permutation of the channels. The rotation itself, and
its inverse, are defined once in :mod:`npgpt.kernels.rope` and called through the dispatch.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import ConfigError, InputError
from ..module import Module

LAYOUTS = ("half", "interleaved")


def inverse_frequencies(head_dim: int, base: float = 10000.0) -> np.ndarray:
    """theta_k = base^(-2k/hs), k = 0 .. hs/2 - 1, in float64.  (4, 10000) -> [1, 0.01]"""
    return base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def llama3_inverse_frequencies(inv_freq: np.ndarray, factor: float, low_freq_factor: float,
                               high_freq_factor: float, original_context: int) -> np.ndarray:
    """Llama 3.1's rewrite of RoPE's inverse frequencies for a longer context, once, by
    wavelength 2 pi / theta_k against the original context L (``original_context``):

        wavelength < L / high_freq_factor   keep theta_k            (fast: local order)
        wavelength > L / low_freq_factor    theta_k / factor        (slow: stretched)
        in between                          (1 - s) theta_k / factor + s theta_k,
                                            s = (L / wavelength - low) / (high - low)
    """
    if not (factor > 0 and high_freq_factor > low_freq_factor > 0 and original_context > 0):
        raise ConfigError(f"llama3 RoPE scaling needs factor > 0 and high_freq_factor > "
                          f"low_freq_factor > 0, original context > 0; got factor={factor}, "
                          f"low_freq_factor={low_freq_factor}, high_freq_factor={high_freq_factor}, "
                          f"original context={original_context}")
    wavelength = 2 * np.pi / inv_freq
    smooth = (original_context / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = np.where(wavelength > original_context / low_freq_factor, inv_freq / factor, inv_freq)
    medium = (wavelength >= original_context / high_freq_factor) \
        & (wavelength <= original_context / low_freq_factor)
    return np.where(medium, blended, out)


def _check_config(head_dim, base, layout):
    if not isinstance(head_dim, (int, np.integer)) or head_dim <= 0 or head_dim % 2:
        raise ConfigError(f"RoPE rotates pairs of channels: head_dim={head_dim} must be a "
                          "positive even integer")
    if layout not in LAYOUTS:
        raise ConfigError(f"RoPE layout={layout!r} is not one of {LAYOUTS}")
    if not base > 0:
        raise ConfigError(f"RoPE base={base} must be positive")


def _check_positions(positions, T: int) -> np.ndarray:
    positions = np.asarray(positions)
    if not np.issubdtype(positions.dtype, np.integer):
        raise InputError(f"RoPE positions must be integers, got dtype {positions.dtype}")
    if positions.ndim not in (1, 2) or positions.shape[-1] != T:
        raise InputError(f"RoPE positions must have shape (T,) or (B, T) with T={T}, "
                         f"got {positions.shape}")
    if positions.size and positions.min() < 0:
        raise InputError(f"RoPE positions must be >= 0, got {positions.min()}")
    return positions


def _check_x(x: np.ndarray, head_dim: int):
    if x.ndim < 2 or x.shape[-1] != head_dim:
        raise InputError(f"RoPE expects x of shape (B, H, T, hs) with hs={head_dim}, "
                         f"got {x.shape}")


def apply_rope(x: np.ndarray, positions=None, base: float = 10000.0,
               layout: str = "half") -> np.ndarray:
    """The rotation as a pure function (no caches), for examples and checks.

    x: (..., T, hs); positions: (T,) ints, default 0 .. T-1. Returns R(positions) x.
    """
    x = np.asarray(x)
    _check_config(x.shape[-1], base, layout)
    T = x.shape[-2]
    positions = _check_positions(np.arange(T) if positions is None else positions, T)
    angles = positions[..., None] * inverse_frequencies(x.shape[-1], base)   # (T, hs/2)
    if angles.ndim == 3:                                                     # (B, 1, T, hs/2)
        angles = angles[:, None]
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return kernels.rope_forward(x.astype(dtype, copy=False), np.cos(angles).astype(dtype),
                                np.sin(angles).astype(dtype), layout == "interleaved")


class RotaryEmbedding(Module):
    """y = R(positions) x, the rotation of each channel pair by position * theta_k.

        x, y: (B, H, T, hs)    positions: (T,) ints (or (B, T), one row per sequence)
        theta_k = base^(-2k/hs), k = 0 .. hs/2 - 1

    forward:   a' = a cos(m theta_k) - b sin(m theta_k),   b' = a sin(m theta_k) + b cos(m theta_k)
    backward:  dx = R(positions)^T dy = R(-positions) dy   (the inverse rotation)

    ``inv_freq`` (hs/2,) replaces theta when given: scaled frequencies (linear, llama3; see
    :func:`llama3_inverse_frequencies`). No parameters. The cos/sin tables are computed in float64, cached per dtype and grown on
    demand (doubling), so decoding position after position does not recompute them.
    The same module may serve every layer: attention layers use :meth:`tables` and
    :meth:`rotate` and keep their own copies of what backward needs.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, layout: str = "half",
                 dtype=np.float32, inv_freq: np.ndarray | None = None):
        super().__init__(dtype)
        _check_config(head_dim, base, layout)
        self.head_dim, self.base, self.layout = int(head_dim), float(base), layout
        self._inv_freq = inverse_frequencies(self.head_dim, self.base) if inv_freq is None \
            else np.asarray(inv_freq, np.float64)
        if self._inv_freq.shape != (self.head_dim // 2,):
            raise ConfigError(f"RoPE inv_freq must have shape ({self.head_dim // 2},), got "
                              f"{self._inv_freq.shape}")
        self._tables: dict[np.dtype, tuple[np.ndarray, np.ndarray]] = {}

    def tables(self, positions, dtype=None) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin of positions * theta: (T, hs/2), or (B, 1, T, hs/2) for (B, T) positions."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        positions = np.asarray(positions)
        need = int(positions.max()) + 1 if positions.size else 0
        cos, sin = self._tables.get(dtype, (None, None))
        if cos is None or cos.shape[0] < need:
            n = max(need, 2 * (0 if cos is None else cos.shape[0]), 64)
            angles = np.arange(n, dtype=np.float64)[:, None] * self._inv_freq
            cos, sin = np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)
            self._tables[dtype] = (cos, sin)
        cos, sin = cos[positions], sin[positions]
        if positions.ndim == 2:
            cos, sin = cos[:, None], sin[:, None]
        return cos, sin

    def rotate(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray, inverse: bool = False,
               out: np.ndarray | None = None) -> np.ndarray:
        """Rotate x (..., T, hs) by tables from :meth:`tables` (``inverse``: the other way, which
        is also the rotation's backward). ``out``, if given (not x), receives the result."""
        rope = kernels.rope_backward if inverse else kernels.rope_forward
        return rope(x, cos, sin, self.layout == "interleaved", out)

    def forward(self, x: np.ndarray, positions=None) -> np.ndarray:
        _check_x(x, self.head_dim)
        T = x.shape[-2]
        positions = _check_positions(np.arange(T) if positions is None else positions, T)
        cos, sin = self.tables(positions, x.dtype)
        self.save(cos, sin)
        return self.rotate(x, cos, sin)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx = R(-positions) dy. Positions are indices, not a differentiable input."""
        cos, sin = self.saved()
        return self.rotate(dy, cos, sin, inverse=True)

    def __repr__(self):
        return (f"RotaryEmbedding(head_dim={self.head_dim}, base={self.base:g}, "
                f"layout={self.layout!r})")
