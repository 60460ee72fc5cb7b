"""Flags built from option dataclasses: one flag per field, its help from the field's comment.

A field is declared once, with its type, default and a trailing comment::

    n_layer: int = 12                # L: transformer blocks

and becomes ``--n-layer N`` whose help is that comment, the choices its validation rule
allows (a :func:`npgpt.fields.one_of` rule) and the default a run without the flag uses,
which the command states when it is not the field's own (``npgpt train`` builds the baby
preset, not GPTConfig's GPT-2). Every flag defaults to None in argparse, so a flag the user
did not give can be told from one given with the default value (:func:`given`).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing

from .fields import field_comments

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def field_type(f: dataclasses.Field):
    """The concrete type of a dataclass field (``int | None`` -> int)."""
    t = f.type
    if isinstance(t, str):
        return _TYPES[next(p.strip() for p in t.split("|") if p.strip() != "None")]
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def show(value) -> str:
    """A default as the command line spells it (True -> yes, None -> none)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, str) and (value == "" or value.isspace()):
        return repr(value)
    return str(value)


# what a field's comment says None stands for: "None = n_head", "None: off"
_NONE_MEANS = re.compile(r"\bNone\s*[=:]\s*([^;()]+?)\s*(?:;|$)")


def flag_help(comment: str, default=dataclasses.MISSING, choices=None) -> str:
    """``comment (one of: a, b; default: X)``, without the choices when the comment already
    lists each of them as ``a | b (what b is)``. A None default is shown as what the comment
    says None stands for ("None = n_head" -> ``default: n_head``); a comment that states its
    default ("(default: ...)") keeps it."""
    notes = []
    listed = {part.split()[0] for part in comment.split("|") if part.split()}
    if choices and not {str(c) for c in choices} <= listed:   # "a | b (what b is)" lists them
        notes.append("one of: " + ", ".join(map(str, choices)))
    if default is None:
        means = _NONE_MEANS.search(comment)
        if means:     # said once, as the default
            default = means.group(1)
            comment = (comment[:means.start()] + comment[means.end():]).strip().rstrip(";,")
    if default is not dataclasses.MISSING and "default:" not in comment:
        notes.append(f"default: {show(default)}")
    help_text = comment + (f" ({'; '.join(notes)})" if notes else "")
    return help_text.replace("%", "%%").strip()


def add_dataclass_flags(parser, cls, skip=(), group_title=None, rules=None, defaults=None,
                        flag_names=None, extra=None):
    """One flag per field of ``cls`` (``n_layer`` -> ``--n-layer``), except those in ``skip``.

    rules: the class's validation rules (choices are listed from its ``one_of`` rules).
    defaults: field -> the default a run without the flag uses, when not the field's own.
    flag_names: field -> its option strings (``out_dir`` -> ``--out``, ``--out-dir``).
    extra: field -> more argparse keywords (``nargs``, ``const``, ``metavar``).
    """
    group = parser.add_argument_group(group_title or cls.__name__)
    comments = field_comments(cls)
    rules, defaults, flag_names, extra = rules or {}, defaults or {}, flag_names or {}, extra or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        names = flag_names.get(f.name, ["--" + f.name.replace("_", "-")])
        t = field_type(f)
        default = defaults.get(f.name, f.default)
        choices = getattr(rules.get(f.name), "allowed", None)
        help_text = flag_help(comments.get(f.name, ""), default, choices)
        kwargs = dict(dest=f.name, default=None, help=help_text)
        if t is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
            kwargs.update(type=t, metavar=metavar)
        kwargs.update(extra.get(f.name, {}))
        group.add_argument(*names, **kwargs)


def given(args, cls, skip=()) -> dict:
    """The fields of ``cls`` the command line gave (not None), by name."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def state_defaults(parser) -> None:
    """Append ``(default: X)`` to the help of every option of ``parser`` and its subcommands
    that does not state one, X being argparse's default (what the command gets without the
    flag); options whose default is None say in words what None means, or nothing."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                state_defaults(child)
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS \
                or isinstance(action, argparse._HelpAction) or "default:" in (action.help or "") \
                or action.default in (None, argparse.SUPPRESS):
            continue
        text = f"(default: {show(action.default).replace('%', '%%')})"
        action.help = f"{action.help} {text}" if action.help else text
