"""ZeRO-1: AdamW whose moments are sharded across the ranks.

With ``--zero 1`` the gradients are reduce-scattered (:class:`~.buckets.GradientSync` with
``zero=True``): rank r receives the summed gradient of its piece of every bucket, updates the
weights of that piece with AdamW (the same fused kernel, element for element the same update
as :class:`npgpt.optim.AdamW` on the whole model), and the updated pieces are then gathered
so that every rank again holds all the weights. Each rank keeps the two moments of its pieces
only: optimizer memory per rank falls by the rank count.

Checkpoints hold the whole optimizer state in AdamW's own layout (``{i}.exp_avg``, ...),
gathered on rank 0 when saved and cut into pieces again when loaded, so a checkpoint moves
freely between ZeRO-1 and plain runs and between world sizes.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import CheckpointError
from ..optim import LearningRate
from .buckets import GradientSync


class ShardedAdamW(LearningRate):
    """Stands in for the Trainer's :class:`~npgpt.optim.AdamW` (same groups and settings):
    ``set_lr``, ``lr``, ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``,
    ``clip_grad_norm``."""

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, optimizer, sync: GradientSync):
        self.param_groups, self.sync = optimizer.param_groups, sync
        self.world, flat = sync.world, sync.flat
        self.step_count = 0
        self.order = [flat.index[id(p)] for g in self.param_groups for p in g["params"]]
        decay = {}
        for g in self.param_groups:
            for p in g["params"]:
                decay[flat.index[id(p)]] = g
        # (bucket, start, stop in the flat buffer, offset in the shard, group) runs of
        # this rank's pieces, cut at parameter ends (the groups' weight decay differs)
        self.runs = []
        r = self.world.rank
        for b, bucket in enumerate(sync.buckets):
            at, cut = sync.shard_at[b]
            lo, hi = bucket.start + cut[r], bucket.start + cut[r + 1]
            for i in bucket.members:
                _, a, z = flat.where[i]
                a, z = max(a, lo), min(z, hi)
                if a < z:
                    self.runs.append((bucket.key, a, z, at + a - lo, decay[i]))
        self.m = {k: np.zeros_like(s) for k, s in sync.shard.items()}
        self.v = {k: np.zeros_like(s) for k, s in sync.shard.items()}

    # --- the Optimizer surface the Trainer uses (set_lr and lr: LearningRate) --------------

    def zero_grad(self):
        for g in self.sync.flat.grad.values():
            g.fill(0)

    def clip_grad_norm(self, max_norm: float) -> float:
        """Global-norm clipping of the summed gradient, each rank scaling its own pieces."""
        own = sum(float(np.vdot(s, s)) for s in self.sync.shard.values())
        total = float(np.sqrt(self.world.allreduce([own], "the gradient norm")[0]))
        if max_norm > 0 and np.isfinite(total) and total > max_norm:
            scale = max_norm / (total + 1e-6)
            for s in self.sync.shard.values():
                s *= s.dtype.type(scale)
        return total

    def step(self):
        self.step_count += 1
        flat, shard = self.sync.flat, self.sync.shard
        for key, a, z, o, g in self.runs:
            b1, b2 = g["betas"]
            n = z - a
            kernels.adamw_step(flat.data[key][a:z], shard[key][o:o + n], self.m[key][o:o + n],
                               self.v[key][o:o + n], g["lr"], b1, b2, g["eps"],
                               g["weight_decay"], self.step_count)
        self._gather_weights()

    def _gather_weights(self):
        from mpi4py.util.dtlib import from_numpy_dtype
        comm, MPI = self.world.comm, self.sync.MPI
        requests = []
        for b, bucket in enumerate(self.sync.buckets):
            _, cut = self.sync.shard_at[b]
            data = self.sync.flat.data[bucket.key][bucket.start:bucket.stop]
            counts, displs = np.diff(cut).tolist(), cut[:-1]
            requests.append(comm.Iallgatherv(
                MPI.IN_PLACE, [data, counts, displs, from_numpy_dtype(data.dtype)]))
        self.world.wait(requests, "the weights' all-gather")

    # --- checkpoints -------------------------------------------------------------------
    def _full(self, which: dict) -> dict | None:
        """The whole moment buffers on rank 0 (None on the others): every rank's runs."""
        comm = self.world.comm
        flat = self.sync.flat
        full = ({k: np.zeros(d.size, d.dtype) for k, d in flat.data.items()}
                if self.world.is_main else None)
        for key, buf in which.items():
            recv = None
            if self.world.is_main:
                sizes = self.world.allgather(buf.size, "the optimizer state")
                recv = np.empty(sum(sizes), buf.dtype)
                requests = [comm.Igatherv(buf, [recv, sizes], root=0)]
            else:
                self.world.allgather(buf.size, "the optimizer state")
                requests = [comm.Igatherv(buf, None, root=0)]
            self.world.wait(requests, "the optimizer state")
            if self.world.is_main:
                self._unshard(full[key], recv, key)
        return full

    def _unshard(self, out, gathered, key):
        """Put each rank's shard (concatenated in rank order) back in the flat layout."""
        sync, start = self.sync, 0
        for r in range(self.world.size):
            for b, bucket in enumerate(sync.buckets):
                if bucket.key != key:
                    continue
                _, cut = sync.shard_at[b]
                n = cut[r + 1] - cut[r]
                out[bucket.start + cut[r]:bucket.start + cut[r + 1]] = gathered[start:start + n]
                start += n

    def state_dict(self) -> dict:
        """AdamW's layout, whole, on rank 0; on the other ranks the same names with shapes
        only (every rank must call this: the moments are gathered)."""
        m, v = self._full(self.m), self._full(self.v)
        flat = self.sync.flat
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        for j, i in enumerate(self.order):
            key, a, z = flat.where[i]
            shape = flat.params[i].data.shape
            if m is None:
                out[f"{j}.exp_avg"] = out[f"{j}.exp_avg_sq"] = shape
            else:
                out[f"{j}.exp_avg"] = m[key][a:z].reshape(shape)
                out[f"{j}.exp_avg_sq"] = v[key][a:z].reshape(shape)
        return out

    def load_state_dict(self, state: dict):
        flat = self.sync.flat
        names = [f"{j}.{n}" for j in range(len(self.order)) for n in self._state_names]
        missing = [k for k in names + ["step"] if k not in state]
        if missing:
            raise CheckpointError(f"optimizer state does not match the model: missing "
                                  f"{missing[:5]}")
        for name, moments in (("exp_avg", self.m), ("exp_avg_sq", self.v)):
            for key, a, z, o, _ in self.runs:
                for j, i in enumerate(self.order):
                    k, pa, pz = flat.where[i]
                    if k == key and pa < z and a < pz:     # this run lies inside param i
                        src = np.asarray(state[f"{j}.{name}"]).reshape(-1)
                        moments[key][o:o + z - a] = src[a - pa:z - pa]
                        break
        self.step_count = int(state["step"])
