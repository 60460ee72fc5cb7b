"""--help tells the truth: every flag of every command states the default a run without it
uses, fields are described by their comments, and choices come from the validation rules."""
import argparse
import dataclasses
import re

import pytest

from npgpt.cli import PARAMS_PRESET, build_parser
from npgpt.cli_flags import show
from npgpt.fields import field_comments
from npgpt.infer import EVAL_RULES, SAMPLE_RULES, EvalOptions, SampleOptions
from npgpt.models import GPTConfig
from npgpt.models.gpt import _RULES
from npgpt.run import RUN_RULES, RunOptions, prepare
from npgpt.train_config import _TRAIN_RULES, TrainConfig


def flags(parser, prefix=()):
    """(command, action) of every option of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from flags(child, prefix + (name,))
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield prefix, action


PARSER = build_parser()
FLAGS = list(flags(PARSER))
DEFAULT = re.compile(r"default: (.*)\)$")


def stated_default(action):
    """The default a flag's help states, or None."""
    m = DEFAULT.search(" ".join((action.help or "").split()).replace("%%", "%"))
    return m.group(1) if m else None


def literal(text):
    """``text`` as a number or yes/no, or None when it is words (or a field expression)."""
    if text in ("yes", "no"):
        return text == "yes"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """command -> {field: the value a run without any flag uses}, from the functions the
    commands call: npgpt train's from npgpt.run.prepare (what npgpt.train runs)."""
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("run"))      # prepare writes its token cache under out/
    try:
        p = prepare()
    finally:
        os.chdir(cwd)
    return {("train",): {**dataclasses.asdict(p.model.config), **dataclasses.asdict(p.config),
                         **dataclasses.asdict(p.options)},
            ("params",): {**dataclasses.asdict(GPTConfig.preset(PARAMS_PRESET)),
                          "preset": PARAMS_PRESET},
            ("sample",): dataclasses.asdict(SampleOptions()),
            ("eval",): dataclasses.asdict(EvalOptions())}


def agrees(stated: str, value, namespace: dict) -> bool:
    """Whether help's ``stated`` default is ``value``: the same words or number, or an
    expression of the other fields that evaluates to it (``n_head``, ``4 * n_embd``); a
    value of None (decided later, or off) is stated as none or in words."""
    if value is None:
        return stated == "none" or literal(stated) is None
    if stated == show(value) or (literal(stated) is not None and literal(stated) == value
                                 and type(value) is not str):
        return True
    try:
        return eval(stated, {"__builtins__": {}}, dict(namespace)) == value   # noqa: S307
    except Exception:   # noqa: BLE001 - words, not an expression
        return False


@pytest.mark.parametrize("cmd,action", FLAGS,
                         ids=[f"{' '.join(c)} {a.option_strings[0]}" for c, a in FLAGS])
def test_the_stated_default_is_what_a_run_without_the_flag_uses(cmd, action, applied):
    stated = stated_default(action)
    if action.dest in applied.get(cmd, {}):
        assert stated is not None, f"{action.option_strings[0]}: no default in {action.help!r}"
        value = applied[cmd][action.dest]
        assert agrees(stated, value, applied[cmd]), \
            f"{' '.join(cmd)} {action.option_strings[0]}: help says {stated!r}, a run uses {value!r}"
    elif stated is not None:      # what argparse hands the command without the flag
        default = action.default if action.default is not argparse.SUPPRESS else None
        assert agrees(stated, default, {}), \
            f"{' '.join(cmd)} {action.option_strings[0]}: help says {stated!r}, the command " \
            f"gets {default!r}"
    else:                         # only a default of None may go unstated
        assert action.default in (None, argparse.SUPPRESS), action.help


# the option classes, their rules and the commands whose flags they make (less the fields
# a command sets itself)
NOT_FLAGS = {"vocab_size", "block_size", "dtype"}
OPTION_CLASSES = [(GPTConfig, _RULES, {"train": NOT_FLAGS, "params": {"dtype"}}),
                  (TrainConfig, _TRAIN_RULES, {"train": ()}), (RunOptions, RUN_RULES, {"train": ()}),
                  (SampleOptions, SAMPLE_RULES, {"sample": ()}),
                  (EvalOptions, EVAL_RULES, {"eval": ()})]


@pytest.mark.parametrize("cls,rules,commands", OPTION_CLASSES,
                         ids=[c.__name__ for c, _, _ in OPTION_CLASSES])
def test_every_field_is_described_and_lists_its_choices(cls, rules, commands):
    comments = field_comments(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    by_dest = {}
    for cmd, action in FLAGS:
        if cmd and cmd[0] in commands and action.dest in names - set(commands[cmd[0]]):
            by_dest.setdefault(action.dest, []).append(action)
    assert by_dest
    for f in dataclasses.fields(cls):
        assert comments.get(f.name), f"{cls.__name__}.{f.name} has no comment to show in --help"
        for action in by_dest.get(f.name, []):
            assert comments[f.name].split(";")[0].strip() in " ".join(action.help.split()), f.name
            allowed = getattr(rules.get(f.name), "allowed", None)
            if allowed:
                assert action.metavar == "{" + ",".join(map(str, allowed)) + "}", f.name
                text = " ".join(action.help.split())
                listed = {part.split()[0] for part in text.split("|") if part.split()}
                assert ("one of: " + ", ".join(map(str, allowed)) in text
                        or set(map(str, allowed)) <= listed), f.name


def test_train_help_shows_the_preset_it_builds(capsys):
    from npgpt.cli import main
    from npgpt.models import PRESETS
    from npgpt.run import DEFAULT_PRESET
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"--n-layer N_LAYER L: transformer blocks (default: {PRESETS[DEFAULT_PRESET]['n_layer']})" \
        in text
    assert "--pos {learned,sinusoidal,rope,none}" in text and "--data-parallel {" in text
