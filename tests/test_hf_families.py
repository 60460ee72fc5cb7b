"""Llama 3.x, Qwen2, Qwen3, SmolLM3, Mistral (sliding window) and Gemma 3 text against
transformers on the same files.

One small random-weight directory per family, made by transformers from a config built by
hand (no network), with every tensor moved off its init (so Gemma's (1 + w) norms count) and
sequences longer than the sliding window. npgpt loads it with the one GPT class and must give
transformers' logits (float32 and float64), gradients (float64, every parameter), greedy
generation, perplexity, its own KV-cache decoding, a save transformers reads back, and a LoRA
adapter PEFT reads with the same logits; full and LoRA fine-tuning lower the loss.
"""
import math

import numpy as np
import pytest

from npgpt.adapters import LoraConfig, apply_lora, save_adapter
from npgpt.evaluate import perplexity
from npgpt.hf import _hf_view, config_from_hf, config_to_hf, from_pretrained, layout
from npgpt.layers.lora import LoRALinear
from npgpt.optim import AdamW

V, WINDOW, T_LONG = 61, 5, 14         # sequences of T_LONG tokens run past the window

FAMILIES = {
    # Llama 3.2: tied head, llama3 frequencies (original context 32: a pair in every band)
    "llama3": lambda t: t.LlamaConfig(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32}),
    # Qwen2.5: biases on q, k, v only; the second layer slides (from max_window_layers = 1)
    "qwen2": lambda t: t.Qwen2Config(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=1000.0,
        use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    # Qwen3: 4 heads x 16 = 64 != 48 channels, q/k norms, tied head
    "qwen3": lambda t: t.Qwen3Config(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, tie_word_embeddings=True,
        rope_theta=1000.0),
    # SmolLM3: every second layer without RoPE
    "smollm3": lambda t: t.SmolLM3Config(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, no_rope_layer_interval=2,
        rope_theta=1000.0),
    # Mistral: every layer slides (sliding_window on all of them)
    "mistral": lambda t: t.MistralConfig(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, sliding_window=WINDOW,
        rope_theta=1000.0),
    # Gemma 3: sliding then full layer, two RoPE bases (the global one linearly scaled, as in
    # Gemma 3 4B), query_pre_attn_scalar, soft-capping
    "gemma3_text": lambda t: t.Gemma3TextConfig(
        hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, query_pre_attn_scalar=20,
        sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                         "full_attention": {"rope_type": "linear", "factor": 2.0,
                                            "rope_theta": 1000.0}},
        final_logit_softcapping=3.0),
}


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _reload(tt, path, dtype=None):
    """transformers' reading of the directory: eager attention in float32; sdpa in float64,
    since the eager softmax runs in float32 whatever the dtype."""
    torch, transformers = tt
    attention = "sdpa" if dtype == torch.float64 else "eager"
    kwargs = {"dtype": dtype} if dtype is not None else {}
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, attn_implementation=attention, **kwargs).eval()


def random_model(torch, transformers, config, bias_std=None):
    """A transformers model of ``config`` (no bos/eos/pad ids), seeded, its weights drawn
    large enough that every family difference shows in the logits: norms off their init
    (so (1 + w) shows), the rest std 0.3, biases (with ``bias_std``) their own std."""
    config.bos_token_id = config.eos_token_id = config.pad_token_id = None
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.normal_(0.0, 0.1) if "norm" in n else p.normal_(0.0, 0.3)
            if bias_std is not None and "bias" in n:
                p.normal_(0.0, bias_std)
    return model


@pytest.fixture(scope="module", params=list(FAMILIES))
def fam(request, tt, tmp_path_factory):
    """(name, directory, transformers model in float32) of one family."""
    torch, transformers = tt
    name = request.param
    path = tmp_path_factory.mktemp(name)
    config = FAMILIES[name](transformers)
    config.vocab_size = V
    model = random_model(torch, transformers, config, bias_std=0.2)
    model.save_pretrained(path)
    return name, path, _reload(tt, path)


def _logits(tt, hf, idx):
    with tt[0].no_grad():
        return hf(tt[0].from_numpy(idx)).logits.numpy()


def _in_float64(torch, monkeypatch, name):
    """transformers' RMSNorms and RoPE tables compute in float32 whatever the model dtype;
    these stand-ins compute the same formulas in the input's dtype, so float64 can be
    compared to 1e-8. The llama3 rewrite is redone here in float64 (its float32 values are
    checked against transformers' own in test_llama3_frequencies_are_transformers')."""
    import importlib
    module = {"llama3": "llama", "gemma3_text": "gemma3"}.get(name, name)
    m = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "smollm3": "SmolLM3",
              "gemma3": "Gemma3"}[module]
    plus_one = module == "gemma3"

    def norm(self, x):
        scale = (1.0 + self.weight) if plus_one else self.weight
        eps = getattr(self, "variance_epsilon", getattr(self, "eps", None))
        return scale * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def inv_freq(params, dim, dtype):
        inv = 1.0 / params["rope_theta"] ** (torch.arange(0, dim, 2, dtype=dtype) / dim)
        if params.get("rope_type") == "linear":
            inv = inv / params["factor"]
        if params.get("rope_type") == "llama3":
            f, lo, hi = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
            old = params["original_max_position_embeddings"]
            wave = 2 * math.pi / inv
            s = (old / wave - lo) / (hi - lo)
            mid = (wave >= old / hi) & (wave <= old / lo)
            inv = torch.where(wave > old / lo, inv / f, torch.where(mid, (1 - s) * inv / f + s * inv, inv))
        return inv

    def tables(params, dim, x, position_ids):
        freqs = position_ids[..., None].to(x.dtype) * inv_freq(params, dim, x.dtype)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    if plus_one:
        def rope(self, x, position_ids, layer_type):
            dim = getattr(self, f"{layer_type}_inv_freq").shape[0] * 2
            return tables(self.config.rope_parameters[layer_type], dim, x, position_ids)
    else:
        def rope(self, x, position_ids):
            return tables(self.config.rope_parameters, self.inv_freq.shape[0] * 2, x, position_ids)
    monkeypatch.setattr(getattr(m, f"{prefix}RMSNorm"), "forward", norm)
    monkeypatch.setattr(getattr(m, f"{prefix}RotaryEmbedding"), "forward", rope)


# --- the mapping ----------------------------------------------------------------------------

EXPECTED = {
    "llama3": dict(rope_scaling="llama3", rope_factor=8.0, rope_original_context=32,
                   tie_embeddings=True),
    "qwen2": dict(qkv_bias=True, bias=False, layer_types="fs", sliding_window=WINDOW),
    "qwen3": dict(qk_norm=True, head_dim=16, tie_embeddings=True),
    "smollm3": dict(rope_layers="10"),
    "mistral": dict(layer_types="ss", sliding_window=WINDOW, bias=False),
    "gemma3_text": dict(norm_plus_one=True, sandwich_norm=True, embed_scale=True, mlp="geglu",
                        qk_norm=True, head_dim=16, attn_scalar=20.0, layer_types="sf",
                        sliding_window=WINDOW, rope_local_theta=10.0, rope_theta=1000.0,
                        rope_scaling="linear", rope_factor=2.0, logit_softcap=3.0),
}


def test_each_family_maps_onto_gptconfig_fields_and_back(fam):
    name, path, _ = fam
    import json
    hf = json.loads((path / "config.json").read_text())
    config = config_from_hf(hf)
    for field, value in EXPECTED[name].items():
        assert getattr(config, field) == value, field
    assert config_to_hf(config)["model_type"] == hf["model_type"]
    assert config_from_hf(config_to_hf(config)) == config


def test_llama3_frequencies_are_transformers(tt):
    torch, transformers = tt
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    config = FAMILIES["llama3"](transformers)
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](config, None)
    ours = from_pretrained_config_rope(config_from_hf(config.to_dict()))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)      # theirs is float32
    plain = 500.0 ** (-np.arange(0, 12, 2) / 12)
    assert (ours < plain).any() and (ours == plain).any()           # kept, divided, blended


def from_pretrained_config_rope(config):
    from npgpt.models.per_layer import layer_ropes
    return layer_ropes(config, np.float64)[0]._inv_freq


# --- logits, gradients ---------------------------------------------------------------------

def test_float32_logits_match_transformers_past_the_sliding_window(tt, fam):
    name, path, hf = fam
    ours = from_pretrained(path).eval()
    rng = np.random.default_rng(0)
    for B, T in [(1, 1), (2, 3), (2, T_LONG), (1, 40)]:
        idx = rng.integers(0, V, size=(B, T))
        logits = ours.forward(idx)[0]
        assert logits.dtype == np.float32
        assert rel(logits, _logits(tt, hf, idx)) < 1e-4, (name, B, T)


def test_float64_logits_and_every_gradient_match_transformers(tt, fam, monkeypatch):
    torch, _ = tt
    name, path, _ = fam
    _in_float64(torch, monkeypatch, name)
    hf = _reload(tt, path, dtype=torch.float64).train()
    ours = from_pretrained(path, dtype="float64")
    rng = np.random.default_rng(2)
    idx, targets = rng.integers(0, V, size=(2, 2, T_LONG))
    logits, loss = ours.forward(idx, targets)
    ours.zero_grad()
    ours.backward()
    theirs = hf(torch.from_numpy(idx)).logits
    assert rel(logits, theirs.detach().numpy()) < 1e-12       # measured: 3e-16 to 5e-16
    hf_loss = torch.nn.functional.cross_entropy(theirs.reshape(-1, V),
                                                torch.from_numpy(targets).reshape(-1))
    hf_loss.backward()
    assert abs(float(loss) - hf_loss.item()) < 1e-10 * hf_loss.item()
    hf_params = dict(hf.named_parameters())
    params = dict(ours.named_parameters())
    errors = {e.hf: rel(_hf_view(params[e.ours].grad, e), hf_params[e.hf].grad.numpy())
              for e in layout(ours.config) if e.hf in hf_params}
    assert len(errors) == len(hf_params)             # every parameter of theirs, compared
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-11, (worst, errors[worst])     # measured: below 2e-15


# --- decoding, perplexity ------------------------------------------------------------------

def test_kv_cache_decoding_equals_the_full_forward(fam):
    _, path, _ = fam
    ours = from_pretrained(path, dtype="float64").eval()
    idx = np.random.default_rng(3).integers(0, V, size=(2, T_LONG + 4))
    full = ours.forward(idx)[0]
    cache = ours.new_kv_cache(2, idx.shape[1])
    steps = [ours.forward(idx[:, :3], kv_cache=cache)[0]]
    steps += [ours.forward(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(3, idx.shape[1])]
    assert rel(np.concatenate(steps, axis=1), full) < 1e-12


def test_greedy_generation_is_transformers(tt, fam):
    torch, _ = tt
    _, path, hf = fam
    ours = from_pretrained(path)
    prompt = np.random.default_rng(4).integers(0, V, size=(2, 4))
    out = ours.generate(prompt, 16, temperature=0)
    expected = hf.generate(torch.from_numpy(prompt), do_sample=False, max_new_tokens=16,
                           min_new_tokens=16, pad_token_id=0).numpy()
    np.testing.assert_array_equal(out, expected)


def test_perplexity_is_transformers(tt, fam):
    torch, _ = tt
    _, path, hf = fam
    ids = np.random.default_rng(5).integers(0, V, size=33)
    ours = perplexity(from_pretrained(path, dtype="float64"), ids, block_size=33)
    hf64 = _reload(tt, path, dtype=torch.float64)
    logits = torch.from_numpy(_logits(tt, hf64, ids[None, :-1])[0])
    nll = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ids[1:])).item()
    assert abs(ours.nll - nll) < 1e-6 * nll      # transformers' float32 norms and tables


# --- writing back, adapters, training ------------------------------------------------------

def test_save_pretrained_is_read_by_transformers_with_the_same_logits(tt, fam, tmp_path):
    _, path, hf = fam
    ours = from_pretrained(path)
    ours.save_pretrained(tmp_path / "out")
    again = _reload(tt, tmp_path / "out")
    idx = np.random.default_rng(6).integers(0, V, size=(2, T_LONG))
    assert rel(_logits(tt, again, idx), _logits(tt, hf, idx)) < 1e-6
    assert type(again) is type(hf)


def test_lora_adapter_is_read_by_peft_with_the_same_logits(tt, fam, tmp_path):
    peft = pytest.importorskip("peft")
    torch, _ = tt
    _, path, _ = fam
    ours = from_pretrained(path)
    apply_lora(ours, LoraConfig(r=2, alpha=4, target_modules="all-linear"))
    rng = np.random.default_rng(7)
    for _, m in ours.named_modules():
        if isinstance(m, LoRALinear):
            for _, _, adapter in m.adapters():
                adapter.B.data[:] = rng.standard_normal(adapter.B.shape) * 0.3
    save_adapter(ours, tmp_path / "adapter")
    idx = rng.integers(0, V, size=(2, T_LONG))
    theirs = peft.PeftModel.from_pretrained(_reload(tt, path), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(idx)).logits.numpy()
    assert rel(expected, _logits(tt, _reload(tt, path), idx)) > 1e-2      # the adapter counts
    assert rel(ours.eval().forward(idx)[0], expected) < 1e-4


@pytest.mark.parametrize("lora", [False, True])
def test_full_and_lora_fine_tuning_lower_the_loss(fam, lora):
    _, path, _ = fam
    model = from_pretrained(path)
    if lora:
        apply_lora(model, LoraConfig(r=4, alpha=8, target_modules="all-linear"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=3e-2 if lora else 1e-2, weight_decay=0.0)
    idx, targets = np.random.default_rng(8).integers(0, V, size=(2, 2, T_LONG))
    losses = []
    for _ in range(6):
        _, loss = model.forward(idx, targets)
        losses.append(float(loss))
        model.zero_grad()
        model.backward()
        opt.step()
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.95 * losses[0], losses


def test_the_hubs_older_spellings_map_the_same():
    """config.json files on the Hub predate rope_parameters: Llama 3.2's rope_scaling, Gemma
    3's rope_theta / rope_local_base_freq / sliding_window_pattern, Qwen2.5's switched-off
    sliding window."""
    llama = config_from_hf(dict(
        model_type="llama", vocab_size=V, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}))
    assert (llama.rope_scaling, llama.rope_factor, llama.rope_original_context,
            llama.rope_theta, llama.head_dim) == ("llama3", 32.0, 8192, 500000.0, None)
    gemma = config_from_hf(dict(
        model_type="gemma3_text", vocab_size=V, hidden_size=64, intermediate_size=96,
        num_hidden_layers=7, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
        max_position_embeddings=256, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        rope_scaling=None, sliding_window=16, sliding_window_pattern=6,
        query_pre_attn_scalar=32, final_logit_softcapping=None))
    assert (gemma.layer_types, gemma.sliding_window, gemma.rope_theta, gemma.rope_local_theta,
            gemma.attn_scalar, gemma.logit_softcap, gemma.tie_embeddings) == \
        ("sssssfs", 16, 1e6, 1e4, 32.0, None, True)
    qwen = config_from_hf(dict(
        model_type="qwen2", vocab_size=V, hidden_size=64, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, rope_theta=1e6, use_sliding_window=False,
        sliding_window=32768, max_window_layers=1, tie_word_embeddings=True))
    assert (qwen.layer_types, qwen.sliding_window, qwen.qkv_bias, qwen.bias) == \
        (None, None, True, False)
