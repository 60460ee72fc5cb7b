"""A run that goes bad never replaces its last good checkpoint, and a command that would do
nothing says so instead of exiting 0."""
import json

import numpy as np
import pytest

from npgpt.errors import TrainingError
from npgpt.models import GPT, GPTConfig
from npgpt.trainer import TrainConfig, Trainer

from .conftest import run_cli


def step_of(run):
    return json.loads((run / "checkpoint" / "trainer.json").read_text())["step"]


@pytest.mark.parametrize("lr", ["1e6", "1e30"])
def test_a_runaway_learning_rate_keeps_the_last_good_checkpoint(run, corpus, capsys, lr):
    """Resumed with a learning rate that blows the weights up, evaluated at the poisoned
    step: no checkpoint is written from it, and the message says which step is kept."""
    code, err = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "6",
                         "--lr", lr, "--min-lr", "0", "--grad-clip", "0", "--no-progress",
                         "--no-plot"], capsys)
    assert code == 2
    kept = step_of(run)
    assert f"holds step {kept}" in err and "Traceback" not in err
    assert run_cli(["sample", "--ckpt", run, "--max-new-tokens", "2"], capsys)[0] == 0
    for name in ("model.safetensors", "optimizer.safetensors"):
        from safetensors.numpy import load_file
        assert all(np.isfinite(v).all() for v in load_file(str(run / "checkpoint" / name)).values()
                   if v.dtype.kind == "f")


def _tiny_trainer(tmp_path, **overrides):
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8))
    data = np.arange(400) % 16
    config = TrainConfig(batch_size=2, block_size=8, max_steps=4, eval_interval=2, eval_steps=1,
                         warmup_steps=0, progress=False, plot=False, out_dir=str(tmp_path),
                         **overrides)
    return Trainer(model, data, data, config)


def test_non_finite_weights_are_never_saved(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    trainer.train(until=2)
    assert step_of(tmp_path) == 2
    trainer.model.h[0].mlp.c_fc.weight.data[0, 0] = np.inf
    with pytest.raises(TrainingError, match="holds step 2"):
        trainer.save(trainer.checkpoint_dir)
    assert step_of(tmp_path) == 2


def test_a_non_finite_evaluation_is_never_saved(tmp_path, monkeypatch):
    trainer = _tiny_trainer(tmp_path)
    trainer.train(until=2)
    monkeypatch.setattr(trainer, "evaluate", lambda: {"train": 1.0, "val": float("nan")})
    with pytest.raises(TrainingError, match=r"val loss became nan at step 4.*holds step 2"):
        trainer.train()
    assert step_of(tmp_path) == 2


def test_a_nan_loss_names_the_kept_step_even_without_a_checkpoint(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    trainer.model.wte.weight.data[:] = np.nan
    with pytest.raises(TrainingError, match="no checkpoint was saved"):
        trainer.train()


@pytest.mark.parametrize("max_steps", ["1", "2"])
def test_resume_with_nothing_left_to_train_is_refused(run, corpus, capsys, max_steps):
    code, err = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps",
                         max_steps, "--no-progress", "--no-plot"], capsys)
    assert code == 2 and "nothing to train" in err and "step 2" in err


def test_resume_of_a_finished_run_without_max_steps_is_refused(run, corpus, capsys):
    code, err = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--no-progress",
                         "--no-plot"], capsys)
    assert code == 2 and "finished" in err


@pytest.mark.parametrize("flags,named", [
    (["--n-embd", "32"], "n_embd=32"), (["--preset", "gpt2"], "n_layer=12"),
    (["--tokenizer", "cl100k_base"], "--tokenizer cl100k_base"), (["--seed", "5"], "--seed 5"),
    (["--init-from", "elsewhere"], "--init-from"),
])
def test_resume_refuses_flags_the_checkpoint_decides(run, corpus, capsys, flags, named):
    code, err = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "3",
                         *flags, "--no-progress", "--no-plot"], capsys)
    assert code == 2 and named in err
    assert step_of(run) == 2


def test_resume_accepts_flags_that_agree_and_says_what_changed(run, corpus, capsys):
    lr = json.loads((run / "checkpoint" / "trainer.json").read_text())["train_config"]["lr"]
    assert lr != 0.002
    capsys.readouterr()
    from npgpt.cli import main
    assert main(["train", "--data", str(corpus), "--out", str(run), "--resume", "--max-steps",
                 "3", "--n-embd", "16", "--tokenizer", "char", "--lr", "0.002", "--no-progress",
                 "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert f"changed from the checkpoint: max_steps 2 -> 3, lr {lr!r} -> 0.002" in out
    assert step_of(run) == 3


def test_resume_on_other_data_is_refused(run, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("JULIET:\nO Romeo, Romeo\n" * 100, encoding="utf-8")
    code, err = run_cli(["train", "--data", other, "--out", run, "--resume", "--max-steps", "3",
                         "--no-progress", "--no-plot"], capsys)
    assert code == 2 and "not the text" in err


@pytest.mark.parametrize("flags,named", [
    (["--num-samples", "0"], "num_samples=0"), (["--max-new-tokens", "0"], "max_new_tokens=0"),
    (["--temperature", "nan"], "temperature=nan"), (["--temperature", "-1"], "temperature"),
    (["--top-k", "0"], "top_k"), (["--top-p", "0"], "top_p"), (["--top-p", "nan"], "top_p"),
])
def test_sample_refuses_settings_that_would_print_nothing_or_garbage(trained, capsys, flags,
                                                                     named):
    code, err = run_cli(["sample", "--ckpt", trained, *flags], capsys)
    assert code == 2 and named in err


def test_resuming_a_copied_run_writes_to_the_copy(run, trained, corpus, capsys):
    """trainer.json records the out_dir of the original run; a copy resumed by its path
    must write into the copy, never over the original's checkpoint."""
    before = (trained / "checkpoint" / "model.safetensors").read_bytes()
    code, err = run_cli(["train", "--data", corpus, "--resume", run, "--max-steps", "3",
                         "--no-progress", "--no-plot"], capsys)
    assert code == 0, err
    assert step_of(run) == 3
    assert (trained / "checkpoint" / "model.safetensors").read_bytes() == before
    assert step_of(trained) == 2
