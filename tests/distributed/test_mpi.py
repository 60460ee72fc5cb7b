"""Training over MPI ranks against one process: same weights, resumes across world sizes,
faults that end the job. The runs are ``mpiexec -n N`` subprocesses of mpi_driver.py (a
float64 2-layer GPT); the one-process references run the same driver in this process."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")
if shutil.which("mpiexec") is None:
    pytest.skip("no mpiexec on PATH", allow_module_level=True)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "mpi_driver.py"
sys.path.insert(0, str(HERE))
import mpi_driver  # noqa: E402

TIMEOUT = 120      # a hang fails the test instead of stalling the suite


def run(n, out, *args, timeout=TIMEOUT, check=True, env=None):
    """The driver on ``n`` ranks (1: in this process); returns the CompletedProcess."""
    argv = [str(out), *map(str, args)]
    if n == 1:
        mpi_driver.main(_parse(argv))
        return None
    # buckets of 10 kB: the tiny model's 90 kB of gradients go in several
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPGPT_MPI_TIMEOUT": "60",
           "NPGPT_BUCKET_MB": "0.01", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    done = subprocess.run(["mpiexec", "-n", str(n), sys.executable, str(DRIVER), *argv],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _parse(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    for name, kind, default in (("steps", int, 10), ("max-steps", int, 10), ("batch", int, 5),
                                ("accum", int, 1), ("clip", float, 0.0), ("zero", int, 0),
                                ("eval-interval", int, 5), ("fault-rank", int, 1),
                                ("fault-step", int, 0)):
        ap.add_argument("--" + name, type=kind, default=default)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--fault", default=None)
    ap.add_argument("--budget", default=None)
    ap.add_argument("--optimizer", default="adamw")
    return ap.parse_args(argv)


def weights(out):
    with np.load(Path(out) / "weights.npz") as f:
        return {k: f[k] for k in f}


def assert_same_weights(a, b, rel=1e-10):
    assert a.keys() == b.keys()
    for k in a:
        scale = max(np.abs(a[k]).max(), 1e-30)
        assert np.abs(a[k] - b[k]).max() <= rel * scale, k


def evals(out):
    history = json.loads((Path(out) / "history.json").read_text())
    return [(r["step"], r["train_loss"], r["val_loss"]) for r in history if "val_loss" in r]


CONFIGS = {
    "plain": ("--batch", 5),                                        # 3 ranks: 2, 1, 2 rows
    "zero-accum-clip": ("--batch", 4, "--zero", 1, "--accum", 2, "--clip", 0.3),
    "muon": ("--batch", 5, "--optimizer", "muon"),
}
# the progress thread: forced on for one config; the other's 90 kB gradient goes without it
POLL = {"plain": "1", "zero-accum-clip": None, "muon": None}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process run of each config, made once."""
    made = {}

    def get(name):
        if name not in made:
            out = tmp_path_factory.mktemp(f"one-{name}")
            run(1, out, *CONFIGS[name])
            made[name] = out
        return made[name]
    return get


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_ranks_train_the_same_weights_and_eval_losses_as_one_process(tmp_path, reference,
                                                                     config, n):
    run(n, tmp_path, *CONFIGS[config], env={"NPGPT_MPI_POLL": POLL[config]})
    one = reference(config)
    assert_same_weights(weights(tmp_path), weights(one))
    got, want = evals(tmp_path), evals(one)
    assert [s for s, *_ in got] == [s for s, *_ in want] == [5, 10]
    np.testing.assert_allclose([v for _, *v in got], [v for _, *v in want], rtol=1e-10)
    sync = json.loads((tmp_path / "sync.json").read_text())
    assert sync["steps"] == 10 and sync["buckets"] > 1
    assert sync["started_early"] > 0        # buckets went out while the backward ran
    assert sync["polled"] is (POLL[config] == "1")


@pytest.fixture(scope="module")
def half_on_two(tmp_path_factory):
    """4 of 8 steps on 2 ranks with ZeRO-1, checkpointed at step 4."""
    out = tmp_path_factory.mktemp("half-on-two")
    run(2, out, "--max-steps", 8, "--eval-interval", 4, "--steps", 4, "--zero", 1)
    return out


def test_a_checkpoint_of_two_ranks_resumes_on_one_and_continues_the_run(tmp_path, half_on_two):
    shutil.copytree(half_on_two, tmp_path / "run")
    run(1, tmp_path / "run", "--max-steps", 8, "--eval-interval", 4, "--steps", 8,
        "--resume", tmp_path / "run" / "checkpoint")
    run(1, tmp_path / "whole", "--max-steps", 8, "--eval-interval", 4, "--steps", 8)
    assert_same_weights(weights(tmp_path / "run"), weights(tmp_path / "whole"))


def test_resuming_on_the_same_ranks_is_bit_identical(tmp_path, half_on_two):
    shutil.copytree(half_on_two, tmp_path / "run")
    common = ("--max-steps", 8, "--eval-interval", 4, "--steps", 8, "--zero", 1)
    run(2, tmp_path / "run", *common, "--resume", tmp_path / "run" / "checkpoint")
    run(2, tmp_path / "whole", *common)
    a, b = weights(tmp_path / "run"), weights(tmp_path / "whole")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_sigterm_on_one_rank_stops_every_rank_at_its_step_and_resumes_bit_for_bit(tmp_path):
    import json

    from npgpt.io import load_checkpoint
    common = ("--max-steps", 8, "--eval-interval", 4, "--steps", 8)
    run(2, tmp_path / "run", *common, "--fault", "sigterm", "--fault-step", 3)
    assert load_checkpoint(tmp_path / "run" / "checkpoint").trainer_state["step"] == 3
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["step"] == 3
    run(2, tmp_path / "run", *common, "--resume", tmp_path / "run" / "checkpoint")
    run(2, tmp_path / "whole", *common)
    a, b = weights(tmp_path / "run"), weights(tmp_path / "whole")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_killed_rank_ends_the_job_and_the_checkpoint_loads(tmp_path):
    from npgpt.io import load_checkpoint
    done = run(2, tmp_path, "--eval-interval", 2, "--fault", "kill", "--fault-step", 6,
               timeout=30, check=False)     # a hang would raise TimeoutExpired
    assert done.returncode != 0
    assert not (tmp_path / "weights.npz").exists()
    ckpt = load_checkpoint(tmp_path / "checkpoint")
    assert ckpt.trainer_state["step"] == 4
    assert not list(tmp_path.glob(".checkpoint.tmp-*"))


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    t0 = time.monotonic()
    done = run(3, tmp_path, "--eval-interval", 2, "--fault", "nan", "--fault-step", 5,
               check=False)
    assert time.monotonic() - t0 < TIMEOUT
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "loss became nan at step 5" in lines[0], done.stderr
    assert "last good checkpoint" in lines[0]
    assert not (tmp_path / "weights.npz").exists()
    from npgpt.io import load_checkpoint
    assert load_checkpoint(tmp_path / "checkpoint").trainer_state["step"] == 4


def test_npgpt_train_under_mpiexec_matches_one_process(tmp_path):
    from npgpt.cli import main
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: to be or not to be, that is the question\n"
                            for i in range(300)), encoding="utf-8")
    flags = ["--data", str(text), "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
             "--batch-size", "4", "--block-size", "16", "--max-steps", "4",
             "--eval-interval", "2", "--eval-steps", "2", "--no-progress", "--no-plot"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPGPT_MPI_TIMEOUT": "60"}
    done = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "npgpt", "train", *flags,
                           "--out", str(tmp_path / "two")], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("MPI: 2 ranks x 1 thread; global batch 4 sequences, 2 per rank") == 1
    assert done.stdout.count("model: ") == 1 and done.stdout.count("done: ") == 1
    assert main(["train", *flags, "--out", str(tmp_path / "one")]) == 0
    two = [json.loads(s) for s in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(s) for s in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [r["step"] for r in one]      # written once, by rank 0
    final = [(r["train_loss"], r["val_loss"]) for r in (one[-1], two[-1])]
    np.testing.assert_allclose(final[0], final[1], rtol=1e-4)        # float32 rounding


def test_a_time_budget_stops_every_rank_at_rank_0s_step(tmp_path):
    """Rank 1's own clock runs 1000 s fast each step; rank 0's decides, so both ranks go on
    to the same last step (a rank stopping alone would leave the other waiting: a timeout)."""
    run(2, tmp_path, "--budget", "3s", "--eval-interval", 1000)
    history = json.loads((tmp_path / "history.json").read_text())
    steps = [r["step"] for r in history if "loss" in r]
    assert steps[-1] > 1 and "val_loss" in history[-1]
    state = json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())
    assert 3 <= state["train_time"] < 60 and state["step"] == history[-1]["step"]
