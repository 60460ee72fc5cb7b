"""What the Trainer does differently on several ranks: its step, its evaluation, its checks.

The Trainer (npgpt.trainer) keeps its loop; when it runs under mpiexec it hands these parts to
a :class:`DistributedTraining`:

- :meth:`forward_backward`: this rank's rows of every micro-batch, forward and backward (on
  the rank's own threads too, through the Trainer's DataParallel), the gradient sum started
  during the last backward, and the global batch's mean loss, the same on every rank;
- :meth:`clip_grad_norm`: the norm of the summed gradient, the same on every rank;
- :meth:`eval_losses`: each rank evaluates its share of the eval batches; every rank gets
  every batch's loss;
- :meth:`check_weights`: the weights' checksums compared across ranks.

Weighting: rank r's gradient is multiplied by its share of the step's counted targets before
the sum, so the sum is the gradient of the global batch's mean loss (the rule
:class:`~npgpt.runtime.parallel.DataParallel` follows across threads). The shares are taken over the
whole step; they are the same for every micro-batch whenever every target counts, which is
the case for batches of :func:`~npgpt.data.get_batch`.
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from ..errors import DistributedError
from . import row_bounds
from .buckets import FlatParameters, GradientSync


class DistributedTraining:
    """The multi-rank parts of ``trainer``'s step on ``world`` (see the module docstring).
    Moves the model's weights and gradients into flat buffers; with ``trainer.config.zero``
    = 1, replaces ``trainer.optimizer`` by a :class:`~.zero.ShardedAdamW`."""

    def __init__(self, world, trainer):
        self.world, self.model = world, trainer.model
        c = trainer.config
        self.batch_size, self.grad_accum = c.batch_size, c.grad_accum
        self.bounds = row_bounds(c.batch_size, world.size)
        self.flat = FlatParameters(self.model.parameters())
        mb = os.environ.get("NPGPT_BUCKET_MB", "")
        try:
            bucket_bytes = max(int(float(mb) * (1 << 20)), 1) if mb else None
        except (ValueError, OverflowError):
            raise DistributedError(f"NPGPT_BUCKET_MB={mb!r} must be a finite number") from None
        # a GPT's token embedding: its backward, the last step, writes the batch's rows only
        wte = getattr(getattr(self.model, "wte", None), "weight", None)
        self.sync = GradientSync(world, self.flat, bucket_bytes, zero=c.zero == 1,
                                 rows_last=self.flat.index.get(id(wte)))
        self.zero = None
        if c.zero == 1:
            from .zero import ShardedAdamW
            self.zero = trainer.optimizer = ShardedAdamW(trainer.optimizer, self.sync)
        self.ignore_index = getattr(getattr(self.model, "loss_fn", None), "ignore_index", None)
        self.check_weights(0)        # the ranks' first meeting: they start from one model
        world.started = True

    @property
    def rows(self) -> tuple[int, int]:
        r = self.world.rank
        return self.bounds[r], self.bounds[r + 1]

    def _counted(self, y) -> int:
        return int(y.size if self.ignore_index is None
                   else np.count_nonzero(y != self.ignore_index))

    # --- the step ------------------------------------------------------------------------
    def forward_backward(self, runner, batches) -> float:
        """Forward and backward of this rank's rows of each ``(x, y)`` of the step's global
        micro-batches, the gradients summed over the ranks (and divided by the number of
        micro-batches); returns the step's mean loss over the global batch."""
        lo, hi = self.rows
        total = sum(self._counted(y) for _, y in batches)
        mine = sum(self._counted(y[lo:hi]) for _, y in batches)
        weight = mine / total if total else 0.0
        if not self.flat.intact():
            raise DistributedError("a parameter's data or grad array was replaced during "
                                   "training; the flat buffers no longer hold them")
        local = 0.0
        try:
            for k, (x, y) in enumerate(batches):
                if k == len(batches) - 1:
                    # the backward reports finished parameters unless threads split it
                    # (the replicas' gradients are added into the model's only at its end)
                    self.sync.arm(self.model, weight / len(batches),
                                  listen=min(runner.n_shards, hi - lo) == 1,
                                  rows=np.unique(x))
                if hi > lo:
                    local += runner.forward_backward(x[lo:hi], y[lo:hi])
        except BaseException:
            self.sync.disarm()
            raise
        (loss,) = self.sync.finish(np.array([weight * local]))
        return float(loss) / len(batches)

    def clip_grad_norm(self, params, max_norm: float) -> float:
        if self.zero is not None:
            return self.zero.clip_grad_norm(max_norm)
        from ..optim import clip_grad_norm
        return clip_grad_norm(params, max_norm)     # the summed gradient: the same everywhere

    # --- evaluation and checks ---------------------------------------------------------
    def eval_losses(self, forward, batches) -> list[float]:
        """Each batch's loss, every batch evaluated by one rank (a contiguous share each);
        the sum over ranks adds zeros to each value, so it is exact."""
        cut = row_bounds(len(batches), self.world.size)
        r = self.world.rank
        losses = np.zeros(len(batches))
        for i in range(cut[r], cut[r + 1]):
            losses[i] = forward(*batches[i])
        return self.world.allreduce(losses, "the evaluation").tolist()

    def checksum(self) -> int:
        crc = 0
        for buffer in self.flat.data.values():
            crc = zlib.crc32(memoryview(buffer).cast("B"), crc)
        return crc

    def check_weights(self, step: int) -> None:
        """Stop the run (every rank together) if the ranks' weights are not bit for bit the
        same."""
        sums = self.world.allgather(self.checksum(), "the weights' checksum")
        differ = [r for r, s in enumerate(sums) if s != sums[0]]
        if differ:
            error = DistributedError(
                f"the weights of rank{'s' if len(differ) > 1 else ''} "
                f"{', '.join(map(str, differ))} differ from rank 0's at step {step} (CRC32 "
                f"{', '.join(f'{s:08x}' for s in sums)}); the ranks have diverged")
            error.all_ranks = True
            raise error

    def describe(self, threads: int) -> str:
        """The banner: ranks, threads per rank, the global batch and its split."""
        shares = sorted({b - a for a, b in zip(self.bounds[:-1], self.bounds[1:])})
        rows = " or ".join(map(str, shares))
        return (f"MPI: {self.world.size} ranks x {threads} thread{'s' if threads > 1 else ''}; "
                f"global batch {self.batch_size} sequences, {rows} per rank; gradients "
                f"{self.flat.nbytes / 1e6:.1f} MB in {len(self.sync.buckets)} buckets"
                f"{'; ZeRO-1 (AdamW moments sharded)' if self.zero is not None else ''}")
