"""A full disk and a read-only output directory: the command exits 2 with one line naming
the path, the previous checkpoint stays whole (it samples and resumes afterwards), and no
temporary directory is left behind. Needs a small tmpfs (root in a container, usually);
skipped where it cannot be mounted."""
import contextlib
import json
import os
import shutil
import subprocess

import pytest

from .conftest import run_cli


@contextlib.contextmanager
def tmpfs(path, size):
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, check=False)
    except OSError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount_read_only(path):
    done = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")


def fill(disk, leave: int):
    """Fill ``disk`` up to ``leave`` bytes of free space."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def resume(run, corpus, capsys, steps):
    return run_cli(["train", "--data", corpus, "--out", run, "--resume", "--max-steps", steps,
                    "--no-progress", "--no-plot"], capsys)


def intact(run, corpus, capsys, step):
    """The checkpoint still holds ``step``, samples, and (space given back) resumes."""
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["step"] == step
    assert run_cli(["sample", "--ckpt", run, "--max-new-tokens", "2"], capsys)[0] == 0
    assert not [p for p in run.iterdir() if p.name.startswith(".checkpoint.tmp")]


@pytest.mark.parametrize("leave", [0, 4096, 16384, 40960])
def test_a_full_disk_keeps_the_previous_checkpoint(trained, corpus, tmp_path, capsys, leave):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        run = disk / "run"
        shutil.copytree(trained, run)
        fill(disk, leave)
        code, err = resume(run, corpus, capsys, 4)
        assert code == 2, "a full disk went unnoticed"
        assert str(disk) in err and "No space left on device" in err, err
        intact(run, corpus, capsys, 2)
        os.unlink(disk / "filler")
        assert resume(run, corpus, capsys, 3)[0] == 0
        intact(run, corpus, capsys, 3)


@pytest.mark.parametrize("command", ["resume", "new run"])
def test_a_read_only_output_directory_is_one_line_naming_it(trained, corpus, tmp_path, capsys,
                                                            command):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        run = disk / "run"
        shutil.copytree(trained, run)
        remount_read_only(disk)
        if command == "resume":
            code, err = resume(run, corpus, capsys, 4)
        else:
            code, err = run_cli(["train", "--data", corpus, "--out", disk / "new",
                                 "--max-steps", "1", "--no-progress", "--no-plot"], capsys)
        assert code == 2 and str(disk) in err and "Read-only file system" in err, err
        intact(run, corpus, capsys, 2)


def test_a_checkpoint_on_a_read_only_disk_samples(trained, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        shutil.copytree(trained, disk / "run")
        remount_read_only(disk)
        assert run_cli(["sample", "--ckpt", disk / "run", "--max-new-tokens", "2"], capsys)[0] == 0
