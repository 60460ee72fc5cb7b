import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import BackwardError, ConfigError, InputError
from npgpt.models import Seq2SeqConfig, Transformer
from npgpt.module import Module

PAD, BOS, EOS = 0, 1, 2


def tiny(prenorm=False, n_head=2, hs=3, **kw):
    base = dict(src_vocab_size=9, tgt_vocab_size=7, n_encoder_layer=2, n_decoder_layer=2,
                n_head=n_head, n_embd=n_head * hs, mlp_hidden=10, prenorm=prenorm,
                dtype="float64")
    base.update(kw)
    return Seq2SeqConfig(**base)


def perturbed(config, seed):
    """A model whose norms, biases and weights are all far from their init (non-trivial grads)."""
    model = Transformer(config, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0, 0.4, p.shape)
    return model


def padded_batch(rng, B, S, T, src_vocab=9, tgt_vocab=7):
    """Sources with right padding (each row keeps at least one real token) and targets."""
    src = rng.integers(3, src_vocab, size=(B, S))
    for b, n in enumerate(rng.integers(1, S + 1, size=B)):
        src[b, n:] = PAD
    tgt_in = rng.integers(3, tgt_vocab, size=(B, T))
    tgt_in[:, 0] = BOS
    return src, tgt_in


class MeanLoss(Module):
    """The model's mean cross-entropy as a module, so gradcheck can differentiate the loss."""

    def __init__(self, model):
        super().__init__(np.float64)
        self.model = model

    def forward(self, src, tgt_in, tgt_out):
        return np.asarray(self.model.forward(src, tgt_in, tgt_out)[1])

    def backward(self, g):
        dlogits, _ = self.model.loss_fn.backward(g)
        self.model.backward(dlogits)
        return None, None, None


@pytest.mark.parametrize("prenorm", [False, True], ids=["post_ln", "pre_ln"])
@settings(max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(B=st.integers(1, 3), S=st.integers(1, 5), T=st.integers(1, 5), H=st.integers(1, 4),
       hs=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_seq2seq_gradients_match_finite_differences(prenorm, B, S, T, H, hs, seed):
    config = tiny(prenorm, n_head=H, hs=hs, n_encoder_layer=1, n_decoder_layer=2)
    model = perturbed(config, seed)
    rng = np.random.default_rng(seed)
    src, tgt_in = padded_batch(rng, B, S, T)
    # atol: with C = H * hs <= 2 a post-LN LayerNorm's output barely depends on its input, so
    # some gradients are ~1e-10 on both sides: zero, up to finite-difference noise
    gradcheck(model, src, tgt_in, max_elements=8, eps=1e-5, atol=1e-8, seed=seed)


@pytest.mark.parametrize("prenorm", [False, True], ids=["post_ln", "pre_ln"])
def test_seq2seq_loss_gradients_with_padded_targets(prenorm):
    model = perturbed(tiny(prenorm), seed=3)
    rng = np.random.default_rng(3)
    src, tgt_in = padded_batch(rng, 3, 5, 4)
    tgt_out = rng.integers(3, 7, size=(3, 4))
    tgt_out[0, 2:] = PAD            # padding targets are ignored by the loss
    tgt_out[2, 1:] = PAD
    report = gradcheck(MeanLoss(model), src, tgt_in, tgt_out, max_elements=12, eps=1e-5)
    assert report.max_error <= 1e-6


def test_padded_source_positions_change_nothing_and_get_no_gradient():
    config = tiny(n_encoder_layer=2)
    model = perturbed(config, seed=5)
    rng = np.random.default_rng(5)
    src, tgt_in = padded_batch(rng, 2, 6, 4)
    src[0, 3:] = PAD
    mask = src != PAD
    logits, _ = model.forward(src, tgt_in)
    # same ids in the real positions, anything else behind the mask
    other = src.copy()
    other[~mask] = rng.integers(3, 9, size=int((~mask).sum()))
    logits2, _ = model.forward(other, tgt_in, src_padding_mask=mask)
    np.testing.assert_allclose(logits2, logits, rtol=1e-12, atol=1e-12)
    # and the embedding rows used only at padded positions get zero gradient
    model.zero_grad()
    model.forward(other, tgt_in, src_padding_mask=mask)
    model.backward(rng.standard_normal(logits.shape))
    only_padded = sorted(set(other[~mask].tolist()) - set(other[mask].tolist()))
    assert only_padded
    np.testing.assert_array_equal(model.src_emb.weight.grad[only_padded], 0.0)


def test_loss_ignores_padding_targets():
    model = Transformer(tiny(), seed=0)
    rng = np.random.default_rng(0)
    src, tgt_in = padded_batch(rng, 2, 4, 5)
    tgt_out = rng.integers(3, 7, size=(2, 5))
    tgt_out[1, 2:] = PAD
    logits, loss = model.forward(src, tgt_in, tgt_out)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    counted = tgt_out != PAD
    expected = -np.take_along_axis(logp, tgt_out[..., None], -1)[..., 0][counted].mean()
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_beam_of_one_without_length_penalty_is_greedy():
    model = perturbed(tiny(tgt_vocab_size=7), seed=11)
    rng = np.random.default_rng(11)
    src, _ = padded_batch(rng, 4, 5, 1)
    greedy = model.greedy_decode(src, max_len=6)
    beams = model.beam_search(src, max_len=6, beam_size=1, length_penalty=0.0)
    for row, beam in zip(greedy, beams):
        row = row.tolist()
        if EOS in row:
            row = row[:row.index(EOS) + 1]
        assert beam == row


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = perturbed(tiny(tgt_vocab_size=7), seed=12)
    rng = np.random.default_rng(12)
    src, _ = padded_batch(rng, 3, 4, 1)

    def logprob(b, seq):
        tgt_in = np.array([[BOS] + seq[:-1]])
        model.eval()
        logits, _ = model.forward(src[b:b + 1], tgt_in)
        model.train()
        logp = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
        return float(logp[np.arange(len(seq)), seq].sum())

    greedy = model.greedy_decode(src, max_len=4)
    beams = model.beam_search(src, max_len=4, beam_size=5, length_penalty=0.0)
    for b in range(3):
        g = greedy[b].tolist()
        g = g[:g.index(EOS) + 1] if EOS in g else g
        if len(beams[b]) == len(g):          # same length: beam's score is at least greedy's
            assert logprob(b, beams[b]) >= logprob(b, g) - 1e-9


def test_float32_model_stays_float32():
    model = Transformer(tiny(dtype="float32"), seed=0)
    rng = np.random.default_rng(0)
    src, tgt_in = padded_batch(rng, 2, 4, 3)
    logits, loss = model.forward(src, tgt_in, tgt_in)
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    model.backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_bad_inputs_and_configs_raise_clear_errors():
    with pytest.raises(ConfigError, match="n_embd=10 is not divisible by n_head=3"):
        Seq2SeqConfig(n_embd=10, n_head=3)
    with pytest.raises(ConfigError, match="eos_id=40"):
        Seq2SeqConfig(eos_id=40)
    model = Transformer(tiny(), seed=0)
    with pytest.raises(InputError, match="id 9 is outside the vocabulary"):
        model.forward(np.array([[3, 9]]), np.array([[1]]))
    with pytest.raises(InputError, match="tgt_out shape"):
        model.forward(np.array([[3, 4]]), np.array([[1, 3]]), np.array([[3]]))
    with pytest.raises(BackwardError):
        model.eval()
        model.forward(np.array([[3, 4]]), np.array([[1]]), np.array([[3]]))
        model.backward()


def test_learns_to_reverse_a_short_sequence():
    from npgpt.optim import AdamW
    config = Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=8, n_embd=32, n_head=4,
                           n_encoder_layer=1, n_decoder_layer=1, prenorm=True)
    model = Transformer(config, seed=0)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    for _ in range(250):
        src = rng.integers(3, 8, size=(32, 4))
        tgt = np.concatenate([src[:, ::-1], np.full((32, 1), EOS)], axis=1)
        tgt_in = np.concatenate([np.full((32, 1), BOS), tgt[:, :-1]], axis=1)
        model.zero_grad()
        model.forward(src, tgt_in, tgt)
        model.backward()
        opt.step()
    src = rng.integers(3, 8, size=(64, 4))
    out = model.greedy_decode(src, max_len=5)
    accuracy = (out[:, :4] == src[:, ::-1]).all(axis=1).mean()
    assert accuracy > 0.9


@pytest.mark.parametrize("prenorm", [False, True])
@settings(max_examples=5)
@given(B=st.integers(1, 3), S=st.integers(1, 5), T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_encoder_and_decoder_layers_gradients_match_finite_differences(prenorm, B, S, T, seed):
    from npgpt.models.seq2seq import DecoderLayer, EncoderLayer
    config = tiny(prenorm=prenorm)
    rng = np.random.default_rng(seed)
    mask = rng.random((B, S)) < 0.8
    mask[:, 0] = True                           # every source keeps a real token
    x, memory = rng.standard_normal((B, S, config.n_embd)), rng.standard_normal((B, T, config.n_embd))
    encoder, decoder = EncoderLayer(config, rng), DecoderLayer(config, rng)
    for layer in (encoder, decoder):
        for p in layer.parameters():
            p.data += rng.normal(0, 0.3, p.shape)
    gradcheck(encoder, x, forward_kwargs=dict(src_padding_mask=mask), atol=1e-8, seed=seed)
    # decoder: T target positions attend to the S encoded positions (memory and x swap roles)
    gradcheck(decoder, memory, x, forward_kwargs=dict(memory_padding_mask=mask), atol=1e-8,
              seed=seed)
