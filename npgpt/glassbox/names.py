"""The names of a model's activations, and where each passes (a :class:`Site` per name).

Names follow the checkpoint's module names. For a GPT, per block ``h.{i}``:

    h.{i}.resid_pre          (B, T, C)    the block's input (the residual stream)
    h.{i}.ln_1.normalized    (B, T, C)    ln_1's (x - mean) * rstd (x * rstd for RMSNorm)
    h.{i}.attn.q | k | v     (B, T, H, hs) / (B, T, Hkv, hs): after RoPE, before grouping
    h.{i}.attn.scores        (B, H, T, T)  scale * q k^T, -inf where the mask forbids
    h.{i}.attn.pattern       (B, H, T, T)  softmax of the scores: each row sums to 1
    h.{i}.attn.z             (B, T, H, hs) each head's output, before c_proj
    h.{i}.attn_out           (B, T, C)    the attention's output, added to the residual
                                          (with sandwich norms: after ln_attn_out, as added)
    h.{i}.resid_mid          (B, T, C)    the residual after the attention sub-layer
    h.{i}.ln_2.normalized    (B, T, C)
    h.{i}.mlp.pre            (B, T, hidden) the activation's input (SwiGLU: the gate's)
    h.{i}.mlp.pre_linear     (B, T, hidden) SwiGLU only: up_proj's output
    h.{i}.mlp.post           (B, T, hidden) what c_proj (down_proj) reads
    h.{i}.mlp_out            (B, T, C)
    h.{i}.resid_post         (B, T, C)    the block's output
and ``wte`` (B, T, C), ``wpe`` (T, C) with learned positions, ``ln_f.normalized`` with pre-LN.

The encoder-decoder ``Transformer`` has ``encoder.{i}.*`` and ``decoder.{i}.*`` the same way
(its attentions are ``self_attn`` and ``cross_attn``; the decoder's norms are ln_1..ln_3) and
``src_emb``, ``tgt_emb``; the ``TextClassifier``'s one layer has the names without a prefix.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..layers.ffn import SwiGLU
from ..layers.norm import RMSNorm
from .capture import Site, arg0, result0


def _normalized(norm):
    """ln.normalized: what the norm divides out before its weight (and bias) scale."""
    def forward(args, result):
        x = args[0]
        ones = np.ones(x.shape[-1], x.dtype)
        if isinstance(norm, RMSNorm):
            return kernels.rmsnorm_forward(x, ones, norm.eps)[0]
        return kernels.layernorm_forward(x, ones, None, norm.eps)[0]

    def backward(args, result):            # y = normalized * weight (+ bias); Gemma: (1 + weight)
        w = norm.weight.data
        return args[0] * (w + 1 if getattr(norm, "plus_one", False) else w)
    return Site((norm, "forward", forward), (norm, "backward", backward))


def _heads_last(a):
    """(B, H, T, hs) -> (B, T, H, hs): TransformerLens's layout for q, k, v and z."""
    return a.transpose(0, 2, 1, 3)


def _scores(sdpa):
    """scale * q k^T with -inf where the causal or padding mask forbids (B, H, T, S)."""
    def forward(args, result):
        from ..kernels.softmax import causal_mask, check_padding_mask   # numba: not at import
        q, k = args[0], args[1]
        mask = args[3] if len(args) > 3 else None
        B, H, T, hs = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        s = (q.reshape(B, Hkv, H // Hkv, T, hs) @ k[:, :, None].swapaxes(-1, -2)).reshape(B, H, T, S)
        s *= s.dtype.type(sdpa._scale(hs))
        allowed = np.ones((B, 1, T, S), bool)
        if sdpa.causal:
            allowed &= causal_mask(T, S, sdpa.window)
        if mask is not None:
            allowed &= check_padding_mask(mask, B, S)[:, None, None, :]
        s[~np.broadcast_to(allowed, s.shape)] = -np.inf
        return s
    return forward


def _dscores(args):
    from ..kernels.softmax import masked_softmax_backward             # numba: not at import
    return masked_softmax_backward(args[4], _dpattern(args))


def _dpattern(args):
    """d loss / d pattern from attend_backward's (dy, q, k, v, att, ...): y = A v, dA = dy v^T."""
    dy, v = args[0], args[3]
    B, H, T, hs_v = dy.shape
    Hkv, S = v.shape[1], v.shape[2]
    dA = dy.reshape(B, Hkv, H // Hkv, T, hs_v) @ v[:, :, None].swapaxes(-1, -2)
    return dA.reshape(B, H, T, S)


def attention_sites(prefix: str, attn) -> dict[str, Site]:
    sdpa = attn.attention
    H, hs = attn.n_head, attn.head_dim
    fwd, bwd = (sdpa, "attend"), (sdpa, "attend_backward")
    z_shape = lambda a: a.reshape(a.shape[:-1] + (H, hs))        # noqa: E731
    sites = {
        f"{prefix}.q": Site((*fwd, lambda a, r: _heads_last(a[0])),
                            (*bwd, lambda a, r: _heads_last(r[0]))),
        f"{prefix}.k": Site((*fwd, lambda a, r: _heads_last(a[1])),
                            (*bwd, lambda a, r: _heads_last(r[1]))),
        f"{prefix}.v": Site((*fwd, lambda a, r: _heads_last(a[2])),
                            (*bwd, lambda a, r: _heads_last(r[2]))),
        f"{prefix}.scores": Site((*fwd, _scores(sdpa)),
                                 (*bwd, lambda a, r: _dscores(a))),
        f"{prefix}.pattern": Site((*fwd, lambda a, r: r[1][3]), (*bwd, lambda a, r: _dpattern(a))),
        f"{prefix}.z": Site((attn.c_proj, "forward", lambda a, r: z_shape(a[0])),
                            (attn.c_proj, "backward", lambda a, r: z_shape(r))),
    }
    return sites


def mlp_sites(prefix: str, mlp) -> dict[str, Site]:
    if isinstance(mlp, SwiGLU):
        up, down = mlp.gate_proj, mlp.down_proj
    else:
        up, down = mlp.c_fc, mlp.c_proj
    sites = {f"{prefix}.pre": Site((up, "forward", result0), (up, "backward", arg0))}
    if isinstance(mlp, SwiGLU):
        sites[f"{prefix}.pre_linear"] = Site((mlp.up_proj, "forward", result0),
                                             (mlp.up_proj, "backward", arg0))
    sites[f"{prefix}.post"] = Site((down, "forward", arg0), (down, "backward", result0))
    return sites


def sublayer_sites(p: str, layer, norm_name: str | None, branch: str, prenorm: bool,
                   out_name: str) -> tuple[dict[str, Site], Site]:
    """The names of one residual sub-layer ``x -> x + branch(...)`` (see models.residual), and
    the Site of the residual after it."""
    norm = getattr(layer, norm_name) if norm_name else None
    module = getattr(layer, branch)
    sites: dict[str, Site] = {}
    if norm is not None:
        sites[f"{p}{norm_name}.normalized"] = _normalized(norm)
    if branch == "mlp":
        sites.update(mlp_sites(f"{p}mlp", module))
    else:
        sites.update(attention_sites(f"{p}{branch}", module))
    out = module
    if getattr(layer, "sandwich", False):   # Gemma: the branch's output norm is what is added
        out = getattr(layer, {"attn": "ln_attn_out", "mlp": "ln_mlp_out"}[branch])
    sites[f"{p}{out_name}"] = Site((out, "forward", result0), (out, "backward", arg0))
    # the residual after the sub-layer: a pre-LN (or norm-less) branch's output gradient is the
    # residual's; a post-LN residual is the norm's output
    if norm is not None and not prenorm:
        after = Site((norm, "forward", result0), (norm, "backward", arg0))
    else:
        after = Site(None, (out, "backward", arg0))
    return sites, after


def block_sites(p: str, block, subs: list[tuple[str | None, str, str, str]], prenorm: bool):
    """A block of residual sub-layers; ``subs``: (norm, branch, output name, residual name)."""
    sites = {f"{p}resid_pre": Site((block, "forward", arg0), (block, "backward", result0))}
    for n, (norm, branch, out_name, resid_name) in enumerate(subs):
        more, after = sublayer_sites(p, block, norm, branch, prenorm, out_name)
        sites.update(more)
        last = n == len(subs) - 1
        if last:
            sites[f"{p}{resid_name}"] = Site((block, "forward", result0), (block, "backward", arg0))
        else:
            if after.forward is None:       # the next sub-layer's input: its norm's, or its own
                nxt_norm, nxt_branch = subs[n + 1][0], subs[n + 1][1]
                reader = getattr(block, nxt_norm if prenorm and nxt_norm else nxt_branch)
                after.forward = (reader, "forward", arg0)
            sites[f"{p}{resid_name}"] = after
    return sites


def gpt_sites(model) -> dict[str, Site]:
    c = model.config
    sites = {"wte": Site((model.wte, "forward", result0), (model.wte, "backward", arg0))}
    if c.pos == "learned":
        sites["wpe"] = Site((model.wpe, "forward", result0),
                            (model.wpe, "backward", lambda a, r: a[0].reshape(-1, *a[0].shape[-2:]).sum(0)))
    subs = [("ln_1", "attn", "attn_out", "resid_mid"), ("ln_2", "mlp", "mlp_out", "resid_post")]
    for i, block in enumerate(model.h):
        sites.update(block_sites(f"h.{i}.", block, subs, c.prenorm))
    if c.prenorm:
        sites["ln_f.normalized"] = _normalized(model.ln_f)
    return sites


def seq2seq_sites(model) -> dict[str, Site]:
    pre = model.config.prenorm
    sites = {name: Site((getattr(model, name), "forward", result0),
                        (getattr(model, name), "backward", arg0)) for name in ("src_emb", "tgt_emb")}
    enc = [("ln_1", "self_attn", "attn_out", "resid_mid"), ("ln_2", "mlp", "mlp_out", "resid_post")]
    dec = [("ln_1", "self_attn", "attn_out", "resid_mid"),
           ("ln_2", "cross_attn", "cross_attn_out", "resid_mid2"),
           ("ln_3", "mlp", "mlp_out", "resid_post")]
    for i, layer in enumerate(model.encoder):
        sites.update(block_sites(f"encoder.{i}.", layer, enc, pre))
    for i, layer in enumerate(model.decoder):
        sites.update(block_sites(f"decoder.{i}.", layer, dec, pre))
    if pre:
        sites["enc_ln_f.normalized"] = _normalized(model.enc_ln_f)
        sites["dec_ln_f.normalized"] = _normalized(model.dec_ln_f)
    return sites


def classifier_sites(model) -> dict[str, Site]:
    """One post-LN layer (norms optional) straight on the model: no block module around it."""
    sites = {"wte": Site((model.wte, "forward", result0), (model.wte, "backward", arg0)),
             "wpe": Site((model.wpe, "forward", result0), None),
             "resid_pre": Site((model.attn, "forward", arg0), (model.wpe, "backward", arg0))}
    ln_1, ln_2 = ("ln_1", "ln_2") if model.layernorm else (None, None)
    more, mid = sublayer_sites("", model, ln_1, "attn", False, "attn_out")
    sites.update(more)
    mid.forward = mid.forward or (model.mlp, "forward", arg0)
    sites["resid_mid"] = mid
    more, post = sublayer_sites("", model, ln_2, "mlp", False, "mlp_out")
    sites.update(more)
    if post.forward is not None:            # without ln_2 no layer reads the last residual whole
        sites["resid_post"] = post
    return sites


def sites_of(model) -> dict[str, Site]:
    from ..models.classifier import TextClassifier
    from ..models.gpt import GPT
    from ..models.seq2seq import Transformer
    for cls, make in ((GPT, gpt_sites), (Transformer, seq2seq_sites),
                      (TextClassifier, classifier_sites)):
        if isinstance(model, cls):
            return make(model)
    raise TypeError(f"no activation names are known for {type(model).__name__}")
