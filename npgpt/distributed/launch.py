"""Setting a rank up before the command runs: its threads, its error handling."""
from __future__ import annotations

import os

from . import get_world, launched_size, local_size


def start(command: str, threads: int | None = None):
    """The run's :class:`~.world.World` under a launch of 2+ ranks (None otherwise), with
    uncaught errors ending the job cleanly and ``threads`` threads per rank (by default
    ``NPGPT_NUM_THREADS``, else the machine's cores shared between its ranks)."""
    if launched_size() < 2:
        return None
    w = get_world()
    w.install_handlers(command)
    from ..runtime.threads import set_num_threads
    if threads is not None:
        set_num_threads(threads)
    elif not os.environ.get("NPGPT_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        set_num_threads(max(1, (cores or 1) // local_size()))
    return w
