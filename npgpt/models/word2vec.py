"""word2vec: skip-gram with negative sampling (Mikolov et al., 2013), and what to ask of it.

    centre word w_c -> v = wte[w_c]                      (the input vectors: the word vectors)
    context word w_o and K noise words w_k -> u = wout[w_o, w_1..w_K]   (the output vectors)
    loss = -log sigmoid(v . u_o) - sum_k log sigmoid(-v . u_k)       (NegativeSamplingLoss)

The training pairs are (centre, a word within ``window`` of it); frequent words are thinned
out first (a word of frequency f is kept with probability sqrt(t/f) + t/f), and the noise
words come from the unigram distribution raised to 3/4, which gives rare words more weight
than their counts. Both choices are the paper's.

Words are lowercase runs of letters and apostrophes of the spoken lines (speaker names and
stage directions left out, so "king" counts what is said, not who says it).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..layers.embedding import Embedding
from ..layers.negative_sampling import NegativeSamplingLoss
from ..module import Module

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
UNK = "<unk>"


def spoken_words(text: str) -> list[str]:
    """The words of the spoken lines: ``"ROMEO:\\nBut, soft!"`` -> ``["but", "soft"]``."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.endswith(":") or line.startswith("["):
            continue
        out += _WORD.findall(line.lower())
    return out


@dataclass
class Vocabulary:
    """Words seen at least ``min_count`` times, most frequent first; id 0 is ``<unk>``."""

    itos: list[str]
    counts: np.ndarray           # (V,) occurrences of each word (<unk>: of every rare word)

    @classmethod
    def build(cls, words: list[str], min_count: int = 5) -> "Vocabulary":
        if min_count < 1:
            raise InputError(f"min_count={min_count} must be at least 1")
        counted = Counter(words)
        kept = sorted((w for w, n in counted.items() if n >= min_count),
                      key=lambda w: (-counted[w], w))
        if not kept:
            raise InputError(f"no word occurs {min_count} times or more in {len(words)} words")
        rare = sum(n for w, n in counted.items() if n < min_count)
        return cls([UNK] + kept, np.array([rare] + [counted[w] for w in kept], dtype=np.int64))

    def __post_init__(self):
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, words: list[str]) -> np.ndarray:
        return np.array([self.stoi.get(w, 0) for w in words], dtype=np.int64)

    def id(self, word: str) -> int:
        """The id of ``word``; an error (not <unk>) when it is not in the vocabulary."""
        if word not in self.stoi:
            raise InputError(f"{word!r} is not in the vocabulary ({len(self)} words seen at "
                             "least min_count times)")
        return self.stoi[word]


class SkipGram(Module):
    """Word vectors trained to predict their neighbours.

    forward(centre (B,) int, words (B, 1+K) int) -> loss (scalar)
        words[:, 0] is the true context word, words[:, 1:] the K negatives.
    backward(dloss=1.0) -> None (the inputs are ids); adds into wte.weight and wout.weight.

    wte starts small and random, wout at zero (as in the reference implementation): every
    score starts at 0, so every pair starts at loss log 2 and nothing is decided by the init.
    """

    def __init__(self, vocab_size: int, n_embd: int = 64, dtype=np.float32,
                 rng: np.random.Generator | None = None, out_std: float = 0.0):
        super().__init__(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        self.vocab_size, self.n_embd = vocab_size, n_embd
        self.wte = Embedding(vocab_size, n_embd, dtype=dtype, rng=rng, std=0.5 / n_embd)
        self.wout = Embedding(vocab_size, n_embd, dtype=dtype, rng=rng, std=out_std)
        self.loss_fn = NegativeSamplingLoss(dtype=dtype)

    def forward(self, centre, words) -> np.ndarray:
        centre, words = np.asarray(centre), np.asarray(words)
        if centre.ndim != 1 or words.ndim != 2 or words.shape[0] != centre.shape[0]:
            raise InputError(f"SkipGram expects centre (B,) and words (B, 1+K); got "
                             f"{centre.shape} and {words.shape}")
        return self.loss_fn(self.wte(centre), self.wout(words))

    def backward(self, dloss=1.0):
        dv, du = self.loss_fn.backward(dloss)
        self.wout.backward(du)
        self.wte.backward(dv)
        return None


class PairSampler:
    """Batches of (centre, [context, negatives...]) drawn at random from a token stream.

    Each epoch (a call to :meth:`subsample`) thins frequent words out; a batch then draws B
    centre positions of the thinned stream, a window size r uniform in 1..window for each
    (nearer words count more, as in the paper), an offset in -r..r other than 0, and K
    negatives from unigram^0.75.
    """

    def __init__(self, ids: np.ndarray, counts: np.ndarray, window: int = 5, negatives: int = 5,
                 sample: float = 1e-4, rng: np.random.Generator | None = None):
        if window < 1 or negatives < 1:
            raise InputError(f"window={window} and negatives={negatives} must be at least 1")
        self.ids, self.window, self.negatives = np.asarray(ids), window, negatives
        self.rng = rng if rng is not None else np.random.default_rng()
        freq = counts / counts.sum()
        with np.errstate(divide="ignore"):
            self.keep = np.minimum(1.0, np.sqrt(sample / freq) + sample / freq)
        self.keep[0] = 0.0                  # <unk> is neither a centre nor a context
        noise = counts.astype(np.float64) ** 0.75
        noise[0] = 0.0
        self.noise_cdf = np.cumsum(noise / noise.sum())
        self.subsample()

    def subsample(self) -> np.ndarray:
        """A new thinned stream (frequent words dropped at random, <unk> always)."""
        kept = self.rng.random(len(self.ids)) < self.keep[self.ids]
        self.stream = self.ids[kept]
        if len(self.stream) < 2:
            raise InputError("fewer than two words survive subsampling: the text is too short")
        return self.stream

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.stream)
        pos = self.rng.integers(0, n, size=batch_size)
        reach = self.rng.integers(1, self.window + 1, size=batch_size)
        offset = self.rng.integers(1, reach + 1) * self.rng.choice((-1, 1), size=batch_size)
        ctx = pos + offset
        ctx = np.where((ctx < 0) | (ctx >= n), pos - offset, ctx)   # reflect at the ends
        ctx = np.clip(ctx, 0, n - 1)       # (a stream shorter than the window: stay inside it)
        noise = np.searchsorted(self.noise_cdf, self.rng.random((batch_size, self.negatives)))
        noise = np.minimum(noise, len(self.noise_cdf) - 1)     # (a cdf that ends just under 1)
        words = np.concatenate([self.stream[ctx][:, None], noise], axis=1)
        return self.stream[pos], words


# --- questions to ask of any embedding matrix ----------------------------------------------

def _unit(E: np.ndarray) -> np.ndarray:
    E = np.asarray(E, dtype=np.float64)
    return E / np.maximum(np.linalg.norm(E, axis=-1, keepdims=True), 1e-12)


def nearest(E: np.ndarray, query: np.ndarray, k: int = 5, exclude=()) -> list[tuple[int, float]]:
    """The k rows of ``E`` (V, C) with the highest cosine similarity to ``query`` (C,), as
    ``(row, cosine)`` best first, leaving out the rows in ``exclude``. (A row's own
    neighbours: :func:`npgpt.glassbox.cache.neighbours`.)"""
    cos = _unit(E) @ _unit(query)
    cos[list(exclude)] = -np.inf
    top = np.argsort(-cos, kind="stable")[:k]
    return [(int(i), float(cos[i])) for i in top]


def analogy(E: np.ndarray, a: int, b: int, c: int, k: int = 5) -> list[tuple[int, float]]:
    """a : b :: c : ?  answered by the rows nearest to unit(b) - unit(a) + unit(c) (3CosAdd),
    leaving out a, b and c themselves (as is usual: the nearest row is otherwise often c)."""
    U = _unit(E)
    return nearest(E, U[b] - U[a] + U[c], k, exclude=(a, b, c))


def rank_of(E: np.ndarray, a: int, b: int, c: int, d: int) -> int:
    """Where the expected answer ``d`` of a : b :: c : d comes among all rows (1 = first)."""
    U = _unit(E)
    cos = U @ _unit(U[b] - U[a] + U[c])
    cos[[a, b, c]] = -np.inf
    return int((cos > cos[d]).sum()) + 1
