"""kill -9 inside checkpoint saves: the run can always be sampled and resumed, a checkpoint
never goes back a step, and no temporary directory outlives the next completed save."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from npgpt.io import resolve_checkpoint

from .conftest import run_cli

TRIES = 24
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.name != "posix", reason="the campaign sends SIGKILL")
def test_kill_9_during_saves_never_loses_the_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPGPT_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("kill_driver.py")),
                               str(tmp_path), str(TRIES), "16"], env=env, capture_output=True,
                              text=True, timeout=400, check=False)
    except subprocess.TimeoutExpired as e:
        logs = sorted(tmp_path.glob("child-*.log"))
        pytest.fail(f"the campaign did not finish; {len(logs)} children started; the last "
                    f"one's output: {logs[-1].read_text()[-1500:] if logs else ''!r}; "
                    f"stderr: {(e.stderr or b'')[-1500:]!r}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print("kill campaign:", r)
    assert r["stuck"] == [] and r["tries"] == TRIES
    assert r["sample_failures"] == [] and r["resume_failures"] == [] and r["lost_steps"] == []
    assert r["final_step"] == r["expected_final_step"]
    assert r["left_over"] == []          # the next completed save cleared every leftover
    # the kills were aimed: a save is ~5% of a training cycle, so unaimed kills would land in
    # one about once in 24; aimed, a quarter or more do (how many moves with the machine's load)
    assert r["phases"].get("writing", 0) >= TRIES // 8
    assert sum(v for k, v in r["phases"].items() if k != "outside a save") >= TRIES // 4


def test_a_save_interrupted_between_its_renames_is_found_by_every_command(run, corpus, capsys):
    """The state a kill between save_checkpoint's two renames leaves: only
    .checkpoint.previous. npgpt sample, npgpt train --resume and resolve_checkpoint find it
    (given the output directory or the checkpoint's own path), and the next save clears it."""
    previous = run / ".checkpoint.previous"
    os.rename(run / "checkpoint", previous)
    assert resolve_checkpoint(run) == previous
    assert resolve_checkpoint(run / "checkpoint") == previous
    for ckpt in (run, run / "checkpoint"):
        assert run_cli(["sample", "--ckpt", ckpt, "--max-new-tokens", "2"], capsys)[0] == 0
    code, err = run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "3",
                         "--no-progress", "--no-plot"], capsys)
    assert code == 0, err
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["step"] == 3
    assert not previous.exists()


def test_leftover_temporary_directories_are_removed_by_the_next_save(run, corpus, capsys):
    stale = run / ".checkpoint.tmp-999999"
    shutil.copytree(run / "checkpoint", stale)
    (stale / "trainer.json").unlink()           # as a kill in the middle of writing leaves it
    assert run_cli(["sample", "--ckpt", run, "--max-new-tokens", "2"], capsys)[0] == 0
    assert run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", "3",
                    "--no-progress", "--no-plot"], capsys)[0] == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
