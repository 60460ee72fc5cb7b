"""The npgpt command end to end, in process: train, resume, sample, params, errors."""
import json

import pytest

from npgpt.cli import main

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n") * 40

TINY = ["--preset", "baby", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
        "--block-size", "16", "--batch-size", "4", "--eval-steps", "2", "--no-progress",
        "--no-plot", "--warmup-steps", "2"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_params_prints_the_count_and_the_formula(capsys):
    assert main(["params", "--preset", "gpt2"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808" in out and "123,651,840" in out and "12·C²·L" in out


def test_train_resume_and_sample(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--out", str(out), "--eval-interval", "3", *TINY]
    assert main(args + ["--max-steps", "6"]) == 0
    trainer = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert trainer["step"] == 6
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in lines)

    assert main(["train", "--data", str(corpus), "--out", str(out), "--resume",
                 "--max-steps", "9", "--no-progress", "--no-plot"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 9

    assert main(["sample", "--ckpt", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "30",
                 "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) >= len("ROMEO:") + 30


@pytest.mark.parametrize("argv,message", [
    (["sample", "--ckpt", "/nonexistent/run"], "no checkpoint"),
    (["train", "--data", "/nonexistent.txt", "--max-steps", "1"], "nonexistent"),
    (["train", "--n-embd", "30", "--n-head", "4", "--max-steps", "1"], "not divisible"),
    (["train", "--lr", "-1", "--max-steps", "1"], "lr=-1"),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, corpus):
    argv = [a if a != "/nonexistent.txt" else str(tmp_path / "missing.txt") for a in argv]
    if argv[0] == "train" and "--data" not in argv:
        argv += ["--data", str(corpus), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err or (message == "nonexistent" and "missing.txt" in err)


def test_prompt_with_an_unseen_character_is_a_clear_error(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), "--max-steps", "1",
                 "--eval-interval", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(out), "--prompt", "Zebra€"]) == 2
    err = capsys.readouterr().err
    assert "Z" in err and len(err.strip().splitlines()) == 1


def test_init_from_continues_a_trained_model_on_new_data(corpus, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", "--data", str(corpus), "--out", str(first), "--max-steps", "2",
                 "--eval-interval", "2", *TINY]) == 0
    second = tmp_path / "second"
    assert main(["train", "--data", str(corpus), "--out", str(second), "--init-from", str(first),
                 "--max-steps", "2", "--eval-interval", "2", "--block-size", "16",
                 "--batch-size", "4", "--eval-steps", "1", "--no-progress", "--no-plot"]) == 0
    assert json.loads((second / "checkpoint" / "config.json").read_text())["n_embd"] == 16


def test_sampling_a_huggingface_directory_without_a_tokenizer_is_a_clear_error(tmp_path, capsys):
    from npgpt import GPT, GPTConfig
    GPT(GPTConfig.preset("llama-tiny", n_layer=1)).save_pretrained(tmp_path / "hf")
    assert main(["sample", "--ckpt", str(tmp_path / "hf")]) == 2
    assert "no tokenizer" in capsys.readouterr().err


def test_a_reader_that_stops_early_ends_sample_quietly(corpus, tmp_path):
    """`npgpt sample ... | head`: once the reader has closed the pipe, the command stops with
    SIGPIPE's status (141) and no message, as shell tools do."""
    import os
    import subprocess
    import sys
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY,
                 "--max-steps", "1"]) == 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "npgpt", "sample", "--ckpt", str(out),
                             "--max-new-tokens", "20000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=root)
    assert proc.stdout.read(5)
    proc.stdout.close()                     # the reader goes away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_probe_prompt_without_statistics_is_refused_before_anything_is_written(corpus,
                                                                                 tmp_path,
                                                                                 capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY, "--max-steps", "1",
                 "--probe-prompt", "ROMEO:"]) == 2
    assert "--stats-interval" in capsys.readouterr().err and not out.exists()
