"""LoRA on an int8-quantized base (QLoRA-style): the int8 layers' input gradient against its
definition and finite differences, the adapters' gradients through a quantized model against
finite differences and against LoRA on the float model holding the dequantized weights, and
the Trainer's rule (a quantized model trains only with adapters)."""
import copy

import numpy as np
import pytest

from npgpt import GPT, GPTConfig, gradcheck, kernels
from npgpt.adapters import LoraConfig, apply_lora, merge
from npgpt.errors import ConfigError
from npgpt.kernels.int8 import (dequantize_ref, dequantize_rows, int8_matmul_t_numba,
                                int8_matmul_t_ref, pack, quantize_ref)
from npgpt.layers.lora import QuantizedLoRALinear
from npgpt.layers.quantized import QuantizedEmbedding, QuantizedLinear, quantize_model
from npgpt.trainer import TrainConfig, Trainer
from tests.helpers import MeanLoss

GPT2_TINY = dict(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=32)
LLAMA_TINY = dict(GPT2_TINY, pos="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=64,
                  bias=False, tie_embeddings=False, n_kv_head=1)


def _int8(shape, rng, block=8):
    return quantize_ref(rng.standard_normal(shape).astype(np.float32), block)


def test_input_gradient_by_panels_is_its_definition():
    rng = np.random.default_rng(0)
    q, s = _int8((150, 24), rng)               # two panels of the in-memory layout
    qp, sp = pack(q, s)
    dy = rng.standard_normal((7, 150))
    want = dy @ dequantize_ref(q, s, np.float64)
    assert np.array_equal(int8_matmul_t_ref(dy, qp, sp, 150), want)       # one panel
    for panel in (24, 24 * 7):                  # one row a panel, uneven panels
        np.testing.assert_allclose(int8_matmul_t_ref(dy, qp, sp, 150, panel), want, rtol=1e-12)
    assert np.array_equal(dequantize_rows(qp, sp, 3, 9), dequantize_ref(q, s)[3:9])
    # the kernel (its parity at model shapes: tests/kernels), across chunks of panels
    np.testing.assert_allclose(int8_matmul_t_numba(dy, qp, sp, 150), want, rtol=1e-10)
    q, s = _int8((700, 64), rng, block=32)
    dy = rng.standard_normal((5, 700)).astype(np.float32)
    np.testing.assert_allclose(int8_matmul_t_numba(dy, *pack(q, s), 700),
                               dy @ dequantize_ref(q, s), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_input_gradient_matches_finite_differences(bias):
    rng = np.random.default_rng(1)
    layer = QuantizedLinear(16, 12, bias=bias, block=8, dtype=np.float64)
    layer.set_weights(*_int8((12, 16), rng))
    if bias:
        layer.bias.data = rng.standard_normal(12)
    report = gradcheck(layer, rng.standard_normal((2, 3, 16)), max_elements=None)
    assert report.max_error < 1e-6
    assert [c.name for c in report.checks] == ["input[0]"]      # nothing else trains


def test_quantized_embedding_head_input_gradient():
    rng = np.random.default_rng(2)
    emb = QuantizedEmbedding(20, 16, block=8, dtype=np.float64)
    emb.set_weights(*_int8((20, 16), rng))
    x, g = rng.standard_normal((2, 3, 16)), rng.standard_normal((2, 3, 20))
    dx = emb.attend_backward(g)
    eps, numeric = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        numeric[i] = np.sum((emb.attend(xp) - emb.attend(xm)) * g) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-9)
    assert emb.backward(np.zeros((2, 3, 16))) is None


def _qlora(fields, seed=0, targets="all-linear"):
    """A tiny float32 GPT, quantized, with adapters whose B is non-zero (so A has a
    gradient), in float64: and the float model whose weights are the dequantized ones."""
    model = GPT(GPTConfig(**fields), seed=seed)
    floats = copy.deepcopy(model)
    quantize_model(model, block=16)
    modules = dict(floats.named_modules())
    for name, m in model.named_modules():       # the float model gets the int8 weights
        if isinstance(m, QuantizedLinear):
            modules[name].weight.data = dequantize_ref(m.qweight, m.scales).T.copy()
        elif isinstance(m, QuantizedEmbedding):
            modules[name].weight.data = dequantize_ref(m.qweight, m.scales)
    for mdl in (model, floats):
        apply_lora(mdl, LoraConfig(r=2, alpha=4.0, target_modules=targets), seed=seed)
        rng = np.random.default_rng(seed + 1)
        for name, p in mdl.named_parameters():
            if name.endswith(".B"):
                p.data = rng.standard_normal(p.shape).astype(np.float32) * 0.1
        mdl.to(np.float64).train()
    return model, floats


@pytest.mark.parametrize("fields", [GPT2_TINY, LLAMA_TINY], ids=["gpt2-tied", "llama-untied"])
def test_adapter_gradients_through_an_int8_base(fields):
    model, floats = _qlora(fields)
    assert any(isinstance(m, QuantizedLoRALinear) for m in model.modules())
    rng = np.random.default_rng(3)
    idx, targets = rng.integers(0, 40, (2, 8)), rng.integers(0, 40, (2, 8))
    with kernels.use("numpy"):              # float64 through the definitions
        report = gradcheck(MeanLoss(model), idx, targets, max_elements=8, seed=4)
        assert report.max_error < 1e-5
        trained = [c.name for c in report.checks]
        assert trained and all(n.endswith((".A", ".B")) for n in trained)
        # the same adapters on the float model holding the dequantized weights: the same
        # loss and gradients, to round-off
        losses = []
        for mdl in (model, floats):
            mdl.zero_grad()
            _, loss = mdl.forward(idx, targets)
            mdl.backward()
            losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    grads = dict(floats.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            np.testing.assert_allclose(p.grad, grads[name].grad, rtol=1e-9, atol=1e-12)
            assert np.abs(p.grad).max() > 0


def test_a_quantized_model_trains_only_adapters():
    model = GPT(GPTConfig(**GPT2_TINY), seed=0)
    quantize_model(model, block=16)
    data = np.random.default_rng(0).integers(0, 40, 400)
    config = TrainConfig(block_size=8, batch_size=2, max_steps=1, save_checkpoints=False,
                         out_dir="unused")
    with pytest.raises(ConfigError, match="int8 .*frozen: train LoRA adapters"):
        Trainer(model, data, None, config)
    apply_lora(model, LoraConfig(r=2, target_modules=("c_attn",)))
    before = {n: (m.qweight.copy(), m.scales.copy()) for n, m in model.named_modules()
              if isinstance(m, (QuantizedLinear, QuantizedEmbedding))}
    trainer = Trainer(model, data, None, config)
    assert all(n.endswith((".A", ".B")) for n, p in model.named_parameters() if p.requires_grad)
    trainer.train_step()
    for n, m in model.named_modules():
        if n in before:
            assert np.array_equal(m.qweight, before[n][0]) and np.array_equal(m.scales,
                                                                              before[n][1])
    with pytest.raises(ConfigError, match="merge into the float base"):
        merge(model)


def test_thread_replicas_share_the_int8_weights():
    from npgpt.runtime.parallel import DataParallel
    model = GPT(GPTConfig(**GPT2_TINY), seed=0)
    quantize_model(model, block=16)
    apply_lora(model, LoraConfig(r=2, target_modules=("c_attn", "c_fc")))
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 40, (4, 8)), rng.integers(0, 40, (4, 8))
    runner = DataParallel(model, 2)
    try:
        runner.forward_backward(idx, targets)
        (replica,) = [r.module for r in runner._replicas]
    finally:
        runner.close()
    mine, theirs = dict(model.named_modules()), dict(replica.named_modules())
    shared = [n for n, m in mine.items() if isinstance(m, (QuantizedLinear, QuantizedEmbedding))]
    assert len(shared) == 6 and all(theirs[n].qpanels is mine[n].qpanels
                                    and theirs[n].spanels is mine[n].spanels for n in shared)
    grads = [p.grad for n, p in model.named_parameters() if n.endswith(".B")]   # (A's: 0,
    assert len(grads) == 2 and all(np.abs(g).max() > 0 for g in grads)         # as B is)


# --- npgpt train --init-from DIR --quantize int8 --lora-rank R -----------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small random GPT-2-layout HuggingFace directory (widths multiples of 32), its
    embeddings scaled up: a head sharp enough that adapters move the loss in a few steps."""
    from npgpt.data import shakespeare_text
    from npgpt.hf import save_pretrained
    from npgpt.tokenizers import get as get_tokenizer
    path = tmp_path_factory.mktemp("base")
    tok = get_tokenizer("bpe:300", text=shakespeare_text("val")[:20000])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                          n_embd=32))
    model.wte.weight.data *= 25
    save_pretrained(model, path, tokenizer=tok)
    return path


def test_cli_lora_on_an_int8_base(base, tmp_path, capsys):
    import json

    from npgpt import from_pretrained
    from npgpt.checkpoints import load_model
    from npgpt.cli import main
    from npgpt.data import shakespeare_text
    from npgpt.io import load_safetensors
    corpus = tmp_path / "plays.txt"
    corpus.write_text(shakespeare_text("val")[:20000], encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--init-from", str(base), "--out", str(run),
            "--quantize", "int8", "--lora-rank", "4", "--lora-targets", "all-linear",
            "--lr", "3e-2", "--warmup-steps", "0", "--batch-size", "4", "--block-size", "32",
            "--eval-interval", "15", "--eval-steps", "4", "--log-interval", "1",
            "--no-progress", "--no-plot"]
    assert main(args + ["--max-steps", "30"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters" in out and " and 35,200 int8 weights (" in out
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    evals = [r["val_loss"] for r in lines if "val_loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0, losses     # the loss falls
    assert evals[-1] < evals[0], evals

    # the checkpoint holds the int8 base, bit for bit what quantizing the base gives
    ckpt = load_safetensors(run / "checkpoint" / "model.safetensors")
    fresh, _, _, _ = load_model(base, quantize="int8")
    for name, a in file_tensors_of(fresh).items():
        assert ckpt[name].dtype == a.dtype and np.array_equal(ckpt[name], a), name

    # the adapter is an ordinary PEFT adapter: on the int8 base it is the run's model, and it
    # loads onto the float base too
    idx = np.random.default_rng(0).integers(0, 300, (2, 16))
    trained, _, state, _ = load_model(run)
    assert state["step"] == 30
    logits = trained.eval().forward(idx)[0]
    on_int8 = from_pretrained(base, quantize="int8", adapter=run / "adapter").eval()
    np.testing.assert_allclose(on_int8.forward(idx)[0], logits, rtol=1e-5, atol=1e-6)
    on_float = from_pretrained(base, adapter=run / "adapter").eval().forward(idx)[0]
    assert np.abs(on_float - logits).max() < 0.05 * np.abs(logits).max()
    assert np.abs(logits - fresh.eval().forward(idx)[0]).max() > 1e-3     # it trained

    # resumed from its checkpoint (the int8 base inside), the run goes on
    assert main(["train", "--data", str(corpus), "--out", str(run), "--resume",
                 "--max-steps", "32", "--no-progress", "--no-plot"]) == 0
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["step"] == 32
    capsys.readouterr()
    for argv, message in (
            (["--quantize", "int8"], "--quantize int8 freezes the base"),
            (["--quantize", "int4", "--lora-rank", "2"], "quantize='int4' must be one of")):
        out = tmp_path / "refused"
        assert main(["train", "--data", str(corpus), "--init-from", str(base), "--out",
                     str(out), "--max-steps", "1", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists()


def file_tensors_of(model):
    from npgpt.quantized_io import file_tensors
    return {k: v for k, v in file_tensors(model).items() if k.endswith((".qweight", ".scales"))}


@pytest.fixture(scope="module")
def python_run(base, tmp_path_factory):
    """npgpt.train's LoRA run on the int8 base of ``base``: (the Run, its output directory)."""
    import npgpt
    from npgpt.data import shakespeare_text
    root = tmp_path_factory.mktemp("python-run")
    (root / "plays.txt").write_text(shakespeare_text("val")[:8000], encoding="utf-8")
    run = npgpt.train(data=str(root / "plays.txt"), init_from=str(base), quantize="int8",
                      lora_rank=2, lora_targets="c_attn,c_fc", max_steps=3, lr=1e-2,
                      out_dir=str(root / "run"), batch_size=2, block_size=16, eval_steps=1,
                      progress=False, plot=False)
    return run, root / "run"


def test_python_train_lora_on_an_int8_base_leaves_the_int8_tensors_as_they_were(base,
                                                                                python_run):
    from npgpt.checkpoints import load_model
    run, out = python_run
    assert run.step == 3 and (out / "adapter" / "adapter_config.json").is_file()
    fresh = file_tensors_of(load_model(base, quantize="int8")[0])
    trained = file_tensors_of(run.model)
    assert trained.keys() == fresh.keys() and len(fresh) == 2 * (2 * 4 + 2)   # wte, wpe, 4
    for name, a in fresh.items():                                           # Linears a layer
        assert np.array_equal(trained[name], a), name


def test_peft_reads_the_adapter_trained_on_an_int8_base(base, python_run):
    """An ordinary PEFT adapter: peft.PeftModel puts it on transformers' float base and
    gives npgpt's logits with the same adapter on the same float base."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from npgpt import from_pretrained
    adapter = python_run[1] / "adapter"
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(base), torch_dtype=torch.float32)
    theirs = peft.PeftModel.from_pretrained(hf, str(adapter)).eval()
    idx = np.random.default_rng(5).integers(0, 300, (2, 16))
    with torch.no_grad():
        want = theirs(torch.from_numpy(idx)).logits.numpy()
    ours = from_pretrained(base, adapter=adapter).eval().forward(idx)[0]
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)
    plain = from_pretrained(base).eval().forward(idx)[0]
    assert np.abs(ours - plain).max() > 1e-3                 # the adapter changes the logits


def file_tensors_of(model):
    from npgpt.quantized_io import file_tensors
    return {k: v for k, v in file_tensors(model).items() if k.endswith((".qweight", ".scales"))}


def test_python_train_lora_on_an_int8_base_leaves_the_int8_tensors_as_they_were(base, tmp_path):
    import npgpt
    from npgpt.checkpoints import load_model
    from npgpt.data import shakespeare_text
    corpus = tmp_path / "plays.txt"
    corpus.write_text(shakespeare_text("val")[:8000], encoding="utf-8")
    run = npgpt.train(data=str(corpus), init_from=str(base), quantize="int8", lora_rank=2,
                      max_steps=3, out_dir=str(tmp_path / "run"), batch_size=2, block_size=16,
                      eval_steps=1, progress=False, plot=False)
    assert run.step == 3 and (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    fresh = file_tensors_of(load_model(base, quantize="int8")[0])
    trained = file_tensors_of(run.model)
    assert trained.keys() == fresh.keys() and len(fresh) == 2 * (2 * 4 + 2)   # wte, wpe, 4 Linears a layer
    for name, a in fresh.items():
        assert np.array_equal(trained[name], a), name
