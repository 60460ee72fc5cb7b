"""The layer contract, checked where values enter a module (wrapped in by ``Module``).

* a constructor argument annotated ``int``, ``float``, ``bool`` or ``str`` (or ``X | None``)
  must be one: ``Linear("8", 4)`` and ``LayerNorm(2.5)`` are refused, and a size (an ``int``
  without a default, or whose default is positive) must be >= 1;
* forward's inputs must be arrays (or scalars, lists) of numbers, never a string, ``None``
  as the first input, or an object array;
* backward's gradient must be a float array whose shape ends with the shape of the last
  forward's output (a broadcast input such as positions (T, C) gets (B, T, C)).

The errors are :class:`~npgpt.errors.ConfigError` and :class:`~npgpt.errors.InputError`
naming the module, the argument and the value. The checks cost a few isinstance tests per
call; the math of each layer stays in its own forward and backward.
"""
from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from .errors import ConfigError, InputError

_KINDS = {"int", "float", "bool", "str"}


def wrap(cls) -> None:
    """Check the constructor, forward and backward that ``cls`` itself defines."""
    own = cls.__dict__
    if "__init__" in own:
        cls.__init__ = _checked_init(cls, own["__init__"])
    if "forward" in own:
        cls.forward = _checked_forward(cls, own["forward"])
    if "backward" in own:
        cls.backward = _checked_backward(cls, own["backward"])


def _kind(annotation) -> tuple[str | None, bool]:
    """("int", nullable) for the annotation ``int | None``; (None, _) for anything else."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [p.strip() for p in str(text).split("|")]
    kinds = [p for p in parts if p != "None"]
    if len(kinds) == 1 and kinds[0] in _KINDS:
        return kinds[0], "None" in parts
    return None, False


def _ok(kind: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return kind == "bool"
    if kind == "int":
        return isinstance(value, (int, np.integer))
    if kind == "float":
        return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    return False


def _checked_init(cls, init):
    signature = inspect.signature(init)
    rules = []
    for name, p in signature.parameters.items():
        kind, nullable = _kind(p.annotation)
        if kind is None:
            if isinstance(p.annotation, str) and isinstance(init.__globals__.get(p.annotation),
                                                            type):
                rules.append((name, init.__globals__[p.annotation], False, False))
            continue
        size = kind == "int" and (p.default is inspect.Parameter.empty
                                  or (isinstance(p.default, int) and p.default >= 1))
        rules.append((name, kind, nullable, size))

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs).arguments
        except TypeError as e:
            raise ConfigError(f"{cls.__name__}(): {e}") from None
        for name, kind, nullable, size in rules:
            if name not in bound or (bound[name] is None and nullable):
                continue
            value = bound[name]
            _check_value(cls.__name__, name, value, kind, nullable, size)
        init(self, *args, **kwargs)
    return __init__


def _check_value(owner: str, name: str, value, kind, nullable: bool, size: bool) -> None:
    """One argument against its rule: an instance of a class, or a scalar kind ("int",
    "float", "bool", "str"; ``size``: a positive integer)."""
    if isinstance(kind, type):
        if not isinstance(value, kind):
            raise ConfigError(f"{owner}: {name} is a {type(value).__name__}, "
                              f"expected a {kind.__name__}")
    elif not _ok(kind, value) or (size and value < 1):
        what = "a positive integer" if size else {"int": "an integer", "float": "a finite number",
                                                  "bool": "True or False", "str": "a string"}[kind]
        raise ConfigError(f"{owner}: {name}={value!r} must be {what}"
                          f"{' or None' if nullable else ''}")


def _check_input(cls, i, x):
    if isinstance(x, np.ndarray):
        bad = x.dtype.kind in "OUSV"
    elif isinstance(x, (list, tuple)):
        bad = np.asarray(x, dtype=object).dtype.kind == "O" and any(
            isinstance(v, (str, bytes)) or v is None for v in np.ravel(np.asarray(x, dtype=object)))
    else:
        bad = isinstance(x, (str, bytes, dict, set)) or (x is None and i == 0)
    if bad:
        shown = f"a {type(x).__name__}" if not isinstance(x, np.ndarray) else f"a {x.dtype} array"
        where = f"{cls.__name__}.forward: input {i}" if isinstance(cls, type) else \
            f"{cls.__name__}: its input"
        raise InputError(f"{where} is {shown}, expected an array of numbers")


def _checked_forward(cls, forward):
    @functools.wraps(forward)
    def checked(self, *inputs, **kwargs):
        for i, x in enumerate(inputs):
            _check_input(cls, i, x)
        out = forward(self, *inputs, **kwargs)
        if self.keeps_activations:   # (an overriding forward's outer call sets it last)
            first = out[0] if isinstance(out, tuple) and out else out
            if isinstance(first, np.ndarray):
                self.__dict__["_output_shape"] = first.shape
        return out
    return checked


def _checked_backward(cls, backward):
    @functools.wraps(backward)
    def checked(self, *args, **kwargs):
        if self.__dict__.get("_in_backward"):     # an overriding backward calling super()
            return backward(self, *args, **kwargs)
        dy = args[0] if args else next(iter(kwargs.values()), None)
        if dy is not None:
            if isinstance(dy, np.ndarray):
                if dy.dtype.kind != "f":
                    raise InputError(f"{cls.__name__}.backward: the gradient is a {dy.dtype} "
                                     "array, expected floating point")
            elif not isinstance(dy, (int, float, np.floating)) or isinstance(dy, bool):
                raise InputError(f"{cls.__name__}.backward: the gradient is a "
                                 f"{type(dy).__name__}, expected a float array")
            want = self.__dict__.get("_output_shape")
            shape = np.shape(dy)
            if want is not None and shape[len(shape) - len(want):] != want:
                raise InputError(f"{cls.__name__}.backward: gradient of shape {shape}, but the "
                                 f"last forward's output has shape {want}")
        self.__dict__["_in_backward"] = True
        try:
            return backward(self, *args, **kwargs)
        finally:
            self.__dict__["_in_backward"] = False
    return checked


def checked(fn):
    """Check a public function's arguments against its annotations where they enter:
    ``int`` / ``float`` / ``bool`` / ``str`` their type, ``np.ndarray``
    an array of numbers, and a class of the function's module (``config: GPTConfig``) an
    instance of it; other annotations are left alone."""
    signature = inspect.signature(fn)
    rules = None

    def compile_rules():
        out = []
        for name, p in signature.parameters.items():
            kind, nullable = _kind(p.annotation)
            if kind is not None:     # (ranges are the function's own business)
                out.append((name, kind, nullable, False))
            elif p.annotation in ("np.ndarray", np.ndarray):
                out.append((name, "array", False, False))
            elif isinstance(p.annotation, str) and isinstance(fn.__globals__.get(p.annotation),
                                                              type):
                out.append((name, fn.__globals__[p.annotation], False, False))
        return out

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        nonlocal rules
        if rules is None:
            rules = compile_rules()
        try:
            bound = signature.bind(*args, **kwargs).arguments
        except TypeError as e:
            raise ConfigError(f"{fn.__name__}(): {e}") from None
        for name, kind, nullable, size in rules:
            if name not in bound or (bound[name] is None and nullable):
                continue
            value = bound[name]
            if kind == "array":
                _check_input(fn, 0, value)
                if value is None:
                    raise InputError(f"{fn.__name__}: {name} is None, expected an array of numbers")
            else:
                _check_value(fn.__name__, name, value, kind, nullable, size)
        return fn(*args, **kwargs)
    return wrapper
