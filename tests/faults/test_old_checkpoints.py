"""A checkpoint written before fields were added to GPTConfig and TrainConfig (config.json and
trainer.json as npgpt first wrote them) still loads, samples and resumes, each added field
taking the value that reproduces the run as it was; a file missing an original field is still
refused (test_faults_checkpoints)."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from npgpt.models import GPTConfig
from npgpt.models.gpt import ADDED_FIELDS as CONFIG_ADDED
from npgpt.train_config import ADDED_FIELDS as TRAIN_ADDED, TrainConfig
from npgpt.trainer_state import OPTIONAL

from npgpt.cli import main

from .conftest import TINY, run_cli

# the fields of the first checkpoint format: every field since is declared in ADDED_FIELDS
FIRST_CONFIG = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_kv_head", "pos",
                "norm", "prenorm", "mlp", "mlp_hidden", "bias", "tie_embeddings", "dropout",
                "rope_theta", "rope_layout", "norm_eps", "init_std", "dtype"}
FIRST_TRAIN = {"batch_size", "block_size", "max_steps", "lr", "min_lr", "warmup_steps",
               "weight_decay", "beta1", "beta2", "eps", "grad_clip", "grad_accum",
               "eval_interval", "eval_steps", "log_interval", "seed", "out_dir",
               "save_checkpoints", "progress", "plot", "data_parallel", "zero"}


@pytest.mark.parametrize("cls,first,added", [(GPTConfig, FIRST_CONFIG, CONFIG_ADDED),
                                             (TrainConfig, FIRST_TRAIN, TRAIN_ADDED)])
def test_every_field_is_first_or_declared_added(cls, first, added):
    names = {f.name for f in dataclasses.fields(cls)}
    assert names - first == set(added), "a new field needs its value-when-absent in ADDED_FIELDS"
    assert first <= names


def test_the_added_values_are_valid():
    GPTConfig(**CONFIG_ADDED)
    TrainConfig(**TRAIN_ADDED)


def _rewrite(run, edit_config, edit_train):
    ckpt = run / "checkpoint"
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(edit_config(config)))
    state = json.loads((ckpt / "trainer.json").read_text())
    state["train_config"] = edit_train(state["train_config"])
    if edit_train is _first_train:
        for key in OPTIONAL:               # (written since: train_time)
            state.pop(key, None)
    (ckpt / "trainer.json").write_text(json.dumps(state))


def _first_config(d):
    return {k: v for k, v in d.items() if k in FIRST_CONFIG}


def _first_train(d):
    return {k: v for k, v in d.items() if k in FIRST_TRAIN}


def _spelled_out(added):
    return lambda d: {**d, **added}


def _sample_and_resume(run, corpus, capsys):
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(run), "--max-new-tokens", "8", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert text.strip()
    code = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "3",
                    "--no-progress", "--no-plot"], capsys)
    assert code == (0, "")
    return text, load_file(str(run / "checkpoint" / "model.safetensors"))


@pytest.fixture(scope="module")
def first_kind(tmp_path_factory, corpus):
    """A 2-step run of a model and recipe the first format could hold (GPT-2-style, AdamW
    with a cosine schedule: the baby preset), written today."""
    out = tmp_path_factory.mktemp("first") / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--preset", "baby",
                 "--max-steps", "2", *TINY]) == 0
    return out


def test_a_checkpoint_of_the_first_format_loads_samples_and_resumes(first_kind, corpus,
                                                                    tmp_path, capsys):
    trained = first_kind
    old, spelled = tmp_path / "old", tmp_path / "spelled"
    shutil.copytree(trained, old)
    shutil.copytree(trained, spelled)
    _rewrite(old, _first_config, _first_train)
    assert set(json.loads((old / "checkpoint" / "config.json").read_text())) == FIRST_CONFIG
    # the same checkpoint with each added field given the value ADDED_FIELDS declares
    _rewrite(spelled, _spelled_out(CONFIG_ADDED), _spelled_out(TRAIN_ADDED))
    text_old, weights_old = _sample_and_resume(old, corpus, capsys)
    text_spelled, weights_spelled = _sample_and_resume(spelled, corpus, capsys)
    assert text_old == text_spelled
    assert sorted(weights_old) == sorted(weights_spelled)
    for name in weights_old:
        np.testing.assert_array_equal(weights_old[name], weights_spelled[name])
    state = json.loads((old / "checkpoint" / "trainer.json").read_text())
    assert state["step"] == 3 and set(TRAIN_ADDED) <= set(state["train_config"])
