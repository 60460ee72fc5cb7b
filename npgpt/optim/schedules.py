"""Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay.

Each is a function of the step (``cosine_schedule``, ``wsd_schedule``), for a run of
``max_steps`` steps. :func:`schedule_lr` is their common form over the *progress* of the run,
a fraction in [0, 1]: the Trainer gives it ``step / max_steps``, or, under a time budget, the
elapsed share of the budget, so the same decay fits any machine's speed.
"""
from __future__ import annotations

import math

from ..contract import checked
from ..errors import ConfigError


SCHEDULES = ("cosine", "wsd")      # the decay after warmup
COOLDOWNS = ("linear", "sqrt")     # the shape of warmup-stable-decay's final descent


def decay_factor(progress: float, schedule: str = "cosine", cooldown_frac: float = 0.2,
                 cooldown: str = "linear") -> float:
    """How much of ``lr - min_lr`` is left at ``progress`` in [0, 1]: 1 at the start, 0 at
    the end.

    cosine:  (1 + cos(pi p)) / 2
    wsd:     1 while p < 1 - f (the stable phase), then over the last fraction f of the run,
             with x = (p - (1 - f)) / f: 1 - x (linear) or 1 - sqrt(x) (sqrt; Hägele et al.
             2024 found this cooldown shape better than linear)
    """
    p = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule != "wsd":
        raise ConfigError(f"schedule={schedule!r} must be one of {', '.join(SCHEDULES)}")
    if cooldown not in COOLDOWNS:
        raise ConfigError(f"cooldown={cooldown!r} must be one of {', '.join(COOLDOWNS)}")
    if not 0.0 < cooldown_frac <= 1.0:
        raise ConfigError(f"cooldown_frac={cooldown_frac} must be in (0, 1]")
    if p < 1.0 - cooldown_frac:
        return 1.0
    if p >= 1.0:
        return 0.0          # (exactly: 1 - (1 - f) rounds to just under f)
    x = min((p - (1.0 - cooldown_frac)) / cooldown_frac, 1.0)
    return 1.0 - (x if cooldown == "linear" else math.sqrt(x))


@checked
def schedule_lr(progress: float, step: int, lr: float, min_lr: float, warmup_steps: int,
                schedule: str = "cosine", cooldown_frac: float = 0.2,
                cooldown: str = "linear") -> float:
    """The learning rate at ``step`` (counted from 0) and ``progress`` (the run's fraction
    done after warmup, in [0, 1]): linear warmup to ``lr`` over ``warmup_steps`` steps, then
    ``min_lr + decay_factor(progress) * (lr - min_lr)``.

    Warmup counts steps under any budget: it protects the first updates of a fresh model,
    whatever time they take."""
    if step < 0 or warmup_steps < 0:
        raise ConfigError(f"step={step}, warmup_steps={warmup_steps} must be >= 0")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return min_lr + decay_factor(progress, schedule, cooldown_frac, cooldown) * (lr - min_lr)


def step_progress(step: int, warmup_steps: int, max_steps: int) -> float:
    """The decay's progress at ``step`` of a ``max_steps`` run: 0 after warmup, 1 at the end."""
    return (step - warmup_steps) / max(1, max_steps - warmup_steps)


@checked
def cosine_schedule(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
    ``max_steps`` (and ``min_lr`` after). ``step`` counts from 0."""
    if step < 0 or warmup_steps < 0 or max_steps < 1:
        raise ConfigError(f"step={step}, warmup_steps={warmup_steps} must be >= 0 and "
                          f"max_steps={max_steps} >= 1")
    if step >= max(max_steps, warmup_steps):
        return min_lr
    return schedule_lr(step_progress(step, warmup_steps, max_steps), step, lr, min_lr,
                       warmup_steps)


@checked
def wsd_schedule(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int,
                 cooldown_frac: float = 0.2, cooldown: str = "linear") -> float:
    """Warmup-stable-decay: linear warmup to ``lr``, ``lr`` held, then the last
    ``cooldown_frac`` of the steps after warmup descend to ``min_lr`` (linearly, or as
    1 - sqrt); ``min_lr`` after ``max_steps``."""
    if step < 0 or warmup_steps < 0 or max_steps < 1:
        raise ConfigError(f"step={step}, warmup_steps={warmup_steps} must be >= 0 and "
                          f"max_steps={max_steps} >= 1")
    if step >= max(max_steps, warmup_steps):
        return min_lr
    return schedule_lr(step_progress(step, warmup_steps, max_steps), step, lr, min_lr,
                       warmup_steps, "wsd", cooldown_frac, cooldown)
