"""The ranks of one run: who is who, waits that cannot hang, and how a failing rank ends the job.

A collective waits for every rank; if one rank raised an error and left, or stopped, the
others would wait for ever. So:

- every wait here polls its requests against a deadline (``NPGPT_MPI_TIMEOUT`` seconds,
  default 300) and, past it, ends the whole job with one line naming what it waited for;
- an error that only some ranks met (a bug, a full disk on rank 0) is printed by the rank
  that met it, and that rank calls ``MPI_Abort``, which ends every rank within seconds;
- an error every rank reaches together, at the same step (a non-finite loss, which every
  rank sees after the loss is reduced), is marked ``all_ranks`` and ends each rank normally,
  rank 0 alone printing it;
- a rank killed outright (SIGKILL, a lost machine) is seen by mpiexec, which stops the rest:
  MPICH's mpiexec kills them at once and names the dead rank's exit; launchers that send
  SIGTERM first (Open MPI, SLURM) get one line from rank 0's handler.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from ..errors import DistributedError, NpgptError

DEFAULT_TIMEOUT = 300.0       # seconds a rank waits for the others before it ends the job
SPIN_SECONDS = 1.0            # a wait polls without sleeping this long, then backs off


class World:
    """This process's place among the ranks: ``rank``, ``size``, ``comm`` (mpi4py's
    COMM_WORLD) and the waits and reductions the training step uses."""

    def __init__(self, comm=None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        value = os.environ.get("NPGPT_MPI_TIMEOUT", "")
        try:
            self.timeout = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            raise DistributedError(f"NPGPT_MPI_TIMEOUT={value!r} must be a number of seconds"
                                   ) from None
        self.command = "npgpt"        # the name error lines start with (the CLI sets it)
        self.checkpoint_note = ""     # where the last good checkpoint is, for the last line
        self.started = False          # set once the ranks have met in a first collective
        self._handlers = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- waits ------------------------------------------------------------------------
    def wait(self, requests, what: str) -> None:
        """Wait for ``requests`` (mpi4py Requests) to complete, polling, and end the job if
        they take longer than the timeout: a rank that stopped answering must not hang the
        others."""
        Testall = self.MPI.Request.Testall
        if not requests:
            return
        now = time.monotonic()
        deadline, spin_until = now + self.timeout, now + SPIN_SECONDS
        pause = 1e-4
        while not Testall(requests):
            now = time.monotonic()
            if now < spin_until:
                # MPI moves a transfer only inside calls like this one, and a sum of a few MB
                # takes dozens of them: sleeping between them would multiply its time.
                # Yielding lets any thread that shares this core run first.
                os.sched_yield()
                continue
            if now > deadline:
                self.abort(f"rank {self.rank} waited {self.timeout:g} s for the other ranks "
                           f"({what}); a rank has stopped or hangs")
            time.sleep(pause)
            pause = min(pause * 2, 1e-2)

    def allreduce(self, values, what: str, op=None) -> np.ndarray:
        """The elementwise sum (or ``op``) of a small float64 array over the ranks."""
        send = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(send)
        self.wait([self.comm.Iallreduce(send, out, op=op or self.MPI.SUM)], what)
        return out

    def allgather(self, value: int, what: str) -> list[int]:
        send = np.array([value], np.int64)
        out = np.empty(self.size, np.int64)
        self.wait([self.comm.Iallgather(send, out)], what)
        return out.tolist()

    def barrier(self, what: str) -> None:
        self.wait([self.comm.Ibarrier()], what)

    # --- ending -------------------------------------------------------------------------
    def abort(self, message: str, code: int = 2):
        """Print one line and end every rank (MPI_Abort)."""
        print(f"{self.command}: error: {message}{self.checkpoint_note}", file=sys.stderr,
              flush=True)
        self.comm.Abort(code)

    def install_handlers(self, command: str) -> None:
        """One line and exit on SIGTERM (what Open MPI and SLURM send the survivors when a
        rank died; MPICH's mpiexec kills them outright), and an excepthook that aborts the
        job on an uncaught error. ``command`` starts the error lines."""
        self.command = command
        if self._handlers:
            return
        self._handlers = True

        def on_term(signum, frame):
            if self.is_main:
                print(f"{command}: error: the MPI job was stopped (a rank ended or was "
                      f"killed){self.checkpoint_note}", file=sys.stderr, flush=True)
            os._exit(143)

        signal.signal(signal.SIGTERM, on_term)
        previous = sys.excepthook

        def excepthook(kind, value, tb):
            previous(kind, value, tb)
            sys.stderr.flush()
            self.comm.Abort(1)

        sys.excepthook = excepthook

    def fail(self, error: BaseException) -> int:
        """What a rank does with an error that ended its command: an error every rank met
        together (``all_ranks``) is printed by rank 0 and returns exit code 2 on each; any
        other is printed by this rank and ends the job (MPI_Abort)."""
        # an error of the set-up (a bad flag, a missing file), before the ranks first met,
        # is every rank's: they all read the same command line and files
        shared = not self.started and isinstance(error, NpgptError)
        if shared or getattr(error, "all_ranks", False):
            if self.is_main:
                print(f"{self.command}: error: {error}", file=sys.stderr, flush=True)
            return 2
        if isinstance(error, (NpgptError, OSError, UnicodeDecodeError)):
            who = f" (rank {self.rank} of {self.size})" if not self.is_main else ""
            self.abort(f"{error}{who}")
        import traceback
        traceback.print_exception(type(error), error, error.__traceback__)
        sys.stderr.flush()
        self.comm.Abort(1)
        return 1      # not reached: Abort ends the process
