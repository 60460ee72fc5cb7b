"""float32 stays float32 through a whole training step, and the model's gradients are right on
both kernel backends (numba and the NumPy references)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import gradcheck, kernels
from npgpt.models import GPT, GPTConfig
from npgpt.module import Module
from npgpt.optim import AdamW
from tests.helpers import MeanLoss

VARIANTS = {
    "gpt2": dict(),
    "gpt2_dropout": dict(dropout=0.1),
    "post_ln_sinusoidal_relu": dict(pos="sinusoidal", prenorm=False, mlp="relu"),
    "llama_gqa": dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                      tie_embeddings=False, n_kv_head=1),
    "exact_gelu_untied": dict(mlp="gelu", tie_embeddings=False),
}
BACKENDS = ["numba", "numpy"]


def _config(dtype, n_head=2, hs=4, **kw):
    base = dict(vocab_size=13, block_size=8, n_layer=2, n_head=n_head, n_embd=n_head * hs,
                mlp_hidden=12, dtype=dtype)
    base.update(kw)
    return GPTConfig(**base)


def _float_arrays(value):
    """Every floating ndarray in a value (tuples and lists walked)."""
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.floating):
            yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _float_arrays(v)


def _watch_dtypes(model: Module, seen: list):
    """Wrap every module's forward, backward and save to record (where, dtype) of each array."""
    for name, module in model.named_modules():
        label = name or "model"
        for method in ("forward", "backward", "save"):
            original = getattr(module, method)

            def wrapped(*args, _original=original, _where=f"{label}.{method}", **kwargs):
                for a in _float_arrays(list(args) + list(kwargs.values())):
                    seen.append((_where + " input", a.dtype))
                out = _original(*args, **kwargs)
                for a in _float_arrays(out):
                    seen.append((_where + " output", a.dtype))
                return out
            setattr(module, method, wrapped)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_training_step_never_upcasts(variant, backend):
    config = _config("float32", **VARIANTS[variant])
    model = GPT(config, seed=0)
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, (3, 5))
    targets = rng.integers(0, config.vocab_size, (3, 5))
    targets[0, 0] = -100                                   # an ignored target too
    seen = []
    _watch_dtypes(model, seen)
    with kernels.use(backend):
        logits, loss = model(idx, targets)
        model.backward()
        opt.step()
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    upcast = sorted({where for where, dtype in seen if dtype != np.float32})
    assert not upcast, f"float32 model produced other dtypes at: {upcast}"
    assert len(seen) > 100                                 # the walk did see the layers
    for name, p in model.named_parameters():
        assert p.data.dtype == p.grad.dtype == np.float32, name
        assert np.all(np.isfinite(p.data)), name
    for state in opt.state:
        for key, array in state.items():
            assert array.dtype == np.float32, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gpt2", "post_ln_sinusoidal_relu", "llama_gqa"])
@settings(max_examples=3)
@given(B=st.integers(1, 5), T=st.integers(1, 5), n_head=st.integers(1, 4),
       hs=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_gpt_gradients_match_finite_differences_on_each_backend(variant, backend, B, T, n_head,
                                                                hs, seed):
    kw = dict(VARIANTS[variant])
    if kw.get("pos") == "rope" and hs % 2:
        hs += 1
    config = _config("float64", n_head=n_head, hs=hs, **kw)
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():               # non-trivial norms and biases
        p.data += rng.normal(0, 0.1, p.shape)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    # atol: with C = 1 or 2 LayerNorm's gradients are ~1e-5 and finite differences in float64
    # carry ~1e-10 of noise (the same on both backends)
    with kernels.use(backend):
        gradcheck(model, idx, max_elements=8, seed=seed, atol=1e-8)
        gradcheck(MeanLoss(model), idx, targets, max_elements=8, seed=seed, atol=1e-8)
