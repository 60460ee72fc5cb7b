"""Gradients in flat buffers, summed across ranks in buckets while the backward runs.

After :class:`FlatParameters`, every parameter's ``data`` and ``grad`` are views into one flat
buffer per dtype, in parameter order; so "the gradient" is a few long arrays that MPI can sum
without a copy, and the weights can be checksummed or gathered the same way.

:class:`GradientSync` cuts the gradient buffers into buckets of about ``bucket_bytes``,
starting from the last parameters (the first ones the backward finishes). The model's
backward says as it goes which modules' parameters now hold their whole gradient
(:meth:`npgpt.module.Module.grads_final`); once every parameter of the next bucket is done,
that bucket is scaled by this rank's share of the batch and its ``Iallreduce`` (or, with
ZeRO-1, ``Ireduce_scatter``) started, and the backward goes on. Buckets start strictly in
order, so every rank issues the same collectives in the same order whatever its timing. A
rank without rows, or whose backward does not report, starts them all at the end.

MPI moves a nonblocking collective only while some thread calls into it, and a sum of a few
MB takes dozens of such calls (each moves a piece and waits for the other rank's answer). So
the backward's own reports push the open requests, and the wait at the end polls without
sleeping (:meth:`~.world.World.wait`). A gradient of at least ``POLL_FROM_BYTES`` (buckets
of half a MB and more, between reports tens of ms apart) also gets a small thread that polls them
every half millisecond while the backward runs. A smaller one does without: its buckets need
only a few calls each, the reports come a millisecond apart, and a thread waking 2,000 times
a second to take the GIL from a backward of small NumPy calls slows that backward more than
the sum costs. ``NPGPT_MPI_POLL`` = 1 or 0 turns the thread on or off whatever the size.
docs/performance.md, "Distributed training", has what each choice costs.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..errors import DistributedError
from ..module import listen_grads_final

POLL_SECONDS = 5e-4
POLL_FROM_BYTES = 8 << 20      # the progress thread from this gradient size on
BUCKETS_PER_STEP = 16          # about this many buckets, between the bounds below
MIN_BUCKET_BYTES, MAX_BUCKET_BYTES = 256 << 10, 8 << 20


def polls(total_bytes: int) -> bool:
    """Whether a gradient of ``total_bytes`` is summed with the progress thread's help:
    ``NPGPT_MPI_POLL`` (1 or 0) if set, else from ``POLL_FROM_BYTES`` on."""
    value = os.environ.get("NPGPT_MPI_POLL", "").strip()
    if value not in ("", "0", "1"):
        raise DistributedError(f"NPGPT_MPI_POLL={value!r} must be 1 (poll the sums from a "
                               "thread) or 0 (do not)")
    return total_bytes >= POLL_FROM_BYTES if value == "" else value == "1"


def bucket_bytes_for(total_bytes: int) -> int:
    """The default bucket size: a gradient cut into about 16 pieces, so that little of it is
    left to send when the backward ends, while each collective stays large enough that its
    fixed cost (tens of microseconds) does not add up."""
    return int(min(MAX_BUCKET_BYTES, max(MIN_BUCKET_BYTES, total_bytes // BUCKETS_PER_STEP)))


class FlatParameters:
    """Moves every parameter's ``data`` and ``grad`` into views of one flat buffer per dtype
    (values kept). ``data[key]`` / ``grad[key]`` are the buffers; ``where[i]`` is parameter
    ``i``'s ``(key, start, stop)``."""

    def __init__(self, params):
        self.params = list(params)
        sizes: dict[str, int] = {}
        self.where = []
        for p in self.params:
            key = p.data.dtype.str
            start = sizes.get(key, 0)
            self.where.append((key, start, start + p.data.size))
            sizes[key] = start + p.data.size
        self.data = {k: np.empty(n, np.dtype(k)) for k, n in sizes.items()}
        self.grad = {k: np.zeros(n, np.dtype(k)) for k, n in sizes.items()}
        for p, (key, a, b) in zip(self.params, self.where):
            data = self.data[key][a:b].reshape(p.data.shape)
            data[...] = p.data
            grad = self.grad[key][a:b].reshape(p.data.shape)
            grad[...] = p.grad
            p.data, p.grad = data, grad
        self.index = {id(p): i for i, p in enumerate(self.params)}

    def intact(self) -> bool:
        """True while every parameter still holds the views (nothing replaced its arrays)."""
        return all(p.data.base is self.data[k] and p.grad.base is self.grad[k]
                   for p, (k, _, _) in zip(self.params, self.where))

    @property
    def nbytes(self) -> int:
        return sum(g.nbytes for g in self.grad.values())


class Bucket:
    """A contiguous run ``[start, stop)`` of one gradient buffer: whole parameters, taken
    from the end of the parameter list."""

    def __init__(self, key, start, stop, members):
        self.key, self.start, self.stop, self.members = key, start, stop, members

    @property
    def size(self) -> int:
        return self.stop - self.start


def make_buckets(flat: FlatParameters, bucket_bytes: int, alone=()) -> list[Bucket]:
    """Buckets of about ``bucket_bytes`` (a parameter larger than that gets its own, and so
    does each parameter index in ``alone``), the last parameters first, one dtype each."""
    buckets, members, nbytes = [], [], 0
    for i in reversed(range(len(flat.params))):
        key, start, stop = flat.where[i]
        size = (stop - start) * np.dtype(key).itemsize
        if members and (flat.where[members[-1]][0] != key or nbytes + size > bucket_bytes
                        or i in alone or members[-1] in alone):
            buckets.append(_bucket(flat, members))
            members, nbytes = [], 0
        members.append(i)
        nbytes += size
    if members:
        buckets.append(_bucket(flat, members))
    return buckets


def _bucket(flat, members) -> Bucket:
    key = flat.where[members[0]][0]
    return Bucket(key, flat.where[members[-1]][1], flat.where[members[0]][2], list(members))


def pieces(size: int, n: int) -> list[int]:
    """Where each of ``n`` ranks' piece of ``size`` elements starts (ZeRO-1's split)."""
    return [size * r // n for r in range(n + 1)]


class GradientSync:
    """Sums the gradients of ``flat`` over the ranks of ``world``, bucket by bucket, while the
    backward runs: :meth:`arm` before the step's last backward, :meth:`finish` after it.

    zero: with True, each bucket is reduce-scattered instead: rank r receives only its piece
    (:func:`pieces`) of every bucket, summed, in ``shard[key]`` (for ZeRO-1's AdamW).
    rows_last: the index of a 2-D parameter whose gradient the end of the backward changes
    in a few rows only (a token embedding: its backward scatters into the rows of the batch's
    ids, the last thing a GPT's backward does, while a tied LM head wrote all of it first).
    Its other rows are sent at the backward's first report (:meth:`arm` names the rows).
    """

    def __init__(self, world, flat: FlatParameters, bucket_bytes: int | None = None,
                 zero: bool = False, rows_last: int | None = None):
        from mpi4py import MPI
        self.MPI, self.world, self.flat, self.zero = MPI, world, flat, zero
        self.rows_last = None if zero else rows_last
        if bucket_bytes is None:
            bucket_bytes = bucket_bytes_for(flat.nbytes)
        self.buckets = make_buckets(flat, bucket_bytes,
                                    alone=() if self.rows_last is None else (self.rows_last,))
        self._bucket_of = {}
        for b, bucket in enumerate(self.buckets):
            for i in bucket.members:
                self._bucket_of[i] = b
        self._module_members: dict[int, list[int]] = {}
        self.shard, self.shard_at = {}, []      # ZeRO-1: the summed pieces and where they sit
        if zero:
            sizes: dict[str, int] = {}
            for bucket in self.buckets:
                cut = pieces(bucket.size, world.size)
                n = cut[world.rank + 1] - cut[world.rank]
                at = sizes.get(bucket.key, 0)
                self.shard_at.append((at, cut))
                sizes[bucket.key] = at + n
            self.shard = {k: np.zeros(n, np.dtype(k)) for k, n in sizes.items()}
        self._requests: list = []
        self.poll = polls(flat.nbytes)
        self._lock = threading.Lock()
        self._polling = threading.Event()
        self._poller = None
        self._model = None
        self.stats = {"steps": 0, "bytes": 0, "exposed_s": 0.0, "started_early": 0,
                      "polled": False}
        self._reset()

    def _reset(self):
        self._pending = [len(b.members) for b in self.buckets]
        self._ready = [False] * len(self.flat.params)
        self._posted = 0
        self._scale = 1.0
        self._rows = None           # this step's late rows of parameter rows_last
        self._early_sent = True
        self._late = None           # the late rows' gradient being summed
        self._early = None          # (mask of the other rows, their gradient being summed)

    # --- during the backward ----------------------------------------------------------
    def arm(self, model, scale: float, listen: bool = True, rows=None) -> None:
        """Get ready for the step's last backward: each bucket will be multiplied by
        ``scale`` (this rank's share of the global batch) and sent as soon as ``model``'s
        backward reports its parameters final (``listen``; else all go at :meth:`finish`).
        rows: the sorted distinct rows of parameter ``rows_last`` that the backward's end
        changes, the same on every rank (the ids of the whole global micro-batch)."""
        self._reset()
        self._scale = scale
        if self.rows_last is not None and rows is not None:
            shape = self.flat.params[self.rows_last].data.shape
            if len(shape) == 2 and 2 * len(rows) <= shape[0]:      # else: all at the end
                self._rows, self._early_sent = np.asarray(rows, np.int64), False
        if listen:
            self._model = model
            listen_grads_final(model, self._on_final)

    def _on_final(self, modules) -> None:
        if not self._early_sent:
            self._post_early_rows()
        for module in modules:
            members = self._module_members.get(id(module))
            if members is None:
                members = [self.flat.index[id(p)] for p in module.parameters()
                           if id(p) in self.flat.index]
                self._module_members[id(module)] = members
            for i in members:
                if not self._ready[i]:
                    self._ready[i] = True
                    self._pending[self._bucket_of[i]] -= 1
        while self._posted < len(self.buckets) and self._pending[self._posted] == 0:
            self._post()
            self.stats["started_early"] += 1
        if self._requests and self._lock.acquire(blocking=False):
            try:                     # a push between layers too, beside the poller's
                self.MPI.Request.Testall(self._requests)
            finally:
                self._lock.release()

    def _rows_grad(self) -> np.ndarray:
        return self.flat.params[self.rows_last].grad

    def _post_early_rows(self) -> None:
        """The rows of ``rows_last`` the rest of the backward leaves alone, gathered into one
        array and summed while the backward goes on (scattered back by :meth:`finish`): one
        request, where a request per run of untouched rows would be thousands of small
        collectives for a large vocabulary."""
        self._early_sent = True
        grad = self._rows_grad()
        others = np.ones(grad.shape[0], bool)
        others[self._rows] = False
        early = grad[others]
        if self._scale != 1.0:
            early *= early.dtype.type(self._scale)
        request = self.world.comm.Iallreduce(self.MPI.IN_PLACE, early, op=self.MPI.SUM)
        with self._lock:
            self._requests.append(request)
        self._early = (others, early)
        self.stats["bytes"] += early.nbytes
        self._start_polling()

    def _post(self) -> None:
        b = self._posted
        bucket = self.buckets[b]
        if self._rows is not None and bucket.members == [self.rows_last]:
            return self._post_late_rows()
        grad = self.flat.grad[bucket.key][bucket.start:bucket.stop]
        if self._scale != 1.0:
            grad *= grad.dtype.type(self._scale)
        comm = self.world.comm
        if self.zero:
            at, cut = self.shard_at[b]
            r = self.world.rank
            out = self.shard[bucket.key][at:at + cut[r + 1] - cut[r]]
            request = comm.Ireduce_scatter(grad, out, np.diff(cut).tolist(), op=self.MPI.SUM)
        else:
            request = comm.Iallreduce(self.MPI.IN_PLACE, grad, op=self.MPI.SUM)
        with self._lock:
            self._requests.append(request)
        self._posted += 1
        self.stats["bytes"] += grad.nbytes
        self._start_polling()

    def _post_late_rows(self) -> None:
        """The rows the backward's end changed, gathered into one array (scattered back by
        :meth:`finish`)."""
        late = self._rows_grad()[self._rows]
        if self._scale != 1.0:
            late *= late.dtype.type(self._scale)
        request = self.world.comm.Iallreduce(self.MPI.IN_PLACE, late, op=self.MPI.SUM)
        with self._lock:
            self._requests.append(request)
        self._late = late
        self._posted += 1
        self.stats["bytes"] += late.nbytes
        self._start_polling()

    def _start_polling(self) -> None:
        if not self.poll:
            return
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="npgpt-mpi-progress",
                                            daemon=True)
            self._poller.start()
            self.stats["polled"] = True
        self._polling.set()

    def _poll(self) -> None:
        """Calls into MPI while requests are open, so their transfers move during the backward."""
        Testall = self.MPI.Request.Testall
        while True:
            self._polling.wait()
            with self._lock:
                if self._polling.is_set() and self._requests:
                    Testall(self._requests)
            time.sleep(POLL_SECONDS)

    # --- after it ----------------------------------------------------------------------
    def finish(self, extra=None) -> np.ndarray | None:
        """Start the buckets not yet sent and wait for all of them (with the timeout of
        :meth:`World.wait`). ``extra``: a small float64 array summed over the ranks along
        with the gradients (the step's loss); returned summed."""
        if self._model is not None:
            listen_grads_final(self._model, None)
            self._model = None
        if not self._early_sent:
            self._post_early_rows()
        while self._posted < len(self.buckets):
            self._post()
        out = None
        if extra is not None:
            send = np.ascontiguousarray(extra, np.float64)
            out = np.empty_like(send)
            with self._lock:
                self._requests.append(self.world.comm.Iallreduce(send, out, op=self.MPI.SUM))
        t0 = time.perf_counter()
        self._polling.clear()
        with self._lock:             # the poller is out of MPI from here on
            requests, self._requests = self._requests, []
        self.world.wait(requests, "the gradient sum")
        if self._early is not None:
            others, early = self._early
            self._rows_grad()[others] = early
            self._early = None
        if self._late is not None:
            self._rows_grad()[self._rows] = self._late
            self._late = None
        self.stats["exposed_s"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        return out

    def disarm(self) -> None:
        """Forget a step abandoned before :meth:`finish` (the model reports to no one)."""
        if self._model is not None:
            listen_grads_final(self._model, None)
            self._model = None
