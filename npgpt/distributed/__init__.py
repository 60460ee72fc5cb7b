"""Data parallel across processes and machines over MPI: ``mpiexec -n N npgpt train ...``.

Every rank holds the whole model. Each step, every rank draws the same global batch from the
same seeded sampler and runs forward and backward on its own rows (:func:`row_bounds`); the
gradients, which live in one flat buffer per dtype, are summed across ranks in buckets while
the backward is still running (:mod:`.buckets`); clipping and AdamW then run identically on
every rank, or, with ZeRO-1, each rank updates its own slice of the weights and the slices are
gathered (:mod:`.zero`). The trajectory therefore does not depend on the number of ranks, up
to float rounding, and a checkpoint written by N ranks resumes on any other number.

Nothing here imports mpi4py until a launch under mpiexec is seen in the environment
(:func:`launched_size`): ``import npgpt`` and every one-process run stay as they are.
"""
from __future__ import annotations

import os

from ..errors import DistributedError

# what MPI launchers put in each rank's environment: the world size
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                   "SLURM_NTASKS")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                         "SLURM_NTASKS_PER_NODE")


def _env_int(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def launched_size() -> int:
    """The number of ranks this process was launched with (1 outside mpiexec), from the
    launcher's environment, without importing mpi4py. SLURM's count only counts under srun
    with an MPI rank variable beside it."""
    size = _env_int(_SIZE_VARIABLES[:3])
    if size is None and ("PMI_RANK" in os.environ or "MPI_LOCALRANKID" in os.environ):
        size = _env_int(_SIZE_VARIABLES[3:4])
    return size or 1


def local_size() -> int:
    """Ranks on this machine (1 outside mpiexec): what the cores are shared between."""
    return _env_int(_LOCAL_SIZE_VARIABLES) or 1 if launched_size() > 1 else 1


_world = None


def get_world():
    """The :class:`~.world.World` of this run (rank, size, the communicator), or None when
    it runs as one process. mpi4py is imported here, and only under a launch of 2+ ranks."""
    global _world
    if _world is not None or launched_size() < 2:
        return _world
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise DistributedError(f"launched as {launched_size()} MPI ranks but mpi4py is not "
                               "installed: pip install 'npgpt[mpi]'") from None
    from .world import World
    _world = World()
    _world.install_handlers("npgpt")     # an error on one rank ends the job, never hangs it
    return _world


def row_bounds(batch_size: int, size: int) -> list[int]:
    """Where each rank's rows of a global batch start: rank r takes rows
    ``bounds[r]:bounds[r + 1]`` (shares differ by at most one row; a rank may get none).

    >>> row_bounds(12, 2), row_bounds(4, 3), row_bounds(1, 2)
    ([0, 6, 12], [0, 1, 3, 4], [0, 0, 1])
    """
    return [round(batch_size * r / size) for r in range(size + 1)]
