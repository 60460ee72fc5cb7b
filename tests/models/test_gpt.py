import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import BackwardError, ConfigError, InputError, StateDictError
from npgpt.models import GPT, GPTConfig, count_params, params_formula
from npgpt.models.gpt import Block
from npgpt.optim import AdamW
from tests.helpers import MeanLoss

VARIANTS = {
    "gpt2": dict(),
    "post_ln_sinusoidal_relu": dict(pos="sinusoidal", prenorm=False, mlp="relu"),
    "llama": dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False),
    "gqa_exact_gelu_nopos": dict(n_kv_head=1, mlp="gelu", pos="none"),
    "rope_interleaved_untied": dict(pos="rope", rope_layout="interleaved", tie_embeddings=False),
}


def tiny(n_head=2, hs=4, **kw):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=n_head, n_embd=n_head * hs,
                mlp_hidden=12, dtype="float64")
    base.update(kw)
    return GPTConfig(**base)


@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(max_examples=3)
@given(B=st.integers(1, 3), T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_gpt_gradients_match_finite_differences(variant, B, T, seed):
    config = tiny(**VARIANTS[variant])
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():   # non-trivial norms and biases
        p.data += rng.normal(0, 0.1, p.shape)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    # from dlogits (any upstream gradient) ...
    gradcheck(model, idx, max_elements=12, seed=seed)
    # ... and from the mean cross-entropy
    gradcheck(MeanLoss(model), idx, targets, max_elements=12, seed=seed)


@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(max_examples=4)
@given(B=st.integers(1, 3), T=st.integers(1, 5), n_head=st.integers(1, 3), hs=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_block_gradients_match_finite_differences(variant, B, T, n_head, hs, seed):
    kw = dict(VARIANTS[variant])
    if kw.get("pos") == "rope" and hs % 2:
        hs += 1
    if kw.get("n_kv_head"):
        kw["n_kv_head"] = 1
    config = tiny(n_head=n_head, hs=hs, **kw)
    rng = np.random.default_rng(seed)
    rope = GPT(config).h[0].attn.rope
    block = Block(config, rng, rope=rope)
    for p in block.parameters():
        p.data += rng.normal(0, 0.1, p.shape)
    x = rng.standard_normal((B, T, config.n_embd))
    # post-LN with one or two channels leaves gradients at finite-difference noise level
    gradcheck(block, x, max_elements=24, seed=seed, atol=1e-8)


def test_parameter_names_are_gpt2_checkpoint_names():
    names = [n for n, _ in GPT(tiny(n_layer=1)).named_parameters()]
    assert names == ["wte.weight", "wpe.weight",
                     "h.0.ln_1.weight", "h.0.ln_1.bias",
                     "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias",
                     "h.0.attn.c_proj.weight", "h.0.attn.c_proj.bias",
                     "h.0.ln_2.weight", "h.0.ln_2.bias",
                     "h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.bias",
                     "h.0.mlp.c_proj.weight", "h.0.mlp.c_proj.bias",
                     "ln_f.weight", "ln_f.bias"]
    model = GPT(tiny(n_layer=1, n_head=2, hs=4))
    assert model.state_dict()["h.0.attn.c_attn.weight"].shape == (8, 24)   # (C, 3C)


def test_llama_layout_uses_llama_mlp_names_and_an_untied_head():
    names = [n for n, _ in GPT(tiny(**VARIANTS["llama"], n_layer=1)).named_parameters()]
    assert "h.0.mlp.gate_proj.weight" in names and "h.0.mlp.down_proj.weight" in names
    assert "lm_head.weight" in names and not any(n.endswith(".bias") for n in names)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_count_params_agrees_with_the_built_model(variant):
    config = tiny(**VARIANTS[variant])
    assert count_params(config)["total"] == GPT(config).num_parameters()


def test_count_params_is_the_closed_form_for_the_seed_layout():
    # the seed's layout: no learned positions, no final norm (post-LN), tied head
    for C, L, V in [(8, 1, 11), (64, 3, 100), (768, 12, 50257)]:
        config = GPTConfig(vocab_size=V, n_embd=C, n_layer=L, n_head=4, pos="sinusoidal",
                           prenorm=False)
        assert count_params(config)["total"] == params_formula(config) == \
            12 * C * C * L + 13 * C * L + V * C


@pytest.mark.parametrize("preset,expected", [("gpt2", 124_439_808), ("gpt2-medium", 354_823_168),
                                             ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)])
def test_count_params_matches_the_released_gpt2_sizes(preset, expected):
    assert count_params(GPTConfig.preset(preset))["total"] == expected


def test_gpt2_124m_built_model_has_124439808_parameters():
    assert GPT(GPTConfig.preset("gpt2")).num_parameters() == 124_439_808


def test_tiny_gpt_overfits_one_batch():
    config = GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 16, size=(4, 16))
    targets = np.roll(idx, -1, axis=1)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        _, loss = model.forward(idx, targets)
        opt.zero_grad()
        model.backward()
        opt.step()
    assert float(loss) < 0.05
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("kw,match", [
    (dict(n_embd=100, n_head=3), "n_embd=100 is not divisible by n_head=3"),
    (dict(n_head=4, n_kv_head=3), "n_head=4 is not divisible by n_kv_head=3"),
    (dict(pos="alibi"), "pos='alibi'"),
    (dict(vocab_size=0), "vocab_size=0"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_configs_raise_config_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        GPTConfig(**kw)


def test_bad_inputs_raise_input_errors():
    model = GPT(tiny())
    with pytest.raises(InputError, match="11"):
        model.forward(np.array([[1, 2, 11]]))
    with pytest.raises(InputError, match="block_size"):
        model.forward(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(InputError, match="2-D"):
        model.forward(np.zeros(4, dtype=np.int64))
    with pytest.raises(BackwardError):
        GPT(tiny()).backward()
    model.forward(np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(BackwardError, match="targets"):
        model.backward()


def test_state_dict_mismatch_names_every_offender():
    model = GPT(tiny())
    state = dict(model.state_dict())
    del state["h.1.ln_2.bias"]
    state["h.9.ln_1.weight"] = np.zeros(8)
    state["wte.weight"] = np.zeros((12, 8))
    before = model.wpe.weight.data.copy()
    with pytest.raises(StateDictError) as err:
        model.load_state_dict(state)
    for key in ("h.1.ln_2.bias", "h.9.ln_1.weight", "wte.weight"):
        assert key in str(err.value)
    np.testing.assert_array_equal(model.wpe.weight.data, before)   # nothing changed


def test_eval_mode_keeps_no_activations():
    model = GPT(tiny()).eval()
    model.forward(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    cached = [type(m).__name__ for m in model.modules() if m._cache is not None]
    assert cached == []
