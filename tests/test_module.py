import numpy as np
import pytest

from npgpt import Module, ModuleList, Parameter, no_grad
from npgpt.errors import BackwardError, StateDictError
from npgpt.layers import MLP, Dropout, Embedding, LayerNorm


class Block(Module):
    def __init__(self, C, rng):
        super().__init__()
        self.ln_1 = LayerNorm(C)
        self.mlp = MLP(C, 2 * C, rng=rng)


class TinyModel(Module):
    def __init__(self, V=7, C=4, n_layer=2, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.wte = Embedding(V, C, rng=rng)
        self.h = ModuleList(Block(C, rng) for _ in range(n_layer))
        self.drop = Dropout(0.1, rng=rng)
        self.dec_wte = Embedding(V, C, rng=rng)
        self.dec_wte.weight = self.wte.weight            # tied: one table for encoder and decoder
        self.ln_f = LayerNorm(C)


def test_named_parameters_are_dotted_in_assignment_order_and_tied_listed_once():
    names = [n for n, _ in TinyModel().named_parameters()]
    block = ["ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    assert names == (["wte.weight"] + [f"h.0.{n}" for n in block] + [f"h.1.{n}" for n in block]
                     + ["ln_f.weight", "ln_f.bias"])
    model = TinyModel()
    assert len(model.parameters()) == len(names)
    assert model.num_parameters() == 7 * 4 + 2 * (4 + 4 + 4 * 8 + 8 + 8 * 4 + 4) + 4 + 4


def test_tied_parameter_accumulates_both_gradients():
    model = TinyModel()
    dy = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    model.wte(np.array([[1, 2, 2]]))
    model.dec_wte(np.array([[2, 5, 6]]))
    model.wte.backward(dy)
    model.dec_wte.backward(2 * dy)
    grad = model.wte.weight.grad
    np.testing.assert_allclose(grad[1], dy[0, 0])
    np.testing.assert_allclose(grad[2], dy[0, 1] + dy[0, 2] + 2 * dy[0, 0], rtol=1e-6)
    np.testing.assert_allclose(grad[5], 2 * dy[0, 1])
    assert not grad[0].any() and not grad[3].any()


def test_zero_grad_clears_every_gradient(rng):
    model = TinyModel(rng=rng)
    for p in model.parameters():
        p.grad += 1.0
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def test_state_dict_round_trip_and_dtype_conversion():
    a, b = TinyModel(rng=np.random.default_rng(1)), TinyModel(rng=np.random.default_rng(2))
    state = {k: v.astype(np.float64) for k, v in a.state_dict().items()}
    b.load_state_dict(state)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert pb.dtype == np.float32, name                  # converted to the model's dtype
        np.testing.assert_array_equal(pa.data, pb.data)
    assert a.state_dict()["wte.weight"] is a.wte.weight.data  # live arrays, not copies


def test_strict_load_names_every_bad_key_and_changes_nothing():
    model = TinyModel()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: np.zeros_like(v) for k, v in model.state_dict().items()}
    del state["h.1.ln_1.bias"]
    del state["ln_f.weight"]
    state["h.2.ln_1.weight"] = np.zeros(4)
    state["h.0.mlp.c_fc.weight"] = np.zeros((8, 4))
    with pytest.raises(StateDictError) as excinfo:
        model.load_state_dict(state)
    message = str(excinfo.value)
    for key in ["h.1.ln_1.bias", "ln_f.weight", "h.2.ln_1.weight", "h.0.mlp.c_fc.weight"]:
        assert key in message
    assert "missing" in message and "unexpected" in message and "(8, 4)" in message
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_non_strict_load_skips_missing_and_unexpected_but_not_misshaped():
    model = TinyModel()
    model.load_state_dict({"ln_f.weight": np.full(4, 3.0), "extra": np.zeros(2)}, strict=False)
    np.testing.assert_array_equal(model.ln_f.weight.data, 3.0)
    with pytest.raises(StateDictError, match="ln_f.bias"):
        model.load_state_dict({"ln_f.bias": np.zeros(5)}, strict=False)


def test_to_float64_converts_parameters_and_gradients():
    model = TinyModel().to(np.float64)
    assert all(p.data.dtype == p.grad.dtype == np.float64 for p in model.parameters())
    assert all(m.dtype == np.float64 for m in model.modules())
    assert model.wte.weight is model.dec_wte.weight          # still tied after conversion
    y = model.h[0].mlp(np.ones((1, 2, 4)))
    assert y.dtype == np.float64


def test_train_and_eval_propagate_to_every_module():
    model = TinyModel()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    assert not model.h[1].mlp.c_fc.training and not model.drop.training
    model.train()
    assert all(m.training for m in model.modules())


def test_eval_drops_caches_and_inference_keeps_none():
    model = TinyModel()
    x = np.ones((1, 2, 4), np.float32)
    model.ln_f(x)
    assert model.ln_f._cache is not None
    model.eval()
    assert model.ln_f._cache is None
    model.train()
    with no_grad():
        model.ln_f(x)
    with pytest.raises(BackwardError, match="LayerNorm"):
        model.ln_f.backward(x)


def test_saved_is_released_after_one_backward():
    layer = LayerNorm(4)
    x = np.ones((1, 4), np.float32)
    layer(x)
    layer.backward(x)
    with pytest.raises(BackwardError):
        layer.backward(x)


def test_module_list_indexing_and_append():
    blocks = ModuleList([LayerNorm(2), LayerNorm(3)])
    blocks.append(LayerNorm(5))
    assert len(blocks) == 3 and blocks[2].C == 5
    assert [n for n, _ in blocks.named_parameters()][-2:] == ["2.weight", "2.bias"]


def test_parameter_grad_matches_data():
    p = Parameter(np.ones((2, 3), np.float32))
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float32 and not p.grad.any()
