"""The Cache a ``run_with_cache`` returns, and the questions one asks of a GPT's residual stream.

The residual stream of a pre-LN GPT is a sum: the embeddings, then each attention's and each
MLP's output added in turn,

    resid_post[L-1] = embed + sum_i (attn_out[i] + mlp_out[i])          (decompose_resid)

and the model reads it only at the end, through ln_f and the unembedding. Reading the stream
after every block the same way (``accumulated_resid(apply_ln=True)`` then the head) is the
logit lens (:mod:`npgpt.glassbox.lens`); projecting each component on a token's unembedding
direction, scaled as ln_f scales the final residual, is ``logit_attrs``: the components'
attributions plus ln_f's bias term add up to the token's logit.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import kernels
from ..errors import InputError
from ..layers.norm import RMSNorm
from ..module import no_grad
from .capture import describe_names


@contextlib.contextmanager
def untouched(model):
    """Run a module's forward on the side (no_grad) without dropping what the last training
    forward kept for its backward."""
    kept = [(m, m._cache) for m in model.modules()]
    try:
        with no_grad():
            yield
    finally:
        for m, c in kept:
            m._cache = c


class Cache:
    """Activations (and gradients, ``NAME.grad``) of one run, by name; see
    :mod:`npgpt.glassbox.names` for the names and shapes.

    ``cache["h.3.attn.pattern"]``, ``"h.3.attn.pattern.grad" in cache``, ``cache.keys()``;
    ``logits``, ``loss``, ``idx`` and ``targets`` are those of the run.
    """

    def __init__(self, model, values: dict, valid: list[str], idx, targets, logits, loss):
        self.model = model
        self._values = values
        self._valid = valid
        self.idx, self.targets, self.logits, self.loss = idx, targets, logits, loss

    # --- a mapping of names -------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._values:
            return self._values[name]
        base = name[:-5] if name.endswith(".grad") else name
        if base not in self._valid:
            raise InputError(f"unknown cache name {name!r}; valid names: "
                             f"{describe_names(self._valid)}")
        why = ("run_with_cache(..., grads=True) keeps gradients" if name.endswith(".grad")
               else "it was not among the names asked for")
        raise InputError(f"{name!r} is not in this cache: {why}")

    def __contains__(self, name) -> bool:
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self):
        return self._values.keys()

    def items(self):
        return self._values.items()

    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._values.values())

    def __repr__(self):
        return f"Cache({len(self)} arrays, {self.nbytes() / 2**20:.1f} MB)"

    # --- a GPT's residual stream ----------------------------------------------------------
    def _gpt(self, what: str):
        from ..models.gpt import GPT
        if not isinstance(self.model, GPT):
            raise InputError(f"{what} reads a GPT's residual stream; this cache is of a "
                             f"{type(self.model).__name__}")
        return self.model

    @property
    def n_layer(self) -> int:
        return len(self._gpt("n_layer").h)

    def _need(self, names):
        missing = [n for n in names if n not in self._values]
        if missing:
            raise InputError(f"this needs {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
                             " in the cache: run_with_cache with those names (or names=None)")
        return [self._values[n] for n in names]

    def final_norm(self, x: np.ndarray) -> np.ndarray:
        """ln_f applied to x (..., C), as the model applies it (identity for post-LN)."""
        model = self._gpt("final_norm")
        if not model.config.prenorm:
            return x
        with untouched(model):
            return model.ln_f.forward(x)

    def unembed(self, x: np.ndarray) -> np.ndarray:
        """The model's head on x (..., C) -> logits (..., V) (soft-capped if the model caps)."""
        model = self._gpt("unembed")
        with untouched(model):
            logits = model._head_forward(x)
            softcap = getattr(model, "softcap", None)
            return logits if softcap is None else softcap.forward(logits)

    def accumulated_resid(self, apply_ln: bool = True) -> tuple[np.ndarray, list[str]]:
        """(L + 1, B, T, C) the residual stream entering each block and leaving the last one,
        and a label per row (``embed``, ``h.0``, ... = after that block); ``apply_ln`` puts
        each row through ln_f, as the model does to its last one."""
        L = self.n_layer
        rows = self._need([f"h.{i}.resid_pre" for i in range(L)] + [f"h.{L - 1}.resid_post"])
        stack = np.stack(rows)
        if apply_ln:
            stack = self.final_norm(stack)
        return stack, ["embed"] + [f"h.{i}" for i in range(L)]

    def decompose_resid(self) -> tuple[np.ndarray, list[str]]:
        """(1 + 2L, B, T, C) the components the last residual is the sum of: the embeddings
        (token + position), then each block's ``attn_out`` and ``mlp_out``; and their labels."""
        model = self._gpt("decompose_resid")
        if not model.config.prenorm:
            raise InputError("decompose_resid: a post-LN model re-normalises the residual after "
                             "every sub-layer, so it is not a sum of the sub-layers' outputs")
        L = self.n_layer
        labels = ["embed"]
        for i in range(L):
            labels += [f"h.{i}.attn_out", f"h.{i}.mlp_out"]
        names = ["h.0.resid_pre"] + labels[1:]
        return np.stack(self._need(names)), labels

    def logit_attrs(self, token) -> tuple[np.ndarray, list[str]]:
        """How much each component of the last residual adds to the logit of ``token`` (an
        id, or (B, T) ids, e.g. the targets): (1 + 2L + 1, B, T) and labels; the last row is
        ln_f's bias (zero without one). The rows sum to the model's logit of ``token`` (before
        the soft cap, for a model with ``logit_softcap``).

        With x the final residual, ln_f(x) = (x - mean(x)) * rstd * w + b is linear in the
        components once rstd is fixed at the final residual's: component c contributes
        (c - mean(c)) * rstd * w  (RMSNorm: c * rstd * w), then the head's column of token.
        """
        model = self._gpt("logit_attrs")
        comps, labels = self.decompose_resid()
        final = self._need([f"h.{self.n_layer - 1}.resid_post"])[0]
        C, V = final.shape[-1], model.config.vocab_size
        token = np.broadcast_to(np.asarray(token), final.shape[:-1])
        if not np.issubdtype(token.dtype, np.integer) or token.min() < 0 or token.max() >= V:
            raise InputError(f"logit_attrs: token ids must be integers in [0, {V})")
        ln = model.ln_f
        ones = np.ones(C, final.dtype)
        if isinstance(ln, RMSNorm):
            _, rstd = kernels.rmsnorm_forward(final, ones, ln.eps)
        else:
            _, _, rstd = kernels.layernorm_forward(final, ones, None, ln.eps)
            comps = comps - comps.mean(-1, keepdims=True)
        rstd = np.asarray(rstd).reshape(final.shape[:-1] + (1,))
        W = model.wte.weight.data if model.config.tie_embeddings else model.lm_head.weight.data.T
        direction = W[token]                                   # (B, T, C): the head's rows
        attrs = np.einsum("nbtc,btc->nbt", comps * rstd * ln.weight.data, direction)
        bias = getattr(ln, "bias", None)
        bias_row = (np.einsum("c,btc->bt", bias.data, direction) if bias is not None
                    else np.zeros(final.shape[:-1], final.dtype))
        return np.concatenate([attrs, bias_row[None]]), labels + ["ln_f.bias"]

    def head_pattern(self, layer: int, head: int) -> np.ndarray:
        """(B, T, S) the attention pattern of one head: row t is where query t looks."""
        L = self.n_layer
        if not 0 <= layer < L:
            raise InputError(f"layer={layer} is outside 0..{L - 1}")
        (pattern,) = self._need([f"h.{layer}.attn.pattern"])
        if not 0 <= head < pattern.shape[1]:
            raise InputError(f"head={head} is outside 0..{pattern.shape[1] - 1}")
        return pattern[:, head]

    def logit_lens(self, top_k: int = 5):
        """The logit lens of this run: see :func:`npgpt.glassbox.lens.logit_lens`."""
        from .lens import logit_lens
        return logit_lens(self, top_k)

    def neighbours(self, token: int, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` token ids whose embedding rows are nearest ``token``'s (cosine), with the
        similarity, nearest first."""
        return neighbours(self._gpt("neighbours").wte.weight.data, token, k)


def neighbours(E: np.ndarray, token: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` rows of E (V, C) nearest row ``token`` by cosine similarity (itself left out)."""
    V = E.shape[0]
    if not isinstance(token, (int, np.integer)) or not 0 <= token < V:
        raise InputError(f"token={token!r} must be an id in [0, {V})")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k={k!r} must be a positive integer")
    unit = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit[token]
    sim[token] = -np.inf
    order = np.argsort(-sim, kind="stable")[:min(k, V - 1)]
    return [(int(i), float(sim[i])) for i in order]
