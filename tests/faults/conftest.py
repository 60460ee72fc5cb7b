"""What the fault campaign shares: a tiny corpus, the flags of a tiny model that checkpoints
every step, and one trained checkpoint that each case copies and damages."""
import shutil

import pytest

from npgpt.cli import main

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n") * 40

# a model small enough that a step is a few milliseconds, checkpointing at every step; the
# baby model's layout and TrainConfig's own training settings (not the default recipe's)
TINY = ["--preset", "baby", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "2", "--eval-steps", "1", "--eval-interval", "1", "--no-progress",
        "--no-plot", "--warmup-steps", "0", "--log-interval", "100"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus):
    """An output directory holding a 2-step run (out/checkpoint, out/cache)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", "2", *TINY]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run, to damage."""
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def one_line_error(capsys) -> str:
    """The command's stderr, checked to be one line and no traceback; returned."""
    err = capsys.readouterr().err.strip()
    assert err, "exit 2 without a message"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def run_cli(argv, capsys):
    """(exit code, stderr line or '') of ``npgpt argv``, in process; a traceback fails."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    if code == 0:
        capsys.readouterr()
        return 0, ""
    return code, one_line_error(capsys)


