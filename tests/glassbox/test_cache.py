"""run_with_cache: the names, what they hold, and their gradients against finite differences."""
import numpy as np
import pytest

from npgpt import GPT, GPTConfig
from npgpt.errors import InputError
from npgpt.kernels.softmax import masked_softmax
from npgpt.layers.lora import LoRALinear
from npgpt.models.classifier import TextClassifier
from npgpt.models.seq2seq import Seq2SeqConfig, Transformer

CONFIGS = {
    "gpt2": dict(),
    "post-ln": dict(prenorm=False, pos="sinusoidal", mlp="relu"),
    "llama": dict(norm="rmsnorm", pos="rope", mlp="swiglu", n_head=4, n_kv_head=2, bias=False,
                  tie_embeddings=False),
}


def tiny(kind="gpt2", dtype="float64", **kw):
    fields = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, dtype=dtype)
    cfg = GPTConfig(**{**fields, **CONFIGS[kind], **kw})
    return GPT(cfg, seed=3)


def batch(B=2, T=6, V=13, seed=0):
    idx = np.random.default_rng(seed).integers(0, V, (B, T))
    return idx, np.random.default_rng(seed + 1).integers(0, V, (B, T))


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_cache_logits_equal_the_models_and_modes_are_kept(kind):
    model = tiny(kind)
    idx, targets = batch()
    ref, ref_loss = model.forward(idx, targets)
    logits, cache = model.run_with_cache(idx, targets)
    np.testing.assert_array_equal(logits, ref)
    assert cache.loss == pytest.approx(float(ref_loss))
    assert model.training and all(m.training for m in model.modules())
    assert "forward" not in vars(model.h[0]) and "attend" not in vars(model.h[0].attn.attention)
    L, (B, T), H = 2, idx.shape, model.config.n_head
    assert cache["h.1.attn.pattern"].shape == (B, H, T, T)
    assert cache["h.0.attn.q"].shape == (B, T, H, model.config.head_size)
    assert cache["h.0.attn.k"].shape == (B, T, model.config.n_kv_head, model.config.head_size)
    assert cache[f"h.{L - 1}.resid_post"].shape == (B, T, 8)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_pattern_rows_are_causal_distributions_and_equal_softmax_of_scores(kind):
    model = tiny(kind)
    idx, _ = batch()
    _, cache = model.run_with_cache(idx, names="h.*.attn.*")
    for i in range(2):
        p, s = cache[f"h.{i}.attn.pattern"], cache[f"h.{i}.attn.scores"]
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
        assert (p >= 0).all()
        T = p.shape[-1]
        assert (p[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
        assert np.isneginf(s[..., 0, 1]).all() and np.isfinite(s[..., 1, 0]).all()
        np.testing.assert_allclose(masked_softmax(np.where(np.isinf(s), 0, s), np.isfinite(s)), p,
                                   atol=1e-12)


def test_names_filter_keeps_only_what_is_asked():
    model = tiny()
    idx, targets = batch()
    _, one = model.run_with_cache(idx, names=["h.1.resid_post", "h.0.attn.pattern"])
    assert set(one.keys()) == {"h.1.resid_post", "h.0.attn.pattern"}
    _, glob = model.run_with_cache(idx, names="h.1.*")
    assert glob.keys() and all(k.startswith("h.1.") for k in glob.keys())
    _, called = model.run_with_cache(idx, targets, names=lambda n: n.endswith("mlp_out"), grads=True)
    assert set(called.keys()) == {"h.0.mlp_out", "h.1.mlp_out", "h.0.mlp_out.grad", "h.1.mlp_out.grad"}
    _, full = model.run_with_cache(idx)
    np.testing.assert_array_equal(one["h.1.resid_post"], full["h.1.resid_post"])


def test_unknown_names_and_missing_targets_are_clear_errors():
    model = tiny()
    idx, _ = batch()
    with pytest.raises(InputError, match=r"unknown cache name 'h.0.attn.nope'.*h\.\{i\}\.attn\.pattern"):
        model.run_with_cache(idx, names=["h.0.attn.nope"])
    with pytest.raises(InputError, match="unknown cache name"):
        model.run_with_cache(idx, names="h.9.*")
    with pytest.raises(InputError, match="needs targets"):
        model.run_with_cache(idx, grads=True)
    _, cache = model.run_with_cache(idx, names="wte")
    with pytest.raises(InputError, match="not in this cache"):
        cache["h.0.resid_pre"]
    with pytest.raises(InputError, match="unknown cache name"):
        cache["h.0.bogus"]


def test_one_layer_costs_one_layers_memory():
    model = tiny("gpt2", n_layer=4)
    idx, _ = batch()
    _, one = model.run_with_cache(idx, names="h.2.*")
    _, every = model.run_with_cache(idx, names="h.*")
    assert one.nbytes() * 4 == every.nbytes() and len(one) * 4 == len(every)


def test_nothing_is_left_behind_after_a_run():
    model = tiny()
    idx, targets = batch()
    model.run_with_cache(idx, targets, grads=True)
    for m in model.modules():
        assert not {"forward", "backward", "attend", "attend_backward"} & set(vars(m))
        sdpa = getattr(m, "_sdpa", None)
        assert sdpa is None or not {"attend", "attend_backward"} & set(vars(sdpa))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decompose_resid_sums_to_the_last_residual_and_attrs_to_the_logit(kind):
    model = tiny(kind)
    idx, targets = batch()
    logits, cache = model.run_with_cache(idx)
    comps, labels = cache.decompose_resid()
    assert labels[0] == "embed" and len(labels) == 5
    np.testing.assert_allclose(comps.sum(0), cache["h.1.resid_post"], atol=1e-12)
    attrs, _ = cache.logit_attrs(targets)
    np.testing.assert_allclose(attrs.sum(0), np.take_along_axis(logits, targets[..., None], -1)[..., 0],
                               atol=1e-10)


def test_post_ln_has_no_decomposition():
    _, cache = tiny("post-ln").run_with_cache(batch()[0])
    with pytest.raises(InputError, match="post-LN"):
        cache.decompose_resid()


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_last_lens_row_is_the_models_own_distribution(kind):
    model = tiny(kind)
    idx, _ = batch()
    logits, cache = model.run_with_cache(idx)
    lens = cache.logit_lens(top_k=3)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(lens.top_probs[-1], -np.sort(-p, -1)[..., :3], atol=1e-12)
    np.testing.assert_array_equal(lens.top_ids[-1, ..., 0], logits.argmax(-1))
    assert (lens.pred_rank[-1] == 1).all() and np.allclose(lens.kl[-1], 0, atol=1e-12)
    assert lens.labels == ["embed", "h.0", "h.1"] and (lens.kl >= 0).all()
    np.testing.assert_array_equal(lens.true[:, :-1], idx[:, 1:])
    assert np.isnan(lens.true_prob[:, :, -1]).all()
    ent = -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(lens.entropy[-1], ent, atol=1e-10)


def test_head_pattern_and_neighbours():
    model = tiny()
    idx, _ = batch()
    _, cache = model.run_with_cache(idx)
    np.testing.assert_array_equal(cache.head_pattern(1, 0), cache["h.1.attn.pattern"][:, 0])
    with pytest.raises(InputError):
        cache.head_pattern(2, 0)
    E = model.wte.weight.data
    E[5] = 3 * E[2]                 # same direction as token 2: its nearest neighbour
    nn = cache.neighbours(2, k=3)
    assert nn[0][0] == 5 and nn[0][1] == pytest.approx(1.0) and len(nn) == 3
    assert nn[0][1] >= nn[1][1] >= nn[2][1]


# --- gradients against central differences (float64) -------------------------------------
def _perturb(model, name, delta):
    """Have the next forward add ``delta`` to activation ``name``; returns an undo."""
    i = int(name.split(".")[1]) if name.startswith("h.") else None
    block = model.h[i] if i is not None else None
    leaf = name.split(".", 2)[2] if i is not None else name
    undo = []

    def patch(obj, method, fn):
        original = getattr(obj, method)
        setattr(obj, method, lambda *a, **k: fn(original, *a, **k))
        undo.append(lambda: delattr(obj, method))

    add_out = lambda orig, *a, **k: orig(*a, **k) + delta          # noqa: E731
    add_in = lambda orig, x, *a, **k: orig(x + delta, *a, **k)     # noqa: E731
    heads = lambda d: d.transpose(0, 2, 1, 3)                       # noqa: E731
    sdpa = block.attn.attention if block is not None else None
    if name == "wte":
        patch(model.wte, "forward", add_out)
    elif leaf == "resid_pre":
        patch(block, "forward", add_in)
    elif leaf == "resid_post":
        patch(block, "forward", add_out)
    elif leaf in ("attn_out", "resid_mid"):     # pre-LN: resid_mid = resid_pre + attn_out
        patch(block.attn, "forward", add_out)
    elif leaf == "mlp_out":
        patch(block.mlp, "forward", add_out)
    elif leaf == "ln_1.normalized":
        patch(block.ln_1, "forward", lambda orig, *a, **k: orig(*a, **k) + delta * block.ln_1.weight.data)
    elif leaf == "mlp.pre":
        up = getattr(block.mlp, "c_fc", None) or block.mlp.gate_proj
        patch(up, "forward", add_out)
    elif leaf == "mlp.post":
        down = getattr(block.mlp, "c_proj", None) or block.mlp.down_proj
        patch(down, "forward", add_in)
    elif leaf == "attn.z":
        patch(block.attn.c_proj, "forward", lambda orig, x: orig(x + delta.reshape(x.shape)))
    elif leaf in ("attn.q", "attn.k", "attn.v"):
        j = "qkv".index(leaf[-1])

        def attend(orig, *a, **k):
            a = list(a)
            a[j] = a[j] + heads(delta)
            return orig(*a, **k)
        patch(sdpa, "attend", attend)
    elif leaf in ("attn.pattern", "attn.scores"):
        def attend(orig, q, k, v, mask=None, **kw):
            y, saved = orig(q, k, v, mask, **kw)
            att = saved[3]
            G = q.shape[1] // k.shape[1]            # grouped-query: each k/v head serves G
            k, v = np.repeat(k, G, axis=1), np.repeat(v, G, axis=1)
            if leaf == "attn.pattern":
                new = att + delta
            else:
                s = (q @ k.swapaxes(-1, -2)) / np.sqrt(q.shape[-1])
                allowed = np.tri(q.shape[2], k.shape[2], dtype=bool)
                new = masked_softmax(s + delta, allowed)
            y += (new - att) @ v
            return y, saved
        patch(sdpa, "attend", attend)
    else:
        raise AssertionError(name)
    return lambda: [u() for u in undo]


GRAD_NAMES = ["wte", "h.0.resid_pre", "h.0.ln_1.normalized", "h.0.attn.q", "h.0.attn.k",
              "h.0.attn.v", "h.0.attn.scores", "h.0.attn.pattern", "h.0.attn.z", "h.0.attn_out",
              "h.0.resid_mid", "h.1.mlp.pre", "h.1.mlp.post", "h.1.mlp_out", "h.1.resid_post"]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_gradients_equal_finite_differences(kind):
    model = tiny(kind)                  # llama: grouped-query (4 query heads, 2 k/v heads)
    idx, targets = batch()
    _, cache = model.run_with_cache(idx, targets, grads=True)
    rng = np.random.default_rng(7)
    eps = 1e-6
    for name in GRAD_NAMES:
        a = cache[name]
        d = rng.standard_normal(a.shape)
        if name.endswith("attn.scores"):
            d[np.isinf(a)] = 0
        losses = []
        for sign in (1, -1):
            undo = _perturb(model, name, sign * eps * d)
            try:
                with_grad_off = model.training
                model.eval()
                losses.append(float(model.forward(idx, targets)[1]))
            finally:
                undo()
                model.train(with_grad_off)
        fd = (losses[0] - losses[1]) / (2 * eps)
        analytic = float((cache[name + ".grad"] * d).sum())
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-9), name


def test_post_ln_gradients_of_the_residual():
    model = tiny("post-ln")
    idx, targets = batch()
    _, cache = model.run_with_cache(idx, targets, names=["h.0.resid_pre", "h.1.resid_post"],
                                    grads=True)
    rng = np.random.default_rng(0)
    for name in ("h.0.resid_pre", "h.1.resid_post"):
        d = rng.standard_normal(cache[name].shape)
        losses = []
        for sign in (1, -1):
            undo = _perturb(model, name, sign * 1e-6 * d)
            model.eval()
            losses.append(float(model.forward(idx, targets)[1]))
            undo()
            model.train()
        assert float((cache[name + ".grad"] * d).sum()) == pytest.approx(
            (losses[0] - losses[1]) / 2e-6, rel=1e-5)


def test_lora_model_caches_the_adapted_projection():
    model = tiny()
    block = model.h[0]
    block.attn.c_attn = LoRALinear.wrap(block.attn.c_attn, r=2, alpha=4.0,
                                        rng=np.random.default_rng(0))
    block.attn.c_attn.lora.B.data[:] = 0.3            # a non-zero adapter changes q, k, v
    idx, targets = batch()
    logits, cache = model.run_with_cache(idx, targets, names="h.0.attn.*", grads=True)
    ref, _ = model.forward(idx)
    np.testing.assert_array_equal(logits, ref)
    assert "h.0.attn.q.grad" in cache and np.isfinite(cache["h.0.attn.q.grad"]).all()


def test_seq2seq_and_classifier_caches():
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=12, n_embd=8, n_head=2, mlp_hidden=16,
                        n_encoder_layer=1, n_decoder_layer=1, dtype="float64")
    t = Transformer(cfg)
    src, tgt = batch(2, 5, 11)
    logits, cache = t.run_with_cache(src, tgt, tgt, grads=True)
    np.testing.assert_array_equal(logits, t.forward(src, tgt)[0])
    assert cache["decoder.0.cross_attn.pattern"].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(cache["encoder.0.self_attn.pattern"].sum(-1), 1.0)
    assert "decoder.0.resid_mid2.grad" in cache
    clf = TextClassifier(13, 8, n_embd=8, n_head=2, dtype=np.float64, rng=np.random.default_rng(0))
    idx, _ = batch()
    logits, cache = clf.run_with_cache(idx, np.array([0, 1]), grads=True)
    np.testing.assert_array_equal(logits, clf.forward(idx)[0])
    assert {"resid_pre", "attn.pattern", "resid_mid", "resid_post", "mlp_out.grad"} <= set(cache.keys())


def test_a_soft_capped_model_reads_its_lens_through_the_cap():
    model = tiny("gpt2", logit_softcap=0.5)        # a tight cap: uncapped logits would differ
    idx, _ = batch()
    logits, cache = model.run_with_cache(idx)
    stack, _ = cache.accumulated_resid(apply_ln=True)
    np.testing.assert_allclose(cache.unembed(stack[-1]), logits, atol=1e-12)
    assert np.abs(logits).max() < 0.5


def _fd_of_output(model, module, loss, delta):
    """Central difference of loss() when ``delta`` is added to module's forward output."""
    out = []
    for sign in (1, -1):
        original = module.forward
        module.forward = lambda *a, **k: original(*a, **k) + sign * delta
        try:
            out.append(loss())
        finally:
            del module.forward
    return (out[0] - out[1]) / 2


@pytest.mark.parametrize("which", ["seq2seq", "classifier"])
def test_other_models_cached_gradients_equal_finite_differences(which):
    rng = np.random.default_rng(3)
    if which == "seq2seq":
        cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=12, n_embd=8, n_head=2,
                            mlp_hidden=16, n_encoder_layer=1, n_decoder_layer=1, dtype="float64")
        model = Transformer(cfg)
        src, tgt = batch(2, 5, 11)
        tgt = np.maximum(tgt, 3)
        _, cache = model.run_with_cache(src, tgt, tgt, grads=True)
        loss = lambda: float(model.forward(src, tgt, tgt)[1])            # noqa: E731
        sites = {"decoder.0.cross_attn_out": model.decoder[0].cross_attn,
                 "encoder.0.mlp_out": model.encoder[0].mlp}
    else:
        model = TextClassifier(13, 8, n_embd=8, n_head=2, dtype=np.float64,
                               rng=np.random.default_rng(0))
        idx, _ = batch()
        targets = np.array([0, 1])
        _, cache = model.run_with_cache(idx, targets, grads=True)
        loss = lambda: float(model.forward(idx, targets)[1])             # noqa: E731
        sites = {"attn_out": model.attn, "mlp_out": model.mlp}
    model.eval()
    for name, module in sites.items():
        d = rng.standard_normal(cache[name].shape)
        fd = _fd_of_output(model, module, loss, 1e-6 * d) / 1e-6
        assert float((cache[name + ".grad"] * d).sum()) == pytest.approx(fd, rel=1e-5), name
