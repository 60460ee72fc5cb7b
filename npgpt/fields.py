"""Checking a config dataclass field by field: one validation for flags, the API and files.

A config class declares, beside its fields, what each field may hold::

    RULES = {"n_layer": positive, "dropout": in_range(0, 1, hi_open=True), "pos": one_of(...)}

and calls ``check_fields(self, RULES)`` in ``__post_init__``. The type comes from the field's
annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``), the range from the rule, so
``GPTConfig(dropout="x")``, ``--dropout nan`` and a ``config.json`` holding ``"dropout": -1``
all meet the same check and the same message. ``from_dict`` builds a config from a file's
dict, naming the file, and refuses unknown and (optionally) missing fields.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing

import numpy as np

from .errors import ConfigError

# what each annotation accepts; bool is not an int here (True is not a layer count)
_TYPES = {"int": "an integer", "float": "a finite number", "str": "a string",
          "bool": "true or false"}


def _annotation(f: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, None allowed) of a field annotated ``int``, ``float | None``, ..."""
    if not isinstance(f.type, str):
        args = typing.get_args(f.type) or (f.type,)
        names = [getattr(a, "__name__", str(a)) for a in args]
        return next(n for n in names if n != "NoneType"), "NoneType" in names
    parts = [p.strip() for p in f.type.split("|")]
    return next(p for p in parts if p != "None"), "None" in parts


def coerce(kind: str, value):
    """``value`` as a plain ``kind`` ("int", "float", "str", "bool"), or raise ValueError.

    NumPy scalars become Python ones and an int is a float, but a float is never an int
    (2.0 layers, or 2.5) and a bool is neither; a float must be finite (no config value
    means anything as NaN or infinity)."""
    numeric = not isinstance(value, (bool, np.bool_))
    if kind == "bool" and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind == "int" and numeric and isinstance(value, (int, np.integer)):
        return int(value)
    if kind == "float" and numeric and isinstance(value, (int, float, np.integer, np.floating)) \
            and math.isfinite(value):
        return float(value)
    if kind == "str" and isinstance(value, (str, os.PathLike)):
        return os.fspath(value) if isinstance(value, os.PathLike) else value
    if kind not in _TYPES:
        return value
    raise ValueError


# --- rules: (ok(value) -> bool, what is expected, with {t} for the type) --------------------

def at_least(lo):
    return (lambda v: v >= lo), f"{{t}} >= {lo}"


positive = (lambda v: v >= 1), "a positive integer"   # for int fields


def above(lo):
    return (lambda v: v > lo), f"{{t}} > {lo}"


def in_range(lo, hi, hi_open=False, lo_open=False):
    def ok(v):
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    return ok, f"{{t}} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


class Choices(tuple):
    """A rule that is a list of allowed values: ``.allowed`` is what ``--help`` lists."""

    allowed: tuple


def one_of(*allowed):
    rule = Choices(((lambda v: v in allowed), "one of " + ", ".join(map(str, allowed))))
    rule.allowed = allowed
    return rule


def expected_text(kind: str, nullable: bool, rule=None) -> str:
    t = _TYPES.get(kind, kind)
    text = rule[1].replace("{t}", t) if rule is not None else t
    return text + (" or null" if nullable else "")


def check_fields(obj, rules: dict, source: str | None = None) -> None:
    """Check (and normalise: NumPy scalars to Python, ints to floats where a float belongs)
    every field of the dataclass ``obj`` against its annotation and ``rules[name]``; raise
    :class:`ConfigError` naming ``source`` (a file), the field, the value and what was
    expected."""
    where = f"{source}: " if source else ""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind, nullable = _annotation(f)
        rule = rules.get(f.name)
        if value is None and nullable:
            continue
        try:
            value = coerce(kind, value)
            if rule is not None and not rule[0](value):
                raise ValueError
        except (ValueError, TypeError):
            raise ConfigError(f"{where}{f.name}={value!r} must be "
                              f"{expected_text(kind, nullable, rule)}") from None
        object.__setattr__(obj, f.name, value)


def from_dict(cls, d, source: str | None = None, required: bool = False,
              added: dict | None = None):
    """``cls(**d)`` for a dict read from a file: refuses a non-dict, unknown fields and (with
    ``required``) missing ones, naming ``source``; the fields themselves are checked by the
    class's ``__post_init__``, and its errors are given ``source`` too.

    ``added`` maps the fields added to the class after its files were first written to the
    value that an older file, which lacks them, meant (the behaviour before the field
    existed, which need not be today's default): with ``required`` they are not required,
    and a missing one takes that value, so an older file still loads as it was written."""
    where = f"{source}: " if source else ""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}expected a JSON object of {cls.__name__} fields, found "
                          f"{type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(f"{where}unknown {cls.__name__} field{'s' * (len(unknown) > 1)} "
                          f"{', '.join(unknown)} (known: {', '.join(names)})")
    if required:
        added = added or {}
        missing = [n for n in names if n not in d and n not in added]
        if missing:
            raise ConfigError(f"{where}missing {cls.__name__} field"
                              f"{'s' * (len(missing) > 1)} {', '.join(missing)}")
        d = {**{n: v for n, v in added.items() if n not in d}, **d}
    try:
        return cls(**d)
    except ConfigError as e:
        if source and not str(e).startswith(where):
            raise ConfigError(f"{where}{e}") from None
        raise


def field_comments(cls) -> dict[str, str]:
    """Each field's trailing comment in the source of the dataclass ``cls`` (continued by
    comment-only lines under it), joined into one line: the text ``--help`` shows, so a
    field is described once, where it is declared. {} when the source cannot be read."""
    import inspect
    import io
    import tokenize
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    comments: dict[str, list[str]] = {}
    current, line_has_code, depth = None, False, 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NAME and not line_has_code and depth == 1:
            current = tok.string if tok.string in names else None
            line_has_code = True
        elif tok.type == tokenize.COMMENT and current is not None:
            text = tok.string.lstrip("#").strip()
            if text:
                comments.setdefault(current, []).append(text)
        elif tok.type in (tokenize.NEWLINE,):
            line_has_code = False
        elif tok.type not in (tokenize.NL, tokenize.COMMENT) and not line_has_code:
            line_has_code, current = True, None
    return {name: " ".join(parts) for name, parts in comments.items()}
