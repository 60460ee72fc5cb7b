"""Damaged checkpoints of a LoRA run on an int8 base (``--quantize int8 --lora-rank R``):
its int8 tensors, scales, quantization entry and adapters, each refused at load by npgpt
sample and npgpt train --resume with exit 2 and one line naming the file."""
import json
import shutil

import numpy as np
import pytest

from npgpt.cli import main
from npgpt.io import load_safetensors, save_safetensors

from .conftest import TINY, run_cli
from .test_faults_checkpoints import _edit_header, refused

LORA = ["--quantize", "int8", "--lora-rank", "2", "--batch-size", "2", "--block-size", "16",
        "--eval-steps", "1", "--eval-interval", "1", "--no-progress", "--no-plot"]


@pytest.fixture(scope="module")
def qlora(tmp_path_factory, corpus):
    """A 2-step LoRA run on the int8 base of a 2-step run 32 channels wide (int8 blocks of
    32)."""
    root = tmp_path_factory.mktemp("qlora")
    assert main(["train", "--data", str(corpus), "--out", str(root / "base"), "--max-steps",
                 "2", *TINY, "--n-embd", "32"]) == 0
    assert main(["train", "--data", str(corpus), "--init-from", str(root / "base"), "--out",
                 str(root / "run"), "--max-steps", "2", *LORA]) == 0
    return root / "run"


@pytest.fixture
def run(qlora, tmp_path):
    shutil.copytree(qlora, tmp_path / "run")
    return tmp_path / "run"


def test_an_undamaged_copy_samples_and_resumes(run, corpus, capsys):
    assert run_cli(["sample", "--ckpt", run, "--max-new-tokens", "2"], capsys) == (0, "")
    assert run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "3",
                    "--no-progress", "--no-plot"], capsys) == (0, "")


def _qweight(header):
    return next(k for k in header if k.endswith(".qweight"))


def _scales(header):
    return next(k for k in header if k.endswith(".scales"))


HEADER_EDITS = {
    "int8 weight as F32": lambda h: {**h, _qweight(h): {**h[_qweight(h)], "dtype": "F32"}},
    "int8 weight removed": lambda h: {k: v for k, v in h.items() if k != _qweight(h)},
    "scales mis-shaped": lambda h: {**h, _scales(h): {**h[_scales(h)],
                                                      "shape": h[_scales(h)]["shape"] + [1]}},
    "scales as I8": lambda h: {**h, _scales(h): {**h[_scales(h)], "dtype": "I8"}},
}


@pytest.mark.parametrize("edit", sorted(HEADER_EDITS))
def test_damaged_int8_tensors_are_refused(run, corpus, capsys, edit):
    _edit_header(run / "checkpoint" / "model.safetensors", HEADER_EDITS[edit])
    refused(run, corpus, capsys, "model.safetensors")


def test_negative_scales_are_refused(run, corpus, capsys):
    path = run / "checkpoint" / "model.safetensors"
    tensors = load_safetensors(path)
    name = next(k for k in tensors if k.endswith(".scales"))
    tensors[name] = -np.abs(tensors[name]) - 1
    save_safetensors(path, tensors)
    refused(run, corpus, capsys, "model.safetensors")


@pytest.mark.parametrize("entry", [{"scheme": "int4", "block": 32}, {"scheme": "int8",
                                   "block": 24}, "int8", {"scheme": "int8", "block": 16}])
def test_a_wrong_quantization_entry_is_refused(run, corpus, capsys, entry):
    path = run / "checkpoint" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "quantization": entry}))
    refused(run, corpus, capsys, "config.json" if entry != {"scheme": "int8", "block": 16}
            else "model.safetensors")       # blocks of 16: the scales do not fit


def test_adapters_without_their_lora_entry_are_refused(run, corpus, capsys):
    path = run / "checkpoint" / "trainer.json"
    state = json.loads(path.read_text())
    del state["lora"]
    path.write_text(json.dumps(state))
    refused(run, corpus, capsys, "model.safetensors")
