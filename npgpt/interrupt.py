"""Ctrl-C and SIGTERM during training: stop after the step, keep it, say how to go on.

The first SIGINT (Ctrl-C) or SIGTERM (what schedulers send before they kill a job) only
sets a flag; the training loop looks at it after each step, saves a checkpoint of the step
reached (unless the step's evaluation just did), and ends. A second signal raises
KeyboardInterrupt at once: the checkpoint on disk is the last good one, since every save is
atomic. Under mpiexec the ranks agree on the flag after every step (the largest of one number
over the ranks), so they all stop at the same step and save together (rank 0 writes).

Handlers are installed for the span of :meth:`Trainer.train` only, from the main thread (a
loop in another thread keeps the process's handlers), and the previous ones put back after.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The stop request of a training loop; ``world``: the MPI world (None: one process)."""

    def __init__(self, world=None):
        self.world = world
        self.signum: int | None = None       # the first signal received (or agreed on)
        self._previous = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:          # the second: stop now
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def requested(self) -> bool:
        """Whether the loop stops after this step: a signal here, or (under mpiexec) on
        any rank; every rank gets the same answer."""
        if self.world is None:
            return self.signum is not None
        mine = 0.0 if self.signum is None else float(self.signum)
        agreed = int(self.world.allreduce([mine], "the stop request", op=self.world.MPI.MAX)[0])
        if agreed and self.signum is None:     # another rank's signal: the same stop here
            self.signum = agreed
        return bool(agreed)
