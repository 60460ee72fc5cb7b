import math

import numpy as np
import pytest

from npgpt.errors import CheckpointError, ConfigError
from npgpt.module import Parameter
from npgpt.optim import SGD, Adam, AdamW, clip_grad_norm, cosine_schedule


def _params(rng, shapes, dtype=np.float64):
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


SHAPES = [(3, 4), (4,), (2, 2, 3)]


def _run_npgpt(opt_cls, kwargs, grads, rng_seed=0, groups=None):
    rng = np.random.default_rng(rng_seed)
    params = _params(rng, SHAPES)
    arg = params if groups is None else [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
    opt = opt_cls(arg, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
    return [p.data for p in params]


def _run_torch(torch_cls, kwargs, grads, rng_seed=0, groups=None):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(rng_seed)
    params = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in _params(rng, SHAPES)]
    arg = params if groups is None else [dict(g, params=[params[i] for i in g["params"]]) for g in groups]
    opt = torch_cls(arg, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
    return [p.detach().numpy() for p in params]


def _grads(steps=12, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "adam_l2", "adamw", "adamw_groups"])
def test_optimizers_match_torch_step_for_step(name):
    torch = pytest.importorskip("torch")
    grads = _grads()
    groups = None
    if name == "sgd":
        ours, theirs, kw = SGD, torch.optim.SGD, dict(lr=0.1)
    elif name == "sgd_momentum":
        ours, theirs, kw = SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)
    elif name == "adam":
        ours, theirs, kw = Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6)
    elif name == "adam_l2":
        ours, theirs, kw = Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=0.1)
    elif name == "adamw":
        ours, theirs, kw = AdamW, torch.optim.AdamW, dict(lr=3e-2, betas=(0.9, 0.95), weight_decay=0.1)
    else:
        ours, theirs, kw = AdamW, torch.optim.AdamW, dict(lr=3e-2, weight_decay=0.1)
        groups = [{"params": [0, 2]}, {"params": [1], "weight_decay": 0.0}]
    a = _run_npgpt(ours, kw, grads, groups=groups)
    b = _run_torch(theirs, kw, grads, groups=groups)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)


def test_adamw_first_step_moves_each_weight_by_lr():
    # with bias correction, the first Adam step is lr * g / (|g| + eps) ~ lr * sign(g)
    p = Parameter(np.zeros(5))
    p.grad[...] = [3.0, -2.0, 0.5, -1e-3, 7.0]
    AdamW([p], lr=0.1, weight_decay=0.0, eps=1e-12).step()
    np.testing.assert_allclose(p.data, -0.1 * np.sign(p.grad), rtol=1e-8)


def test_adamw_decay_is_decoupled():
    p = Parameter(np.full(3, 2.0))
    AdamW([p], lr=0.1, weight_decay=0.5).step()   # zero gradient: only the decay acts
    np.testing.assert_allclose(p.data, 2.0 * (1 - 0.1 * 0.5))


def test_float32_state_and_params_stay_float32():
    rng = np.random.default_rng(0)
    params = _params(rng, SHAPES, dtype=np.float32)
    opt = AdamW(params, lr=1e-3)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(a.dtype == np.float32 for k, a in opt.state_dict().items() if k != "step")


def test_optimizer_state_round_trip_continues_identically():
    grads = _grads(steps=6)
    rng = np.random.default_rng(0)
    p1 = _params(rng, SHAPES)
    p2 = [Parameter(p.data.copy()) for p in p1]
    o1, o2 = AdamW(p1, lr=1e-2), AdamW(p2, lr=1e-2)
    for k, step_grads in enumerate(grads):
        if k == 3:   # save o2's state and reload it into a fresh optimizer
            state = {k: v.copy() for k, v in o2.state_dict().items()}
            o2 = AdamW(p2, lr=1e-2)
            o2.load_state_dict(state)
        for a, b, g in zip(p1, p2, step_grads):
            a.grad[...] = g
            b.grad[...] = g
        o1.step()
        o2.step()
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a.data, b.data)


def test_optimizer_state_mismatch_is_refused():
    rng = np.random.default_rng(0)
    opt = AdamW(_params(rng, SHAPES))
    state = opt.state_dict()
    del state["1.exp_avg"]
    with pytest.raises(CheckpointError, match="1.exp_avg"):
        AdamW(_params(rng, SHAPES)).load_state_dict(state)


def test_bad_optimizer_settings_raise_config_error():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError):
        AdamW([], lr=1e-3)
    with pytest.raises(ConfigError, match="betas"):
        AdamW(_params(rng, SHAPES), betas=(0.9, 1.0))
    with pytest.raises(ConfigError, match="lr"):
        SGD(_params(rng, SHAPES), lr=-1)


def test_clip_grad_norm_scales_to_max_norm_and_matches_torch():
    rng = np.random.default_rng(0)
    params = _params(rng, SHAPES)
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape) * 10
    before = [p.grad.copy() for p in params]
    total = clip_grad_norm(params, 1.0)
    assert total == pytest.approx(math.sqrt(sum((g ** 2).sum() for g in before)))
    after = math.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    torch = pytest.importorskip("torch")
    tp = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in before]
    for t, g in zip(tp, before):
        t.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(tp, 1.0)
    for p, t in zip(params, tp):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_alone():
    p = Parameter(np.zeros(3))
    p.grad[...] = [0.1, 0.2, 0.2]
    assert clip_grad_norm([p], 1.0) == pytest.approx(0.3)
    np.testing.assert_array_equal(p.grad, [0.1, 0.2, 0.2])


def test_cosine_schedule_warms_up_then_decays_to_min_lr():
    lrs = [cosine_schedule(s, 1.0, 0.1, 10, 110) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))            # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111]))     # decay falls
    assert lrs[60] == pytest.approx(0.55)                              # half-way: the mean
    assert lrs[110] == lrs[119] == 0.1
