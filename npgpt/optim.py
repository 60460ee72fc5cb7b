"""Optimizers (SGD, Adam, AdamW), global-norm gradient clipping, warmup + cosine schedule.

An optimizer holds parameter groups: dicts with ``"params"`` (a list of :class:`Parameter`)
and per-group settings (``lr``, ``weight_decay``); settings a group does not give come from
the optimizer's defaults. ``step()`` updates every ``param.data`` in place from ``param.grad``.

The optimizer state (``state_dict()``) is a flat ``name -> array`` dict, ready for safetensors:
``step`` and, per parameter ``i`` in group order, ``{i}.exp_avg`` / ``{i}.exp_avg_sq``
(``{i}.momentum`` for SGD).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from . import kernels
from .contract import checked
from .errors import CheckpointError, ConfigError
from .module import Parameter


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
        """Set the learning rate of every group (what a schedule does each step)."""
        for g in self.param_groups:
            g["lr"] = lr

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

    def _param_state(self, i: int, p: Parameter) -> dict[str, np.ndarray]:
        st = self.state[i]
        if not st:
            for name in self._state_names:
                st[name] = np.zeros_like(p.data)
        return st

    def step(self):
        self.step_count += 1
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                self._update(p, self._param_state(i, p), group)
                i += 1

    def _update(self, p: Parameter, st: dict, group: dict):
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        for i, (p, st) in enumerate(zip(self._all_params(), self.state)):
            for name in self._state_names:
                out[f"{i}.{name}"] = st[name] if st else np.zeros_like(p.data)
        return out

    def load_state_dict(self, state: dict):
        params = self._all_params()
        expected = {f"{i}.{n}": p.shape for i, p in enumerate(params) for n in self._state_names}
        missing = sorted(set(expected) - set(state))
        wrong = [f"{k}: {tuple(np.shape(state[k]))} vs {expected[k]}"
                 for k in expected if k in state and tuple(np.shape(state[k])) != expected[k]]
        if "step" not in state or missing or wrong:
            raise CheckpointError(
                f"optimizer state does not match the model: missing {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}{' and step' if 'step' not in state else ''}"
                f"; mis-shaped {wrong[:5]}")
        self.step_count = int(state["step"])
        for i, p in enumerate(params):
            self.state[i] = {n: np.array(state[f"{i}.{n}"], dtype=p.data.dtype)
                             for n in self._state_names}


class SGD(Optimizer):
    """p -= lr * (g + wd * p), with optional momentum b: buf = b * buf + g (PyTorch's form)."""

    _state_names = ("momentum",)

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _update(self, p, st, group):
        g = p.grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if group["momentum"]:
            buf = st["momentum"]
            if self.step_count == 1:
                buf[...] = g
            else:
                buf *= group["momentum"]
                buf += g
            g = buf
        p.data -= p.data.dtype.type(group["lr"]) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), bias-corrected; ``weight_decay`` here is L2 added to the
    gradient (classic Adam). For decoupled decay use :class:`AdamW`.

        m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        try:
            b1, b2 = betas
            ok = 0 <= b1 < 1 and 0 <= b2 < 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"betas={betas} must each be in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay))

    def _update(self, p, st, group):
        # kept in the parameter's dtype throughout: float32 training never upcasts
        t = self.step_count
        b1, b2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        if self.decoupled or not wd:
            # one fused pass over p, g, m and v (npgpt.kernels.adamw; adamw_update's formula)
            kernels.adamw_step(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps,
                               wd if self.decoupled else 0.0, t)
        else:
            adamw_update(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps, wd, t,
                         decoupled=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p *= 1 - lr * wd first.

    Give biases, norms and embeddings their own group with ``weight_decay=0``.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def adamw_update(p, g, m, v, lr, b1, b2, eps, wd, t, decoupled=True):
    """One Adam(W) step on arrays, in place. The reference for the fused kernel."""
    dt = p.dtype.type
    if wd and decoupled:
        p *= dt(1.0 - lr * wd)
    elif wd:
        g = g + dt(wd) * p
    m *= dt(b1)
    m += dt(1.0 - b1) * g
    v *= dt(b2)
    v += dt(1.0 - b2) * (g * g)
    step_size = lr / (1.0 - b1 ** t)
    denom = np.sqrt(v)
    denom /= dt(math.sqrt(1.0 - b2 ** t))
    denom += dt(eps)
    p -= dt(step_size) * (m / denom)


@checked
def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients so that their global 2-norm is at most ``max_norm``.

    Returns the norm before clipping (a non-finite norm is returned as it is, for the caller
    to act on).
    """
    if max_norm < 0:
        raise ConfigError(f"max_norm={max_norm} must be >= 0 (0 turns clipping off)")
    params = [p for p in params if p.requires_grad]
    total = math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in params))
    if max_norm > 0 and math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad *= p.grad.dtype.type(scale)
    return total


@checked
def cosine_schedule(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
    ``max_steps`` (and ``min_lr`` after). ``step`` counts from 0."""
    if step < 0 or warmup_steps < 0 or max_steps < 1:
        raise ConfigError(f"step={step}, warmup_steps={warmup_steps} must be >= 0 and "
                          f"max_steps={max_steps} >= 1")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
