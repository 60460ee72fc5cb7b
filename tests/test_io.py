import json
import struct

import numpy as np
import pytest

from npgpt import io
from npgpt.errors import CheckpointError
from npgpt.io import (
    load_checkpoint,
    load_safetensors,
    read_safetensors_header,
    save_checkpoint,
    save_safetensors,
)


def _state(rng, scale=1.0):
    return {"wte.weight": (rng.standard_normal((7, 4)) * scale).astype(np.float32),
            "h.0.ln_1.bias": np.zeros(4, np.float32) + scale,
            "h.0.attn.c_attn.weight": rng.standard_normal((4, 12)).astype(np.float64)}


def _save(path, rng, scale=1.0, tokenizer_file=None):
    model = _state(rng, scale)
    optim = {"step": np.array(3, np.int64), "m.wte.weight": np.ones((7, 4), np.float32) * scale}
    trainer = {"step": 10, "rng": np.random.default_rng(5).bit_generator.state,
               "tokenizer": {"name": "char", "vocab_size": 7}, "loss": np.float32(1.5)}
    save_checkpoint(path, {"n_layer": 1, "n_embd": 4}, model, optim, trainer, tokenizer_file)
    return model, optim, trainer


def test_checkpoint_round_trip_is_exact(tmp_path, rng):
    tok = tmp_path / "vocab.json"
    tok.write_text('{"chars": "abc"}')
    model, optim, _ = _save(tmp_path / "ckpt", rng, tokenizer_file=tok)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
        "trainer.json"]
    ck = load_checkpoint(tmp_path / "ckpt", expect_model=model, expect_optimizer=optim)
    assert ck.config == {"n_layer": 1, "n_embd": 4}
    for k, v in model.items():
        assert ck.model_state[k].dtype == v.dtype and np.array_equal(ck.model_state[k], v)
    assert ck.optimizer_state["step"].shape == () and int(ck.optimizer_state["step"]) == 3
    # the RNG state survives JSON (128-bit integers included) and restores the same stream
    g = np.random.default_rng()
    g.bit_generator.state = ck.trainer_state["rng"]
    assert np.array_equal(g.integers(0, 1 << 30, 8), np.random.default_rng(5).integers(0, 1 << 30, 8))
    assert ck.trainer_state["loss"] == 1.5
    assert ck.tokenizer_path.read_text() == '{"chars": "abc"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "vocab.json"]   # no temp dirs


def test_a_new_save_replaces_the_old_checkpoint(tmp_path, rng):
    _save(tmp_path / "ckpt", rng, scale=1.0)
    _save(tmp_path / "ckpt", rng, scale=2.0)
    ck = load_checkpoint(tmp_path / "ckpt")
    assert np.all(ck.model_state["h.0.ln_1.bias"] == 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]        # no leftovers


def test_a_save_killed_midway_leaves_the_old_checkpoint_intact(tmp_path, rng, monkeypatch):
    _save(tmp_path / "ckpt", rng, scale=1.0)
    real = io.save_safetensors

    def dies_on_the_optimizer(path, tensors, metadata=None):
        if path.name == "optimizer.safetensors":
            real(path, tensors)
            with open(path, "r+b") as f:        # half-written, then the process dies
                f.truncate(40)
            raise KeyboardInterrupt
        real(path, tensors, metadata)

    monkeypatch.setattr(io, "save_safetensors", dies_on_the_optimizer)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "ckpt", rng, scale=2.0)
    monkeypatch.undo()
    ck = load_checkpoint(tmp_path / "ckpt")
    assert np.all(ck.model_state["h.0.ln_1.bias"] == 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_crash_between_the_two_renames_still_finds_the_previous_checkpoint(tmp_path, rng,
                                                                              monkeypatch):
    _save(tmp_path / "ckpt", rng, scale=1.0)
    real_rename, calls = io.os.rename, []

    def crash_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", crash_on_second_rename)
    with pytest.raises(CheckpointError, match="power cut; the previous checkpoint is kept"):
        _save(tmp_path / "ckpt", rng, scale=2.0)
    monkeypatch.undo()
    assert not (tmp_path / "ckpt").exists()
    assert np.all(load_checkpoint(tmp_path / "ckpt").model_state["h.0.ln_1.bias"] == 1.0)
    _save(tmp_path / "ckpt", rng, scale=3.0)                  # the next save recovers
    assert np.all(load_checkpoint(tmp_path / "ckpt").model_state["h.0.ln_1.bias"] == 3.0)


def test_a_truncated_tensor_file_is_a_clear_error(tmp_path, rng):
    _save(tmp_path / "ckpt", rng)
    f = tmp_path / "ckpt" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="model.safetensors: tensor .* the file is truncated"):
        load_checkpoint(tmp_path / "ckpt")
    f.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short to be a safetensors file"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_corrupted_header_is_a_clear_error(tmp_path, rng):
    _save(tmp_path / "ckpt", rng)
    f = tmp_path / "ckpt" / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[9] = ord("#")                                           # inside the JSON header
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted safetensors header"):
        load_checkpoint(tmp_path / "ckpt")
    f.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="header length 1000000000 is larger than the file"):
        load_checkpoint(tmp_path / "ckpt")


def test_an_entry_whose_size_does_not_match_its_shape_is_rejected(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}).encode()
    f = tmp_path / "w.safetensors"
    f.write_bytes(struct.pack("<Q", len(header)) + header + bytes(20))
    with pytest.raises(CheckpointError, match=r"'w' of shape \[2, 3\] F32 needs 24 bytes"):
        read_safetensors_header(f)


def test_bad_json_and_missing_files_are_clear_errors(tmp_path, rng):
    _save(tmp_path / "ckpt", rng)
    (tmp_path / "ckpt" / "trainer.json").write_text('{"step": 1,')
    with pytest.raises(CheckpointError, match="trainer.json is not valid JSON"):
        load_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete: missing config.json"):
        load_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


def test_mismatched_tensor_names_and_shapes_are_all_named(tmp_path, rng):
    model, _, _ = _save(tmp_path / "ckpt", rng)
    expected = dict(model)
    expected["wte.weight"] = np.zeros((8, 4))
    expected["lm_head.weight"] = np.zeros((4, 7))
    del expected["h.0.ln_1.bias"]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "ckpt", expect_model=expected)
    msg = str(e.value)
    assert "missing tensors: lm_head.weight" in msg
    assert "unexpected tensors: h.0.ln_1.bias" in msg
    assert "wte.weight: file (7, 4) vs expected (8, 4)" in msg


def test_save_safetensors_validates_and_loads_without_pickle(tmp_path):
    with pytest.raises(CheckpointError, match="'w' is a list, expected a NumPy array"):
        save_safetensors(tmp_path / "x.safetensors", {"w": [1, 2]})
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T          # not contiguous
    save_safetensors(tmp_path / "x.safetensors", {"w": a}, metadata={"format": "np"})
    out = load_safetensors(tmp_path / "x.safetensors", expected={"w": (4, 3)})
    assert np.array_equal(out["w"], a)
    save_safetensors(tmp_path / "empty.safetensors", {})
    assert load_safetensors(tmp_path / "empty.safetensors") == {}


def test_non_finite_values_in_trainer_state_are_refused(tmp_path, rng):
    with pytest.raises(CheckpointError, match="as JSON"):
        save_checkpoint(tmp_path / "ckpt", {}, _state(rng), {}, {"loss": float("nan")})
    assert not (tmp_path / "ckpt").exists() and not list(tmp_path.iterdir())
