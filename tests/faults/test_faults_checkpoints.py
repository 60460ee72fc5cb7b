"""Damaged checkpoints: every case is refused at load with exit 2 and one line naming the
file, never a traceback, never exit 0 with garbage (npgpt sample and npgpt train --resume)."""
import json
import math
import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npgpt.models import GPTConfig
from npgpt.models.gpt import ADDED_FIELDS as CONFIG_ADDED
from npgpt.train_config import ADDED_FIELDS as TRAIN_ADDED
from npgpt.trainer import TrainConfig
from npgpt.trainer_state import OPTIONAL, TRAINER_FIELDS

from .conftest import TINY, run_cli

TENSOR_FILES = ("model.safetensors", "optimizer.safetensors")


def sample(run, capsys):
    return run_cli(["sample", "--ckpt", run, "--max-new-tokens", "2", "--seed", "0"], capsys)


def resume(run, corpus, capsys, steps=3):
    return run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", steps,
                    "--no-progress", "--no-plot"], capsys)


def refused(run, corpus, capsys, name, both=True):
    """Both commands exit 2 with one line naming the damaged file ``name``."""
    for command in ((sample, resume) if both else (sample,)):
        code, err = command(run, corpus, capsys) if command is resume else command(run, capsys)
        assert code == 2, f"{command.__name__} exited {code} on a damaged {name}"
        assert name in err, err


def header_length(path):
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


# --- truncations, header lengths, header garbage ---------------------------------------------

@pytest.mark.parametrize("name", TENSOR_FILES)
@pytest.mark.parametrize("cut", ["empty", "4", "8", "9", "header-1", "header", "data/2", "end-1"])
def test_truncated_tensor_file_is_refused(run, corpus, capsys, name, cut):
    path = run / "checkpoint" / name
    raw = path.read_bytes()
    n = 8 + header_length(path)
    keep = {"empty": 0, "4": 4, "8": 8, "9": 9, "header-1": n - 1, "header": n,
            "data/2": n + (len(raw) - n) // 2, "end-1": len(raw) - 1}[cut]
    path.write_bytes(raw[:keep])
    refused(run, corpus, capsys, name, both=cut in ("empty", "data/2"))


@pytest.mark.parametrize("name", TENSOR_FILES)
@pytest.mark.parametrize("length", [0, 1, -1, +1, 2**40, 2**64 - 1])
def test_wrong_header_length_is_refused(run, corpus, capsys, name, length):
    path = run / "checkpoint" / name
    raw = bytearray(path.read_bytes())
    n = header_length(path)
    value = n + length if length in (-1, 1) else length
    raw[:8] = struct.pack("<Q", value)
    path.write_bytes(bytes(raw))
    refused(run, corpus, capsys, name, both=False)


def _edit_header(path, edit):
    raw = path.read_bytes()
    n = header_length(path)
    header = json.loads(raw[8:8 + n])
    new = json.dumps(edit(header)).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def _first(header):
    return next(k for k in header if k != "__metadata__")


HEADER_EDITS = {
    "not an object": lambda h: [1, 2],
    "dtype I32": lambda h: {**h, _first(h): {**h[_first(h)], "dtype": "I32"}},
    "dtype F16": lambda h: {**h, _first(h): {**h[_first(h)], "dtype": "F16"}},
    "dtype unknown": lambda h: {**h, _first(h): {**h[_first(h)], "dtype": "Q7"}},
    "shape grown": lambda h: {**h, _first(h): {**h[_first(h)],
                                               "shape": h[_first(h)]["shape"] + [2]}},
    "shape negative": lambda h: {**h, _first(h): {**h[_first(h)], "shape": [-1]}},
    "shape a string": lambda h: {**h, _first(h): {**h[_first(h)], "shape": "big"}},
    "offsets reversed": lambda h: {**h, _first(h): {**h[_first(h)], "data_offsets":
                                                    h[_first(h)]["data_offsets"][::-1]}},
    "offsets missing": lambda h: {**h, _first(h): {"dtype": "F32", "shape": [1]}},
    "tensor renamed": lambda h: {("x" + k if k == _first(h) else k): v for k, v in h.items()},
    "tensor removed": lambda h: {k: v for k, v in h.items() if k != _first(h)},
    "tensor added": lambda h: {**h, "extra": {"dtype": "F32", "shape": [0],
                                              "data_offsets": [0, 0]}},
}


@pytest.mark.parametrize("name", TENSOR_FILES)
@pytest.mark.parametrize("edit", sorted(HEADER_EDITS))
def test_header_edits_are_refused(run, corpus, capsys, name, edit):
    _edit_header(run / "checkpoint" / name, HEADER_EDITS[edit])
    refused(run, corpus, capsys, name, both=edit in ("dtype I32", "tensor renamed"))


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=64), at=st.integers(0, 10**6))
def test_header_garbage_is_refused(run, capsys, garbage, at):
    path = run / "checkpoint" / "model.safetensors"
    good = path.read_bytes()
    try:
        n = header_length(path)
        at = 8 + at % n
        damaged = good[:at] + garbage + good[at + len(garbage):]
        if damaged[:8 + n] == good[:8 + n]:
            return
        path.write_bytes(damaged[:len(good)])
        code, err = sample(run, capsys)
        assert code == 2 and "model.safetensors" in err
    finally:
        path.write_bytes(good)


# --- bit flips in the data region -------------------------------------------------------------

@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(byte=st.integers(0, 10**9), bit=st.integers(0, 7),
       name=st.sampled_from(TENSOR_FILES))
def test_bit_flips_in_the_data_are_refused_when_they_make_a_value_non_finite(
        run, capsys, byte, bit, name):
    path = run / "checkpoint" / name
    good = path.read_bytes()
    try:
        start = 8 + header_length(path)
        at = start + byte % (len(good) - start)
        raw = bytearray(good)
        raw[at] ^= 1 << bit
        path.write_bytes(bytes(raw))
        from safetensors.numpy import load_file
        finite = all(np.isfinite(v).all() for v in load_file(str(path)).values()
                     if v.dtype.kind == "f")
        code, err = sample(run, capsys)
        # a flip to another finite number is a different weight, not detectable damage
        assert code == (0 if finite else 2), err
        if not finite:
            assert name in err and "NaN or infinite" in err
    finally:
        path.write_bytes(good)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", TENSOR_FILES)
def test_a_non_finite_tensor_value_is_refused_at_load(run, corpus, capsys, name, value):
    from safetensors.numpy import load_file, save_file
    path = run / "checkpoint" / name
    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.dtype.kind == "f" and v.size)
    tensors[key].flat[0] = value
    save_file(tensors, str(path))
    refused(run, corpus, capsys, name)


# --- missing files -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "optimizer.safetensors",
                                  "trainer.json", "tokenizer.json", "checkpoint"])
def test_a_missing_file_is_refused(run, corpus, capsys, name):
    target = run / "checkpoint" / name if name != "checkpoint" else run / "checkpoint"
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    code, err = sample(run, capsys)
    assert code == 2 and (name in err or "no checkpoint" in err or "tokenizer" in err), err
    if name != "tokenizer.json":
        code, err = resume(run, corpus, capsys)
        assert code == 2 and (name in err or "no checkpoint" in err), err


# --- every config.json and trainer.json field: wrong type, wrong range, removed --------------

def _wrong(value):
    """(label, value) pairs of the wrong type for a field holding ``value``."""
    if isinstance(value, bool):
        return [("type", "yes"), ("type", 1)]
    if isinstance(value, int):
        return [("type", str(value)), ("type", float(value) + 0.5), ("type", True)]
    if isinstance(value, float):
        return [("type", str(value)), ("type", [value])]
    if isinstance(value, str):
        return [("type", 1), ("type", None)]
    return [("type", "x"), ("type", 7)]


# out-of-range values, per field (a value that is valid but merely different would be a
# different model, which the tensors' shapes then refuse: listed here are invalid ones)
CONFIG_RANGES = {
    "vocab_size": [0, -1], "block_size": [0], "n_layer": [0, -3], "n_head": [0, 5],
    "n_embd": [0, -16], "n_kv_head": [0, 3], "pos": ["spiral"], "norm": ["batchnorm"],
    "mlp": ["tanh"], "mlp_hidden": [0, -1], "dropout": [1.0, -0.1], "rope_theta": [0.0, -1.0],
    "rope_layout": ["diagonal"], "norm_eps": [0.0, -1e-5], "init_std": [-0.02],
    "dtype": ["float16", "int32"], "logit_softcap": [0.0, -30.0],
    "head_dim": [0, -8], "attn_scalar": [0.0, -1.0], "sliding_window": [0, -4],
    "layer_types": ["s", "ff", "g"], "rope_layers": ["2", "11"], "rope_local_theta": [0.0, -1.0],
    "rope_scaling": ["ntk", "yarn"], "rope_factor": [0.0, -2.0],
    "rope_low_freq_factor": [0.0, -1.0], "rope_high_freq_factor": [0.0, -4.0],
    "rope_original_context": [0, -1],
}
TRAIN_RANGES = {
    "batch_size": [0, -2], "block_size": [0, 17], "max_steps": [0, 1], "lr": [-1.0],
    "min_lr": [-1.0, 1.0], "warmup_steps": [-1], "weight_decay": [-0.1], "beta1": [1.0, -0.5],
    "beta2": [1.5], "eps": [0.0], "grad_clip": [-1.0], "grad_accum": [0], "eval_interval": [0],
    "eval_steps": [0], "log_interval": [0], "seed": [-1], "out_dir": [""],
    "data_parallel": ["sometimes"], "schedule": ["step"], "cooldown": ["cubic"],
    "cooldown_frac": [0.0, 1.5], "time_budget": ["0", "-1m", "5x"], "optimizer": ["sgd"], "budget_clock": ["gpu"],
    "muon_lr": [-1.0], "muon_momentum": [1.0, -0.5], "muon_weight_decay": [-0.1],
    "stats_interval": [-1],
}
# fields whose default is null: the wrong types of the value they hold when set
NULLABLE_WRONG = {"logit_softcap": [("type", "x"), ("type", [30.0]), ("type", True)],
                  **{f: [("type", "x"), ("type", [7.0]), ("type", True)]
                     for f in ("attn_scalar", "rope_local_theta")},
                  **{f: [("type", "x"), ("type", 7.5), ("type", True)]
                     for f in ("head_dim", "sliding_window")},
                  "time_budget": [("type", [300]), ("type", True), ("type", {"m": 5})]}
TRAINER_VALUES = {
    "step": [-1, 10**9, "2", 2.0, None], "sampler_rng": [{}, "pcg", {"bit_generator": "Nope"}],
    "model_rngs": [{}, [1], "x"], "best_val_loss": ["low", [1.0], True],
    "tokenizer": ["char", {"name": 3}, {"name": "char", "vocab_size": -1}],
    "data": ["x", {"train": 3}], "train_config": ["x", [], None], "npgpt_version": [1, None],
    "lora": ["x", 3, {"r": "eight"}, {"nope": 1}],
    "train_time": [-1.0, "5", True, None],
}


def _config_cases():
    defaults = GPTConfig(vocab_size=34, block_size=16, n_layer=1, n_head=2, n_embd=16).to_dict()
    for field, value in defaults.items():
        for label, bad in NULLABLE_WRONG.get(field) or _wrong(value):
            yield field, label, bad
        for bad in CONFIG_RANGES.get(field, []):
            yield field, "range", bad
        if field not in CONFIG_ADDED:    # (an added one, removed, is an older file: it loads)
            yield field, "removed", None


def _train_cases():
    for field, value in TrainConfig().__dict__.items():
        for label, bad in NULLABLE_WRONG.get(field) or _wrong(value):
            yield field, label, bad
        for bad in TRAIN_RANGES.get(field, []):
            yield field, "range", bad
        if field not in TRAIN_ADDED:
            yield field, "removed", None


def _edit_json(path, field, label, bad, within=None):
    obj = json.loads(path.read_text())
    target = obj if within is None else obj[within]
    if label == "removed":
        del target[field]
    else:
        target[field] = bad
    path.write_text(json.dumps(obj))


CONFIG_CASES = list(_config_cases())
TRAIN_CASES = list(_train_cases())


def test_every_field_has_cases():
    assert {f for f, _, _ in CONFIG_CASES} == set(GPTConfig.__dataclass_fields__)
    assert {f for f, _, _ in TRAIN_CASES} == set(TrainConfig.__dataclass_fields__)
    assert set(TRAINER_VALUES) == set(TRAINER_FIELDS)
    for field in GPTConfig.__dataclass_fields__:   # a range case for every field that has one
        if field not in ("prenorm", "bias", "tie_embeddings", "zero_init_proj", "qkv_bias",
                         "qk_norm", "norm_plus_one", "sandwich_norm", "embed_scale"):
            assert field in CONFIG_RANGES, field


@pytest.mark.parametrize("field,label,bad", CONFIG_CASES,
                         ids=[f"{f}-{lab}-{b!r}" for f, lab, b in CONFIG_CASES])
def test_every_config_field_wrong_is_refused(run, corpus, capsys, field, label, bad):
    _edit_json(run / "checkpoint" / "config.json", field, label, bad)
    refused(run, corpus, capsys, "config.json")


@pytest.mark.parametrize("field,label,bad", TRAIN_CASES,
                         ids=[f"{f}-{lab}-{b!r}" for f, lab, b in TRAIN_CASES])
def test_every_train_config_field_wrong_is_refused(run, corpus, capsys, field, label, bad):
    _edit_json(run / "checkpoint" / "trainer.json", field, label, bad, within="train_config")
    if (field, bad) == ("max_steps", 1):   # below the checkpoint's step 2
        code, err = sample(run, capsys)
        assert code == 2 and "max_steps" in err
        return
    if field == "block_size" and label == "range" and bad == 17:   # longer than the model's
        code, err = resume(run, corpus, capsys)
        assert code == 2 and "block_size" in err
        return
    refused(run, corpus, capsys, "trainer.json")


TRAINER_CASES = [(k, v) for k, values in TRAINER_VALUES.items() for v in values] + [
    (k, "removed") for k in TRAINER_FIELDS if k not in OPTIONAL] + [("unknown_key", 1)]


@pytest.mark.parametrize("field,bad", TRAINER_CASES,
                         ids=[f"{f}-{b!r}" for f, b in TRAINER_CASES])
def test_every_trainer_field_wrong_is_refused(run, corpus, capsys, field, bad):
    label = "removed" if bad == "removed" else "set"
    _edit_json(run / "checkpoint" / "trainer.json", field, label, bad)
    refused(run, corpus, capsys, "trainer.json")


def test_an_undamaged_copy_loads(run, corpus, capsys):
    """The baseline the cases above damage: it samples and resumes."""
    assert sample(run, capsys)[0] == 0
    assert resume(run, corpus, capsys)[0] == 0
    assert math.isfinite(json.loads((run / "checkpoint" / "trainer.json").read_text())["step"])


def test_tiny_flags_checkpoint_every_step():
    assert TINY[TINY.index("--eval-interval") + 1] == "1"
