"""The layer contract: :class:`Parameter`, :class:`Module`, :class:`ModuleList`, :func:`no_grad`.

A layer is a class with an explicit ``forward`` and ``backward``:

* ``forward(*inputs)`` returns the output and keeps (with :meth:`Module.save`) exactly what
  ``backward`` needs, and nothing in inference mode;
* ``backward(dout)`` returns the gradient with respect to each forward input, in order (a
  single array for one input, a tuple for several, ``None`` for integer inputs such as token
  ids), and *adds* into its parameters' ``grad``.

Gradients accumulate with ``+=``, so a weight used twice (tied embeddings) or a batch split
into micro-batches (gradient accumulation) needs no special code.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Iterator

import numpy as np

from . import contract
from .errors import BackwardError, InputError, StateDictError

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Inference mode for everything inside: forwards keep no activations for backward."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


# id(model) -> what its grads_final calls; kept outside the model, so a copy of the model
# (a thread's replica) reports to no one
_GRADS_FINAL: dict = {}


def listen_grads_final(model, listener=None) -> None:
    """Have ``model.grads_final(*modules)`` call ``listener(modules)``; None stops it."""
    if listener is None:
        _GRADS_FINAL.pop(id(model), None)
    else:
        _GRADS_FINAL[id(model)] = listener


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape and dtype).

    ``grad`` starts at zero and is accumulated with ``+=`` by every backward that uses it.
    A frozen parameter (``requires_grad_(False)``, e.g. a base weight under a LoRA adapter)
    has ``grad = None``: no buffer, no optimizer state, and the layers that own it skip
    computing its gradient (they still return the gradient of their input).
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray, requires_grad: bool = True):
        self.data = np.ascontiguousarray(data)
        if self.data.dtype.kind not in "biuf":
            raise InputError(f"Parameter: data of dtype {self.data.dtype}, expected an array "
                             "of numbers")
        # np.zeros, not zeros_like: the pages stay unmapped until a backward writes them, so
        # a model loaded only for inference never pays for its gradients
        self.grad = np.zeros(self.data.shape, self.data.dtype) if requires_grad else None

    @property
    def requires_grad(self) -> bool:
        return self.grad is not None

    def requires_grad_(self, flag: bool = True) -> "Parameter":
        """Freeze (False: the gradient buffer is dropped) or unfreeze (a zero one is made)."""
        if not flag:
            self.grad = None
        elif self.grad is None:
            self.grad = np.zeros(self.data.shape, self.data.dtype)
        return self

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        if self.grad is not None:
            self.grad.fill(0)

    def __repr__(self):
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


class Module:
    """Base class of every layer and model.

    Sub-modules and parameters are found from the instance's public attributes, in the order
    they were assigned, which is what gives parameters their dotted names
    (``h.0.attn.c_attn.weight``). Attributes starting with ``_`` are private and never walked.

    Every subclass's constructor, ``forward`` and ``backward`` are checked against the layer
    contract where the values enter (see :mod:`npgpt.contract`): constructor arguments
    against their annotations, forward inputs for being arrays of numbers, and the gradient
    given to backward for ending with the shape of the last forward's output.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        contract.wrap(cls)

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.training = True
        self._cache = None

    def grads_final(self, *modules) -> None:
        """Called by a backward as it goes: the parameters of ``modules`` now hold their
        whole gradient of this backward. A listener (:func:`listen_grads_final`) can act on
        them, e.g. send them to other processes, while the rest of the backward runs."""
        if _GRADS_FINAL:
            listener = _GRADS_FINAL.get(id(self))
            if listener is not None:
                listener(modules)

    # --- forward / backward -------------------------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __call__(self, *inputs, **kwargs):
        return self.forward(*inputs, **kwargs)

    @property
    def keeps_activations(self) -> bool:
        """True when a forward run now must keep what backward needs (training, grads on)."""
        return self.training and _GRAD_ENABLED

    def save(self, *tensors):
        """Keep ``tensors`` for backward, or nothing at all in inference mode."""
        self._cache = tensors if self.keeps_activations else None

    def saved(self):
        """What the last forward kept; it is released, so a second backward needs a new forward."""
        cache = self._cache
        if cache is None:
            raise BackwardError(
                f"{type(self).__name__}.backward() called with no forward to differentiate: "
                "run forward() first, in training mode and outside no_grad() "
                "(inference mode keeps no activations)")
        self._cache = None
        return cache

    # --- walking the tree ---------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if not name.startswith("_") and isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if not name.startswith("_") and isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Dotted names and parameters; a parameter shared by two modules is listed once."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def trainable_parameters(self) -> list[Parameter]:
        """The parameters that are not frozen: what an optimizer and clipping should see."""
        return [p for _, p in self.named_parameters() if p.requires_grad]

    def requires_grad_(self, flag: bool = True) -> "Module":
        """Freeze (False) or unfreeze every parameter of this module and its children."""
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def generators(self) -> list[np.random.Generator]:
        """Every distinct RNG the modules draw from (dropout), in module order."""
        seen, out = set(), []
        for m in self.modules():
            g = getattr(m, "_rng", None)
            if isinstance(g, np.random.Generator) and id(g) not in seen:
                seen.add(id(g))
                out.append(g)
        return out

    # --- modes --------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = mode
            if not mode:
                m._cache = None
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, dtype) -> "Module":
        """Convert every parameter (and its gradient) to ``dtype``, e.g. float64 for gradcheck."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            m.dtype = dtype
            m._cache = None
            for _, p in m._own_parameters():
                if p.data.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    if p.grad is not None:
                        p.grad = np.zeros(p.data.shape, dtype)
        return self

    # --- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Name -> array (the live arrays, not copies)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True):
        """Copy arrays into the parameters, in place, converting to each parameter's dtype.

        With ``strict`` (the default) every missing, unexpected and mis-shaped key is named in
        one :class:`StateDictError`, and nothing is changed.
        """
        if not isinstance(state, Mapping):
            raise StateDictError(f"{type(self).__name__}.load_state_dict expects a mapping of "
                                 f"name -> array, got {type(state).__name__}")
        params = dict(self.named_parameters())
        not_float = [f"{k}: {np.asarray(v).dtype}" for k, v in state.items() if k in params
                     and np.asarray(v).dtype.kind != "f"]   # an int weight is never a weight
        if not_float:
            raise StateDictError(f"{type(self).__name__}.load_state_dict: arrays that are not "
                                 f"floating point: {', '.join(not_float)}")
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        misshaped = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {params[k].shape}"
                     for k in params if k in state and tuple(np.shape(state[k])) != params[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if misshaped:
            problems.append("mis-shaped keys: " + "; ".join(misshaped))
        if problems:
            raise StateDictError(f"{type(self).__name__}.load_state_dict: " + " | ".join(problems))
        for k, p in params.items():
            if k in state:
                np.copyto(p.data, np.asarray(state[k]), casting="unsafe")
        return self

    def __repr__(self):
        return f"{type(self).__name__}({self.num_parameters():,} parameters)"


class ModuleList(Module):
    """A list of modules, named ``0``, ``1``, ... (GPT-2's ``h.0``, ``h.1``)."""

    def __init__(self, modules=()):
        super().__init__()
        self._items = list(modules)

    def named_children(self):
        for i, m in enumerate(self._items):
            yield str(i), m

    def __getitem__(self, i):
        return self._items[i]

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def append(self, module: Module):
        self._items.append(module)
