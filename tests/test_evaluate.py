"""Sliding-window perplexity against transformers' own loss on the same weights and windows."""
import math

import numpy as np
import pytest

from npgpt.errors import ConfigError, DataError
from npgpt.evaluate import perplexity, windows
from npgpt.hf import from_pretrained
from npgpt.models import GPT, GPTConfig
from tests.test_hf import V, _llama_in_float64, _reload, hf_gpt2, hf_llama


def transformers_nll(torch, hf, ids, block, stride):
    """HuggingFace's perplexity guide: labels before a window's new tokens are -100 and the
    loss is the cross-entropy over the (shifted) labels left; the count here is those labels.
    The loss is summed from the model's logits with torch's cross_entropy, as transformers'
    own loss does, but in the logits' dtype (transformers casts them to float32 first)."""
    total, count, previous_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + block, len(ids))
        target_len = end - previous_end
        x = torch.from_numpy(ids[begin:end].astype(np.int64))[None]
        labels = x.clone()
        labels[:, :-target_len] = -100
        n = int((labels[:, 1:] != -100).sum())
        if n:
            with torch.no_grad():
                logits = hf(x).logits[0, :-1]
                total += float(torch.nn.functional.cross_entropy(
                    logits, labels[0, 1:], ignore_index=-100, reduction="sum"))
            count += n
        previous_end = end
        if end == len(ids):
            break
    return total / count, count


@pytest.mark.parametrize("family,dtype,tol,stride", [
    ("gpt2", "float64", 1e-10, 48), ("gpt2", "float64", 1e-10, 17), ("gpt2", "float32", 1e-5, 17),
    ("llama", "float64", 1e-10, 17), ("llama", "float32", 1e-5, 48)])
def test_perplexity_equals_transformers_sliding_window(tt, tmp_path, monkeypatch, family, dtype,
                                                       tol, stride):
    torch, _ = tt
    (hf_gpt2 if family == "gpt2" else hf_llama)(tt, tmp_path, std=0.1)
    if dtype == "float64" and family == "llama":
        _llama_in_float64(torch, monkeypatch)
    hf = _reload(tt, tmp_path, dtype=torch.float64 if dtype == "float64" else None)
    ours = from_pretrained(tmp_path, dtype=dtype)
    ids = np.random.default_rng(0).integers(0, V, size=205)
    result = perplexity(ours, ids, block_size=48, stride=stride, n_bytes=1000)
    nll, count = transformers_nll(torch, hf, ids, 48, stride)
    assert result.tokens == count
    assert abs(result.nll - nll) <= tol * nll
    assert result.perplexity == pytest.approx(math.exp(nll), rel=10 * tol)
    assert result.bits_per_byte == pytest.approx(result.nll / math.log(2) * 205 / 1000)


def test_every_token_after_the_first_is_scored_once_with_a_smaller_stride():
    for n, block, stride in [(10, 4, 2), (100, 16, 5), (33, 8, 8), (9, 4, 4), (16, 16, 3)]:
        scored = [t for _, e, first in windows(n, block, stride) for t in range(first, e)]
        expected = range(1, n) if stride < block else \
            [t for t in range(1, n) if t % block]          # window starts have no context
        assert scored == list(expected), (n, block, stride)
        assert all(e - b <= block for b, e, _ in windows(n, block, stride))


def test_context_of_the_model_is_what_a_window_sees():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8,
                          dtype="float64"))
    ids = np.random.default_rng(0).integers(0, 11, size=8)
    whole = perplexity(model, ids, block_size=8)              # one window: t = 1..7
    logits, _ = model.forward(ids[None, :-1])
    logp = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
    assert whole.tokens == 7
    assert whole.nll == pytest.approx(-logp[np.arange(7), ids[1:]].mean(), rel=1e-12)


def test_bad_windows_and_short_texts_are_refused():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    ids = np.arange(20) % 11
    with pytest.raises(ConfigError, match="stride=9 is larger than block=8"):
        perplexity(model, ids, block_size=8, stride=9)
    with pytest.raises(ConfigError, match="block=9 is longer than the model's block_size=8"):
        perplexity(model, ids, block_size=9)
    with pytest.raises(ConfigError, match="stride=0"):
        perplexity(model, ids, stride=0)
    with pytest.raises(DataError, match="the text has 5 tokens, fewer than one window of block=8"):
        perplexity(model, ids[:5])


def test_a_bos_the_tokenizer_added_is_context_not_text_in_bits_per_byte():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    ids = np.arange(20) % 11
    plain = perplexity(model, ids, n_bytes=50)
    with_bos = perplexity(model, ids, n_bytes=50, special_tokens=1)
    assert with_bos.nll == plain.nll and with_bos.tokens == plain.tokens
    assert with_bos.bits_per_byte == pytest.approx(plain.bits_per_byte * 19 / 20, rel=1e-12)
    for bad in (-1, 20, 1.5, True):
        with pytest.raises(ConfigError, match="special_tokens="):
            perplexity(model, ids, special_tokens=bad)
