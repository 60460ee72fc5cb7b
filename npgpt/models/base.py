"""What npgpt's models share: the loss on their logits, the backward from it, and a large
training batch split across the threads.

A model computes its logits in ``_logits(*inputs)`` and their backward in
``_logits_backward(dlogits)``; its ``forward`` checks its arguments and hands them to
:meth:`Model._forward`, which adds the loss:

    logits = _logits(*inputs);   loss = mean cross-entropy(logits, targets)
    backward(dlogits = d loss / d logits, or any upstream dlogits) -> _logits_backward(dlogits)

Splitting: a step's operations are too small to share two cores well (each one starts and
joins the threads), so when a training forward's batch is large enough the model cuts it by
rows into one shard per thread and runs each shard whole on its own thread
(:class:`npgpt.runtime.parallel.DataParallel`). The loss, the logits and the gradients are
the whole batch's, up to float rounding; ``data_parallel`` ("auto", "on", "off") chooses, as
:func:`npgpt.runtime.parallel.shards_for` says. A training forward also keeps freed memory in
the process (:func:`npgpt.runtime.memory.retain_freed_memory`), so each step reuses the
pages of the last one.
"""
from __future__ import annotations

import numpy as np

from ..errors import BackwardError
from ..module import Module
from ..runtime.memory import retain_freed_memory
from ..runtime.parallel import DataParallel, in_shard, shards_for


class Model(Module):
    """A model whose ``forward(..., targets)`` returns ``(logits, loss)`` and whose
    ``backward(dlogits=None)`` starts from that loss. Subclasses set ``self.loss_fn`` (a
    :class:`~npgpt.layers.loss.CrossEntropyLoss`) and define ``_logits`` and
    ``_logits_backward``."""

    data_parallel = "auto"          # split a training batch across threads: auto | on | off
    _targets_name = "targets"       # what the targets argument is called, for errors

    def _forward(self, inputs: tuple, targets=None, splittable: bool = True):
        """(logits, loss or None) of ``_logits(*inputs)``; ``inputs`` have the batch first
        (or are None). ``splittable`` False keeps the batch whole (e.g. with a KV cache)."""
        self._split = None
        runner = self._split_runner(inputs, targets) if splittable else None
        if runner is None:
            logits = self._logits(*inputs)
        else:      # each shard's layers on its own thread; the loss below sees the whole batch
            logits = np.concatenate(runner.forward_rows(type(self)._logits, inputs))
            self._split = runner
        self._has_loss = targets is not None
        return logits, (self.loss_fn(logits, targets) if targets is not None else None)

    def backward(self, dlogits=None):
        runner, self._split = getattr(self, "_split", None), None
        if dlogits is None:
            if self._cache is None and runner is None or not getattr(self, "_has_loss", False):
                raise BackwardError(f"{type(self).__name__}.backward() needs a forward with "
                                    f"{self._targets_name} (or pass dlogits)")
            dlogits, _ = self.loss_fn.backward(1.0)
        if runner is None:
            self._logits_backward(dlogits)
        else:
            runner.backward_rows(type(self)._logits_backward, dlogits)
        return None

    def _split_runner(self, inputs: tuple, targets) -> DataParallel | None:
        """The DataParallel to run a forward on, or None to run it whole: only a training
        forward with targets splits, and never inside a shard."""
        if targets is None or not self.keeps_activations or in_shard():
            return None
        retain_freed_memory()
        x = inputs[0]
        n = shards_for(self.data_parallel, self, len(x), x.shape[1] if x.ndim > 1 else 1)
        if n < 2:
            return None
        runner = getattr(self, "_runner", None)
        if runner is None or runner.n_shards != n:
            if runner is not None:
                runner.close()
            runner = self._runner = DataParallel(self, n)
        return runner


def _shard_forward(module: Model, *inputs_and_targets):
    """One shard of a split forward: the module's rows, whole."""
    *inputs, targets = inputs_and_targets
    return module._forward(tuple(inputs), targets, splittable=False)
