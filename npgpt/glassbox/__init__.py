"""The glass box: every activation and gradient of a model by name, and what to ask of them.

    logits, cache = model.run_with_cache(idx, targets=None, names=None, grads=False)
    cache["h.3.attn.pattern"]; cache.logit_lens(); cache.decompose_resid()

Importing this module gives ``GPT``, ``Transformer`` and ``TextClassifier`` their
``run_with_cache``; the models themselves know nothing of it. ``import npgpt`` does not import
it (it loads the numba kernels): it gives the three classes a ``run_with_cache`` that imports
it at the first call.
Names, shapes and the tools: docs/glassbox.md.
"""
from __future__ import annotations

from ..models.classifier import TextClassifier
from ..models.gpt import GPT
from ..models.seq2seq import Transformer
from .cache import Cache, neighbours
from .capture import run, select
from .lens import LogitLens, logit_lens
from .names import sites_of


def cache_names(model) -> list[str]:
    """Every activation name ``run_with_cache`` knows for this model, in forward order."""
    return list(sites_of(model))


def _run(model, forward, idx, targets, names, grads):
    sites = sites_of(model)
    logits, loss, values = run(model, sites, names, grads, forward, targets is not None)
    return logits, Cache(model, values, list(sites), idx, targets, logits, loss)


def _gpt_run_with_cache(self, idx, targets=None, names=None, grads=False):
    """(logits, Cache) of one forward of ``idx`` (B, T): the activations ``names`` asks for
    (None: all; a list of names or globs such as ``"h.3.*"``; or a callable name -> bool),
    and with ``grads=True`` (needs ``targets``) their gradients of the mean cross-entropy,
    from the model's own backward (``NAME.grad``; the parameters' ``.grad`` get theirs added
    too, as with any backward). Dropout is off for the run; the model's modes are restored.
    """
    return _run(self, lambda: self.forward(idx, targets), idx, targets, names, grads)


def _seq2seq_run_with_cache(self, src, tgt_in, tgt_out=None, names=None, grads=False,
                            src_padding_mask=None):
    """(logits, Cache) of one forward of the encoder-decoder, as GPT.run_with_cache."""
    return _run(self, lambda: self.forward(src, tgt_in, tgt_out, src_padding_mask),
                tgt_in, tgt_out, names, grads)


def _classifier_run_with_cache(self, idx, targets=None, names=None, grads=False,
                               padding_mask=None):
    """(logits, Cache) of one forward of the classifier, as GPT.run_with_cache."""
    return _run(self, lambda: self.forward(idx, targets, padding_mask), idx, targets, names, grads)


GPT.run_with_cache = _gpt_run_with_cache
Transformer.run_with_cache = _seq2seq_run_with_cache
TextClassifier.run_with_cache = _classifier_run_with_cache

__all__ = ["Cache", "LogitLens", "cache_names", "logit_lens", "neighbours", "select"]
