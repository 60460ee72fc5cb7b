"""int8 weights: the quantization's definition, the quantized model against the float one,
quantized directories (written, memory-mapped back, refused when damaged), the CLI, and the
memory-mapped float loading under them. (The int8 kernels are tested equal to their
reference by tests/kernels through the registry.)"""
import mmap
import subprocess
import sys

import numpy as np
import pytest

from npgpt import GPT, GPTConfig, from_pretrained
from npgpt.cli import main
from npgpt.errors import CheckpointError, ConfigError
from npgpt.io import load_json, map_safetensors, save_safetensors
from npgpt.kernels.int8 import (dequantize_ref, dequantize_rows, pack, quantize_acts_ref,
                                quantize_ref, take_rows, unpack)
from npgpt.layers.embedding import Embedding
from npgpt.layers.linear import Linear
from npgpt.layers.quantized import (QuantizedEmbedding, QuantizedLinear, is_quantized,
                                    quantize_model)
from npgpt.quantize import quantize
from npgpt.trainer import TrainConfig, Trainer

GPT2_TINY = dict(vocab_size=96, block_size=32, n_layer=2, n_head=2, n_embd=64)
LLAMA_TINY = dict(GPT2_TINY, pos="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=96,
                  bias=False, tie_embeddings=False, n_kv_head=1)


def _model(fields, seed=0):
    model = GPT(GPTConfig(**fields), seed=seed)
    for p in model.parameters():          # weights of a trained model's size, not init's
        p.data += np.random.default_rng(seed).standard_normal(p.shape, np.float32) * 0.05
    return model.eval()


def _mapped(a) -> bool:
    """Whether array ``a`` is a view of a memory map (its own pages are the file's)."""
    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a.obj if isinstance(a, memoryview) else a, mmap.mmap)


def _ids(batch=2, length=12, vocab=96):
    return np.random.default_rng(1).integers(0, vocab, (batch, length))


def test_quantize_ref_definition():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    w[1, :32] = 0                                       # an all-zero block
    q, s = quantize_ref(w, 32)
    assert q.dtype == np.int8 and s.shape == (5, 2)
    assert np.abs(q).max() == 127 and q.min() >= -127
    assert s[1, 0] == 0 and not q[1, :32].any()
    back = dequantize_ref(q, s)
    # every weight within half a step of its block's scale
    assert np.all(np.abs(back - w) <= np.repeat(s, 32, axis=1) / 2 + 1e-7)
    # each block's largest weight is exact up to float rounding
    blocks = np.abs(w).reshape(5, 2, 32).max(-1)
    assert np.allclose(np.abs(back).reshape(5, 2, 32).max(-1), blocks, rtol=1e-6)


def test_activation_quantization_definition():
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    x[2, 32:] = 0                                       # an all-zero block
    xq, sx = quantize_acts_ref(x, 32)
    assert xq.dtype == np.int16 and sx.shape == (3, 2) and sx.dtype == np.float32
    assert np.abs(xq).max() == 127 and sx[2, 1] == 0 and not xq[2, 32:].any()
    step = np.repeat(sx, 32, axis=1)
    assert np.all(np.abs(xq * step - x) <= step / 2 + 1e-7)


@pytest.mark.parametrize("K", [64, 72], ids=["whole-chunks", "narrow-last-chunk"])
def test_panels_hold_the_weight_and_give_back_its_rows(K):
    """300 outputs: two full panels of 128 and a partial one (zero-padded); K = 72 ends in a
    chunk of 8 inputs."""
    rng = np.random.default_rng(0)
    q, s = quantize_ref(rng.standard_normal((300, K)).astype(np.float32), 8)
    qp, sp = pack(q, s)
    assert qp.shape == (3, K, 128) and sp.shape == (3, K // 8, 128)
    assert not take_rows(qp, sp, range(300, 384))[0].any()
    back_q, back_s = unpack(qp, sp, 300)
    assert np.array_equal(back_q, q) and np.array_equal(back_s, s)
    rows = [299, 0, 128, 127, 5, 5]
    assert np.array_equal(take_rows(qp, sp, rows)[0], q[rows])
    assert np.array_equal(take_rows(qp, sp, rows)[1], s[rows])
    assert np.array_equal(dequantize_rows(qp, sp, 100, 260), dequantize_ref(q, s)[100:260])
    # the layout's definition (npgpt.kernels.int8_layout): one weight by its flat offset
    flat = qp.reshape(3, -1)
    for n, k in [(0, 0), (299, K - 1), (137, 33), (200, K - 6), (13, 7)]:
        c, j, k0 = n // 128, n % 128, k - k % 32
        kc = min(32, K - k0)
        at = k0 * 128 + j // 8 * kc * 8 + (k - k0) // 4 * 32 + j % 8 * 4 + k % 4
        assert flat[c, at] == q[n, k]


@pytest.mark.parametrize("K, block", [(64, 32), (72, 8), (40, 8), (48, 16), (256, 128)],
                         ids=["32", "8-narrow-last-chunk", "8-one-narrow-chunk", "16", "128"])
def test_both_decoding_kernels_equal_the_reference(K, block):
    """The AVX2 kernel (where the CPU has it) and the plain-numba one, serial and parallel,
    against int8_matmul_ref, for blocks within a chunk of 32 inputs, across chunks, and a
    last chunk narrower than 32."""
    from npgpt.kernels import int8
    rng = np.random.default_rng(K + block)
    q, s = quantize_ref(rng.standard_normal((200, K)).astype(np.float32), block)
    qp, sp = pack(q, s)
    kernels = [int8._panels_plain] + ([int8._panels_simd] if int8._panels_simd else [])
    for dtype, rtol in [(np.float32, 2e-6), (np.float64, 1e-12)]:
        x = rng.standard_normal((3, K)).astype(dtype)
        x[1, :8] = 0                                    # a zero quad and block start
        ref = int8.int8_matmul_ref(x, qp, sp, 200)
        for kernel in kernels:
            for fn in (kernel.serial, kernel.parallel):
                y = np.full((3, 200), np.nan, dtype)
                fn(x, dtype(1 / 127), int8._flat(qp), sp.astype(dtype), y)
                assert np.abs(y - ref).max() <= rtol * np.abs(ref).max(), (kernel, dtype)


def test_the_avx2_kernel_is_used_only_where_numba_compiles_for_avx2(monkeypatch):
    import numba

    from npgpt.runtime.simd import has_avx2
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "")
    monkeypatch.setattr(numba.config, "CPU_NAME", "generic")       # NUMBA_CPU_NAME=generic
    assert not has_avx2()
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+sse4.2,-avx2")
    assert not has_avx2()
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx,+avx2,+fma")
    assert has_avx2()


@pytest.mark.parametrize("fields, block", [(GPT2_TINY, 32), (LLAMA_TINY, 32), (GPT2_TINY, 16)],
                         ids=["gpt2-tied", "llama-untied", "block16"])
def test_quantized_model_is_close_to_float_and_quantizes_every_linear(fields, block):
    model = _model(fields)
    ids = _ids()
    ref, _ = model.forward(ids)
    quantize_model(model, block=block)
    assert is_quantized(model)
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {Linear, Embedding}          # nothing float left behind
    n_linear = sum(isinstance(m, QuantizedLinear) for m in model.modules())
    assert n_linear == fields["n_layer"] * (2 + (3 if fields.get("mlp") == "swiglu" else 2)) \
        + (0 if fields.get("tie_embeddings", True) else 1)
    got, _ = model.forward(ids)
    drift = np.abs(got - ref).max() / np.abs(ref).max()
    # int8 weights and int8 activations (each rounded to 1/254 of its block's largest value)
    assert 0 < drift < 0.03, drift
    # the quantized model's logits are exactly the float model's on the dequantized weights
    out = model.generate(ids[:, :4], 6, temperature=0)
    assert out.shape == (2, 10)


def test_a_quantized_model_without_adapters_refuses_training():
    model = quantize_model(_model(GPT2_TINY))
    data = np.random.default_rng(0).integers(0, 96, 500)
    with pytest.raises(ConfigError, match="int8 .*frozen"):
        Trainer(model, data, None, TrainConfig(block_size=16, batch_size=2))


def test_quantize_model_refusals_leave_the_model_as_it_was():
    model = _model(LLAMA_TINY)
    with pytest.raises(ConfigError, match="block 64 does not divide .*down_proj \\(96\\)"):
        quantize_model(model, block=64)
    assert not is_quantized(model)
    with pytest.raises(ConfigError, match="unknown quantization scheme 'q4'"):
        quantize_model(model, "q4")
    with pytest.raises(ConfigError, match="block size 24"):
        quantize_model(model, block=24)
    quantize_model(model)
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(model)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A float GPT-2-style HuggingFace directory and its quantized copy."""
    root = tmp_path_factory.mktemp("q")
    model = _model(GPT2_TINY)
    model.save_pretrained(root / "float")
    quantize(root / "float", root / "int8")
    return root, model


def test_quantized_directory_round_trip(hf_dirs):
    root, model = hf_dirs
    entry = load_json(root / "int8" / "config.json")["quantization"]
    assert entry == {"scheme": "int8", "block": 32, "scales": "float16"}
    header, arrays = map_safetensors(root / "int8" / "model.safetensors")
    assert header["h.0.attn.c_attn.qweight"]["dtype"] == "I8"
    assert header["h.0.attn.c_attn.scales"]["dtype"] == "F16"
    loaded = from_pretrained(root / "int8")
    on_load = from_pretrained(root / "float", quantize="int8")
    ids = _ids()
    a, b = loaded.forward(ids)[0], on_load.forward(ids)[0]
    assert np.array_equal(a, b)           # the file holds exactly what quantizing gives
    # the int8 weights are packed into panels straight from the file's int8 bytes (the
    # same bytes, no float copy), and nothing keeps the map once the model is loaded
    layer = loaded.h[1].mlp.c_fc
    assert layer.qpanels.dtype == np.int8 and layer.spanels.dtype == np.float32
    assert np.array_equal(layer.qpanels, pack(arrays["h.1.mlp.c_fc.qweight"],
                                             arrays["h.1.mlp.c_fc.scales"].astype(np.float32))[0])
    assert np.array_equal(layer.qweight, arrays["h.1.mlp.c_fc.qweight"])
    held = [m.qpanels for m in loaded.modules() if hasattr(m, "qpanels")] + \
        [p.data for p in loaded.parameters()]
    assert not any(_mapped(a) for a in held)
    ref = model.forward(ids)[0]
    assert np.abs(a - ref).max() / np.abs(ref).max() < 0.02
    size = lambda d: (d / "model.safetensors").stat().st_size
    assert size(root / "int8") < size(root / "float") / 2.5


def test_bad_input_writes_nothing(hf_dirs, tmp_path):
    root, _ = hf_dirs
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(root / "int8", tmp_path / "again")
    with pytest.raises(ConfigError, match="block size 48"):
        quantize(root / "float", tmp_path / "b48", block=48)
    with pytest.raises(ConfigError, match="unknown quantization scheme"):
        quantize(root / "float", tmp_path / "q4", scheme="q4")
    assert not any(tmp_path.iterdir())
    # scales that do not fit their weights: refused on load, naming the tensor
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((root / "int8" / "config.json").read_text())
    _, arrays = map_safetensors(root / "int8" / "model.safetensors")
    tensors = {k: np.array(v) for k, v in arrays.items()}
    tensors["h.0.mlp.c_proj.scales"] = tensors["h.0.mlp.c_proj.scales"][:, :1].copy()
    save_safetensors(bad / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match="h.0.mlp.c_proj.scales: scales do not match"):
        from_pretrained(bad)
    tensors["h.0.mlp.c_proj.scales"] = -np.ones((64, 8), np.float16)
    save_safetensors(bad / "model.safetensors", tensors)
    with pytest.raises(CheckpointError, match="negative"):
        from_pretrained(bad)


def test_float_weights_are_mapped_copy_on_write(hf_dirs, tmp_path):
    root, _ = hf_dirs
    model = from_pretrained(root / "float")
    w = model.h[0].mlp.c_fc.weight.data
    assert _mapped(w)          # the file's pages, not a copy
    before = (root / "float" / "model.safetensors").read_bytes()
    w += 1.0                                      # as an optimizer step writes in place
    assert (root / "float" / "model.safetensors").read_bytes() == before
    # saving over the directory a live model maps (atomically) leaves that model readable
    model.save_pretrained(tmp_path / "copy")
    again = from_pretrained(tmp_path / "copy")
    again.save_pretrained(tmp_path / "copy")
    assert np.array_equal(again.h[0].mlp.c_fc.weight.data, w)


def test_cli_quantize_and_sample(hf_dirs, tmp_path, capsys):
    root, _ = hf_dirs
    assert main(["quantize", str(root / "float"), str(tmp_path / "q"), "--block", "16"]) == 0
    assert load_json(tmp_path / "q" / "config.json")["quantization"]["block"] == 16
    assert main(["quantize", str(tmp_path / "q"), str(tmp_path / "q2")]) == 2
    assert "already quantized" in capsys.readouterr().err
    assert not (tmp_path / "q2").exists()


def test_command_line_train_quantize_sample_eval(tmp_path):
    """The whole path a user takes: train, quantize, sample with both forms, evaluate."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "npgpt", *a], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=600)
    done = run("train", "--max-steps", "3", "--eval-interval", "3", "--no-progress",
               "--no-plot", "--out", "run")
    assert done.returncode == 0, done.stderr
    assert run("quantize", "run", "q").returncode == 0
    sample = ["--prompt", "ROMEO:", "--max-new-tokens", "20", "--temperature", "0"]
    a = run("sample", "--ckpt", "q", *sample)
    b = run("sample", "--ckpt", "run", "--quantize", "int8", *sample)
    assert a.returncode == 0 and a.stdout.startswith("ROMEO:") and a.stdout == b.stdout
    refused = run("train", "--init-from", "q", "--max-steps", "2", "--out", "r2")
    assert refused.returncode == 2 and "frozen: train LoRA adapters" in refused.stderr
