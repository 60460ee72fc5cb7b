"""Ctrl-C and SIGTERM sent to a real training process: it finishes its step, keeps it in a
checkpoint, says how to continue, and the command it prints continues the run bit for bit."""
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from npgpt.cli import main
from npgpt.interrupt import StopSignals
from npgpt.io import TRAINER, load_checkpoint, load_json

from .test_api import TEXT

ROOT = Path(__file__).resolve().parents[1]
CHILD = "import sys; from npgpt.cli import main; sys.exit(main(sys.argv[1:]))"
# a tiny model with dropout (its RNGs must be kept too); a flat learning rate, so the run can
# be resumed with a smaller --max-steps than the interrupted one and stay the same run
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-steps", "1", "--eval-interval", "1000", "--log-interval", "1",
        "--warmup-steps", "0", "--lr", "1e-3", "--min-lr", "1e-3", "--dropout", "0.1",
        "--no-progress", "--no-plot"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def restore_threads():
    from npgpt.runtime.threads import get_num_threads, set_num_threads
    before = get_num_threads()["numba"]
    yield
    set_num_threads(before)


def interrupt(tmp_path, argv, signals, after_lines=3, gap=0.0, deadline=120):
    """Start ``npgpt argv`` (a training run writing tmp_path/run), send ``signals`` (``gap``
    seconds apart) once its metrics.jsonl has ``after_lines`` lines; (exit code, stdout,
    stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, argv)], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    start = time.monotonic()
    try:
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= after_lines):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() - start < deadline, "the run never reached its steps"
            time.sleep(0.02)
        for i, s in enumerate(signals):
            time.sleep(gap if i else 0)
            child.send_signal(s)
        out, err = child.communicate(timeout=deadline)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, err


def weights(ckpt) -> dict:
    c = load_checkpoint(ckpt)
    return {**{f"model.{k}": v for k, v in c.model_state.items()},
            **{f"optimizer.{k}": v for k, v in c.optimizer_state.items()}}


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_the_step_and_the_printed_command_continues_bit_for_bit(
        sig, code, corpus, tmp_path, monkeypatch, restore_threads):
    code_, out, err = interrupt(tmp_path, ["train", "--data", corpus, "--out", "run",
                                           "--max-steps", "100000", *TINY], [sig])
    assert code_ == code, (out, err)
    line = out.strip().splitlines()[-1]
    step = int(line.split(" at step ")[1].split(";")[0])
    assert line.startswith(f"stopped by {signal.Signals(sig).name} at step {step}; checkpoint in ")
    ckpt = tmp_path / "run" / "checkpoint"
    assert load_json(ckpt / TRAINER)["step"] == step >= 3       # the step reached is kept
    command = shlex.split(line.split("continue with: ")[1])
    assert command[:4] == ["npgpt", "train", "--resume", "run/checkpoint"]

    # the printed command (with an end in reach) against one run that was never stopped
    monkeypatch.chdir(tmp_path)
    end = ["--max-steps", str(step + 4)]
    assert main(command[1:] + end + ["--no-progress", "--no-plot"]) == 0
    threads = command[command.index("--threads"):][:2]
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "whole"), *TINY, *end,
                 *threads]) == 0
    a, b = weights(ckpt), weights(tmp_path / "whole" / "checkpoint")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_a_second_ctrl_c_exits_at_once_keeping_the_last_good_checkpoint(corpus, tmp_path):
    # steps long enough for the second Ctrl-C to land in the step the first one let finish
    # (two signals sent at once would arrive as one); a checkpoint every 2 steps
    argv = ["train", "--data", corpus, "--out", "run", "--max-steps", "100000", *TINY,
            "--eval-interval", "2", "--n-embd", "256", "--n-layer", "4", "--batch-size", "32",
            "--block-size", "64"]
    code, out, err = interrupt(tmp_path, argv, [signal.SIGINT, signal.SIGINT], after_lines=4,
                               gap=0.05)
    assert code == 130 and "Traceback" not in err, err
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint")        # whole and readable
    step = load_json(ckpt.path / TRAINER)["step"]
    assert "stopped by" not in out
    assert "interrupted at step " in err and f"checkpoint, {Path('run', 'checkpoint')}, " \
        f"holds step {step}" in err


def test_the_first_signal_is_a_request_the_second_an_interrupt():
    stop = StopSignals().install()
    try:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested() and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)           # (the handler runs at the next bytecode)
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
