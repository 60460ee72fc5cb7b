"""The one table of kernels, and the switch between numba and the NumPy references.

Each entry names an op's module and an input maker; ``<name>_numba`` and ``<name>_ref`` are
looked up in ``npgpt.kernels.<module>`` the first time the op is called, so importing npgpt
imports neither numba nor any kernel, and compiles nothing. The same table drives the parity
tests (tests/kernels) and the benchmark (benchmarks/bench_kernels.py): registering an op is
enough for it to be tested and timed.

Backend: ``numba`` by default; ``NPGPT_KERNELS=numpy`` in the environment (read at import) or
``with npgpt.kernels.use("numpy"):`` switches every op to its reference.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..runtime.threads import init_threads

BACKENDS = ("numba", "numpy")


@dataclass(frozen=True)
class Kernel:
    name: str                    # public function name, e.g. "layernorm_forward"
    module: str                  # npgpt.kernels.<module> holds <name>_numba and <name>_ref
    make_inputs: Callable        # (shape, dtype, rng) -> args tuple; shape: dict of B T C V H
    inplace: tuple = field(default=())   # indices of the args the op updates in place

    def function(self, backend: str) -> Callable:
        mod = importlib.import_module(f"{__package__}.{self.module}")
        return getattr(mod, f"{self.name}_{'numba' if backend == 'numba' else 'ref'}")


# ---- input makers: realistic arrays at a config's shapes (scale = magnitude of the values) ----

def _normal(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _hs(shape):
    return shape["C"] // shape["H"]


def _ln_forward(shape, dtype, rng, scale=1.0):
    B, T, C = shape["B"], shape["T"], shape["C"]
    return (_normal(rng, (B, T, C), dtype, scale) + 0.5 * scale, _normal(rng, C, dtype) + 1,
            _normal(rng, C, dtype), 1e-5)


def _ln_backward(shape, dtype, rng, scale=1.0):
    x, weight, bias, eps = _ln_forward(shape, dtype, rng, scale)
    _, mean, rstd = importlib.import_module(f"{__package__}.layernorm").layernorm_forward_ref(
        x, weight, bias, eps)
    return _normal(rng, x.shape, dtype), x, weight, mean, rstd


def _rms_forward(shape, dtype, rng, scale=1.0):
    x, weight, _, eps = _ln_forward(shape, dtype, rng, scale)
    return x, weight, eps


def _rms_backward(shape, dtype, rng, scale=1.0):
    x, weight, eps = _rms_forward(shape, dtype, rng, scale)
    _, rstd = importlib.import_module(f"{__package__}.rmsnorm").rmsnorm_forward_ref(x, weight, eps)
    return _normal(rng, x.shape, dtype), x, weight, rstd


def _gelu_forward(shape, dtype, rng, scale=1.0):
    return (_normal(rng, (shape["B"], shape["T"], 4 * shape["C"]), dtype, 2 * scale),)


def _gelu_backward(shape, dtype, rng, scale=1.0):
    (x,) = _gelu_forward(shape, dtype, rng, scale)
    return _normal(rng, x.shape, dtype), x


def _erf(shape, dtype, rng, scale=1.0):
    return (_normal(rng, (shape["B"], shape["T"], 4 * shape["C"]), dtype, scale),)


def _softmax_forward(shape, dtype, rng, scale=1.0):
    B, H, T = shape["B"], shape["H"], shape["T"]
    return (_normal(rng, (B, H, T, T), dtype, 3 * scale), True, None, 1 / np.sqrt(_hs(shape)))


def _softmax_masked_forward(shape, dtype, rng, scale=1.0):
    scores, causal, _, s = _softmax_forward(shape, dtype, rng, scale)
    mask = rng.random((shape["B"], shape["T"])) >= 0.3       # True = a real key
    return scores, causal, mask, s


def _softmax_backward(shape, dtype, rng, scale=1.0):
    args = _softmax_forward(shape, dtype, rng, scale)
    probs = importlib.import_module(f"{__package__}.softmax").softmax_forward_ref(*args)
    return _normal(rng, probs.shape, dtype), probs, args[3]


def _cross_entropy(shape, dtype, rng, scale=1.0):
    N, V = shape["B"] * shape["T"], shape["V"]
    targets = rng.integers(0, V, N)
    targets[rng.random(N) < 0.1] = -100
    return _normal(rng, (N, V), dtype, 2 * scale), targets, -100


def _embedding_backward(shape, dtype, rng, scale=1.0):
    N, C, V = shape["B"] * shape["T"], shape["C"], shape["V"]
    return (np.zeros((V, C), dtype), rng.integers(0, V, N), _normal(rng, (N, C), dtype, scale))


def _adamw_step(shape, dtype, rng, scale=1.0):
    n = (shape["C"], 4 * shape["C"])      # one MLP weight
    return (_normal(rng, n, dtype, 0.02), _normal(rng, n, dtype, 1e-2 * scale),
            _normal(rng, n, dtype, 1e-3), np.abs(_normal(rng, n, dtype, 1e-5)),
            3e-4, 0.9, 0.95, 1e-8, 0.1, 7)


def _rope(shape, dtype, rng, scale=1.0, interleaved=False):
    B, H, T = shape["B"], shape["H"], shape["T"]
    hs = 2 * max(1, _hs(shape) // 2)
    angles = np.arange(T)[:, None] * 10000.0 ** (-np.arange(hs // 2) * 2 / hs)
    return (_normal(rng, (B, H, T, hs), dtype, scale), np.cos(angles).astype(dtype),
            np.sin(angles).astype(dtype), interleaved)


def _rope_interleaved(shape, dtype, rng, scale=1.0):
    return _rope(shape, dtype, rng, scale, interleaved=True)


def _rope_per_sequence(shape, dtype, rng, scale=1.0):
    """Each sequence at its own positions: tables (B, 1, T, hs/2), broadcast over the heads."""
    x, _, _, interleaved = _rope(shape, dtype, rng, scale)
    B, T, half = x.shape[0], x.shape[2], x.shape[3] // 2
    positions = np.arange(T) + rng.integers(0, 100, (B, 1))
    angles = positions[:, None, :, None] * 10000.0 ** (-np.arange(half) * 2 / (2 * half))
    return x, np.cos(angles).astype(dtype), np.sin(angles).astype(dtype), interleaved


def _attention_forward(shape, dtype, rng, scale=1.0):
    B, H, T, hs = shape["B"], shape["H"], shape["T"], _hs(shape)
    q, k, v = (_normal(rng, (B, H, T, hs), dtype, s) for s in (scale, scale, 1.0))
    return q, k, v, True, None, None


def _attention_masked_forward(shape, dtype, rng, scale=1.0):
    q, k, v, causal, _, s = _attention_forward(shape, dtype, rng, scale)
    return q, k, v, causal, rng.random((shape["B"], shape["T"])) >= 0.3, s   # True = real


def _attention_backward(shape, dtype, rng, scale=1.0):
    q, k, v, causal, mask, s = _attention_forward(shape, dtype, rng, scale)
    out, probs = importlib.import_module(f"{__package__}.attention").attention_forward_ref(
        q, k, v, causal, mask, s)
    return _normal(rng, out.shape, dtype), q, k, v, probs, s


def _attention_backward_causal(shape, dtype, rng, scale=1.0):
    return (*_attention_backward(shape, dtype, rng, scale), True)


def _attention_unmasked_forward(shape, dtype, rng, scale=1.0):
    q, k, v, _, mask, s = _attention_forward(shape, dtype, rng, scale)
    return q, k, v, False, mask, s


def _attention_cached_forward(shape, dtype, rng, scale=1.0):
    """The last ceil(T / 2) queries against all T keys, as when decoding with a KV cache."""
    q, k, v, causal, _, s = _attention_masked_forward(shape, dtype, rng, scale)
    return q[:, :, shape["T"] // 2:], k, v, causal, None, s


def _int8_matmul(shape, dtype, rng, scale=1.0, rows=None, quantize_x=True):
    """x (M, K) against int8 weights (N, K) in blocks of 32 with their scales, packed in
    panels; M = B * T (a prompt) unless ``rows`` says (decoding). N = V, so the last panel
    is partial unless V is a multiple of the panel. x quantized too unless ``quantize_x``
    is False (a layer in training)."""
    K, N = 32 * (1 + shape["C"] % 3), shape["V"]
    M = shape["B"] * shape["T"] if rows is None else rows(shape)
    int8 = importlib.import_module(f"{__package__}.int8")
    q, s = int8.quantize_ref(_normal(rng, (N, K), np.float32, 0.02), 32)
    qp, sp = int8.pack(q, s)
    return _normal(rng, (M, K), dtype, scale), qp, sp, N, quantize_x


def _int8_matmul_t(shape, dtype, rng, scale=1.0):
    """dy (M, N) against packed int8 weights (N, K): the input gradient of an int8 layer."""
    x, qp, sp, n, _ = _int8_matmul(shape, dtype, rng, scale)
    return _normal(rng, (x.shape[0], n), dtype, scale), qp, sp, n


def _int8_matmul_decode(shape, dtype, rng, scale=1.0):
    return _int8_matmul(shape, dtype, rng, scale, rows=lambda d: d["B"])


def _int8_matmul_float_x(shape, dtype, rng, scale=1.0):
    return _int8_matmul(shape, dtype, rng, scale, rows=lambda d: d["B"], quantize_x=False)


def _matmul_rows(shape, dtype, rng, scale=1.0):
    """x (B, C) against a Linear's weight (C, V): one row per sequence, as in decoding."""
    x = _normal(rng, (shape["B"], shape["C"]), dtype, scale)
    return x, _normal(rng, (shape["C"], shape["V"]), dtype)


def _matmul_rows_t(shape, dtype, rng, scale=1.0):
    """x (B, C) against an embedding table (V, C) as the LM head."""
    x = _normal(rng, (shape["B"], shape["C"]), dtype, scale)
    return x, _normal(rng, (shape["V"], shape["C"]), dtype)


def _attention_decode_forward(shape, dtype, rng, scale=1.0):
    """One query a sequence (a decoding step) against T cached keys: the first T positions of
    a (B, H, 2T, hs) buffer, as a KV cache hands them to the kernel."""
    B, H, T, hs = shape["B"], shape["H"], shape["T"], _hs(shape)
    kbuf, vbuf = (np.zeros((B, H, 2 * T, hs), dtype) for _ in range(2))
    kbuf[:, :, :T] = _normal(rng, (B, H, T, hs), dtype, scale)
    vbuf[:, :, :T] = _normal(rng, (B, H, T, hs), dtype)
    return _normal(rng, (B, H, 1, hs), dtype, scale), kbuf[:, :, :T], vbuf[:, :, :T], True


def _softmax_window_forward(shape, dtype, rng, scale=1.0):
    """A sliding window of half the keys (at least one), as in Gemma's and Mistral's local layers."""
    scores, causal, mask, s = _softmax_masked_forward(shape, dtype, rng, scale)
    return scores, causal, mask, s, max(1, shape["T"] // 2)


def _attention_window_forward(shape, dtype, rng, scale=1.0):
    q, k, v, causal, mask, s = _attention_masked_forward(shape, dtype, rng, scale)
    return q, k, v, causal, mask, s, None, max(1, shape["T"] // 2)


def _attention_window_cached_forward(shape, dtype, rng, scale=1.0):
    """The last ceil(T / 2) queries of a sliding window of 2 over all T keys (decoding)."""
    q, k, v, causal, _, s = _attention_forward(shape, dtype, rng, scale)
    return q[:, :, shape["T"] // 2:], k, v, causal, None, s, None, 2


_ENTRIES = [
    Kernel("layernorm_forward", "layernorm", _ln_forward),
    Kernel("layernorm_backward", "layernorm", _ln_backward),
    Kernel("rmsnorm_forward", "rmsnorm", _rms_forward),
    Kernel("rmsnorm_backward", "rmsnorm", _rms_backward),
    Kernel("gelu_tanh_forward", "gelu", _gelu_forward),
    Kernel("gelu_tanh_backward", "gelu", _gelu_backward),
    Kernel("erf", "error_function", _erf),
    Kernel("softmax_forward", "softmax", _softmax_forward),
    Kernel("softmax_backward", "softmax", _softmax_backward),
    Kernel("cross_entropy_forward_backward", "cross_entropy", _cross_entropy),
    Kernel("embedding_backward", "embedding", _embedding_backward, inplace=(0,)),
    Kernel("adamw_step", "adamw", _adamw_step, inplace=(0, 2, 3)),
    Kernel("rope_forward", "rope", _rope),
    Kernel("rope_backward", "rope", _rope),
    Kernel("attention_forward", "attention", _attention_forward),
    Kernel("attention_backward", "attention", _attention_backward),
    Kernel("int8_matmul", "int8", _int8_matmul),
    Kernel("int8_matmul_t", "int8", _int8_matmul_t),
    Kernel("matmul", "rows", _matmul_rows),
    Kernel("matmul_t", "rows", _matmul_rows_t),
]
KERNELS: dict[str, Kernel] = {k.name: k for k in _ENTRIES}

# Extra input makers for the same op (tests and benchmarks time these variants too).
VARIANTS: dict[str, tuple[str, Callable]] = {
    "softmax_forward[padding]": ("softmax_forward", _softmax_masked_forward),
    "rope_forward[interleaved]": ("rope_forward", _rope_interleaved),
    "rope_forward[per sequence]": ("rope_forward", _rope_per_sequence),
    "attention_forward[padding]": ("attention_forward", _attention_masked_forward),
    "attention_forward[not causal]": ("attention_forward", _attention_unmasked_forward),
    "attention_forward[kv cache]": ("attention_forward", _attention_cached_forward),
    "attention_forward[decode]": ("attention_forward", _attention_decode_forward),
    "softmax_forward[sliding window]": ("softmax_forward", _softmax_window_forward),
    "attention_forward[sliding window]": ("attention_forward", _attention_window_forward),
    "attention_forward[window, kv cache]": ("attention_forward", _attention_window_cached_forward),
    "attention_backward[causal]": ("attention_backward", _attention_backward_causal),
    "int8_matmul[decode]": ("int8_matmul", _int8_matmul_decode),
    "int8_matmul[float x]": ("int8_matmul", _int8_matmul_float_x),
}


# ---- dispatch ----

def _check_backend(name) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"kernel backend must be one of {BACKENDS}, got {name!r}")
    return name


_backend = _check_backend(os.environ.get("NPGPT_KERNELS", "numba") or "numba")
_resolved: dict[tuple[str, str], Callable] = {}


def get_backend() -> str:
    """The backend every op dispatches to now: ``"numba"`` or ``"numpy"``."""
    return _backend


def set_backend(name: str) -> None:
    """Switch every op to ``"numba"`` kernels or ``"numpy"`` references."""
    global _backend
    _backend = _check_backend(name)


@contextlib.contextmanager
def use(name: str):
    """``with use("numpy"): ...`` runs every op on the given backend inside the block."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def kernel(name: str, backend: str | None = None) -> Callable:
    """The function implementing op ``name`` on ``backend`` (the current one by default)."""
    backend = _backend if backend is None else _check_backend(backend)
    fn = _resolved.get((name, backend))
    if fn is None:
        if name not in KERNELS:
            raise ConfigError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}")
        if backend == "numba":
            init_threads()
        fn = _resolved[(name, backend)] = KERNELS[name].function(backend)
    return fn
