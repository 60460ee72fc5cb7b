"""HuggingFace-loaded models cache what transformers computes: the residual stream before each
block (transformers' hidden_states) and the attention patterns (its attentions), for a GPT-2
and a LLaMA directory written by transformers itself."""
import numpy as np
import pytest

import npgpt
from tests.test_hf import V, hf_gpt2, hf_llama


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_hf_loaded_model_caches_transformers_hidden_states_and_attentions(tt, tmp_path, family):
    torch, _ = tt
    hf = (hf_gpt2 if family == "gpt2" else hf_llama)(tt, tmp_path, std=0.1)
    model = npgpt.from_pretrained(tmp_path)
    idx = np.random.default_rng(0).integers(0, V, (2, 10))
    logits, cache = model.run_with_cache(idx)
    with torch.no_grad():
        out = hf(torch.tensor(idx), output_hidden_states=True, output_attentions=True)
    L = model.config.n_layer
    for i in range(L):
        np.testing.assert_allclose(cache[f"h.{i}.resid_pre"], out.hidden_states[i].numpy(),
                                   atol=2e-5, err_msg=f"h.{i}.resid_pre")
        np.testing.assert_allclose(cache[f"h.{i}.attn.pattern"], out.attentions[i].numpy(),
                                   atol=2e-5, err_msg=f"h.{i}.attn.pattern")
    # transformers' last hidden state is after the final norm
    np.testing.assert_allclose(cache.final_norm(cache[f"h.{L - 1}.resid_post"]),
                               out.hidden_states[L].numpy(), atol=2e-5)
    lens = cache.logit_lens(top_k=1)
    np.testing.assert_array_equal(lens.top_ids[-1, ..., 0], out.logits.numpy().argmax(-1))
