"""A residual sub-layer in pre-LN or post-LN wiring: the blocks of every model are built of it.

The norm, the branch and its dropout stay attributes of the block (their names are the
checkpoint's); these functions only wire them.
"""
from __future__ import annotations

import numpy as np

from ..module import Module


def residual(x: np.ndarray, norm: Module | None, branch: Module, dropout: Module | None,
             prenorm: bool, *args, **kwargs) -> np.ndarray:
    """One residual sub-layer around ``branch`` (attention or MLP; ``args`` and ``kwargs`` go
    to it):

        pre-LN (GPT-2):   y = x + dropout(branch(norm(x)))
        post-LN (2017):   y = norm(x + dropout(branch(x)))       (no norm: y = x + branch(x))
    """
    h = branch(norm(x) if prenorm else x, *args, **kwargs)
    if dropout is not None:
        h = dropout(h)
    # the add goes into the branch's output, a fresh array nobody keeps (x itself is kept by
    # the norm or the branch that read it, so it is never written in place)
    h += x
    return h if prenorm or norm is None else norm(h)


def residual_backward(dy: np.ndarray, norm: Module | None, branch: Module,
                      dropout: Module | None, prenorm: bool):
    """The backward of :func:`residual`, its forward read bottom-up, the residual adding the
    branch's gradient:

        pre-LN:   dx = dy + norm'(branch'(dropout'(dy)))
        post-LN:  dh = norm'(dy);   dx = dh + branch'(dropout'(dh))

    A branch whose backward returns more than one gradient (cross-attention's (dx, dmemory))
    gets the rest returned beside dx: (dx, dmemory).
    """
    if not prenorm and norm is not None:
        dy = norm.backward(dy)
    grads = branch.backward(dy if dropout is None else dropout.backward(dy))
    dh, more = (grads[0], grads[1:]) if isinstance(grads, tuple) else (grads, ())
    dx = norm.backward(dh) if prenorm else dh
    dx += dy                     # into the branch's fresh gradient, not into dy
    return (dx, *more) if more else dx


def sandwich(x: np.ndarray, norm: Module, branch: Module, post: Module, dropout: Module | None,
             *args, **kwargs) -> np.ndarray:
    """A pre-LN residual sub-layer whose branch output is normalised too (Gemma 2 and 3):

        y = x + dropout(post(branch(norm(x))))
    """
    h = post(branch(norm(x), *args, **kwargs))
    if dropout is not None:
        h = dropout(h)
    h += x                       # into post's fresh output
    return h


def sandwich_backward(dy: np.ndarray, norm: Module, branch: Module, post: Module,
                      dropout: Module | None) -> np.ndarray:
    """The backward of :func:`sandwich`: dx = dy + norm'(branch'(post'(dropout'(dy))))."""
    dh = post.backward(dy if dropout is None else dropout.backward(dy))
    dx = norm.backward(branch.backward(dh))
    dx += dy
    return dx
