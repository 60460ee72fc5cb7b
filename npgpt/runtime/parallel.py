"""Data parallelism inside one process: a batch split by rows across threads.

The usual way to use two cores is inside each operation: every product and kernel is cut in
two and the halves run at once. A small model's step is ~50 products and ~20 kernels of a few
hundred microseconds each, and every one of them starts and joins both threads, wakes a
sleeping worker of BLAS or of numba and waits for the slower half.

:class:`DataParallel` cuts the batch instead. Shard 0 runs on the model itself, shard k on a
replica that shares the model's weight arrays but has its own gradients and activations;
each shard's forward and backward run start to end on one thread, with single-threaded BLAS
and serial kernels. NumPy's products and ufuncs and npgpt's kernels all release the GIL, so
the shards run truly at once. The replicas' gradients are then added into the model's.

Three ways to drive it:
- :meth:`DataParallel.forward` and :meth:`DataParallel.backward`: each shard computes its own
  loss, weighted by its share of the counted targets; they meet the shards twice per step.
- :meth:`DataParallel.forward_backward` (what the Trainer runs): each replica goes on from its
  forward into its backward, so only the model's own thread waits, once per phase.
- :meth:`DataParallel.forward_rows` and :meth:`DataParallel.backward_rows`: the shards run a
  given function of their rows and the caller keeps the rest whole; a model's own forward uses
  them for its layers and computes the loss on the joined logits (``npgpt.models.base``).

A split costs each replica's gradient sum and the meetings, and at a small batch per shard
each weight is read by both threads for few rows, so :func:`auto_shards` splits only when
every shard keeps at least ``n_embd`` token rows (the figures: docs/performance.md).

The result is the gradient of the whole batch's loss: shard k's loss gradient is weighted by
its share of the counted targets (targets equal to the loss's ``ignore_index`` do not count),
so uneven shards and padding give the same gradient as one pass, up to float rounding.
Each replica's dropout generators are re-seeded from the model's own at every forward, so
shards draw different masks and a checkpoint of the model's generators still fixes the run.

Memory: each replica adds one set of gradients (4 bytes per parameter in float32); the
activations are split, not copied.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import BackwardError, ConfigError, InputError
from ..module import Module
from .threads import init_threads, serial


MODES = ("auto", "on", "off")     # TrainConfig.data_parallel, --data-parallel


def auto_shards(model: Module, batch_size: int, block_size: int, n_threads: int | None = None
                ) -> int:
    """How many shards :class:`DataParallel` should cut a (batch_size, block_size) batch into:
    one per thread, when the batch has a row for each and every shard keeps at least
    ``n_embd`` token rows; otherwise 1 (no split: the threads work inside each operation)."""
    n_threads = _threads() if n_threads is None else n_threads
    n = min(int(n_threads), int(batch_size))
    n_embd = getattr(getattr(model, "config", None), "n_embd", getattr(model, "n_embd", None))
    if n < 2 or n_embd is None or not _splittable(model):
        return 1
    return n if batch_size * block_size // n >= n_embd else 1


def shards_for(mode: str, model: Module, batch_size: int, block_size: int) -> int:
    """The shard count of a mode in :data:`MODES`: "off" 1, "on" one per thread (at most one
    per batch row), "auto" :func:`auto_shards`."""
    if mode not in MODES:
        raise ConfigError(f"data_parallel={mode!r} must be one of {', '.join(MODES)}")
    if mode == "off":
        return 1
    if mode == "on":
        return max(1, min(_threads(), int(batch_size)))
    return auto_shards(model, batch_size, block_size)


def _splittable(model) -> bool:
    """Whether the model's loss is a mean over counted targets (a cross-entropy with an
    ``ignore_index``), which is what lets shards be weighted by their counts."""
    loss_fn = getattr(model, "loss_fn", None)
    return hasattr(loss_fn, "ignore_index") and hasattr(loss_fn, "backward")


def _threads() -> int:
    from .jit import n_threads      # imports numba: not at ``import npgpt``
    return n_threads()


@dataclasses.dataclass
class _Replica:
    module: Module
    params: list            # module.parameters(), in the model's order
    generators: list        # module.generators(), paired with the model's


class DataParallel:
    """Forward and backward of ``model`` on a batch split into ``n_shards`` row blocks that run
    on as many threads; :meth:`forward` then :meth:`backward` act as ``model.forward(x, y)``
    then ``model.backward()`` do (the gradients are *added* into the model's ``grad``).

    model: ``forward(x, targets) -> (logits, loss)`` with a :class:`CrossEntropyLoss` as
    ``model.loss_fn`` and ``backward(dlogits)`` (GPT, the classifier, ...); with one shard,
    any model with ``forward(x, targets)`` and ``backward()``, run as it is.
    n_shards: number of row blocks (default: numba's thread count); a batch with fewer rows
    is cut into one row per shard.

    The replicas follow the model's arrays (updated in place or replaced by ``to`` or
    ``load_state_dict``) and its train/eval mode, but not a change of its modules: make a new
    DataParallel after adding or swapping layers.
    """

    def __init__(self, model: Module, n_shards: int | None = None):
        n_shards = _threads() if n_shards is None else n_shards
        if not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
            raise ConfigError(f"n_shards must be a positive integer, got {n_shards!r}")
        if n_shards > 1 and not _splittable(model):
            raise ConfigError(f"DataParallel needs a model whose loss_fn is a CrossEntropyLoss "
                              f"to split its batch; {type(model).__name__} has none")
        self.model = model
        self.n_shards = int(n_shards)
        self.shard_losses: list[float] = []    # each shard's own mean loss, last forward
        self._replicas: list[_Replica] = []
        self._params = self._generators = None
        self._pool: ThreadPoolExecutor | None = None
        self._active = 0          # shards of the last forward (0: no forward to differentiate)
        self._weights: list[float] = []

    # --- replicas -----------------------------------------------------------------------
    # Walking the module tree for its parameters costs a noticeable part of a small step, so
    # the model's and each replica's parameter and generator lists are taken once: the model's
    # structure must not change under a DataParallel (its arrays may: see _sync).
    def _replica(self) -> _Replica:
        """A copy of the model sharing its weight arrays, with its own zero gradients and no
        activations."""
        memo = {}
        for m in self.model.modules():
            memo[id(m._cache)] = None
            for name in getattr(m, "_shared", ()):    # frozen arrays that are not Parameters
                a = getattr(m, name)                  # (int8 weights): shared, not copied
                memo[id(a)] = a
        for p in self._params:
            memo[id(p.data)] = p.data
        module = copy.deepcopy(self.model, memo)
        params = module.parameters()
        for p in params:
            if p.requires_grad:           # frozen ones stay without a buffer
                p.grad = np.zeros(p.data.shape, p.data.dtype)
        return _Replica(module, params, module.generators())

    def _sync(self, n: int):
        """n - 1 replicas, rebuilt if the model's arrays were replaced (``to``, ``load``)."""
        if self._params is None:
            self._params = self.model.parameters()
            self._generators = self.model.generators()
        self._replicas = [r for r in self._replicas
                          if all(p.data is q.data for p, q in zip(self._params, r.params))]
        while len(self._replicas) < n - 1:
            self._replicas.append(self._replica())
        for r in self._replicas[:n - 1]:
            if r.module.training != self.model.training:
                r.module.train(self.model.training)
            if not self.model.training:   # no masks drawn: the model's streams stay as they
                continue                  # are, so an evaluation never moves training's
            for g, h in zip(self._generators, r.generators):
                seed = int(g.integers(2 ** 63))
                h.bit_generator.state = type(g.bit_generator)(seed).state
        if self._pool is None and self.n_shards > 1:
            init_threads()        # thread settings and SciPy's BLAS, before the pool starts
            self._pool = ThreadPoolExecutor(self.n_shards - 1, thread_name_prefix="npgpt-shard",
                                            initializer=_serial_thread)

    def _run(self, own, tasks: list):
        """own() on this thread while each ``(fn, args)`` of ``tasks`` runs on the pool; all
        of them finish before the first error (own's, then the tasks' in order) is raised.
        Returns own's result and then the tasks'."""
        results, error = [], None
        with serial():      # before the shards start: none of them may use 2 threads
            futures = [self._pool.submit(fn, *args) for fn, args in tasks]
            try:
                with _shard():
                    results.append(own())
            except BaseException as e:     # noqa: BLE001 - re-raised once the others are done
                error = e
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as e:     # noqa: BLE001
                    error = error or e
        if error is not None:
            raise error
        return results

    # --- the step -----------------------------------------------------------------------
    def forward(self, x, targets) -> float:
        """The whole batch's mean loss over counted targets (a float); keeps each shard's
        activations for :meth:`backward` (in training mode, outside ``no_grad``)."""
        shards, weights = self._split((x,), targets)
        n = len(shards)
        own = lambda: _forward(self.model, shards[0])     # noqa: E731
        if n == 1:           # the model whole, its operations using every thread
            losses = [own()]
        else:
            losses = self._run(own, [(_forward, (r.module, shard))
                                     for r, shard in zip(self._replicas, shards[1:])])
        self._weights, self.shard_losses, self._active = weights, losses, n
        return float(np.dot(weights, losses))

    def forward_rows(self, fn, inputs: tuple) -> list:
        """``fn(module, *inputs_k)`` on each shard's rows of ``inputs`` (arrays with the batch
        first, or None), the model's own on this thread; returns the shards' results in row
        order. With :meth:`backward_rows`, this splits a model's layers and leaves its loss
        whole: the caller joins the outputs and computes the loss on them."""
        shards = self._split_rows(inputs)
        self._active = len(shards)
        own = lambda: _as_shard(fn, self.model, *shards[0])     # noqa: E731
        if len(shards) == 1:
            return [own()]
        return self._run(own, [(_as_shard, (fn, r.module, *shard))
                               for r, shard in zip(self._replicas, shards[1:])])

    def backward_rows(self, fn, dout) -> None:
        """``fn(module, dout_k)`` on each shard of the last :meth:`forward_rows`, ``dout_k``
        being its rows of ``dout``; the replicas' gradients are then added into the model's."""
        n, self._active = self._active, 0
        if n == 0:
            raise BackwardError("DataParallel.backward_rows() called with no forward_rows to "
                                "differentiate")
        b = self._bounds
        if np.shape(dout)[:1] != (b[-1],):
            raise InputError(f"the gradient must have the batch's {b[-1]} rows first, got "
                             f"shape {np.shape(dout)}")
        pieces = [dout[lo:hi] for lo, hi in zip(b[:-1], b[1:])]
        if n == 1:
            _as_shard(fn, self.model, pieces[0])
            return
        self._run(lambda: _as_shard(fn, self.model, pieces[0]),
                  [(_zeroed_backward, (fn, r, d)) for r, d in zip(self._replicas, pieces[1:])])
        self._add_replica_grads(n)

    def forward_backward(self, x, targets) -> float:
        """:meth:`forward` then :meth:`backward` in one call, with the same loss and gradients,
        but the shards meet once: each replica runs its forward and then at once its backward,
        while the model's own thread waits only for the replicas' forwards to succeed before its
        backward (so a failing forward still leaves the gradients untouched) and then for their
        backwards. Returns the whole batch's mean loss."""
        shards, weights = self._split((x,), targets)
        n = len(shards)
        if n == 1:
            self.shard_losses = [_forward(self.model, shards[0])]
            _as_shard(type(self.model).backward, self.model)
            return self.shard_losses[0]
        forwarded = [threading.Event() for _ in range(n - 1)]
        losses = [None] * n

        def own():
            losses[0] = _forward(self.model, shards[0])
            for event in forwarded:
                event.wait()
            if all(loss is not None for loss in losses):   # every forward succeeded
                _backward(self.model, weights[0], ())

        self._run(own, [(_forward_backward, (r, shards[k], weights[k], losses, k,
                                             forwarded[k - 1]))
                        for k, r in enumerate(self._replicas[:n - 1], start=1)])
        self._add_replica_grads(n)
        self.shard_losses = losses
        return float(np.dot(weights, losses))

    def _split(self, inputs: tuple, targets):
        """The batch's row blocks ``[(inputs_k, targets_k)]`` and each block's share of the
        counted targets; any forward kept for :meth:`backward` is dropped first."""
        self._active = 0
        targets = np.asarray(targets)
        blocks = self._split_rows((*inputs, targets))
        shards = [(block[:-1], block[-1]) for block in blocks]
        if len(shards) == 1:
            return shards, [1.0]
        ignore = self.model.loss_fn.ignore_index
        counts = np.array([np.count_nonzero(t != ignore) for _, t in shards], np.float64)
        total = counts.sum()
        return shards, (list(counts / total) if total > 0 else [0.0] * len(shards))

    def _split_rows(self, arrays: tuple) -> list[tuple]:
        """Each shard's rows of ``arrays`` (None stays None): one block when the batch is not
        split, after which the replicas are ready; the bounds are kept for the backward."""
        arrays = tuple(None if a is None else np.asarray(a) for a in arrays)
        x = arrays[0]
        if x.ndim < 1 or any(a is not None and a.shape[:1] != x.shape[:1] for a in arrays):
            raise InputError(f"inputs and targets must have the same batch size, got shapes "
                             f"{', '.join(str(a.shape) for a in arrays if a is not None)}")
        n = min(self.n_shards, len(x))
        if n <= 1:
            self._bounds = [0, len(x)]
            return [arrays]
        self._sync(n)
        bounds = self._bounds = list(np.linspace(0, len(x), n + 1).round().astype(int))
        return [tuple(None if a is None else a[lo:hi] for a in arrays)
                for lo, hi in zip(bounds[:-1], bounds[1:])]

    def _add_replica_grads(self, n: int) -> None:
        for k, p in enumerate(self._params):
            if not p.requires_grad:
                continue
            for r in self._replicas[:n - 1]:
                p.grad += r.params[k].grad

    def backward(self) -> None:
        """Add the gradient of the last forward's loss into the model's ``grad``."""
        n, self._active = self._active, 0
        if n == 0:
            raise BackwardError("DataParallel.backward() called with no forward to "
                                "differentiate: run forward() first")
        if n == 1:
            _as_shard(type(self.model).backward, self.model)
            return
        weights = self._weights
        self._run(lambda: _backward(self.model, weights[0], ()),    # the model's add up
                  [(_backward, (r.module, w, r.params))
                   for r, w in zip(self._replicas, weights[1:n])])
        self._add_replica_grads(n)

    def __deepcopy__(self, memo):
        """A copy of a model holding a DataParallel gets none (threads and replicas are not
        copied; the copy makes its own when it needs one)."""
        return None

    def close(self):
        """Stop the shard threads (they also stop with the process)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __repr__(self):
        return f"DataParallel({type(self.model).__name__}, n_shards={self.n_shards})"


def _serial_thread():
    """A shard thread runs numba's serial kernels (its thread count is per thread) and only
    shards."""
    import numba
    numba.set_num_threads(1)
    _local.shard = True


_local = threading.local()


def in_shard() -> bool:
    """Whether this thread is running one shard of a split step: a model asked to forward
    there runs its rows whole, never splitting them again."""
    return getattr(_local, "shard", False)


@contextlib.contextmanager
def _shard():
    """This thread runs a shard for the span of the block."""
    before = in_shard()
    _local.shard = True
    try:
        yield
    finally:
        _local.shard = before


def _as_shard(fn, *args):
    """fn(*args) as one shard of a split step."""
    with _shard():
        return fn(*args)


def _forward(module, shard) -> float:
    (x,), targets = shard
    with _shard():
        _, loss = module.forward(x, targets)
    return float(loss)


def _forward_backward(replica: _Replica, shard, weight, losses, k, forwarded) -> None:
    """A replica's forward, ``forwarded`` set once it has ended (``losses[k]`` holds the loss
    if it succeeded), then its backward."""
    try:
        losses[k] = _forward(replica.module, shard)
    finally:
        forwarded.set()
    _backward(replica.module, weight, replica.params)


def _zero(params) -> None:
    for p in params:          # a replica's gradients hold only its own shard's
        p.zero_grad()         # (a frozen parameter has none)


def _zeroed_backward(fn, replica: _Replica, dout) -> None:
    _zero(replica.params)
    _as_shard(fn, replica.module, dout)


def _backward(module, weight, own_params) -> None:
    """One shard's backward, from its share ``weight`` of the whole batch's mean loss."""
    _zero(own_params)
    dlogits, _ = module.loss_fn.backward(1.0)
    dlogits *= dlogits.dtype.type(weight)     # this shard's share of the whole batch's mean
    _as_shard(module.backward, dlogits)
