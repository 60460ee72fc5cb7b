"""Training under a time budget: the duration, the clock (evaluation excluded), the schedule
over the elapsed share, resume, and the CLI's refusals. The clock is a fake one the test
advances: one second per step, a hundred per evaluation."""
import json
import types

import numpy as np
import pytest

import npgpt.time_budget as tb
from npgpt.checkpoints import check_resumable
from npgpt.errors import ConfigError
from npgpt.models import GPT, GPTConfig
from npgpt.optim import schedule_lr
from npgpt.time_budget import parse_duration
from npgpt.trainer import TrainConfig, Trainer


@pytest.mark.parametrize("text, seconds", [("300", 300), ("90s", 90), ("5m", 300), ("1.5h", 5400),
                                           (" 2 min ", 120), (45, 45), (0.5, 0.5), ("1e2s", 100)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["0", 0, "-5m", -1, "abc", "5x", "5 m s", "", "nan", "inf", True,
                                 "1e999"])
def test_bad_durations_are_one_clear_error(bad):
    with pytest.raises(ConfigError, match=r"time_budget=.* must be a duration > 0"):
        TrainConfig(time_budget=bad)


def test_a_budget_with_max_steps_is_refused():
    with pytest.raises(ConfigError, match="both say when the run ends"):
        TrainConfig(time_budget="1m", max_steps=500)


@pytest.fixture
def fake_clock(monkeypatch):
    now = types.SimpleNamespace(t=0.0)
    monkeypatch.setattr(tb, "time", types.SimpleNamespace(perf_counter=lambda: now.t,
                                                          process_time=lambda: now.cpu))
    now.cpu = 0.0
    return now


def _trainer(tmp_path, now, **kw):
    data = np.random.default_rng(0).integers(0, 13, 3000)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=0)
    config = TrainConfig(**{**dict(batch_size=2, block_size=8, lr=1e-2, min_lr=1e-3,
                                   warmup_steps=2, eval_interval=3, eval_steps=1, log_interval=1,
                                   out_dir=str(tmp_path), progress=False, plot=False), **kw})
    trainer = Trainer(model, data[:2500], data[2500:], config)
    step, evaluate = trainer.train_step, trainer.evaluate

    def slow_step():
        now.t += 1.0
        return step()

    def slow_eval():
        now.t += 100.0           # evaluation time must not count
        return evaluate()
    trainer.train_step, trainer.evaluate = slow_step, slow_eval
    return trainer


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_the_budget_ends_the_run_and_drives_the_schedule(tmp_path, fake_clock, schedule):
    trainer = _trainer(tmp_path, fake_clock, time_budget="10s", schedule=schedule,
                       cooldown_frac=0.5)
    last = trainer.train()
    assert trainer.step == 10 and last["step"] == 10 and "val_loss" in last   # the last eval
    assert [r["step"] for r in trainer.history if "val_loss" in r] == [3, 6, 9, 10]
    lrs = [r["lr"] for r in trainer.history if "lr" in r]
    # step s (from 0) starts when s seconds of the 10 are spent (evaluations not counted)
    assert lrs == [schedule_lr(s / 10, s, 1e-2, 1e-3, 2, schedule, 0.5) for s in range(10)]
    state = json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())
    assert state["train_time"] == 10.0 and state["step"] == 10


def test_a_resumed_run_counts_the_time_already_spent(tmp_path, fake_clock):
    _trainer(tmp_path, fake_clock, time_budget="4s").train()
    saved = TrainConfig(**{**json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())
                           ["train_config"]})
    with pytest.raises(ConfigError, match="spent its time budget"):
        check_resumable(saved, saved, 4, tmp_path, False, train_time=4.0)
    longer = TrainConfig(**{**saved.__dict__, "time_budget": "7s"})
    check_resumable(longer, saved, 4, tmp_path, False, train_time=4.0)
    trainer = _trainer(tmp_path, fake_clock, time_budget="7s").resume(tmp_path)
    assert trainer.clock.elapsed == 4.0
    trainer.train()
    assert trainer.step == 7 and trainer.clock.elapsed == 7.0
    lrs = [r["lr"] for r in trainer.history if "lr" in r and r["step"] > 4]
    assert lrs == [schedule_lr(s / 7, s, 1e-2, 1e-3, 2) for s in range(4, 7)]


def test_without_a_budget_the_schedule_is_the_step_cosine(tmp_path, fake_clock):
    from npgpt.optim import cosine_schedule
    trainer = _trainer(tmp_path, fake_clock, max_steps=6)
    trainer.train()
    assert trainer.step == 6
    assert [r["lr"] for r in trainer.history if "lr" in r] == \
        [cosine_schedule(s, 1e-2, 1e-3, 2, 6) for s in range(6)]


def test_cli_refuses_the_budget_with_max_steps_and_says_so_in_the_banner(tmp_path, capsys):
    from npgpt.cli import main
    assert main(["train", "--time-budget", "5m", "--max-steps", "10", "--out", str(tmp_path)]) == 2
    assert "both say when the run ends" in capsys.readouterr().err
    assert main(["train", "--time-budget", "1.5s", "--out", str(tmp_path), "--n-layer", "1",
                 "--no-progress", "--no-plot", "--eval-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "time budget: 1.5s of training (evaluation and checkpoints not counted)" in out
    assert json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())["train_time"] >= 1.5


def test_the_cpu_clock_counts_the_process_time(fake_clock):
    clock = tb.TrainClock(5.0, kind="cpu")
    fake_clock.t += 50.0             # time passes, but the process got no CPU
    clock.lap()
    assert clock.elapsed == 0.0 and not clock.spent
    fake_clock.cpu += 5.0
    clock.lap()
    assert clock.elapsed == 5.0 and clock.spent
    assert "training CPU time" in clock.banner()


def test_the_speedrun_presets_set_the_model_and_the_training(tmp_path, capsys):
    from npgpt.cli import main
    from npgpt.models import PRESETS
    from npgpt.train_config import TRAIN_PRESETS
    assert set(TRAIN_PRESETS) <= set(PRESETS)
    out = tmp_path / "a"
    assert main(["train", "--preset", "speedrun-1m", "--time-budget", "1s", "--out", str(out),
                 "--no-progress", "--no-plot", "--eval-steps", "1", "--lr", "2e-3"]) == 0
    trainer = json.loads((out / "checkpoint" / "trainer.json").read_text())
    model = json.loads((out / "checkpoint" / "config.json").read_text())
    train = trainer["train_config"]
    assert train["time_budget"] == "1s" and train["lr"] == 2e-3          # the flags win
    assert train["schedule"] == TRAIN_PRESETS["speedrun-1m"]["schedule"]
    assert all(model[k] == v for k, v in PRESETS["speedrun-1m"].items() if k != "vocab_size")
    # a step count instead of the recipe's time budget
    out = tmp_path / "b"
    assert main(["train", "--preset", "speedrun-1m", "--max-steps", "2", "--out", str(out),
                 "--no-progress", "--no-plot", "--eval-steps", "1"]) == 0
    train = json.loads((out / "checkpoint" / "trainer.json").read_text())["train_config"]
    assert train["time_budget"] is None and train["max_steps"] == 2
