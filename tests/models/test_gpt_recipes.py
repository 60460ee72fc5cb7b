"""The training recipes of GPTConfig: ReLU², zero-initialised projections, logit soft-capping."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import gradcheck
from npgpt.errors import ConfigError
from npgpt.models import GPT, GPTConfig
from tests.helpers import MeanLoss

RECIPE = dict(mlp="relu2", zero_init_proj=True, logit_softcap=3.0)


def tiny(**kw):
    return GPTConfig(**{**dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8,
                               mlp_hidden=12, dtype="float64"), **kw})


@pytest.mark.parametrize("variant", [RECIPE, dict(RECIPE, pos="rope", norm="rmsnorm",
                                                  bias=False, tie_embeddings=False)])
@settings(max_examples=3)
@given(B=st.integers(1, 3), T=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_recipe_gpt_gradients_match_finite_differences(variant, B, T, seed):
    config = tiny(**variant)
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():   # off zero, so every path carries a gradient
        p.data += rng.normal(0, 0.3, p.shape)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    gradcheck(model, idx, max_elements=12, seed=seed)
    gradcheck(MeanLoss(model), idx, targets, max_elements=12, seed=seed)


def test_softcap_bounds_the_logits_and_zero_init_zeroes_the_projections():
    model = GPT(tiny(**RECIPE), seed=0)
    for block in model.h:
        assert not block.attn.c_proj.weight.data.any() and not block.mlp.c_proj.weight.data.any()
        assert block.attn.c_attn.weight.data.any() and block.mlp.c_fc.weight.data.any()
    for p in model.parameters():
        p.data *= 50                  # huge weights: the logits still stay inside the cap
    logits, _ = model.forward(np.array([[1, 2, 3, 4]]))
    assert np.abs(logits).max() <= 3.0
    # the same model without the cap: the head's logits (here the cap's input) are far larger
    plain = GPT(tiny(**dict(RECIPE, logit_softcap=None)), seed=0)
    plain.load_state_dict(model.state_dict())
    assert np.abs(plain.forward(np.array([[1, 2, 3, 4]]))[0]).max() > 3.0


@pytest.mark.parametrize("bad", [dict(logit_softcap=0.0), dict(logit_softcap=-2.0),
                                 dict(mlp="relu3"), dict(zero_init_proj="yes")])
def test_recipe_fields_refuse_bad_values(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        tiny(**bad)


def test_relu2_gpt_matches_transformers_gpt2(tt):
    """ReLU² is transformers' activation "relu2": the exported GPT-2 computes the same."""
    torch, transformers = tt
    from npgpt.hf_config import config_to_hf
    config = tiny(mlp="relu2", n_layer=1)
    model = GPT(config, seed=3)
    hf_config = transformers.GPT2Config(**{k: v for k, v in config_to_hf(config).items()
                                           if k not in ("architectures", "model_type")})
    hf = transformers.GPT2LMHeadModel(hf_config).double().eval()
    sd = {}
    for name, p in model.state_dict().items():
        t = torch.tensor(p)
        sd["transformer." + name] = t
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    hf.load_state_dict(sd, strict=False)
    idx = np.array([[1, 5, 2, 7]])
    with torch.no_grad():
        ref = hf(torch.tensor(idx)).logits.numpy()
    np.testing.assert_allclose(model.forward(idx)[0], ref, rtol=1e-10, atol=1e-12)


def test_softcap_refused_by_the_huggingface_export():
    from npgpt.hf_config import config_to_hf
    with pytest.raises(ConfigError, match="logit_softcap"):
        config_to_hf(tiny(logit_softcap=30.0))
