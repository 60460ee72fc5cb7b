import argparse

from npgpt.tokenizers.cli import add_tokenizer_parser


def _run(argv):
    parser = argparse.ArgumentParser(prog="npgpt")
    add_tokenizer_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_train_encode_inspect(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 50, encoding="utf-8")
    out = tmp_path / "tok.bpe"
    assert _run(["tokenizer", "train", "--data", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 0
    assert out.exists()
    assert _run(["tokenizer", "encode", "--tokenizer", str(out), "to be"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "to |  be" and lines[-1].startswith("2 tokens")
    assert _run(["tokenizer", "inspect", "--tokenizer", str(out), "-n", "3"]) == 0
    assert "first 3 merges" in capsys.readouterr().out


def test_unknown_tokenizer_is_one_clear_line_and_exit_2(capsys):
    assert _run(["tokenizer", "encode", "--tokenizer", "no-such-thing", "x"]) == 2
    assert "unknown tokenizer 'no-such-thing'" in capsys.readouterr().err
