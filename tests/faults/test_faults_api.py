"""Every public API entry point given arguments of the wrong type, shape or dtype raises an
``npgpt.errors`` exception (never a raw NumPy/Python error from inside, never a silent
success). The entry points are found, not listed by hand: every class and function in the
``__all__`` of npgpt and its subpackages, each class's forward/backward, plus the user-facing
functions of generate, trainer, io, optim and data. A new export without cases here fails
``test_every_entry_point_has_cases``."""
import importlib

import numpy as np
import pytest

import npgpt
from npgpt import layers, models, tokenizers
from npgpt.errors import NpgptError

R = np.random.default_rng(0)
B, T, C, H, V = 2, 3, 8, 2, 11


def f32(*shape):
    return R.standard_normal(shape).astype(np.float32)


def ids(*shape, high=V):
    return R.integers(0, high, shape)


# --- what counts as an entry point --------------------------------------------------------

PACKAGES = ["npgpt", "npgpt.models", "npgpt.layers", "npgpt.tokenizers"]
MODULE_FUNCTIONS = {
    "npgpt.generate": ["generate", "sample_next", "filter_logits", "softmax_with_temperature"],
    "npgpt.trainer": ["TrainConfig", "Trainer"],
    "npgpt.io": ["load_checkpoint", "save_checkpoint", "resolve_checkpoint", "load_safetensors",
                 "save_safetensors", "load_json", "save_json"],
    "npgpt.optim": ["SGD", "Adam", "AdamW", "cosine_schedule", "wsd_schedule", "schedule_lr",
                    "clip_grad_norm"],
    "npgpt.data": ["get_batch", "tokenize"],
}
# exported, but not an entry point for user values: the base classes themselves, a
# decorator-like context manager, constants; kernels are called by the layers with arrays
# the layers have checked
NOT_ENTRY_POINTS = {"npgpt.Module", "npgpt.ModuleList", "npgpt.no_grad", "npgpt.models.PRESETS",
                    "npgpt.tokenizers.Tokenizer", "npgpt.tokenizers.gpt2_files",
                    "npgpt.layers.KVCache"}


def entry_points():
    found, seen = [], set()
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and id(obj) not in seen:     # npgpt.GPT is npgpt.models.GPT
                seen.add(id(obj))
                found.append(f"{package}.{name}")
    for module, names in MODULE_FUNCTIONS.items():
        found += [f"{module}.{n}" for n in names]
    return sorted(set(found) - NOT_ENTRY_POINTS)


# --- the cases: (entry point, label, call) --------------------------------------------------
# each call must raise an NpgptError

def _fresh(cls, *args, **kwargs):
    return lambda: cls(*args, **kwargs)


def module_cases(name, make, inputs, generic_lead=True, bounded_ids=True):
    """forward with each input broken (wrong dtype, a string, None, a missing and an extra
    axis where the layer is not shape-generic, a wrong last axis), backward before forward
    and with a mis-shaped gradient."""
    cases = []
    for i, x in enumerate(inputs):
        def call(bad, i=i):
            args = list(inputs)
            args[i] = bad
            return lambda: make().forward(*args)
        is_ids = np.issubdtype(np.asarray(x).dtype, np.integer)
        cases += [(name, f"input {i} a string", call("text")), (name, f"input {i} None", call(None)),
                  (name, f"input {i} an object array", call(np.array([object()] * 3)))]
        if is_ids:
            cases += [(name, f"input {i} float ids", call(np.asarray(x, np.float32) + 0.5)),
                      (name, f"input {i} a negative id", call(np.full_like(x, -1)))]
            if bounded_ids:
                cases += [(name, f"input {i} an id too large", call(np.full_like(x, 10**6)))]
        else:
            cases += [(name, f"input {i} last axis wrong", call(f32(*x.shape[:-1], x.shape[-1] + 1)))]
            if not generic_lead:
                cases += [(name, f"input {i} one axis fewer", call(x[0]))]
    def backward_first():
        make().backward(f32(*np.shape(inputs[0])))
    def backward_misshaped():
        m = make()
        out = m.forward(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        m.backward(f32(*np.shape(out)[:-1], np.shape(out)[-1] + 1))
    cases += [(name, "backward before forward", backward_first),
              (name, "backward with a mis-shaped gradient", backward_misshaped)]
    return cases


def _cases():
    L = layers
    cases = []
    cases += module_cases("npgpt.layers.Linear", _fresh(L.Linear, C, 4), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.Embedding", _fresh(L.Embedding, V, C), [ids(B, T)])
    cases += module_cases("npgpt.layers.LearnedPositionalEmbedding",
                          _fresh(L.LearnedPositionalEmbedding, 5, C), [np.arange(T)])
    cases += module_cases("npgpt.layers.SinusoidalPositionalEncoding",
                          _fresh(L.SinusoidalPositionalEncoding, C), [np.arange(T)],
                          bounded_ids=False)      # sinusoidal positions have no end
    cases += module_cases("npgpt.layers.LayerNorm", _fresh(L.LayerNorm, C), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.RMSNorm", _fresh(L.RMSNorm, C), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.BatchNorm", _fresh(L.BatchNorm, C), [f32(B * T, C)])
    cases += module_cases("npgpt.layers.MLP", _fresh(L.MLP, C, 16), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.SwiGLU", _fresh(L.SwiGLU, C, 16), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.GeGLU", _fresh(L.GeGLU, C, 16), [f32(B, T, C)])
    cases += module_cases("npgpt.layers.MultiHeadAttention", _fresh(L.MultiHeadAttention, C, H),
                          [f32(B, T, C)], generic_lead=False)
    cases += module_cases("npgpt.layers.RotaryEmbedding", _fresh(L.RotaryEmbedding, 4),
                          [f32(B, H, T, 4)])
    for act in ("ReLU", "ReLUSquared", "GELU", "SiLU", "Dropout"):
        cases += [(f"npgpt.layers.{act}", "input a string",
                   lambda act=act: getattr(L, act)().forward("text")),
                  (f"npgpt.layers.{act}", "backward before forward",
                   lambda act=act: getattr(L, act)().backward(f32(2, 3)))]
    cases += [("npgpt.layers.Dropout", "p=1.5", lambda: L.Dropout(1.5)),
              ("npgpt.layers.Dropout", "p='x'", lambda: L.Dropout("x")),
              ("npgpt.layers.GELU", "approximate='x'", lambda: L.GELU("x")),
              ("npgpt.layers.SoftCap", "cap=0", lambda: L.SoftCap(0.0)),
              ("npgpt.layers.SoftCap", "input a string", lambda: L.SoftCap(30.0).forward("text")),
              ("npgpt.layers.SoftCap", "backward before forward",
               lambda: L.SoftCap(30.0).backward(f32(2, 3)))]
    for fn in ("softmax", "log_softmax", "erf", "sigmoid"):
        cases += [(f"npgpt.layers.{fn}", "a string", lambda fn=fn: getattr(L, fn)("text")),
                  (f"npgpt.layers.{fn}", "None", lambda fn=fn: getattr(L, fn)(None))]
    cases += [("npgpt.layers.sinusoidal_table", "n_positions='x'",
               lambda: L.sinusoidal_table("x", C)),
              ("npgpt.layers.sinusoidal_table", "dim=0", lambda: L.sinusoidal_table(4, 0))]
    cases += [("npgpt.layers.CrossEntropyLoss", "targets float",
               lambda: L.CrossEntropyLoss().forward(f32(B, T, V), f32(B, T))),
              ("npgpt.layers.CrossEntropyLoss", "targets mis-shaped",
               lambda: L.CrossEntropyLoss().forward(f32(B, T, V), ids(B, T + 1))),
              ("npgpt.layers.CrossEntropyLoss", "logits a string",
               lambda: L.CrossEntropyLoss().forward("text", ids(B, T))),
              ("npgpt.layers.CrossEntropyLoss", "backward before forward",
               lambda: L.CrossEntropyLoss().backward())]
    cases += [("npgpt.layers.ScaledDotProductAttention", "q, k, v mis-shaped",
               lambda: L.ScaledDotProductAttention().forward(f32(B, H, T, 4), f32(B, H, T, 5),
                                                             f32(B, H, T, 4))),
              ("npgpt.layers.ScaledDotProductAttention", "q a string",
               lambda: L.ScaledDotProductAttention().forward("q", f32(B, H, T, 4), f32(B, H, T, 4))),
              ("npgpt.layers.CrossAttention", "memory mis-shaped",
               lambda: L.CrossAttention(C, H).forward(f32(B, T, C), f32(B, T, C + 1))),
              ("npgpt.layers.CrossAttention", "x a string",
               lambda: L.CrossAttention(C, H).forward("x", f32(B, T, C)))]
    # constructors: a count that is not a positive integer
    for cls, args in (("Linear", (C, 4)), ("Embedding", (V, C)), ("LayerNorm", (C,)),
                      ("RMSNorm", (C,)), ("MLP", (C, 16)), ("SwiGLU", (C, 16)),
                      ("GeGLU", (C, 16)), ("MultiHeadAttention", (C, H))):
        for bad in ("x", 2.5, 0, -1):
            cases.append((f"npgpt.layers.{cls}", f"first argument {bad!r}",
                          lambda cls=cls, args=args, bad=bad: getattr(L, cls)(bad, *args[1:])))

    # the models
    def gpt():
        return models.GPT(models.GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=H,
                                           n_embd=C))
    def backward_after_forward(m, dlogits):
        m.forward(ids(1, 2))
        m.backward(dlogits)

    def load_as(m, dtype):
        m.load_state_dict({k: v.astype(dtype) for k, v in m.state_dict().items()})

    G = "npgpt.GPT"
    cases += [(G, "T = 0", lambda: gpt().forward(np.zeros((1, 0), int))),
              (G, "B = 0", lambda: gpt().forward(np.zeros((0, 2), int))),
              (G, "float ids", lambda: gpt().forward(f32(1, 2))),
              (G, "a string", lambda: gpt().forward("hello")),
              (G, "an id too large", lambda: gpt().forward(np.full((1, 2), V))),
              (G, "T > block_size", lambda: gpt().forward(ids(1, 9))),
              (G, "targets mis-shaped", lambda: gpt().forward(ids(1, 2), ids(1, 3))),
              (G, "backward before forward", lambda: gpt().backward()),
              (G, "backward with mis-shaped dlogits",
               lambda: backward_after_forward(gpt(), f32(1, 3, V))),
              (G, "backward with integer dlogits",
               lambda: backward_after_forward(gpt(), np.zeros((1, 2, V), int))),
              (G, "backward with a list",
               lambda: backward_after_forward(gpt(), [1.0])),
              (G, "load_state_dict of a list", lambda: gpt().load_state_dict([1, 2])),
              (G, "load_state_dict of int32 weights", lambda: load_as(gpt(), np.int32)),
              (G, "load_state_dict with a missing key", lambda: gpt().load_state_dict({})),
              (G, "generate(top_k=2.5)", lambda: gpt().generate(ids(1, 2), 2, top_k=2.5)),
              (G, "generate(temperature=nan)",
               lambda: gpt().generate(ids(1, 2), 2, temperature=float("nan"))),
              (G, "generate(max_new_tokens='3')", lambda: gpt().generate(ids(1, 2), "3")),
              (G, "generate of an empty prompt", lambda: gpt().generate(np.zeros((1, 0), int), 2)),
              (G, "generate(stop_token=-5)", lambda: gpt().generate(ids(1, 2), 2, stop_token=-5)),
              (G, "config not a GPTConfig", lambda: models.GPT({"n_layer": 1}))]
    for field, bad in (("dropout", "x"), ("n_layer", 2.5), ("n_head", "2"), ("norm_eps", "1e-5"),
                       ("bias", 1), ("pos", None), ("dtype", "float16"), ("n_kv_head", 0),
                       ("rope_theta", float("inf")), ("vocab_size", True)):
        cases.append(("npgpt.GPTConfig", f"{field}={bad!r}",
                      lambda field=field, bad=bad: models.GPTConfig(**{field: bad})))
    cases += [("npgpt.GPTConfig", "unknown preset", lambda: models.GPTConfig.preset("gpt5")),
              ("npgpt.count_params", "not a config", lambda: models.count_params({"n_layer": 1})),
              ("npgpt.models.params_formula", "not a config",
               lambda: models.params_formula("gpt2"))]
    cases += [("npgpt.models.Seq2SeqConfig", "n_head='x'", lambda: models.Seq2SeqConfig(n_head="x")),
              ("npgpt.models.Transformer", "src float", lambda: models.Transformer(
                  models.Seq2SeqConfig()).forward(f32(1, 3), ids(1, 3, high=32))),
              ("npgpt.models.TextClassifier", "idx float", lambda: models.TextClassifier(
                  V, 8).forward(f32(1, 3))),
              ("npgpt.models.TextClassifier", "n_head='x'", lambda: models.TextClassifier(
                  V, 8, n_head="x"))]
    cases += [("npgpt.from_pretrained", "not a directory", lambda: npgpt.from_pretrained("/nonexistent")),
              ("npgpt.from_pretrained", "a number", lambda: npgpt.from_pretrained(3)),
              ("npgpt.save_pretrained", "not a model", lambda: npgpt.save_pretrained("model", "/tmp/x")),
              ("npgpt.gradcheck", "not a module", lambda: npgpt.gradcheck("f", f32(2))),
              ("npgpt.Parameter", "a string", lambda: npgpt.Parameter("weights"))]

    # tokenizers
    def char():
        return tokenizers.get("char", text="abc")
    for tok_name in ("char", "cl100k_base"):
        tok = (lambda: char()) if tok_name == "char" else (lambda: tokenizers.get("cl100k_base"))
        for label, value in (("[1.7]", [1.7]), ("[True]", [True]), ("5", 5), ("['a']", ["a"]),
                             ("[-1]", [-1]), ("[10**9]", [10**9])):
            cases.append(("npgpt.tokenizers.get", f"{tok_name} decode({label})",
                          lambda tok=tok, value=value: tok().decode(value)))
        for label, value in (("None", None), ("bytes", b"ab"), ("5", 5)):
            cases.append(("npgpt.tokenizers.get", f"{tok_name} encode({label})",
                          lambda tok=tok, value=value: tok().encode(value)))
    cases += [("npgpt.tokenizers.get", "unknown name", lambda: tokenizers.get("nope")),
              ("npgpt.tokenizers.get", "a number", lambda: tokenizers.get(5)),
              ("npgpt.tokenizers.load", "missing file", lambda: tokenizers.load("/nonexistent.bpe")),
              ("npgpt.tokenizers.ByteBPE", "train vocab_size='x'",
               lambda: tokenizers.ByteBPE.train("abc abc", "x")),
              ("npgpt.tokenizers.ByteBPE", "train vocab_size=-1",
               lambda: tokenizers.ByteBPE.train("abc abc", -1)),
              ("npgpt.tokenizers.ByteBPE", "train text None",
               lambda: tokenizers.ByteBPE.train(None, 300)),
              ("npgpt.tokenizers.ClassicBPE", "train text None",
               lambda: tokenizers.ClassicBPE.train(None, 10)),
              ("npgpt.tokenizers.ClassicBPE", "train num_merges=-1",
               lambda: tokenizers.ClassicBPE.train("a b", -1)),
              ("npgpt.tokenizers.CharTokenizer", "train text 5",
               lambda: tokenizers.CharTokenizer.train(5)),
              ("npgpt.tokenizers.TiktokenTokenizer", "unknown encoding",
               lambda: tokenizers.TiktokenTokenizer("p50k_nope"))]

    # generate, train, io, optim, data
    from npgpt import data, io, optim
    from npgpt import trainer as train
    from npgpt import generate as gen
    logits = f32(2, V)
    cases += [("npgpt.generate.generate", "prompt a string", lambda: gen.generate(gpt(), "hi", 2)),
              ("npgpt.generate.generate", "ragged prompt", lambda: gen.generate(gpt(), [[1], [1, 2]], 2)),
              ("npgpt.generate.generate", "seed=-1", lambda: gen.generate(gpt(), ids(1, 2), 2, seed=-1)),
              ("npgpt.generate.generate", "top_p=2", lambda: gen.generate(gpt(), ids(1, 2), 2, top_p=2)),
              ("npgpt.generate.sample_next", "temperature='hot'",
               lambda: gen.sample_next(logits, R, temperature="hot")),
              ("npgpt.generate.filter_logits", "top_k=0", lambda: gen.filter_logits(logits, top_k=0)),
              ("npgpt.generate.filter_logits", "1-D logits", lambda: gen.filter_logits(logits[0], 2)),
              ("npgpt.generate.softmax_with_temperature", "temperature=nan",
               lambda: gen.softmax_with_temperature(logits, float("nan"))),
              ("npgpt.generate.softmax_with_temperature", "temperature=-1",
               lambda: gen.softmax_with_temperature(logits, -1))]
    for field, bad in (("beta1", "x"), ("lr", float("nan")), ("max_steps", 0), ("seed", 1.5),
                       ("progress", "no"), ("out_dir", 3), ("data_parallel", "maybe")):
        cases.append(("npgpt.trainer.TrainConfig", f"{field}={bad!r}",
                      lambda field=field, bad=bad: train.TrainConfig(**{field: bad})))
    small = train.TrainConfig(batch_size=2, block_size=8, max_steps=2, progress=False, plot=False)
    cases += [("npgpt.trainer.Trainer", "data too short",
               lambda: train.Trainer(gpt(), np.arange(5), None, small)),
              ("npgpt.trainer.Trainer", "config a dict",
               lambda: train.Trainer(gpt(), np.arange(100) % V, None, {"lr": 1})),
              ("npgpt.trainer.Trainer", "data a string",
               lambda: train.Trainer(gpt(), "some text", None, small)),
              ("npgpt.trainer.Trainer", "resume from nowhere",
               lambda: train.Trainer(gpt(), np.arange(100) % V, None, small).resume("/nonexistent"))]
    cases += [("npgpt.io.load_checkpoint", "missing", lambda: io.load_checkpoint("/nonexistent")),
              ("npgpt.io.resolve_checkpoint", "missing", lambda: io.resolve_checkpoint("/nonexistent")),
              ("npgpt.io.load_safetensors", "missing", lambda: io.load_safetensors("/nonexistent")),
              ("npgpt.io.load_json", "missing", lambda: io.load_json("/nonexistent.json")),
              ("npgpt.io.save_json", "NaN", lambda: io.save_json("/tmp/npgpt-faults.json", {"x": np.nan})),
              ("npgpt.io.save_safetensors", "a list", lambda: io.save_safetensors(
                  "/tmp/npgpt-faults.safetensors", {"w": [1.0]})),
              ("npgpt.io.save_checkpoint", "non-finite weights", lambda: io.save_checkpoint(
                  "/tmp/npgpt-faults-ckpt", {}, {"w": np.array([np.nan])}, {}, {}))]
    p = npgpt.Parameter(np.zeros(3, np.float32))
    cases += [("npgpt.optim.SGD", "lr='x'", lambda: optim.SGD([p], lr="x")),
              ("npgpt.optim.SGD", "lr=-1", lambda: optim.SGD([p], lr=-1)),
              ("npgpt.optim.Adam", "betas=(2, 0)", lambda: optim.Adam([p], betas=(2, 0))),
              ("npgpt.optim.AdamW", "lr=nan", lambda: optim.AdamW([p], lr=float("nan"))),
              ("npgpt.optim.AdamW", "params not parameters", lambda: optim.AdamW([np.zeros(3)])),
              ("npgpt.optim.AdamW", "load_state_dict of a list",
               lambda: optim.AdamW([p]).load_state_dict([1])),
              ("npgpt.optim.cosine_schedule", "warmup_steps=-1",
               lambda: optim.cosine_schedule(1, 1e-3, 1e-4, -1, 10)),
              ("npgpt.optim.cosine_schedule", "step='x'",
               lambda: optim.cosine_schedule("x", 1e-3, 1e-4, 1, 10)),
              ("npgpt.optim.wsd_schedule", "cooldown_frac=0",
               lambda: optim.wsd_schedule(50, 1e-3, 1e-4, 1, 100, cooldown_frac=0.0)),
              ("npgpt.optim.wsd_schedule", "cooldown='cubic'",
               lambda: optim.wsd_schedule(99, 1e-3, 1e-4, 1, 100, cooldown="cubic")),
              ("npgpt.optim.schedule_lr", "schedule='step'",
               lambda: optim.schedule_lr(0.5, 10, 1e-3, 1e-4, 1, schedule="step")),
              ("npgpt.optim.schedule_lr", "progress='x'",
               lambda: optim.schedule_lr("x", 10, 1e-3, 1e-4, 1)),
              ("npgpt.optim.clip_grad_norm", "max_norm=-1", lambda: optim.clip_grad_norm([p], -1)),
              ("npgpt.optim.clip_grad_norm", "max_norm='x'", lambda: optim.clip_grad_norm([p], "x"))]
    cases += [("npgpt.data.get_batch", "data too short", lambda: data.get_batch(np.arange(4), 2, 8, R)),
              ("npgpt.data.get_batch", "batch_size=0", lambda: data.get_batch(np.arange(40), 0, 8, R)),
              ("npgpt.data.get_batch", "block_size='x'", lambda: data.get_batch(np.arange(40), 2, "x", R)),
              ("npgpt.data.get_batch", "float data", lambda: data.get_batch(np.arange(40.0) + 0.5, 2, 8, R)),
              ("npgpt.data.tokenize", "text None", lambda: data.tokenize(None, char())),
              ("npgpt.data.tokenize", "not a tokenizer", lambda: data.tokenize("abc", "char"))]
    cases += run_cases()
    return cases


def run_cases():
    """npgpt.train / sample / eval: the options of the commands as keywords, refused before
    anything is written (the output directory is never created)."""
    out = "/nonexistent/npgpt-faults-run"
    train = [("max_steps='x'", dict(max_steps="x")), ("n_layer=0", dict(n_layer=0)),
             ("lr=nan", dict(lr=float("nan"))), ("an unknown option", dict(n_layers=2)),
             ("data=''", dict(data="")), ("resume=''", dict(resume="")),
             ("pos='abs'", dict(pos="abs")), ("preset='huge'", dict(preset="huge")),
             ("lora_rank without init_from", dict(lora_rank=4)),
             ("lora_alpha without lora_rank", dict(lora_alpha=8.0)),
             ("quantize='int4'", dict(quantize="int4", lora_rank=4)),
             ("quantize without lora_rank", dict(quantize="int8")),
             ("a missing data file", dict(data="/nonexistent.txt"))]
    sample = [("a missing checkpoint", dict(ckpt="/nonexistent/run")),
              ("temperature=-1", dict(temperature=-1.0)), ("top_p=2", dict(top_p=2.0)),
              ("num_samples=0", dict(num_samples=0)), ("an unknown option", dict(tokens=3)),
              ("ckpt=''", dict(ckpt=""))]
    evaluate = [("a missing checkpoint", dict(ckpt="/nonexistent/run")),
                ("block=0", dict(block=0)), ("an unknown option", dict(window=8))]
    return ([("npgpt.train", label, lambda kw=kw: npgpt.train(out_dir=out, **kw))
             for label, kw in train]
            + [("npgpt.sample", label, lambda kw=kw: npgpt.sample(**kw)) for label, kw in sample]
            + [("npgpt.eval", label, lambda kw=kw: npgpt.eval(**kw)) for label, kw in evaluate])


CASES = _cases()


def test_every_entry_point_has_cases():
    covered = {name for name, _, _ in CASES}
    missing = [e for e in entry_points() if e not in covered]
    assert not missing, f"entry points without fault cases: {missing}"


@pytest.mark.parametrize("name,label,call", CASES, ids=[f"{n} {lab}" for n, lab, _ in CASES])
def test_bad_arguments_raise_npgpt_errors(name, label, call):
    try:
        call()
    except NpgptError as e:
        assert str(e) and "\n" not in str(e).strip()
    except Exception as e:  # noqa: BLE001 (a raw error from inside: what the campaign seeks)
        pytest.fail(f"{name} {label}: {type(e).__name__}: {e}")
    else:
        pytest.fail(f"{name} {label}: accepted silently")
