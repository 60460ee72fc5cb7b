"""LoRA adapters on GPTs in PEFT's layout: npgpt against peft on the same files, merge,
training only the adapters, and the refusals.

Tiny random transformers models (GPT-2 and LLaMA layouts, from tests/test_hf.py) are the
bases; adapters are written by npgpt and read by peft.PeftModel, and written by peft
(get_peft_model + save_pretrained) and read by npgpt.
"""
import json

import numpy as np
import pytest

from npgpt import from_pretrained
from npgpt.adapters import (
    ADAPTER_CONFIG,
    LoraConfig,
    apply_lora,
    load_adapter,
    lora_config,
    merge,
    save_adapter,
)
from npgpt.errors import CheckpointError, ConfigError
from npgpt.hf import save_pretrained
from npgpt.layers.lora import LoRALinear
from npgpt.models import GPT, GPTConfig
from npgpt.runtime.parallel import DataParallel
from tests.test_hf import (
    V,
    _hf_logits,
    _llama_in_float64,
    _reload,
    hf_gpt2,
    hf_llama,
    rel,
)

TARGETS = {"gpt2": ["c_attn", "attn.c_proj", "c_fc"],     # attn.c_proj: not the MLP's c_proj
           "llama": ["q_proj", "v_proj", "o_proj", "up_proj"]}


@pytest.fixture(scope="module")
def tp():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    return torch, transformers, peft


def _base(tp, family, path):
    tt = tp[:2]
    return hf_gpt2(tt, path) if family == "gpt2" else hf_llama(tt, path)


def _randomize_b(model, seed=0):
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, LoRALinear):
            for _, _, adapter in m.adapters():
                adapter.B.data[:] = rng.standard_normal(adapter.B.shape) * 0.3


def _peft_logits(tp, base_dir, adapter_dir, idx, dtype=None):
    torch, _, peft = tp
    hf = _reload(tp[:2], base_dir, dtype=dtype)
    model = peft.PeftModel.from_pretrained(hf, str(adapter_dir)).eval()
    with torch.no_grad():
        return model(torch.from_numpy(idx)).logits.numpy()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_peft_reads_npgpts_adapter_and_gives_its_logits_float32(tp, tmp_path, family):
    _base(tp, family, tmp_path / "base")
    ours = from_pretrained(tmp_path / "base")
    apply_lora(ours, LoraConfig(r=4, alpha=8, target_modules=TARGETS[family]))
    _randomize_b(ours)
    save_adapter(ours, tmp_path / "adapter", base_name=str(tmp_path / "base"))
    saved = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert saved["fan_in_fan_out"] is (family == "gpt2")
    assert saved["target_modules"] == TARGETS[family]
    idx = np.random.default_rng(0).integers(0, V, size=(2, 40))
    logits = ours.eval().forward(idx)[0]
    theirs = _peft_logits(tp, tmp_path / "base", tmp_path / "adapter", idx)
    base_only = _hf_logits(tp[:2], _reload(tp[:2], tmp_path / "base"), idx)
    assert rel(theirs, base_only) > 1e-2            # the adapter changes the logits ...
    assert rel(logits, theirs) < 1e-4               # ... the same way on both sides


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_peft_reads_npgpts_adapter_and_gives_its_logits_float64(tp, tmp_path, monkeypatch, family):
    torch = tp[0]
    _base(tp, family, tmp_path / "base")
    ours = from_pretrained(tmp_path / "base", dtype="float64")
    apply_lora(ours, LoraConfig(r=3, alpha=5, target_modules="all-linear", rslora=True))
    _randomize_b(ours, seed=1)
    save_adapter(ours, tmp_path / "adapter")
    if family == "llama":
        _llama_in_float64(torch, monkeypatch)
    idx = np.random.default_rng(1).integers(0, V, size=(2, 48))
    theirs = _peft_logits(tp, tmp_path / "base", tmp_path / "adapter", idx, dtype=torch.float64)
    assert rel(ours.eval().forward(idx)[0], theirs) < 1e-8


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_npgpt_reads_an_adapter_peft_wrote(tp, tmp_path, family):
    torch, _, peft = tp
    hf = _base(tp, family, tmp_path / "base")
    config = peft.LoraConfig(r=4, lora_alpha=12, target_modules=TARGETS[family],
                             lora_dropout=0.1, task_type="CAUSAL_LM")
    model = peft.get_peft_model(hf, config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    model.save_pretrained(tmp_path / "adapter")
    idx = np.random.default_rng(2).integers(0, V, size=(2, 33))
    with torch.no_grad():
        theirs = model.eval()(torch.from_numpy(idx)).logits.numpy()
    ours = from_pretrained(tmp_path / "base", adapter=tmp_path / "adapter").eval()
    assert lora_config(ours).r == 4 and lora_config(ours).alpha == 12
    assert rel(ours.forward(idx)[0], theirs) < 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_merged_model_gives_the_unmerged_logits_and_saves_as_a_plain_checkpoint(
        tp, tmp_path, family):
    _base(tp, family, tmp_path / "base")
    ours = from_pretrained(tmp_path / "base", dtype="float64")
    apply_lora(ours, LoraConfig(r=2, alpha=4, target_modules="all-linear"))
    _randomize_b(ours)
    idx = np.random.default_rng(3).integers(0, V, size=(2, 20))
    before = ours.eval().forward(idx)[0]
    merge(ours)
    assert lora_config(ours) is None
    assert not any(isinstance(m, LoRALinear) for m in ours.modules())
    np.testing.assert_allclose(ours.forward(idx)[0], before, rtol=1e-10, atol=1e-10)
    save_pretrained(ours, tmp_path / "merged")
    hf = _reload(tp[:2], tmp_path / "merged", dtype=tp[0].float64)
    assert rel(_hf_logits(tp[:2], hf, idx), before) < (1e-8 if family == "gpt2" else 1e-5)


def _tiny(**kw):
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, **kw))


def test_training_touches_only_the_adapters_and_splits_across_threads():
    rng = np.random.default_rng(0)
    model = apply_lora(_tiny(dtype="float64"), LoraConfig(r=2, alpha=4,
                                                          target_modules=["c_attn", "c_fc"]))
    _randomize_b(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
    x, y = rng.integers(0, 50, (4, 16)), rng.integers(0, 50, (4, 16))
    model.forward(x, y)
    model.backward()
    one = [p.grad.copy() for p in model.trainable_parameters()]
    model.zero_grad()
    parallel = DataParallel(model, 2)
    parallel.forward_backward(x, y)
    parallel.close()
    for a, b in zip(one, model.trainable_parameters()):
        np.testing.assert_allclose(b.grad, a, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)


def test_an_adapter_for_another_base_is_refused_and_changes_nothing(tmp_path):
    donor = apply_lora(_tiny(), LoraConfig(r=2, alpha=4, target_modules=["c_attn"]))
    save_adapter(donor, tmp_path / "adapter")
    wider = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=24))
    with pytest.raises(CheckpointError, match=r"mis-shaped.*c_attn\.lora_A\.weight"):
        load_adapter(wider, tmp_path / "adapter")
    deeper = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: .*h\.1\.attn"):
        load_adapter(deeper, tmp_path / "adapter")
    llama = GPT(GPTConfig.preset("llama-tiny", n_layer=2, n_embd=16, n_head=2, n_kv_head=1))
    with pytest.raises(CheckpointError, match=r"'c_attn' match no Linear of this llama model"):
        load_adapter(llama, tmp_path / "adapter")
    for model in (wider, deeper, llama):
        assert lora_config(model) is None
        assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("field,value", [("use_dora", True), ("bias", "all"),
                                         ("modules_to_save", ["lm_head"]),
                                         ("init_lora_weights", "pissa"),
                                         ("rank_pattern", {"c_attn": 4}), ("peft_type", "IA3")])
def test_unsupported_adapter_options_are_refused(tmp_path, field, value):
    save_adapter(apply_lora(_tiny(), LoraConfig(r=2)), tmp_path / "adapter")
    path = tmp_path / "adapter" / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, field: value}))
    model = _tiny()
    with pytest.raises(ConfigError, match=field):
        load_adapter(model, tmp_path / "adapter")
    assert lora_config(model) is None


def test_target_names_that_match_nothing_are_refused():
    with pytest.raises(ConfigError, match=r"'q_proj' match no Linear of this gpt2 model "
                                          r"\(it has: c_attn, c_fc, c_proj, or 'all-linear'\)"):
        apply_lora(_tiny(), LoraConfig(target_modules=["c_attn", "q_proj"]))
    with pytest.raises(ConfigError, match="rank|r="):
        LoraConfig(r=0)
    model = apply_lora(_tiny(tie_embeddings=False), LoraConfig(target_modules="all-linear"))
    assert not isinstance(model.lm_head, LoRALinear)       # all-linear leaves the head out
    assert isinstance(model.h[1].mlp.c_proj, LoRALinear)
