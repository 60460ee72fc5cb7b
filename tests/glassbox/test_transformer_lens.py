"""The cache of a GPT-2 equals TransformerLens's (HookedTransformer, transformer-lens 3.x) on the
same weights: residuals, attention patterns and z. Built offline: a hand-made config, the
weights written by npgpt's save_pretrained, read by transformers and converted by
TransformerLens's own GPT-2 conversion, with no folding or centring of weights."""
import numpy as np
import pytest

from npgpt import GPT, GPTConfig

# 3.x deprecates HookedTransformer (4.x replaces it by a bridge over transformers' modules,
# which would only compare against transformers again): it is the implementation compared here
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")
tl = pytest.importorskip("transformer_lens")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    config = GPTConfig(vocab_size=61, block_size=16, n_layer=3, n_head=4, n_embd=32)
    model = GPT(config, seed=5)
    for _, p in model.named_parameters():          # non-trivial norms and biases
        if p.data.ndim == 1:
            p.data += np.random.default_rng(p.data.size).normal(0, 0.1, p.data.shape).astype(p.data.dtype)
    path = model.save_pretrained(tmp_path_factory.mktemp("gpt2"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    cfg = HookedTransformerConfig(
        d_model=32, d_head=8, n_heads=4, d_mlp=128, n_layers=3, n_ctx=16, eps=config.norm_eps,
        d_vocab=61, act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard",
        default_prepend_bos=False, device="cpu")
    ht = HookedTransformer(cfg)
    ht.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False,
                                   center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False)
    ht.eval()
    return model, ht


NAMES = {  # npgpt name -> TransformerLens hook name (per layer i)
    "h.{i}.resid_pre": "blocks.{i}.hook_resid_pre",
    "h.{i}.ln_1.normalized": "blocks.{i}.ln1.hook_normalized",
    "h.{i}.attn.q": "blocks.{i}.attn.hook_q",
    "h.{i}.attn.k": "blocks.{i}.attn.hook_k",
    "h.{i}.attn.v": "blocks.{i}.attn.hook_v",
    "h.{i}.attn.pattern": "blocks.{i}.attn.hook_pattern",
    "h.{i}.attn.z": "blocks.{i}.attn.hook_z",
    "h.{i}.attn_out": "blocks.{i}.hook_attn_out",
    "h.{i}.resid_mid": "blocks.{i}.hook_resid_mid",
    "h.{i}.mlp.pre": "blocks.{i}.mlp.hook_pre",
    "h.{i}.mlp.post": "blocks.{i}.mlp.hook_post",
    "h.{i}.mlp_out": "blocks.{i}.hook_mlp_out",
    "h.{i}.resid_post": "blocks.{i}.hook_resid_post",
}


def test_cache_equals_transformer_lens(pair):
    model, ht = pair
    idx = np.random.default_rng(0).integers(0, 61, (2, 12))
    logits, cache = model.run_with_cache(idx)
    with torch.no_grad():
        tl_logits, tl_cache = ht.run_with_cache(torch.tensor(idx))
    np.testing.assert_allclose(logits, tl_logits.numpy(), atol=2e-5)
    np.testing.assert_allclose(cache["wte"], tl_cache["hook_embed"].numpy(), atol=1e-6)
    np.testing.assert_allclose(cache["wpe"], tl_cache["hook_pos_embed"].numpy()[0], atol=1e-6)
    for i in range(3):
        for ours, theirs in NAMES.items():
            np.testing.assert_allclose(cache[ours.format(i=i)],
                                       tl_cache[theirs.format(i=i)].numpy(), atol=2e-5,
                                       err_msg=ours.format(i=i))
        scores = tl_cache[f"blocks.{i}.attn.hook_attn_scores"].numpy()
        ours = cache[f"h.{i}.attn.scores"]
        allowed = np.isfinite(ours)
        np.testing.assert_allclose(ours[allowed], scores[allowed], atol=2e-5)
    np.testing.assert_allclose(cache["ln_f.normalized"], tl_cache["ln_final.hook_normalized"].numpy(),
                               atol=2e-5)


def test_accumulated_and_decomposed_residual_equal_transformer_lens(pair):
    model, ht = pair
    idx = np.random.default_rng(1).integers(0, 61, (1, 9))
    _, cache = model.run_with_cache(idx)
    with torch.no_grad():
        _, tl_cache = ht.run_with_cache(torch.tensor(idx))
    ours, _ = cache.accumulated_resid(apply_ln=False)
    theirs = tl_cache.accumulated_resid(apply_ln=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    comps, _ = cache.decompose_resid()
    tl_comps = tl_cache.decompose_resid(apply_ln=False).numpy()     # embed, pos_embed, then layers
    np.testing.assert_allclose(comps[0], tl_comps[0] + tl_comps[1], atol=2e-5)
    np.testing.assert_allclose(comps[1:], tl_comps[2:], atol=2e-5)
