import numpy as np
import pytest

from npgpt.errors import ConfigError, InputError
from npgpt.generate import filter_logits, generate, sample_next, softmax_with_temperature
from npgpt.models import GPT, GPTConfig

VARIANTS = {
    "learned": dict(),
    "sinusoidal": dict(pos="sinusoidal"),
    "rope": dict(pos="rope"),
    "rope_gqa_llama": dict(pos="rope", n_kv_head=1, norm="rmsnorm", mlp="swiglu", bias=False,
                           tie_embeddings=False),
    "none": dict(pos="none"),
}


def model_for(variant, dtype="float32", block_size=24):
    config = GPTConfig(vocab_size=37, block_size=block_size, n_layer=2, n_head=4, n_embd=32,
                       dtype=dtype, **VARIANTS[variant])
    model = GPT(config, seed=3)
    rng = np.random.default_rng(0)
    for p in model.parameters():    # larger weights: sharper, more varied distributions
        p.data += rng.normal(0, 0.3, p.shape).astype(p.data.dtype)
    return model


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kv_cache_decoding_matches_full_forward(variant):
    model = model_for(variant).eval()
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 37, size=(2, 20))
    full, _ = model.forward(tokens)
    cache = model.new_kv_cache(2)
    prefix, _ = model.forward(tokens[:, :5], kv_cache=cache)
    steps = [prefix] + [model.forward(tokens[:, t:t + 1], kv_cache=cache)[0] for t in range(5, 20)]
    cached = np.concatenate(steps, axis=1)
    assert cached.dtype == np.float32
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cached_and_uncached_generation_give_the_same_tokens(variant):
    model = model_for(variant)
    prompt = np.random.default_rng(2).integers(0, 37, size=(2, 4))
    for kw in (dict(temperature=0), dict(temperature=0.9, top_k=10, seed=5)):
        # 40 new tokens: past block_size=24, where learned/sinusoidal slide and RoPE goes on
        a = generate(model, prompt, 40, use_cache=True, **kw)
        b = generate(model, prompt, 40, use_cache=False, **kw)
        assert a.shape == (2, 44)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[:, :4], prompt)


def test_generation_is_reproducible_with_a_seed_and_streams_tokens():
    model = model_for("learned")
    streamed = []
    a = generate(model, [[1, 2, 3]], 10, temperature=1.0, seed=7, on_token=streamed.append)
    b = generate(model, [[1, 2, 3]], 10, temperature=1.0, seed=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.stack(streamed, axis=1), a[:, 3:])
    assert model.training    # the model's mode is restored


def test_stop_token_ends_generation():
    model = model_for("learned")
    out = generate(model, [[1, 2]], 30, temperature=0)
    stop = int(out[0, 5])
    stopped = generate(model, [[1, 2]], 30, temperature=0, stop_token=stop)
    first = 2 + int(np.argmax(out[0, 2:] == stop))
    np.testing.assert_array_equal(stopped[0], out[0, :first + 1])


def test_softmax_temperature_sharpens_and_flattens():
    logits = np.array([[2.0, 1.0, 0.1]])
    cold, warm, hot = (softmax_with_temperature(logits, t) for t in (0.5, 1.0, 2.0))
    for p in (cold, warm, hot):
        assert p.sum() == pytest.approx(1.0)
    assert cold[0, 0] > warm[0, 0] > hot[0, 0]
    np.testing.assert_allclose(warm, np.exp(logits) / np.exp(logits).sum())
    with pytest.raises(ConfigError):
        softmax_with_temperature(logits, 0)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    # 0.5 + 0.3 = 0.8 < 0.85: the third token is needed to reach 0.85
    assert np.isfinite(filter_logits(logits, top_p=0.85)).tolist() == [[True, True, True, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, rng, top_k=2)[0] for _ in range(2000)])
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).mean() - 0.5 / 0.8) < 0.04


def test_sampling_follows_the_distribution():
    probs = np.array([0.1, 0.2, 0.7])
    rng = np.random.default_rng(0)
    draws = sample_next(np.log(np.tile(probs, (20000, 1))), rng)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, probs, atol=0.015)


def test_bad_generation_arguments():
    model = model_for("learned")
    with pytest.raises(InputError):
        generate(model, np.zeros((1, 0), dtype=np.int64), 3)
    with pytest.raises(ConfigError):
        generate(model, [[1]], 3, top_k=0)
    with pytest.raises(ConfigError):
        generate(model, [[1]], 3, top_p=1.5)
