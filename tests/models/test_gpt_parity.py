"""The GPT against transformers' GPT2LMHeadModel holding the same weights."""
import numpy as np
import pytest

from npgpt.models import GPT, GPTConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _pair(dtype, n_layer=2, n_head=4, n_embd=32, vocab=61, block=16, seed=0):
    torch.manual_seed(seed)
    hf_config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=block, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
        layer_norm_epsilon=1e-5)
    hf = transformers.GPT2LMHeadModel(hf_config)
    hf.config._attn_implementation = "eager"
    hf = hf.to(torch.float64 if dtype == "float64" else torch.float32)
    hf.train()   # dropout is 0; train mode so gradients flow as in training
    with torch.no_grad():   # GPT-2's init leaves biases at zero: make them count
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    ours = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head,
                         n_embd=n_embd, dtype=dtype))
    state = {k[len("transformer."):]: v.detach().numpy()
             for k, v in hf.state_dict().items() if k.startswith("transformer.")
             and not k.endswith((".attn.bias", ".attn.masked_bias"))}
    ours.load_state_dict(state)
    return hf, ours


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-8), ("float32", 1e-4)])
def test_gpt_logits_loss_and_every_gradient_match_transformers(dtype, rtol):
    hf, ours = _pair(dtype)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 61, size=(3, 12))
    targets = rng.integers(0, 61, size=(3, 12))

    logits, loss = ours.forward(idx, targets)
    ours.zero_grad()
    ours.backward()

    out = hf(torch.from_numpy(idx))
    hf_loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 61),
                                                torch.from_numpy(targets).reshape(-1))
    hf_loss.backward()

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    assert rel(logits, out.logits.detach().numpy()) < rtol
    assert abs(float(loss) - hf_loss.item()) / hf_loss.item() < rtol
    hf_grads = {k[len("transformer."):]: p.grad.numpy()
                for k, p in hf.named_parameters() if k.startswith("transformer.")}
    names = [n for n, _ in ours.named_parameters()]
    assert sorted(names) == sorted(hf_grads)   # same parameters, GPT-2's names
    errors = {n: rel(p.grad, hf_grads[n]) for n, p in ours.named_parameters()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < rtol * 10 if dtype == "float32" else errors[worst] < rtol, (worst, errors[worst])


def test_gpt_t1_and_full_context_match_transformers():
    hf, ours = _pair("float64", block=8)
    rng = np.random.default_rng(1)
    for T in (1, 8):
        idx = rng.integers(0, 61, size=(2, T))
        with torch.no_grad():
            expected = hf(torch.from_numpy(idx)).logits.numpy()
        logits, _ = ours.forward(idx)
        np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-12)
