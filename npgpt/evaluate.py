"""Perplexity of a language model on a text: the sliding-window method, and bits per byte.

A model with a context of ``block_size`` tokens cannot see a long text at once. HuggingFace's
perplexity guide slides a window of ``block_size`` tokens along it by ``stride``; each
window is run whole, but scores only the tokens that the previous window did not, so every
token is scored once, with at least ``block_size - stride`` tokens of context (all the
context there is in the first window). ``stride == block_size`` is the fast, pessimistic
end (tokens at a window's start have little context); a smaller stride costs
``block_size / stride`` times the compute and gives a better estimate.

    window k covers ids[b : e],  b = k * stride,  e = min(b + block_size, N)
    it scores ids[t] for max(e_(k-1), b + 1) <= t < e   (log p(ids[t] | ids[b : t]))

A BOS that the tokenizer puts before the text (Llama 3's and Gemma's tokenizer.json do, as
HuggingFace's guide encodes it too) is that first token: context for the text's first token,
which is then scored; bits per byte count the text's tokens without it.

The first token of the ids is never scored (nothing predicts it), nor is the first token of
a window when ``stride == block_size`` (its window holds no context for it): exactly the
tokens HuggingFace's guide scores. Its running count then takes one token off per window,
which is right for ``stride == block_size`` and one short per window otherwise; here the
count is the number of tokens actually scored, and the mean is their mean.

    mean NLL = sum of -log p over the scored tokens / their number   (nats per token)
    perplexity = exp(mean NLL)
    bits per byte = mean NLL / ln 2 * the text's tokens / its UTF-8 bytes

Bits per byte do not depend on the tokenizer, so models with different vocabularies compare;
the few unscored tokens count at the mean, so strides compare too (dividing the scored
tokens' NLL by all the text's bytes would favour the stride that scores fewer tokens).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ConfigError, DataError
from .layers.loss import log_softmax
from .module import no_grad

# logits held at once when windows are batched: B * T * V elements
_LOGITS_BUDGET = 1 << 24


@dataclass
class Perplexity:
    """What :func:`perplexity` measured."""

    tokens: int                   # tokens scored
    nll: float                    # mean negative log-likelihood, nats per token
    perplexity: float             # exp(nll)
    bits_per_byte: float | None   # mean NLL in bits per byte of text (None: bytes unknown)
    windows: int                  # forward passes over windows of block_size tokens
    block_size: int
    stride: int

    def to_dict(self) -> dict:
        return asdict(self)


def windows(n_tokens: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored) of each window over ``n_tokens`` tokens.

    >>> windows(10, 4, 4)
    [(0, 4, 1), (4, 8, 5), (8, 10, 9)]
    >>> windows(10, 4, 2)
    [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    """
    out, previous_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + block_size, n_tokens)
        first = max(previous_end, begin + 1)
        if first < end:          # (a last window of one token has nothing left to score)
            out.append((begin, end, first))
        previous_end = end
        if end == n_tokens:
            break
    return out


def check_window(model, n_tokens: int, block_size: int | None, stride: int | None):
    """The (block_size, stride) to use, or an error naming the value that cannot work."""
    model_block = model.config.block_size
    block_size = model_block if block_size is None else block_size
    stride = block_size if stride is None else stride
    for name, value in (("block", block_size), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if block_size < 2:
        raise ConfigError(f"block={block_size} must be at least 2: a window scores its tokens "
                          "after the first")
    if block_size > model_block:
        raise ConfigError(f"block={block_size} is longer than the model's block_size="
                          f"{model_block}")
    if stride > block_size:
        raise ConfigError(f"stride={stride} is larger than block={block_size}: the tokens "
                          "between windows would never be scored")
    if n_tokens < block_size:
        raise DataError(f"the text has {n_tokens} tokens, fewer than one window of "
                        f"block={block_size}; give a longer text or a smaller block")
    return int(block_size), int(stride)


def perplexity(model, ids, block_size: int | None = None, stride: int | None = None,
               n_bytes: int | None = None, progress: bool | None = None,
               special_tokens: int = 0) -> Perplexity:
    """Sliding-window perplexity of ``model`` (a GPT: ``forward(idx) -> (logits, _)``) on
    the token ids ``ids`` (N,), windows of ``block_size`` (default the model's) moved by
    ``stride`` (default ``block_size``). ``n_bytes``: the text's UTF-8 length, for bits per
    byte. ``progress``: a tqdm bar (default: when there are more than 8 windows).
    ``special_tokens``: how many of ``ids`` the tokenizer added around the text (a BOS),
    which bits per byte does not count as the text's tokens."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"ids must be a flat array of token ids, got shape {ids.shape} "
                        f"dtype {ids.dtype}")
    block_size, stride = check_window(model, len(ids), block_size, stride)
    if isinstance(special_tokens, bool) or not isinstance(special_tokens, (int, np.integer)) \
            or not 0 <= special_tokens < len(ids):
        raise ConfigError(f"special_tokens={special_tokens!r} must be an integer in "
                          f"0..{len(ids) - 1}: how many of the ids the tokenizer added")
    spans = windows(len(ids), block_size, stride)
    ids = ids.astype(np.int64)
    bar = None
    if progress or (progress is None and len(spans) > 8):
        from tqdm.auto import tqdm
        bar = tqdm(total=len(spans), desc="eval", unit="window", dynamic_ncols=True)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for batch in _batches(spans, model.config.vocab_size):
                # a window's input stops one short of its end: the last id is only a target
                x = np.stack([ids[b:e - 1] for b, e, _ in batch])
                logits, _ = model.forward(x)
                for row, (b, e, first) in zip(logits, batch):
                    scored = row[first - 1 - b:]             # predicts ids[first:e]
                    logp = log_softmax(scored.astype(np.float64))
                    total -= float(logp[np.arange(len(scored)), ids[first:e]].sum())
                    count += len(scored)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    nll = total / count
    bpb = nll / math.log(2) * (len(ids) - special_tokens) / n_bytes if n_bytes else None
    return Perplexity(tokens=count, nll=nll, perplexity=math.exp(nll), bits_per_byte=bpb,
                      windows=len(spans), block_size=block_size, stride=stride)


def _batches(spans, vocab_size: int):
    """Consecutive windows of one input length, as many at once as the logits budget allows."""
    batch = []
    for span in spans:
        length = span[1] - span[0] - 1
        room = max(1, _LOGITS_BUDGET // max(1, length * vocab_size))
        if batch and (batch[0][1] - batch[0][0] - 1 != length or len(batch) >= room):
            yield batch
            batch = []
        batch.append(span)
    if batch:
        yield batch
