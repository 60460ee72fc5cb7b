"""Muon: its update equals torch.optim.Muon's (float64), its AdamW half equals AdamW, its
state resumes bit for bit, and its refusals."""
import numpy as np
import pytest

from npgpt.errors import ConfigError
from npgpt.module import Parameter
from npgpt.optim import AdamW, Muon, newton_schulz

SHAPES = [(6, 10), (10, 6), (7, 7), (6, 10)]      # wide, tall, square, a second wide


def _params(rng, shapes=SHAPES, dtype=np.float64):
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def _torch_muon_steps(torch, weights, grads_per_step, exact, **kw):
    """torch.optim.Muon on the transposed weights ((out, in), its layout); ``exact`` makes
    its Newton–Schulz run in float64 instead of bfloat16 (its one cast made the identity)."""
    from unittest import mock
    ps = [torch.nn.Parameter(torch.tensor(w.T.copy())) for w in weights]
    opt = torch.optim.Muon(ps, **kw)
    patch = mock.patch.object(torch.Tensor, "bfloat16", lambda self: self.clone()) if exact \
        else mock.patch.object(torch, "__name__", torch.__name__)
    with patch:
        for grads in grads_per_step:
            for p, g in zip(ps, grads):
                p.grad = torch.tensor(g.T.copy())
            opt.step()
    return [p.detach().numpy().T for p in ps]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust_lr", ["original", "match_rms_adamw"])
def test_muon_update_equals_torch_muon(tt, rng, nesterov, adjust_lr):
    torch, _ = tt
    params = _params(rng)
    start = [p.data.copy() for p in params]
    steps = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    kw = dict(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.1)
    ours = Muon(params, adjust_lr=adjust_lr, **kw)
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad[...] = g
        ours.step()
    want = _torch_muon_steps(torch, start, steps, exact=True, adjust_lr_fn=adjust_lr, **kw)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-13)
    # as shipped, torch runs the iteration in bfloat16: the same update to its precision
    shipped = _torch_muon_steps(torch, start, steps, exact=False, adjust_lr_fn=adjust_lr, **kw)
    for p, w, s in zip(params, shipped, start):
        assert np.abs((p.data - s) - (w - s)).max() <= 0.03 * np.abs(w - s).max()


def test_newton_schulz_pushes_singular_values_towards_one(rng):
    G = rng.standard_normal((3, 16, 40)) @ np.diag(np.logspace(-2, 1, 40))
    O = newton_schulz(G)
    s = np.linalg.svd(O, compute_uv=False)
    assert s.min() > 0.6 and s.max() < 1.25            # from a spread of 1000x
    # the same on the transposed (tall) matrix: the orientation does not matter
    np.testing.assert_allclose(newton_schulz(np.swapaxes(G, 1, 2)), np.swapaxes(O, 1, 2),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(newton_schulz(G[1]), O[1], rtol=1e-12, atol=1e-14)   # stacked


def test_the_adamw_groups_are_adamw(rng):
    hidden, other = _params(rng, [(6, 10)]), _params(rng, [(10,), (5, 6)])
    twin = [Parameter(p.data.copy()) for p in other]
    muon = Muon([{"params": hidden, "muon": True}, {"params": other, "muon": False}],
                adamw_lr=1e-2, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.1)
    adamw = AdamW(twin, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for _ in range(3):
        for p, q in zip(other, twin):
            p.grad[...] = q.grad[...] = rng.standard_normal(p.shape)
        hidden[0].grad[...] = rng.standard_normal((6, 10))
        muon.step()
        adamw.step()
    for p, q in zip(other, twin):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_saves_and_resumes_bit_for_bit(rng):
    def make(seed):
        r = np.random.default_rng(seed)
        hidden, other = _params(r, SHAPES, np.float32), _params(r, [(10,), (5, 6)], np.float32)
        groups = [{"params": other, "muon": False},
                  {"params": hidden, "muon": True, "lr_scale": 20.0}]
        return hidden + other, Muon(groups, adamw_lr=1e-3)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES + [(10,), (5, 6)]]
             for _ in range(6)]

    def run(params, opt, steps):
        for k in steps:
            opt.set_lr(1e-3 * (1 - k / 10))
            for p, g in zip(params, grads[k]):
                p.grad[...] = g
            opt.step()
    params, opt = make(0)
    run(params, opt, range(6))
    first, opt1 = make(0)
    run(first, opt1, range(3))
    state = {k: v.copy() for k, v in opt1.state_dict().items()}
    assert {k.split(".")[-1] for k in state} == {"step", "momentum_buffer", "exp_avg",
                                                   "exp_avg_sq"}
    weights = [p.data.copy() for p in first]
    second, opt2 = make(0)
    for p, w in zip(second, weights):
        p.data[...] = w
    opt2.load_state_dict(state)
    run(second, opt2, range(3, 6))
    for a, b in zip(params, second):
        np.testing.assert_array_equal(a.data, b.data)
    assert opt2.param_groups[1]["lr"] == pytest.approx(20 * 1e-3 * 0.5)    # lr_scale


def test_refusals(rng):
    with pytest.raises(ConfigError, match="2-D"):
        Muon(_params(rng, [(6,)]))
    with pytest.raises(ConfigError, match="no 2-D hidden weight"):
        Muon([{"params": _params(rng, [(6, 4)]), "muon": False}])
    with pytest.raises(ConfigError, match="needs a \"muon\" key"):
        Muon([{"params": _params(rng, [(6, 4)])}])
    with pytest.raises(ConfigError, match="adjust_lr"):
        Muon(_params(rng, [(6, 4)]), adjust_lr="none")


def _gpt_trainer(out, **kw):
    from npgpt.models import GPT, GPTConfig
    from npgpt.trainer import TrainConfig, Trainer
    data = np.random.default_rng(0).integers(0, 13, 3000)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8,
                          tie_embeddings=False), seed=0)
    config = TrainConfig(**{**dict(batch_size=2, block_size=8, max_steps=6, warmup_steps=2,
                                   eval_interval=3, eval_steps=1, out_dir=str(out),
                                   progress=False, plot=False, optimizer="muon"), **kw})
    return Trainer(model, data[:2500], data[2500:], config)


def test_a_muon_run_resumes_bit_for_bit(tmp_path):
    whole = _gpt_trainer(tmp_path / "a")
    whole.train()
    groups = whole.optimizer.param_groups
    muon_names = {n for n, p in whole.model.named_parameters()
                  if any(p is q for g in groups if g["muon"] for q in g["params"])}
    assert muon_names == {f"h.{i}.{m}.weight" for i in range(2)
                          for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    half = _gpt_trainer(tmp_path / "b")
    half.train(until=3)
    resumed = _gpt_trainer(tmp_path / "c").resume(tmp_path / "b")
    resumed.train()
    for (name, a), b in zip(whole.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_muon_on_a_model_without_hidden_matrices_is_one_error(tmp_path):
    from npgpt.trainer import TrainConfig, Trainer
    from tests.test_train import TinyLM
    data = np.random.default_rng(0).integers(0, 8, 500)
    with pytest.raises(ConfigError, match="optimizer=muon needs 2-D hidden weight matrices"):
        Trainer(TinyLM(), data, None, TrainConfig(block_size=8, optimizer="muon",
                                                 out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="zero=1"):
        TrainConfig(optimizer="muon", zero=1)


def test_muon_step_is_the_same_on_one_or_two_threads(rng):
    """With two threads the matrices are orthogonalised side by side: bit for bit the update
    of one thread, so the thread count does not change a run."""
    from npgpt.runtime.threads import get_num_threads, set_num_threads
    shapes = [(24, 40), (40, 24), (24, 24), (24, 96), (96, 24)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(2)]
    before = get_num_threads()["numba"]
    results = []
    try:
        for n in (1, 2):
            set_num_threads(n)
            params = [Parameter(w.copy()) for w in start]
            opt = Muon(params, lr=0.05, weight_decay=0.1)
            for step in grads:
                for p, g in zip(params, step):
                    p.grad[...] = g
                opt.step()
            results.append([p.data for p in params])
    finally:
        set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[0][0], start[0])
