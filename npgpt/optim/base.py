"""The optimizer base: parameter groups, ``zero_grad``, ``set_lr``, flat state save/load.

An optimizer holds parameter groups: dicts with ``"params"`` (a list of :class:`Parameter`)
and per-group settings (``lr``, ``weight_decay``); settings a group does not give come from
the optimizer's defaults. ``step()`` updates every ``param.data`` in place from ``param.grad``.

The optimizer state (``state_dict()``) is a flat ``name -> array`` dict, ready for safetensors:
``step`` and, per parameter ``i`` in group order, one array per state name (``{i}.exp_avg``,
``{i}.exp_avg_sq`` for Adam; ``{i}.momentum`` for SGD).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..module import Parameter


def _as_groups(params, defaults: dict) -> list[dict]:
    params = list(params)
    if not params:
        raise ConfigError("optimizer got an empty parameter list")
    if not isinstance(params[0], dict):
        params = [{"params": params}]
    groups = []
    for g in params:
        group = dict(defaults)
        group.update(g)
        group["params"] = list(group["params"])
        for p in group["params"]:
            if not isinstance(p, Parameter):
                raise ConfigError(f"optimizer expects npgpt Parameters, got {type(p).__name__}")
        # frozen parameters (a LoRA base) get no state and are never updated
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if group["params"]:
            groups.append(group)
    if not groups:
        raise ConfigError("optimizer got only frozen parameters (requires_grad False)")
    return groups


class LearningRate:
    """``set_lr`` and ``lr`` over ``self.param_groups``: what a schedule talks to."""

    def set_lr(self, lr: float):
        """Set the learning rate of every group (what a schedule does each step); a group
        with an ``lr_scale`` (Muon's matrices) gets ``lr * lr_scale``."""
        for g in self.param_groups:
            g["lr"] = lr * g["lr_scale"] if "lr_scale" in g else lr

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]


class Optimizer(LearningRate):
    """Base class: parameter groups, ``zero_grad``, ``set_lr``, flat state save/load."""

    _state_names: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        for name in ("lr", "momentum", "weight_decay", "eps"):
            value = defaults.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name}={value!r} must be a finite number >= 0")
        self.param_groups = _as_groups(params, defaults)
        self.step_count = 0
        # per-parameter state arrays, allocated lazily on the first step
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self._all_params()]

    def _all_params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self):
        for p in self._all_params():
            p.grad.fill(0)

    def state_names(self, group: dict) -> tuple[str, ...]:
        """The state arrays each parameter of ``group`` keeps (one optimizer may mix kinds)."""
        return self._state_names

    def _names(self) -> list[tuple[Parameter, tuple[str, ...]]]:
        return [(p, self.state_names(g)) for g in self.param_groups for p in g["params"]]

    def _param_state(self, i: int, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        st = self.state[i]
        if not st:
            for name in self.state_names(group):
                st[name] = np.zeros_like(p.data)
        return st

    def step(self):
        self.step_count += 1
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                self._update(p, self._param_state(i, p, group), group)
                i += 1

    def _update(self, p: Parameter, st: dict, group: dict):
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        for i, ((p, names), st) in enumerate(zip(self._names(), self.state)):
            for name in names:
                out[f"{i}.{name}"] = st[name] if st else np.zeros_like(p.data)
        return out

    def load_state_dict(self, state: dict):
        if not isinstance(state, dict):
            raise CheckpointError(f"optimizer state is a {type(state).__name__}, expected a "
                                  "dict of arrays (state_dict())")
        named = self._names()
        expected = {f"{i}.{n}": p.shape for i, (p, names) in enumerate(named) for n in names}
        missing = sorted(set(expected) - set(state))
        wrong = [f"{k}: {tuple(np.shape(state[k]))} vs {expected[k]}"
                 for k in expected if k in state and tuple(np.shape(state[k])) != expected[k]]
        if "step" not in state or missing or wrong:
            raise CheckpointError(
                f"optimizer state does not match the model: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}{' and step' if 'step' not in state else ''}"
                f"; mis-shaped {wrong[:5]}")
        self.step_count = int(state["step"])
        for i, (p, names) in enumerate(named):
            self.state[i] = {n: np.array(state[f"{i}.{n}"], dtype=p.data.dtype) for n in names}
