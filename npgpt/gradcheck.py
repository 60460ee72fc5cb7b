"""Finite-difference gradient checking, public: check your own layers with it.

For a module ``m`` and inputs ``x`` the checker draws a random upstream gradient ``g`` of the
output's shape and compares the analytic gradients from ``m.backward(g)`` with central
differences of the scalar ``f = sum(m.forward(x) * g)`` (a Jacobian-vector product, which
checks every output at once, not one element). Everything runs in float64.

The error of one tensor is ``|a - n| / max(|a|, |n|)`` over its checked elements (2-norms),
so a gradient that is wrong in a single element, or off by a constant factor, fails, while
gradients that are zero on both sides pass.

    >>> from npgpt.layers import Linear
    >>> report = gradcheck(Linear(3, 2, dtype=np.float64), np.random.randn(4, 3))
    >>> report.max_error < 1e-6
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import GradcheckError
from .module import Module, no_grad


@dataclass
class TensorCheck:
    """The comparison for one input or parameter."""

    name: str
    error: float                 # relative error over the checked elements
    worst_index: tuple           # element with the largest absolute difference
    analytic: float              # analytic gradient there
    numeric: float               # finite-difference gradient there
    checked: int                 # how many elements were perturbed


@dataclass
class GradcheckReport:
    checks: list[TensorCheck] = field(default_factory=list)
    rtol: float = 1e-6

    @property
    def max_error(self) -> float:
        return max((c.error for c in self.checks), default=0.0)

    @property
    def failures(self) -> list[TensorCheck]:
        return [c for c in self.checks if c.error > self.rtol]

    def __str__(self):
        lines = [f"{'tensor':40s} {'rel. error':>11s} {'checked':>8s}"]
        for c in self.checks:
            flag = "  FAIL" if c.error > self.rtol else ""
            lines.append(f"{c.name:40s} {c.error:11.2e} {c.checked:8d}{flag}")
        return "\n".join(lines)


def _relative_error(a: np.ndarray, n: np.ndarray, atol: float) -> float:
    """Relative 2-norm error; 0 where the absolute difference is below ``atol`` (both ~zero)."""
    diff = np.linalg.norm(a - n)
    if diff <= atol:
        return 0.0
    return float(diff / max(np.linalg.norm(a), np.linalg.norm(n)))


def _pick(output, index):
    return output[index] if isinstance(output, tuple) else output


def gradcheck(module: Module, *inputs, output: int = 0, eps: float = 1e-6, rtol: float = 1e-6,
              atol: float = 1e-10, max_elements: int | None = 64, seed: int = 0,
              check_inputs: bool = True, check_params: bool = True, raise_on_fail: bool = True,
              forward_kwargs: dict | None = None) -> GradcheckReport:
    """Check ``module``'s input and parameter gradients against central differences.

    inputs        the forward inputs; floating-point ones are checked, integer ones (token ids)
                  and ``None`` are passed through.
    output        which element to differentiate when forward returns a tuple
                  (``GPT.forward`` returns ``(logits, loss)``; index 0 is the logits).
    max_elements  elements perturbed per tensor, drawn at random (``None``: all of them).
    raise_on_fail raise :class:`GradcheckError` naming the tensor, the element and both values.

    The module must be float64 (``module.to(np.float64)``) and deterministic (no dropout).

    The loss differentiated is sum(output * g), g drawn at random. One evaluation of it is
    exact only to a few ulp of sum|output * g|, so a central difference carries an absolute
    error of about eps_float64 * sum|output * g| / eps: with outputs of ~30 around a gradient
    of ~6e-4, 1e-9, a relative 2e-6. That noise floor (times 4, over the elements checked) is
    added to ``atol``; a wrong gradient misses by the size of the gradient itself.
    """
    forward_kwargs = forward_kwargs or {}
    if not isinstance(module, Module):
        raise GradcheckError(f"gradcheck checks an npgpt Module, got {type(module).__name__}")
    rng = np.random.default_rng(seed)
    params = ([(n, p) for n, p in module.named_parameters() if p.requires_grad]
              if check_params else [])
    for name, p in params:
        if p.data.dtype != np.float64:
            raise GradcheckError(f"gradcheck needs float64; parameter {name} is {p.data.dtype}: "
                                 "call module.to(np.float64) first")
    inputs = [np.array(x, dtype=np.float64) if _is_float(x) else x for x in inputs]
    float_inputs = [i for i, x in enumerate(inputs) if _is_float(x)]

    def f() -> float:
        with no_grad():
            out = _pick(module.forward(*inputs, **forward_kwargs), output)
        return float(np.sum(out * g))

    # analytic gradients
    module.train()
    module.zero_grad()
    out = _pick(module.forward(*inputs, **forward_kwargs), output)
    g = rng.standard_normal(np.shape(out))
    if np.ndim(out) == 0:
        g = float(g)
    # the central differences' own rounding error, for the 2-norm over up to max_elements
    noise = 4 * np.finfo(np.float64).eps * float(np.sum(np.abs(np.asarray(out) * g))) / eps
    dinputs = module.backward(g)
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)

    targets = []   # (name, array to perturb, analytic gradient)
    if check_inputs:
        for k, i in enumerate(float_inputs):
            # backward returns one gradient per forward input, None for integer ones
            dx = dinputs[i] if len(dinputs) == len(inputs) else dinputs[k]
            if dx is None:
                raise GradcheckError(f"backward returned no gradient for input {i}")
            targets.append((f"input[{i}]", inputs[i], np.asarray(dx, dtype=np.float64)))
    for name, p in params:
        targets.append((name, p.data, p.grad.copy()))

    report = GradcheckReport(rtol=rtol)
    for name, array, analytic in targets:
        if analytic.shape != array.shape:
            raise GradcheckError(f"{name}: gradient shape {analytic.shape} != {array.shape}")
        flat = array.reshape(-1)      # a view: perturbing it perturbs the tensor
        if flat.base is None and array.size:
            raise GradcheckError(f"{name}: tensor is not contiguous")
        idx = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            idx = np.sort(rng.choice(flat.size, size=max_elements, replace=False))
        numeric = np.empty(len(idx))
        for j, e in enumerate(idx):
            old = flat[e]
            flat[e] = old + eps
            fp = f()
            flat[e] = old - eps
            fm = f()
            flat[e] = old
            numeric[j] = (fp - fm) / (2 * eps)
        a = analytic.reshape(-1)[idx]
        err = _relative_error(a, numeric, atol + noise * np.sqrt(len(idx)))
        worst = int(np.argmax(np.abs(a - numeric))) if len(idx) else 0
        report.checks.append(TensorCheck(
            name=name, error=err,
            worst_index=np.unravel_index(idx[worst], array.shape) if len(idx) else (),
            analytic=float(a[worst]) if len(idx) else 0.0,
            numeric=float(numeric[worst]) if len(idx) else 0.0,
            checked=len(idx)))
    module.zero_grad()

    if raise_on_fail and report.failures:
        c = max(report.failures, key=lambda c: c.error)
        raise GradcheckError(
            f"{type(module).__name__}: gradient of {c.name} is wrong: relative error "
            f"{c.error:.2e} > {rtol:.0e}; worst element {tuple(int(i) for i in c.worst_index)}: "
            f"analytic {c.analytic:.6e}, numeric {c.numeric:.6e}\n{report}")
    return report


def _is_float(x) -> bool:
    return isinstance(x, (np.ndarray, float)) and np.issubdtype(np.asarray(x).dtype, np.floating)
