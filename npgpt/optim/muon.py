"""Muon: momentum orthogonalised by Newton–Schulz, for the hidden weight matrices; AdamW for
the embeddings, the head, the norms and the biases; one optimizer object for both.

For a hidden matrix W with gradient G (Jordan et al. 2024, "Muon: an optimizer for hidden
layers in neural networks"; the update of ``torch.optim.Muon``)::

    B = mu B + (1 - mu) G                      momentum (an average of the gradients)
    U = (1 - mu) G + mu B                      Nesterov: look one momentum step ahead
    O = NS5(U)                                 ~ the orthogonal factor of U (all its singular
                                               values pushed towards 1)
    W *= 1 - lr wd;   W -= lr sqrt(max(1, fan_out / fan_in)) O

NS5 normalises ``X = U / max(|U|_F, eps)`` (so every singular value is <= 1) and runs five
steps of the quintic ``X <- a X + (b A + c A²) X`` with ``A = X Xᵀ`` and (a, b, c) =
(3.4445, -4.7750, 2.0315): coefficients chosen for the steepest rise at zero, so that five
steps bring small singular values up to about 1 (they end in roughly [0.7, 1.2], not exactly
at 1: a fast approximate orthogonalisation is what the update needs). The iteration runs on
the wide orientation (fewer rows than columns), so ``A`` is the smaller Gram matrix.

npgpt stores a Linear weight ``(in, out)``, PyTorch ``(out, in)``: the shape scaling is
computed from ``fan_out / fan_in`` so the same layer gets the same step in both
(NS5(Gᵀ) = NS5(G)ᵀ: the orthogonalisation does not care about the orientation).

Each matrix is orthogonalised on its own, and with more than one thread (npgpt's thread
count) the matrices are shared out among that many threads, each running single-threaded
BLAS. The products are small (a few hundred rows), so cutting each one across two BLAS
threads gains little, and on a busy machine a BLAS thread that is not scheduled stalls its
partner: the matrices side by side keep both cores busy either way. Each matrix's result is
the same whichever thread computes it, so the thread count does not change the run.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import kernels
from ..errors import ConfigError
from ..runtime.threads import serial
from .base import Optimizer

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
ADJUST_LR = ("original", "match_rms_adamw")


def newton_schulz(G: np.ndarray, steps: int = NS_STEPS, eps: float = 1e-7,
                  coefficients=NS_COEFFICIENTS) -> np.ndarray:
    """NS5 of each matrix in ``G`` (..., R, K): the approximate orthogonal factor, same shape.

    Runs on the wide orientation (the transpose when R > K); each matrix is first divided by
    its Frobenius norm (at least ``eps``)."""
    a, b, c = coefficients
    tall = G.shape[-2] > G.shape[-1]
    X = np.swapaxes(G, -1, -2) if tall else G
    norm = np.sqrt(np.sum(X * X, axis=(-2, -1), keepdims=True))
    X = X / np.maximum(norm, X.dtype.type(eps))
    dt = X.dtype.type
    for _ in range(steps):
        A = X @ np.swapaxes(X, -1, -2)
        B = dt(b) * A + dt(c) * (A @ A)
        X = dt(a) * X + B @ X
    return np.swapaxes(X, -1, -2) if tall else X


def shape_scale(shape, adjust_lr: str = "original") -> float:
    """The learning-rate multiplier of an ``(in, out)`` weight (PyTorch's ``(out, in)``):
    original: sqrt(max(1, out / in)) (Jordan's); match_rms_adamw: 0.2 sqrt(max(in, out))
    (Liu et al. 2025, "Muon is scalable for LLM training": AdamW's update size, so AdamW's
    learning rate and weight decay carry over)."""
    fan_in, fan_out = shape[-2], shape[-1]
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_in, fan_out))
    return math.sqrt(max(1.0, fan_out / fan_in))


class Muon(Optimizer):
    """Muon on the groups marked ``"muon": True`` (2-D hidden weights), AdamW on the others.

    params: parameter groups (dicts with ``"params"`` and ``"muon"``), or a plain list of 2-D
    parameters (all Muon). Muon groups use ``lr``, ``momentum``, ``nesterov``,
    ``weight_decay`` (decoupled, scaled by the unadjusted lr as PyTorch does), ``adjust_lr``;
    AdamW groups ``lr``, ``betas``, ``eps`` and ``weight_decay`` (the keyword defaults
    ``adamw_*`` unless the group gives its own). A group's ``lr_scale`` makes ``set_lr(lr)``
    (the schedule) set its lr to ``lr * lr_scale``.

    State: ``{i}.momentum_buffer`` per Muon parameter, ``{i}.exp_avg`` and ``{i}.exp_avg_sq``
    per AdamW parameter, and ``step``: saved and restored exactly, so a run resumes bit for
    bit.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, eps: float = 1e-7, ns_steps: int = NS_STEPS,
                 adjust_lr: str = "original", adamw_lr: float = 3e-4, adamw_betas=(0.9, 0.95),
                 adamw_eps: float = 1e-8, adamw_weight_decay: float = 0.0):
        params = list(params)
        if params and not isinstance(params[0], dict):
            params = [{"params": params, "muon": True}]
        if adjust_lr not in ADJUST_LR:
            raise ConfigError(f"adjust_lr={adjust_lr!r} must be one of {', '.join(ADJUST_LR)}")
        if not (isinstance(ns_steps, int) and 1 <= ns_steps < 100):
            raise ConfigError(f"ns_steps={ns_steps!r} must be an integer in [1, 99]")
        b1, b2 = adamw_betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1) or not 0 <= momentum < 1:
            raise ConfigError(f"momentum={momentum} and adamw_betas={adamw_betas} must each be "
                              "in [0, 1)")
        groups = []
        for g in params:
            if "muon" not in g:
                raise ConfigError("a Muon parameter group needs a \"muon\" key: True for the "
                                  "hidden weight matrices, False for the rest (AdamW)")
            extra = ({} if g["muon"] else
                     dict(lr=adamw_lr, betas=(b1, b2), eps=adamw_eps,
                          weight_decay=adamw_weight_decay))
            groups.append({**extra, **g})
        super().__init__(groups, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, eps=eps, ns_steps=ns_steps,
                                      adjust_lr=adjust_lr))
        for g in self.param_groups:
            for p in g["params"] if g["muon"] else ():
                if p.data.ndim != 2:
                    raise ConfigError(f"Muon orthogonalises 2-D weight matrices; a parameter of "
                                      f"shape {p.data.shape} belongs in an AdamW group "
                                      "(\"muon\": False)")
        self._pool: ThreadPoolExecutor | None = None     # see _orthogonalise
        self._pool_size = 0
        if not any(g["muon"] for g in self.param_groups):
            raise ConfigError("Muon got no 2-D hidden weight matrices to orthogonalise (every "
                              "group is AdamW's): use AdamW")

    def state_names(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["muon"] else ("exp_avg", "exp_avg_sq")

    def step(self):
        self.step_count += 1
        t, i = self.step_count, 0
        for group in self.param_groups:
            states = []
            for p in group["params"]:
                states.append(self._param_state(i, p, group))
                i += 1
            if group["muon"]:
                self._muon_group(group, states)
                continue
            b1, b2 = group["betas"]
            for p, st in zip(group["params"], states):
                kernels.adamw_step(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], group["lr"],
                                   b1, b2, group["eps"], group["weight_decay"], t)

    def _muon_group(self, group: dict, states: list[dict]):
        mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        updates = []
        for k, (p, st) in enumerate(zip(group["params"], states)):
            dt = p.data.dtype.type
            buf, g = st["momentum_buffer"], p.grad
            buf *= dt(mu)                          # B = mu B + (1 - mu) G
            buf += dt(1.0 - mu) * g
            updates.append(dt(1.0 - mu) * g + dt(mu) * buf if group["nesterov"] else buf)
        for p, o in zip(group["params"], self._orthogonalise(updates, group)):
            w = p.data
            dt = w.dtype.type
            if wd:
                w *= dt(1.0 - lr * wd)
            w -= dt(lr * shape_scale(w.shape, group["adjust_lr"])) * o.astype(w.dtype, copy=False)

    def _orthogonalise(self, updates: list, group: dict) -> list:
        """NS5 of each update: on this thread, or shared out among npgpt's threads."""
        ns = lambda u: newton_schulz(u, group["ns_steps"], group["eps"])     # noqa: E731
        n = _threads() if len(updates) > 1 else 1
        if n < 2:
            return [ns(u) for u in updates]
        if self._pool is None or self._pool_size != n:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(n, thread_name_prefix="npgpt-muon")
            self._pool_size = n
        with serial():         # one BLAS thread each: the matrices run side by side
            return list(self._pool.map(ns, updates))

    # a copy or a pickle leaves the threads behind (deepcopy goes through these too): it
    # starts its own when it first needs them
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_pool_size")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pool, self._pool_size = None, 0


def _threads() -> int:
    from ..runtime.jit import n_threads      # imports numba: only once Muon steps
    return n_threads()
