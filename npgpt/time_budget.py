"""Training for a span of time rather than a number of steps.

``TrainConfig.time_budget`` (``npgpt train --time-budget 5m``) is a duration: seconds (``300``)
or a number with a unit (``90s``, ``5m``, ``1.5h``). The run trains until that much
*training* time has passed (evaluation and checkpoints are not counted), and its learning
rate decays over the elapsed share of the budget instead of the share of the steps, so
warmup, the stable phase and the decay fit the budget on a fast machine and a slow one alike.

``budget_clock="cpu"`` counts the process's CPU time instead of the time that passed: on a
machine shared with other work, it measures the compute the run actually got.

The time spent is saved in trainer.json (``train_time``), so a resumed run counts the whole
run against its budget. Under mpiexec rank 0's clock decides: its elapsed time is sent to
every rank after each step, so all ranks use the same learning rate and stop at the same step.
"""
from __future__ import annotations

import math
import re
import time

from .errors import ConfigError

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*")
EXPECTED = "a duration > 0: seconds (300) or a number with a unit s, m or h (90s, 5m, 1h)"


def parse_duration(value) -> float:
    """Seconds in ``value``: a number of seconds, or a string ``"300"``, ``"90s"``, ``"5m"``,
    ``"1.5h"``. ConfigError for zero, a negative or non-finite number, or an unknown unit."""
    if isinstance(value, bool):
        seconds = math.nan
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).lower())
        unit = match.group(2) if match else None
        seconds = float(match.group(1)) * _UNITS[unit] if unit in _UNITS else math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"time_budget={value!r} must be {EXPECTED}")
    return seconds


def is_duration(value) -> bool:
    try:
        parse_duration(value)
    except ConfigError:
        return False
    return True


def describe(seconds: float) -> str:
    """``300.0`` -> ``"5m"``, ``90.0`` -> ``"1m30s"``, ``2.5`` -> ``"2.5s"``."""
    minutes, rest = divmod(seconds, 60.0)
    if minutes < 1:
        return f"{rest:g}s"
    return f"{minutes:.0f}m" + (f"{rest:g}s" if rest else "")


class TrainClock:
    """The training time of a run and, with a ``budget`` (seconds), when it is spent.

    ``mark()`` starts counting (at the loop's start and after each evaluation), ``lap()``
    adds the time since the last mark or lap (after each step). ``elapsed`` starts at the
    time a resumed run had already spent. ``world``: under mpiexec, the ranks take rank 0's
    elapsed time at each lap (one small sum over the ranks, only when there is a budget).
    """

    def __init__(self, budget: float | None = None, elapsed: float = 0.0, world=None,
                 kind: str = "wall"):
        self.budget, self.elapsed, self.world = budget, float(elapsed), world
        self.kind = kind
        self._start = self._now()

    def _now(self) -> float:
        # cpu: this process's CPU time (all its threads), the compute it actually got on a
        # machine it shares; wall: the time that passed
        return time.process_time() if self.kind == "cpu" else time.perf_counter()

    def mark(self) -> None:
        self._start = self._now()

    def lap(self) -> None:
        now = self._now()
        self.elapsed += now - self._start
        self._start = now
        if self.world is not None and self.budget is not None:
            mine = self.elapsed if self.world.is_main else 0.0
            self.elapsed = float(self.world.allreduce([mine], "the time budget's clock")[0])

    @property
    def spent(self) -> bool:
        return self.budget is not None and self.elapsed >= self.budget

    @property
    def progress(self) -> float:
        """The elapsed share of the budget (0 without one)."""
        return 0.0 if self.budget is None else min(self.elapsed / self.budget, 1.0)

    def banner(self) -> str:
        what = "training" if self.kind == "wall" else "training CPU time (all threads)"
        return (f"time budget: {describe(self.budget)} of {what} (evaluation and checkpoints "
                f"not counted); the learning rate decays over the elapsed share of it"
                + (f"; {self.elapsed:.1f} s already spent" if self.elapsed else ""))


def learning_rate(config, step: int, clock: TrainClock) -> float:
    """The learning rate of optimizer step ``step`` (from 0) of a run with TrainConfig
    ``config``: its schedule over the budget's elapsed share, or without a budget over the
    steps (for ``schedule="cosine"`` exactly :func:`~npgpt.optim.cosine_schedule`)."""
    from .optim.schedules import schedule_lr, step_progress
    c = config
    if clock.budget is not None:
        progress = clock.progress
    elif step >= max(c.max_steps, c.warmup_steps):
        progress = 1.0
    else:
        progress = step_progress(step, c.warmup_steps, c.max_steps)
    return schedule_lr(progress, step, c.lr, c.min_lr, c.warmup_steps, c.schedule,
                       c.cooldown_frac, c.cooldown)
