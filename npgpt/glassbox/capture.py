"""Catching a model's activations and gradients by name, for one run, from outside the model.

A model computes what it always computes; for the length of one call, :class:`Recorder`
listens at the points where the wanted values pass: a layer's ``forward`` (its input or its
output), its ``backward`` (the gradient of its output coming in, the gradient of its input
going out), the scaled dot-product attention's ``attend`` (q, k, v and the pattern) and
``attend_backward``. It does so by giving those module *instances* a wrapping method for the
call and taking it away afterwards, so the model's code is untouched, a model nobody looks at
pays nothing, and a model looked at pays only at the points asked for (a copy of each value
kept, nothing else).

A :class:`Site` says where one name's value passes forward and where its gradient passes
backward; :mod:`npgpt.glassbox.names` lists the sites of each model.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError
from ..layers.dropout import Dropout
from ..layers.sdpa import ScaledDotProductAttention
from ..module import is_grad_enabled, no_grad

# A probe: (module, method name, value(args, result) -> array). The value function sees the
# positional arguments of the call and what it returned.
Probe = tuple


def arg0(args, result):
    """The first argument of the call (a forward's input, a backward's incoming gradient)."""
    return args[0]


def result0(args, result):
    """What the call returned (the first of several: a backward returning (dx, dmemory))."""
    return result[0] if isinstance(result, tuple) else result


@dataclass
class Site:
    """Where the value called ``name`` is caught: ``forward`` a Probe, ``backward`` a Probe for
    its gradient (None: no gradient is offered for this name)."""

    forward: Probe
    backward: Probe | None = None


class Recorder:
    """Listens at probes for one call and keeps copies of what passes (``values``)."""

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}
        self._wrapped: dict[tuple[int, str], tuple] = {}

    def listen(self, name: str, probe: Probe) -> None:
        module, method, value = probe
        key = (id(module), method)
        if key not in self._wrapped:
            original = getattr(module, method)
            listeners: list = []

            def wrapper(*args, **kwargs):
                result = original(*args, **kwargs)
                for keep in listeners:
                    keep(args, result)
                return result

            had = vars(module).get(method)      # an instance's own method, put back after
            setattr(module, method, wrapper)      # an instance attribute shadows the class's
            self._wrapped[key] = (module, method, listeners, had)
        listeners = self._wrapped[key][2]

        def keep(args, result):
            # a copy: the model writes into some of its arrays in place later in the step
            self.values[name] = np.array(value(args, result), copy=True)
        listeners.append(keep)

    def close(self) -> None:
        """Give every module back its own methods."""
        for module, method, _, had in self._wrapped.values():
            if had is None:
                delattr(module, method)
            else:
                setattr(module, method, had)
        self._wrapped.clear()


def compact_names(names) -> list[str]:
    """The names with layer numbers folded: ``h.0.attn.q``, ``h.1.attn.q`` -> ``h.{i}.attn.q``."""
    out = []
    for n in names:
        folded = re.sub(r"^(\w+)\.\d+\.", r"\1.{i}.", n)
        if folded not in out:
            out.append(folded)
    return out


def describe_names(valid) -> str:
    layers = sorted({int(m.group(1)) for n in valid for m in [re.match(r"^\w+\.(\d+)\.", n)] if m})
    text = ", ".join(compact_names(valid))
    if layers:
        text += f" (i = 0..{max(layers)})"
    return text + "; each also as NAME.grad with grads=True"


def select(names, valid: list[str]) -> list[str]:
    """The valid names ``names`` asks for: None (all), a name or glob, a list of names or
    globs, or a callable name -> bool. ``NAME.grad`` asks for NAME. An unknown name, or a glob
    matching nothing, is an InputError listing the valid names."""
    if names is None:
        return list(valid)
    if callable(names):
        return [n for n in valid if names(n) or names(n + ".grad")]
    if isinstance(names, str):
        names = [names]
    chosen: list[str] = []
    for pattern in names:
        if not isinstance(pattern, str):
            raise InputError(f"cache names are strings, globs or a callable; got {pattern!r}")
        base = pattern[:-5] if pattern.endswith(".grad") else pattern
        hits = fnmatch.filter(valid, base) if any(c in base for c in "*?[") else \
            [base] if base in valid else []
        if not hits:
            raise InputError(f"unknown cache name {pattern!r}; valid names: {describe_names(valid)}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in valid if n in chosen]


def _quiet(model):
    """Dropout off everywhere (a cache shows what the model computes, not one noisy draw);
    returns what to put back."""
    saved = []
    for m in model.modules():
        if isinstance(m, Dropout) and m.p:
            saved.append((m, "p", m.p))
            m.p = 0.0
        attention = getattr(m, "_sdpa", None)
        if isinstance(attention, ScaledDotProductAttention) and attention.dropout:
            saved.append((attention, "dropout", attention.dropout))
            attention.dropout = 0.0
    return saved


def run(model, sites: dict[str, Site], names, grads: bool, forward: Callable, has_targets: bool):
    """Run ``forward()`` (the model's own forward, returning (logits, loss)) with the chosen
    sites listened to; with ``grads``, then the model's own backward from the loss.
    Returns (logits, loss, values)."""
    chosen = select(names, list(sites))
    if grads and not has_targets:
        raise InputError("grads=True needs targets: the gradients are those of the loss")
    if grads and not is_grad_enabled():
        raise InputError("grads=True inside no_grad(): a backward needs the activations that "
                         "no_grad() tells the layers not to keep")
    recorder = Recorder()
    modes = [(m, m.training) for m in model.modules()]
    restore = _quiet(model)
    had_dp = "data_parallel" in vars(model)
    old_dp = vars(model).get("data_parallel")
    try:
        for name in chosen:
            site = sites[name]
            recorder.listen(name, site.forward)
            if grads and site.backward is not None:
                recorder.listen(name + ".grad", site.backward)
        if grads:
            model.train()
            model.data_parallel = "off"      # one process, one thread: the listeners see it all
            logits, loss = forward()
            model.backward()
        else:
            model.eval()
            with no_grad():
                logits, loss = forward()
    finally:
        recorder.close()
        for obj, attr, value in restore:
            setattr(obj, attr, value)
        for m, mode in modes:
            m.training = mode
        if had_dp:
            model.data_parallel = old_dp
        elif "data_parallel" in vars(model):
            del model.data_parallel
    return logits, loss, recorder.values
