"""Every flag of every command given a value of the wrong type, a negative, zero, NaN and
infinity: exit 2 with one line, or exit 0 only for the values the flag really accepts."""
import argparse
import io

import pytest

from npgpt.cli import build_parser, main

from .conftest import TINY, run_cli

BAD = ["x", "2.5", "-1", "0", "nan", "inf", ""]   # wrong type, negative, zero, NaN, inf, empty


def _walk(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, prefix + (name,))
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield prefix, action


FLAGS = [(cmd, a.option_strings[0], isinstance(a, argparse.BooleanOptionalAction))
         for cmd, a in _walk(build_parser()) if cmd and cmd != ("bench",)]

# values a flag accepts among BAD (anything else must be refused); paths and free text
# accept any non-empty string, counts and rates their valid zero
ANY_TEXT = {"x", "-1", "0", "nan", "inf", "2.5"}
ACCEPTS = {
    ("train", "--out"): ANY_TEXT, ("train", "--seed"): {"0"},
    ("train", "--warmup-steps"): {"0"}, ("train", "--weight-decay"): {"0", "2.5"},
    ("train", "--grad-clip"): {"0", "2.5"}, ("train", "--dropout"): {"0"},
    ("train", "--init-std"): {"0", "2.5"}, ("train", "--min-lr"): {"0"},
    ("train", "--beta1"): {"0"}, ("train", "--beta2"): {"0"},
    ("train", "--rope-theta"): {"2.5"}, ("train", "--norm-eps"): {"2.5"},
    ("train", "--lr"): {"2.5"}, ("train", "--lora-dropout"): {"0"}, ("train", "--zero"): {"0"}, ("train", "--eps"): {"2.5"},
    ("sample", "--prompt"): {"nan", "inf", ""}, ("sample", "--temperature"): {"0", "2.5"},
    ("sample", "--seed"): {"0"},
    ("params", "--dropout"): {"0"}, ("params", "--init-std"): {"0", "2.5"},
    ("params", "--rope-theta"): {"2.5"}, ("params", "--norm-eps"): {"2.5"},
    ("train", "--logit-softcap"): {"2.5"}, ("params", "--logit-softcap"): {"2.5"},
    ("train", "--muon-lr"): {"0", "2.5"}, ("train", "--muon-weight-decay"): {"0", "2.5"},
    ("train", "--muon-momentum"): {"0"},
    # the model-family fields: a base, a scale or a factor of 2.5 is a valid one
    **{(cmd, flag): {"2.5"} for cmd in ("train", "params")
       for flag in ("--attn-scalar", "--rope-local-theta", "--rope-factor",
                    "--rope-low-freq-factor", "--rope-high-freq-factor")},
    ("train", "--stats-interval"): {"0"},                 # 0 = no statistics
    ("train", "--probe-prompt"): ANY_TEXT | {""},         # "" = the validation text's start
    ("report", "--out"): ANY_TEXT,
    ("inspect", "--prompt"): ANY_TEXT, ("inspect", "--layer"): {"0"},
    ("chat", "--system"): ANY_TEXT | {""},                # "": an empty system message
    ("chat", "--temperature"): {"0", "2.5"}, ("chat", "--seed"): {"0"},
    ("tokenizer", "train", "--pattern"): ANY_TEXT, ("tokenizer", "train", "--special"): ANY_TEXT,
    ("tokenizer", "train", "--out"): ANY_TEXT,
}


def base_argv(cmd, corpus, trained, tmp_path):
    """A cheap valid command line for ``cmd``, before the flag under test."""
    if cmd == ("train",):
        return ["train", "--data", corpus, "--out", tmp_path / "o", *TINY, "--max-steps", "1"]
    if cmd == ("sample",):
        return ["sample", "--ckpt", trained, "--max-new-tokens", "2"]
    if cmd == ("params",):
        return ["params", "--preset", "baby"]
    if cmd == ("tokenizer", "train"):
        return ["tokenizer", "train", "--data", corpus, "--kind", "char", "--out",
                tmp_path / "t.json"]
    if cmd == ("tokenizer", "encode"):
        return ["tokenizer", "encode", "--tokenizer", "cl100k_base", "hi"]
    if cmd == ("tokenizer", "inspect"):
        return ["tokenizer", "inspect", "--tokenizer", trained / "checkpoint" / "tokenizer.json"]
    if cmd == ("tokenizer",):
        return ["tokenizer"]
    if cmd == ("lora",):
        return ["lora"]
    if cmd == ("eval",):
        return ["eval", "--ckpt", trained, "--data", corpus]
    if cmd == ("export",):
        return ["export", trained, tmp_path / "hf"]
    if cmd == ("lora", "merge"):     # (no adapter here: only bad flag values are tried)
        return ["lora", "merge", tmp_path / "base", tmp_path / "adapter", tmp_path / "merged"]
    if cmd == ("report",):
        return ["report", trained, "--out", tmp_path / "report.html"]
    if cmd == ("inspect",):
        return ["inspect", "--ckpt", trained, "--prompt", "ROMEO:"]
    if cmd == ("quantize",):        # (blocks of 16: the tiny model's widths are 16 and 64)
        return ["quantize", trained, tmp_path / "int8", "--block", "16"]
    if cmd == ("chat",):            # one message from stdin (CHAT_STDIN), a template the
        template = tmp_path / "chat.jinja"   # char tokenizer can encode
        template.write_text(CHAT_TEMPLATE, encoding="utf-8")
        return ["chat", "--model", trained, "--template", template, "--max-new-tokens", "2",
                "--seed", "0"]
    raise AssertionError(cmd)


CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
CHAT_STDIN = "ROMEO\n"


CASES = [(cmd, flag, value) for cmd, flag, boolean in FLAGS
         for value in (["x", ""] if boolean else BAD)]


@pytest.fixture
def restore_threads():
    """--threads sets the process's thread counts: put them back for the tests after."""
    from npgpt.runtime.threads import get_num_threads, set_num_threads
    before = get_num_threads()["numba"]
    yield
    set_num_threads(before)


def test_every_command_is_covered():
    commands = {cmd for cmd, _, _ in FLAGS}
    assert {("train",), ("sample",), ("params",), ("tokenizer", "train"),
            ("tokenizer", "encode"), ("tokenizer", "inspect")} <= commands
    assert len(CASES) >= 400, len(CASES)


@pytest.mark.parametrize("cmd,flag,value", CASES,
                         ids=[f"{' '.join(c)} {f}={v!r}" for c, f, v in CASES])
def test_every_flag_with_a_bad_value(cmd, flag, value, corpus, trained, tmp_path, capsys,
                                     monkeypatch):
    monkeypatch.chdir(tmp_path)               # a path-like value lands here
    argv = base_argv(cmd, corpus, trained, tmp_path)
    if cmd == ("chat",):
        monkeypatch.setattr("sys.stdin", io.StringIO(CHAT_STDIN))
    if cmd == ("tokenizer",):
        argv = ["tokenizer", f"{flag}={value}", "inspect", "--tokenizer",
                trained / "checkpoint" / "tokenizer.json"]
    elif cmd == ("lora",):
        argv = ["lora", f"{flag}={value}", *base_argv(("lora", "merge"), corpus, trained,
                                                        tmp_path)[1:]]
    else:
        argv = argv + [f"{flag}={value}"]
    code, err = run_cli(argv, capsys)
    if value in ACCEPTS.get(cmd + (flag,), ()):
        assert code in (0, 2)
    else:
        assert code == 2, f"{' '.join(map(str, argv))} exited {code}: a silent success"
        assert err


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("cmd", [("train",), ("sample",), ("params",), ("tokenizer", "encode"),
                                 ("report",), ("inspect",), ("chat",), ("quantize",)])
def test_global_options_before_or_after_the_subcommand(cmd, where, corpus, trained, tmp_path,
                                                       capsys, restore_threads, monkeypatch):
    # (also: each base_argv is a valid command line, so a refusal above is the flag's)
    argv = [str(a) for a in base_argv(cmd, corpus, trained, tmp_path)]
    monkeypatch.setattr("sys.stdin", io.StringIO(CHAT_STDIN))
    argv = ["--threads", "1", *argv] if where == "before" else [*argv, "--threads", "1"]
    code, err = run_cli(argv, capsys)
    assert code == 0, err


def test_help_exits_0_and_argparse_errors_are_one_line(capsys):
    assert main(["train", "--help"]) == 0
    capsys.readouterr()
    code, err = run_cli(["train", "--no-such-flag"], capsys)
    assert code == 2 and "--no-such-flag" in err
