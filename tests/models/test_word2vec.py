import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import InputError
from npgpt.glassbox.cache import neighbours
from npgpt.models.word2vec import (PairSampler, SkipGram, Vocabulary, analogy, nearest,
                                   rank_of, spoken_words)
from npgpt.optim import Adam

seeds = st.integers(0, 2**32 - 1)


@given(B=st.integers(1, 5), K=st.integers(1, 4), V=st.integers(2, 9), C=st.integers(1, 8),
       seed=seeds)
def test_skipgram_gradients_match_finite_differences(B, K, V, C, seed):
    rng = np.random.default_rng(seed)
    model = SkipGram(V, C, dtype=np.float64, rng=rng, out_std=0.5)
    model.wte.weight.data[:] = rng.standard_normal((V, C))
    centre = rng.integers(0, V, size=B)
    words = rng.integers(0, V, size=(B, 1 + K))     # small V: repeated ids scatter-add
    gradcheck(model, centre, words, max_elements=None)


def test_skipgram_starts_at_log2_per_pair(rng):
    model = SkipGram(10, 4, rng=rng)       # output vectors start at zero: every score is 0
    loss = model(rng.integers(0, 10, 8), rng.integers(0, 10, (8, 6)))
    np.testing.assert_allclose(loss, 6 * np.log(2), rtol=1e-6)


def test_skipgram_learns_which_words_share_contexts():
    # two "topics" that never mix: words 1-4 follow each other, words 5-8 likewise
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.integers(1, 5, 30) if k % 2 else rng.integers(5, 9, 30)
                             for k in range(200)])
    counts = np.bincount(stream, minlength=9)
    counts[0] = 1
    model = SkipGram(9, 8, rng=rng)
    sampler = PairSampler(stream, counts, window=2, negatives=3, sample=1.0, rng=rng)
    opt = Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        model.zero_grad()
        model(*sampler.batch(64))
        model.backward()
        opt.step()
    E = model.wte.weight.data
    for w in range(1, 9):
        same = set(range(1, 5)) if w < 5 else set(range(5, 9))
        assert {i for i, _ in neighbours(E, w, 3)} == same - {w}


def test_spoken_words_leave_out_speakers_and_stage_directions():
    text = "KING HENRY:\nOnce more unto the breach, dear friends!\n\n[Exit KING]\nO' the king's men"
    assert spoken_words(text) == ["once", "more", "unto", "the", "breach", "dear", "friends",
                                  "o", "the", "king's", "men"]


def test_vocabulary_keeps_frequent_words_and_counts_the_rest_as_unk():
    vocab = Vocabulary.build("a b a c a b d".split(), min_count=2)
    assert vocab.itos == ["<unk>", "a", "b"]
    assert vocab.counts.tolist() == [2, 3, 2]
    assert vocab.encode(["b", "zzz"]).tolist() == [2, 0]
    with pytest.raises(InputError, match="'c' is not in the vocabulary"):
        vocab.id("c")
    with pytest.raises(InputError, match="no word occurs 9 times"):
        Vocabulary.build(["a"], min_count=9)


def test_pair_sampler_draws_context_within_the_window_and_noise_by_unigram_three_quarters():
    rng = np.random.default_rng(0)
    stream = np.arange(1, 1001)                # every id once: a pair's distance is visible
    counts = np.ones(1001, dtype=np.int64)
    counts[1:11] = 1000                        # ten frequent words
    sampler = PairSampler(stream, counts, window=3, negatives=4, sample=1.0, rng=rng)
    centre, words = sampler.batch(20000)
    assert words.shape == (20000, 5)
    gap = np.abs(words[:, 0] - centre)
    assert gap.min() >= 1 and gap.max() <= 3
    assert (gap == 1).mean() > (gap == 3).mean()          # nearer words are drawn more often
    noise = words[:, 1:].ravel()
    assert noise.min() >= 1                                # <unk> is never a negative
    share = np.isin(noise, np.arange(1, 11)).mean()
    expected = 10 * 1000 ** 0.75 / (10 * 1000 ** 0.75 + 990)
    assert abs(share - expected) < 0.01


def test_analogy_and_nearest_on_a_constructed_space():
    # rows: 0 man, 1 woman, 2 king, 3 queen, 4 apple; queen = king - man + woman exactly
    E = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], float)
    assert analogy(E, 0, 1, 2, k=1)[0][0] == 3
    assert rank_of(E, 0, 1, 2, 3) == 1
    assert rank_of(E, 0, 1, 2, 4) > 1
    assert nearest(E, E[2], k=2, exclude=(2,))[0][0] in (0, 3)
    assert 4 not in [i for i, _ in nearest(E, E[4], 4, exclude=(4,))]


def test_pair_sampler_stays_inside_a_stream_shorter_than_the_window():
    rng = np.random.default_rng(0)
    sampler = PairSampler(np.array([1, 2, 3]), np.array([1, 5, 5, 5]), window=5, negatives=2,
                          sample=1.0, rng=rng)
    centre, words = sampler.batch(500)
    assert set(centre.tolist()) <= {1, 2, 3} and set(words[:, 0].tolist()) <= {1, 2, 3}
