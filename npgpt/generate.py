"""Autoregressive generation: softmax with temperature, top-k, top-p, and KV-cache decoding.

Positions past ``block_size``: a model with learned (or sinusoidal) positions only knows
``block_size`` positions, so once the text is longer the window slides: each new token is
computed from the last ``block_size`` tokens (a full forward per token, as nanoGPT crops).
RoPE and position-free models have no such limit: the KV cache keeps growing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import ConfigError, InputError
from .models.gpt import GPT
from .module import no_grad


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_sampling(temperature=1.0, top_k=None, top_p=None, seed=None) -> None:
    """Refuse sampling settings that cannot mean anything: a temperature that is not a
    finite number >= 0 (NaN would turn every probability into NaN), a top_k that is not a
    positive integer, a top_p outside (0, 1], a seed that is not an integer >= 0."""
    if not (_is_number(temperature) and np.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"temperature={temperature!r} must be a finite number >= 0 "
                          "(0 = greedy)")
    if top_k is not None and not (_is_int(top_k) and top_k >= 1):
        raise ConfigError(f"top_k={top_k!r} must be a positive integer or None")
    if top_p is not None and not (_is_number(top_p) and 0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p={top_p!r} must be a number in (0, 1] or None")
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ConfigError(f"seed={seed!r} must be an integer >= 0 or None")


def softmax_with_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """probs = softmax(logits / temperature) over the last axis (stable: the max is subtracted).

    Temperature < 1 sharpens the distribution, > 1 flattens it.
    """
    check_sampling(temperature)
    if temperature == 0:
        raise ConfigError(f"temperature={temperature} must be > 0 (use greedy decoding for 0)")
    z = logits / logits.dtype.type(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Set to -inf every logit outside the top ``top_k`` and outside the smallest set of most
    likely tokens whose probability adds up to ``top_p`` (nucleus). logits: (B, V)."""
    check_sampling(1.0, top_k, top_p)
    logits = np.array(logits, copy=True)
    if logits.ndim != 2 or logits.dtype.kind != "f":
        raise InputError(f"logits must be a (B, V) float array; got shape {logits.shape} "
                         f"dtype {logits.dtype}")
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(logits, V - top_k, axis=-1)[:, V - top_k][:, None]
        logits[logits < kth] = -np.inf
    if top_p is not None:
        order = np.argsort(-logits, axis=-1, kind="stable")
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = softmax_with_temperature(sorted_logits)
        # drop a token when the tokens before it already reach top_p (the first always stays)
        before = np.cumsum(probs, axis=-1) - probs
        drop_sorted = before >= top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits[drop] = -np.inf
    return logits


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """One token id per row of ``logits`` (B, V). temperature 0 is greedy (argmax)."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(axis=-1)
    probs = softmax_with_temperature(filter_logits(logits, top_k, top_p), temperature)
    cdf = np.cumsum(probs.astype(np.float64), axis=-1)
    u = rng.random(len(cdf))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), logits.shape[-1] - 1)


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, stop_token: int | None = None,
             use_cache: bool = True, on_token: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Continue ``idx`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + n).

    on_token    called with each new column of ids (B,) as soon as it is sampled (streaming).
    stop_token  a row that produced it is finished (and padded with it); generation stops
                when every row is finished.
    use_cache   False recomputes the whole window every step (the reference the cache is
                tested against).
    """
    check_sampling(temperature, top_k, top_p, seed)
    try:
        idx = np.asarray(idx)
    except ValueError:          # a ragged list of lists
        raise InputError("prompt must be a (B, T) array of token ids; got rows of "
                         "different lengths") from None
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.ndim != 2 or idx.shape[0] == 0 or idx.shape[1] == 0 \
            or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"prompt must be a non-empty (B, T) array of token ids; got shape "
                         f"{idx.shape} dtype {idx.dtype}")
    if not (_is_int(max_new_tokens) and max_new_tokens >= 0):
        raise ConfigError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 0")
    if stop_token is not None and not (_is_int(stop_token)
                                       and 0 <= stop_token < model.config.vocab_size):
        raise ConfigError(f"stop_token={stop_token!r} must be a token id in "
                          f"0..{model.config.vocab_size - 1} or None")
    if on_token is not None and not callable(on_token):
        raise ConfigError(f"on_token={on_token!r} must be callable or None")
    config = model.config
    sliding = config.pos in ("learned", "sinusoidal")
    window = config.block_size if sliding else None
    rng = np.random.default_rng(seed)
    B = idx.shape[0]
    tokens = np.empty((B, idx.shape[1] + max_new_tokens), dtype=np.int64)
    tokens[:, :idx.shape[1]] = idx
    n = idx.shape[1]
    finished = np.zeros(B, dtype=bool)

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            cache = None
            if use_cache:
                max_len = min(window, n + max_new_tokens) if sliding else n + max_new_tokens
                cache = model.new_kv_cache(B, max_len, window_only=True)
            logits = _step(model, tokens, n, 0, window, cache)
            for _ in range(max_new_tokens):
                nxt = sample_next(logits[:, -1, :], rng, temperature, top_k, top_p)
                if stop_token is not None:
                    nxt = np.where(finished, stop_token, nxt)
                    finished |= nxt == stop_token
                tokens[:, n] = nxt
                n += 1
                if on_token is not None:
                    on_token(nxt)
                if stop_token is not None and finished.all():
                    break
                if n < tokens.shape[1]:
                    logits = _step(model, tokens, n, n - 1, window, cache)
    finally:
        model.train(was_training)
    return tokens[:, :n]


def _step(model, tokens, n, start, window, cache):
    """Logits for the tokens up to ``n``, feeding only ``tokens[start:n]`` to a cache that holds
    the rest. Past a sliding window the cache cannot be reused: the last ``window`` tokens are
    recomputed."""
    if window is not None and n > window:
        return model.forward(tokens[:, n - window:n])[0]
    if cache is None:
        return model.forward(tokens[:, :n])[0]
    return model.forward(tokens[:, start:n], kv_cache=cache)[0]


def _generate_method(self, idx, max_new_tokens: int, **kwargs):
    """Autoregressive sampling with a KV cache; see :func:`npgpt.generate.generate`."""
    return generate(self, idx, max_new_tokens, **kwargs)


GPT.generate = _generate_method      # ``import npgpt`` loads this module: every GPT has it
