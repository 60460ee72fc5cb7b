"""HuggingFace checkpoints: npgpt against transformers on the same files.

Random-initialised transformers models (GPT-2 and LLaMA, tiny) are saved with their own
save_pretrained, loaded with npgpt.hf.from_pretrained, and compared: logits, greedy decoding
with npgpt's KV cache, and one training step's gradients. The other way, npgpt's
save_pretrained is read back by transformers. Refusals and sharded files need no torch.
"""
import json

import numpy as np
import pytest

from npgpt.errors import CheckpointError, ConfigError
from npgpt.hf import (
    _hf_view,
    config_from_hf,
    config_to_hf,
    from_pretrained,
    layout,
    load_tokenizer,
    save_pretrained,
)
from npgpt.models import GPT, GPTConfig

V = 97


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _perturb(torch, hf, std):
    """Random init leaves biases at 0 and norm weights at 1: make every tensor count, and
    spread the logits so greedy decoding has no near-ties."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "norm" in name or ".ln_" in name:
                p.normal_(1, 0.1)
            else:
                p.normal_(0, std)


def hf_gpt2(tt, tmp_path, tie=True, block=48, activation="gelu_new", std=0.3, seed=0):
    torch, transformers = tt
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=V, n_positions=block, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, activation_function=activation, tie_word_embeddings=tie,
        bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(config)
    _perturb(torch, hf, std)
    hf.save_pretrained(tmp_path)
    return _reload(tt, tmp_path)


def hf_llama(tt, tmp_path, n_kv_head=2, tie=False, bias=False, block=48, std=0.3, seed=0):
    torch, transformers = tt
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=n_kv_head, max_position_embeddings=block,
        rms_norm_eps=1e-6, rope_theta=500.0, tie_word_embeddings=tie, attention_bias=bias,
        mlp_bias=bias, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf = transformers.LlamaForCausalLM(config)
    _perturb(torch, hf, std)
    hf.save_pretrained(tmp_path)
    return _reload(tt, tmp_path)


def _reload(tt, path, dtype=None):
    """transformers' own reading of the directory, in ``dtype``. Eager attention, except in
    float64: LLaMA's eager softmax runs in float32 whatever the dtype; torch's sdpa does not."""
    torch, transformers = tt
    kwargs = {"dtype": dtype} if dtype is not None else {}
    attention = "sdpa" if dtype == torch.float64 else "eager"
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention,
                                                           **kwargs)
    return hf.eval()


CASES = {
    "gpt2-tied": lambda tt, p: hf_gpt2(tt, p),
    "gpt2-untied": lambda tt, p: hf_gpt2(tt, p, tie=False),
    "gpt2-gelu-exact": lambda tt, p: hf_gpt2(tt, p, activation="gelu"),
    "llama-gqa-untied": lambda tt, p: hf_llama(tt, p),
    "llama-mha-tied": lambda tt, p: hf_llama(tt, p, n_kv_head=4, tie=True),
    "llama-mqa-bias": lambda tt, p: hf_llama(tt, p, n_kv_head=1, bias=True),
}


def _hf_logits(tt, hf, idx):
    torch, _ = tt
    with torch.no_grad():
        return hf(torch.from_numpy(idx)).logits.numpy()


# --- transformers -> npgpt -----------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers_from_t1_to_the_context_limit(tt, tmp_path, case):
    hf = CASES[case](tt, tmp_path)
    ours = from_pretrained(tmp_path).eval()
    rng = np.random.default_rng(0)
    for B, T in [(1, 1), (3, 1), (2, 7), (2, 47), (1, 48)]:
        idx = rng.integers(0, V, size=(B, T))
        logits, _ = ours.forward(idx)
        assert logits.dtype == np.float32
        assert rel(logits, _hf_logits(tt, hf, idx)) < 1e-4, (B, T)


def test_float64_logits_match_transformers_to_1e9_for_gpt2(tt, tmp_path):
    torch, _ = tt
    hf_gpt2(tt, tmp_path, tie=False)
    hf = _reload(tt, tmp_path, dtype=torch.float64)
    ours = from_pretrained(tmp_path, dtype="float64").eval()
    idx = np.random.default_rng(1).integers(0, V, size=(2, 48))
    logits, _ = ours.forward(idx)
    assert logits.dtype == np.float64
    assert rel(logits, _hf_logits(tt, hf, idx)) < 1e-9


def _llama_in_float64(torch, monkeypatch):
    """transformers' LlamaRMSNorm upcasts to float32 and its RoPE tables are float32 whatever
    the model dtype (as is the eager softmax, avoided with sdpa in :func:`_reload`); these
    stand-ins compute the same formulas in the input's dtype."""
    from transformers.models.llama import modeling_llama as m

    def rmsnorm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rope(self, x, position_ids):
        dim = self.inv_freq.shape[0] * 2
        theta = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=x.dtype) / dim)
        freqs = position_ids[..., None].to(x.dtype) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()
    monkeypatch.setattr(m.LlamaRMSNorm, "forward", rmsnorm)
    monkeypatch.setattr(m.LlamaRotaryEmbedding, "forward", rope)


@pytest.mark.parametrize("case", ["llama-gqa-untied", "llama-mqa-bias"])
def test_float64_llama_logits_match_to_1e9_once_transformers_computes_in_float64(
        tt, tmp_path, monkeypatch, case):
    torch, _ = tt
    CASES[case](tt, tmp_path)
    hf = _reload(tt, tmp_path, dtype=torch.float64)
    ours = from_pretrained(tmp_path, dtype="float64").eval()
    idx = np.random.default_rng(1).integers(0, V, size=(2, 48))
    stock = rel(ours.forward(idx)[0], _hf_logits(tt, hf, idx))
    assert 1e-9 < stock < 1e-5        # transformers' float32 RMSNorm statistics and RoPE tables
    _llama_in_float64(torch, monkeypatch)
    assert rel(ours.forward(idx)[0], _hf_logits(tt, hf, idx)) < 1e-9


@pytest.mark.parametrize("case,T", [("gpt2-untied", 1), ("gpt2-tied", 16),
                                    ("llama-gqa-untied", 1), ("llama-gqa-untied", 16),
                                    ("llama-mha-tied", 5)])
def test_greedy_generation_with_kv_cache_equals_transformers_generate(tt, tmp_path, case, T):
    torch, _ = tt
    hf = CASES[case](tt, tmp_path)
    ours = from_pretrained(tmp_path)
    prompt = np.random.default_rng(T).integers(0, V, size=(2, T))   # T=16: ends at the limit
    out = ours.generate(prompt, 32, temperature=0)
    expected = hf.generate(torch.from_numpy(prompt), do_sample=False, max_new_tokens=32,
                           min_new_tokens=32, pad_token_id=0).numpy()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("case", list(CASES))
def test_one_training_step_gradients_match_transformers(tt, tmp_path, monkeypatch, case):
    torch, _ = tt
    CASES[case](tt, tmp_path)
    _llama_in_float64(torch, monkeypatch)
    hf = _reload(tt, tmp_path, dtype=torch.float64).train()
    ours = from_pretrained(tmp_path, dtype="float64")
    rng = np.random.default_rng(2)
    idx, targets = rng.integers(0, V, size=(2, 2, 20))
    _, loss = ours.forward(idx, targets)
    ours.zero_grad()
    ours.backward()
    logits = hf(torch.from_numpy(idx)).logits
    hf_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                                torch.from_numpy(targets).reshape(-1))
    hf_loss.backward()
    tol = 1e-9
    assert abs(float(loss) - hf_loss.item()) < tol * hf_loss.item()
    hf_params = dict(hf.named_parameters())
    params = dict(ours.named_parameters())
    errors = {}
    for e in layout(ours.config):
        if e.hf in hf_params:    # a tied lm_head is wte itself
            errors[e.hf] = rel(_hf_view(params[e.ours].grad, e), hf_params[e.hf].grad.numpy())
    assert len(errors) == len(hf_params)
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol * 10, (worst, errors[worst])


def test_bfloat16_checkpoint_is_widened_exactly(tt, tmp_path):
    torch, _ = tt
    hf = hf_gpt2(tt, tmp_path / "f32", tie=False)
    hf.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ours = from_pretrained(tmp_path / "bf16")
    state = {k: v.float().numpy() for k, v in hf.state_dict().items()}
    np.testing.assert_array_equal(ours.state_dict()["h.1.attn.c_attn.weight"],
                                  state["transformer.h.1.attn.c_attn.weight"])
    np.testing.assert_array_equal(ours.state_dict()["lm_head.weight"], state["lm_head.weight"].T)


# --- npgpt -> transformers -----------------------------------------------------------------------

NPGPT_CONFIGS = {
    "gpt2": dict(pos="learned", norm="layernorm", mlp="gelu_tanh"),
    "gpt2-relu-untied-wide": dict(pos="learned", mlp="relu", tie_embeddings=False, mlp_hidden=40),
    "llama": dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2,
                  tie_embeddings=False, mlp_hidden=56, rope_theta=1000.0, norm_eps=1e-6),
    "llama-bias-tied": dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=True, n_kv_head=1),
}


def _npgpt_model(name, **extra):
    config = GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=32, init_std=0.2,
                       **NPGPT_CONFIGS[name], **extra)
    model = GPT(config, seed=3)
    rng = np.random.default_rng(4)
    for pname, p in model.named_parameters():     # biases and norms away from 0 and 1
        if p.data.ndim == 1:
            p.data += rng.normal(0, 0.1, p.shape).astype(p.dtype)
    return model


@pytest.mark.parametrize("name", list(NPGPT_CONFIGS))
def test_save_pretrained_is_read_by_transformers_with_the_same_logits(tt, tmp_path, name):
    model = _npgpt_model(name).eval()
    save_pretrained(model, tmp_path / "m")
    hf = _reload(tt, tmp_path / "m")
    idx = np.random.default_rng(5).integers(0, V, size=(2, 32))
    assert rel(model.forward(idx)[0], _hf_logits(tt, hf, idx)) < 1e-5
    again = from_pretrained(tmp_path / "m").eval()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


def test_round_trip_keeps_token_ids_and_transformers_logits(tt, tmp_path):
    hf_llama(tt, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config.update(bos_token_id=5, eos_token_id=6)
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    hf = _reload(tt, tmp_path / "a")
    save_pretrained(from_pretrained(tmp_path / "a"), tmp_path / "b")
    written = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (written["bos_token_id"], written["eos_token_id"]) == (5, 6)
    idx = np.random.default_rng(6).integers(0, V, size=(1, 20))
    np.testing.assert_array_equal(_hf_logits(tt, _reload(tt, tmp_path / "b"), idx),
                                  _hf_logits(tt, hf, idx))


# --- refusals (no torch needed) ------------------------------------------------------------------

GPT2_JSON = dict(model_type="gpt2", vocab_size=V, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                 activation_function="gelu_new", layer_norm_epsilon=1e-5)
LLAMA_JSON = dict(model_type="llama", vocab_size=V, hidden_size=16, intermediate_size=24,
                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                  max_position_embeddings=16, hidden_act="silu", rms_norm_eps=1e-6,
                  rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False)


@pytest.mark.parametrize("base,change,field", [
    (GPT2_JSON, dict(model_type="gpt_neox"), "model_type"),
    (GPT2_JSON, dict(model_type=None), "model_type"),
    (GPT2_JSON, dict(activation_function="quick_gelu"), "activation_function"),
    (GPT2_JSON, dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (GPT2_JSON, dict(add_cross_attention=True), "add_cross_attention"),
    (LLAMA_JSON, dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "rope_scaling"),
    (LLAMA_JSON, dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "rope_low_freq"),
    (LLAMA_JSON, dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}),
     "rope_parameters.rope_type"),
    (LLAMA_JSON, dict(sliding_window=4096), "sliding_window"),      # (a Mistral's slides)
    (LLAMA_JSON, dict(layer_types=["sliding_attention"]), "layer_types"),
    (LLAMA_JSON, dict(hidden_act="gelu"), "hidden_act"),
    (LLAMA_JSON, dict(head_dim=-1), "head_dim"),
    (LLAMA_JSON, dict(model_type="qwen3", attention_bias=True), "attention_bias"),
    (LLAMA_JSON, dict(model_type="smollm3", no_rope_layers=[1, 0]), "no_rope_layers"),
    (LLAMA_JSON, dict(model_type="gemma3_text", attn_logit_softcapping=50.0),
     "attn_logit_softcapping"),
    (LLAMA_JSON, dict(model_type="gemma3_text", hidden_activation="silu"), "hidden_activation"),
    (LLAMA_JSON, dict(model_type="qwen2", use_sliding_window=True, sliding_window=4,
                      layer_types=["chunked_attention"]), "layer_types"),
    (LLAMA_JSON, dict(attention_bias=True, mlp_bias=False), "attention_bias"),
    (LLAMA_JSON, dict(quantization_config={"quant_method": "gptq"}), "quantization_config"),
])
def test_configs_npgpt_cannot_run_are_refused_naming_the_field(tmp_path, base, change, field):
    hf = {**base, **change}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_hf(hf)
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        from_pretrained(tmp_path)


def test_config_mapping_reads_both_rope_spellings_and_mistral():
    a = config_from_hf({**LLAMA_JSON, "rope_theta": 500.0})
    b = config_from_hf({**LLAMA_JSON, "rope_parameters": {"rope_type": "default",
                                                          "rope_theta": 500.0}})
    c = config_from_hf({**LLAMA_JSON, "model_type": "mistral", "sliding_window": None,
                        "rope_theta": 500.0})
    assert a == b == c and a.rope_theta == 500.0 and a.n_kv_head == 1 and a.pos == "rope"
    # Mistral: sliding_window slides every layer; absent, transformers' default 4096 applies
    for given, window in ((dict(sliding_window=7), 7), ({}, 4096)):
        m = config_from_hf({**LLAMA_JSON, "model_type": "mistral", "rope_theta": 500.0,
                            "attention_bias": True, "mlp_bias": False, **given})
        assert (m.layer_types, m.sliding_window, m.bias) == ("s", window, False)
        assert config_to_hf(m)["model_type"] == "mistral" and config_from_hf(config_to_hf(m)) == m
    g = config_from_hf({**GPT2_JSON, "n_inner": 20}, dtype="float64", dropout=0.1)
    assert (g.mlp_hidden, g.dtype, g.dropout, g.tie_embeddings) == (20, "float64", 0.1, True)
    assert config_from_hf(config_to_hf(a)) == a
    assert config_from_hf(config_to_hf(g), dtype="float64", dropout=0.1) == g


@pytest.mark.parametrize("change,field", [
    (dict(prenorm=False), "prenorm"), (dict(pos="sinusoidal"), "pos"),
    (dict(bias=False), "bias"), (dict(n_kv_head=1), "n_kv_head"),
    (dict(pos="rope", norm="rmsnorm", mlp="swiglu", rope_layout="interleaved"), "rope_layout"),
])
def test_save_pretrained_refuses_models_transformers_cannot_express(tmp_path, change, field):
    model = GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=8, **change))
    with pytest.raises(ConfigError, match=field):
        save_pretrained(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# --- files: shards, prefixes, mismatches, atomic saves --------------------------------------------

def _write_shards(src, dst, n_shards):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    dst.mkdir()
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::n_shards]}
        save_file(part, str(dst / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (dst / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
         "weight_map": weight_map}))
    (dst / "config.json").write_text((src / "config.json").read_text())


@pytest.mark.parametrize("name", ["gpt2-relu-untied-wide", "llama"])
def test_sharded_checkpoint_with_index_loads_the_same_model(tmp_path, name):
    model = _npgpt_model(name)
    save_pretrained(model, tmp_path / "one")
    _write_shards(tmp_path / "one", tmp_path / "sharded", 3)
    loaded = from_pretrained(tmp_path / "sharded")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


def test_sharded_checkpoint_with_a_missing_shard_is_refused(tmp_path):
    save_pretrained(_npgpt_model("llama"), tmp_path / "one")
    _write_shards(tmp_path / "one", tmp_path / "sharded", 2)
    (tmp_path / "sharded" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        from_pretrained(tmp_path / "sharded")


def test_openai_style_gpt2_names_and_mask_buffers_are_accepted(tmp_path):
    from safetensors.numpy import load_file, save_file
    model = _npgpt_model("gpt2")
    save_pretrained(model, tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    renamed = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    renamed["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
    save_file(renamed, str(tmp_path / "m" / "model.safetensors"), metadata={"format": "pt"})
    loaded = from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(loaded.state_dict()["wte.weight"], model.state_dict()["wte.weight"])


def test_missing_unexpected_and_misshaped_tensors_are_all_named(tmp_path):
    from safetensors.numpy import load_file, save_file
    save_pretrained(_npgpt_model("llama"), tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((3, 32), np.float32)
    tensors["model.extra.weight"] = np.zeros(2, np.float32)
    save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        from_pretrained(tmp_path / "m")
    for name in ("model.layers.1.mlp.up_proj.weight", "model.extra.weight",
                 "model.layers.0.self_attn.k_proj.weight: checkpoint (3, 32) vs expected (16, 32)"):
        assert name in str(err.value)


def test_a_directory_without_weights_or_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(GPT2_JSON))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(CheckpointError, match="never unpickles"):
        from_pretrained(tmp_path)


def test_save_pretrained_replaces_weights_keeps_other_files_and_is_atomic(tmp_path, monkeypatch):
    from npgpt import hf
    path = tmp_path / "m"
    save_pretrained(_npgpt_model("gpt2"), path)
    (path / "tokenizer.json").write_text("{}")
    (path / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    first = (path / "model.safetensors").read_bytes()

    def crash(*args):
        raise OSError("disk full")
    monkeypatch.setattr(hf, "_write_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(_npgpt_model("llama"), path)
    assert (path / "model.safetensors").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]      # no temporary left
    monkeypatch.undo()

    save_pretrained(_npgpt_model("llama"), path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors",
                                                     "tokenizer.json"]
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"


def test_float64_models_save_float64_tensors(tmp_path):
    from safetensors import safe_open
    model = _npgpt_model("llama", dtype="float64")
    save_pretrained(model, tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="np") as f:
        assert f.metadata() == {"format": "pt"}
        q = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert q.dtype == np.float64
    np.testing.assert_array_equal(q, model.state_dict()["h.0.attn.c_attn.weight"][:, :32].T)
    assert from_pretrained(tmp_path / "m", dtype="float64").dtype == np.float64


def test_load_tokenizer_is_none_without_tokenizer_files(tmp_path):
    save_pretrained(_npgpt_model("gpt2"), tmp_path / "m")
    assert load_tokenizer(tmp_path / "m") is None


def test_load_tokenizer_reads_a_byte_level_tokenizer_json_like_tokenizers_does(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    text = "the quick brown fox jumps over the lazy dog. " * 50 + "Hello, wörld! 123"
    reference = tokenizers.ByteLevelBPETokenizer()
    reference.train_from_iterator([text], vocab_size=300, min_frequency=1, show_progress=False)
    save_pretrained(_npgpt_model("gpt2"), tmp_path / "m")
    reference.save(str(tmp_path / "m" / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "m")
    sample = "the lazy fox says: Hello, wörld!  123"
    assert tok.encode(sample) == reference.encode(sample).ids
    assert tok.decode(tok.encode(sample)) == sample
