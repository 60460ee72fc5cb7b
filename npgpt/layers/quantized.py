"""int8 weights: the quantized Linear and Embedding, and :func:`quantize_model`,
which swaps them in for every Linear and Embedding of a model, whatever its family.

Weight-only, symmetric, in blocks along the input dimension (Q8_0-style; the definition is
:func:`npgpt.kernels.int8.quantize_ref`): each block of ``block`` consecutive inputs of one
output gets one scale, ``max |w| / 127``, and its weights become ``round(w / scale)`` in
-127..127. Norms, biases and the KV cache stay float32. In inference (``eval()``) the
layers' input is quantized too, per row in blocks of the same size (Q(x), see
:mod:`npgpt.kernels.int8`: the products are then int8 x int8, which the decoding kernel
runs fastest); in training mode it is not, so a gradient passes through the layer exactly.

    QuantizedLinear     x: (..., in) -> y: (..., out) = Q(x) @ dequantize(qweight, scales)^T + b
                        qweight: (out, in) int8, scales: (out, in / block) float32
    QuantizedEmbedding  idx: (...) -> rows (..., C);  attend(x (..., C)) -> (..., V), the
                        tied LM head; qweight: (V, C) int8, scales: (V, C / block), so each
                        row is quantized on its own (row-wise), in blocks along C

The int8 weight is (out, in), unlike the float Linear's (in, out): a block is then
``block`` contiguous bytes in a file, and the Linear and the tied head (an embedding table
is (V, C), already (out, in)) share one kernel. Scales are rounded to float16 when
quantizing (files keep them so: 1 + 2/32 bytes a weight) and held as float32. In memory a
layer holds both packed in panels of outputs (``qpanels``, ``spanels``:
:func:`npgpt.kernels.int8_layout.pack`), the layout the decoding kernel reads fastest; ``qweight``
and ``scales`` give them back as (out, in) arrays (copies, for saving and inspection), and
:meth:`set_weights` packs new ones.

The int8 weights are frozen: they get no gradient. The layers' backward gives the gradient
of their input only, so LoRA adapters can train on a quantized base (QLoRA-style, in int8;
:class:`npgpt.layers.lora.QuantizedLoRALinear`):

    QuantizedLinear     dx = dy @ dequantize(qweight, scales)        (N, out) -> (N, in)
    QuantizedEmbedding  backward: None (the ids are integers);
                        attend_backward(dlogits (..., V)) = dlogits @ dequantize(...)  (..., C)

both by ``kernels.int8_matmul_t`` (:mod:`npgpt.kernels.int8`), which dequantizes the weight
a panel of rows at a time, so the float weight never exists whole. The Trainer refuses a
quantized model unless LoRA adapters are what trains (full training: train the float model,
then quantize).
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..errors import BackwardError, ConfigError, InputError
from ..module import Module, ModuleList, Parameter
from .embedding import Embedding, LearnedPositionalEmbedding
from .linear import Linear

SCHEMES = ("int8",)
BLOCKS = (8, 16, 32, 64, 128, 256)
SCALE_DTYPE = np.float16            # what scales are rounded to (and stored as in files)


def check_quantization(scheme, block) -> None:
    """Refuse a scheme or block size npgpt does not implement."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block not in BLOCKS:
        raise ConfigError(f"quantization block size {block!r} must be one of "
                          f"{', '.join(map(str, BLOCKS))}")


def _quantize(w_out_in: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    from ..kernels.int8_layout import quantize_ref
    q, s = quantize_ref(w_out_in, block, SCALE_DTYPE)
    if not np.isfinite(s).all():
        raise ConfigError("a block's scale (max |w| / 127) is beyond float16's range: these "
                          "weights cannot be stored as int8 with float16 scales")
    return q, s.astype(np.float32)


def _rows_of(layer) -> int:
    return layer.out_features if isinstance(layer, QuantizedLinear) else layer.num_embeddings


def _set_weights(layer, qweight: np.ndarray, scales: np.ndarray) -> None:
    """Pack (out, in) int8 weights and their (out, in / block) scales into the layer's
    panels (a copy: nothing of the given arrays, e.g. a file's map, is kept)."""
    from ..kernels.int8_layout import pack
    rows, width = _rows_of(layer), qweight.shape[1] if qweight.ndim == 2 else -1
    if qweight.shape != (rows, width) or scales.shape != (rows, width // layer.block):
        raise ConfigError(f"{type(layer).__name__}: weights {qweight.shape} and scales "
                          f"{scales.shape} do not fit {rows} outputs in blocks of {layer.block}")
    layer.qpanels, layer.spanels = pack(np.asarray(qweight, np.int8),
                                        np.asarray(scales, np.float32))


def _empty_panels(layer, width: int) -> None:
    """Zero weights in the packed layout, without writing them: fresh zero pages cost no
    memory until used, and a model about to be loaded from a file replaces them."""
    from ..kernels.int8_layout import PANEL
    n_pan = -(-_rows_of(layer) // PANEL)
    layer.qpanels = np.zeros((n_pan, width, PANEL), np.int8)
    layer.spanels = np.zeros((n_pan, width // layer.block, PANEL), np.float32)


def _qweight(layer) -> np.ndarray:
    from ..kernels.int8_layout import unpack
    return unpack(layer.qpanels, layer.spanels, _rows_of(layer))[0]


def _scales(layer) -> np.ndarray:
    from ..kernels.int8_layout import unpack
    return unpack(layer.qpanels, layer.spanels, _rows_of(layer))[1]


def _buffer_nbytes(layer) -> int:
    """Bytes of the packed int8 weight and its scales (they are not Parameters), the padding
    of the last panel included."""
    return layer.qpanels.nbytes + layer.spanels.nbytes


def _input_gradient(dy: np.ndarray, layer) -> np.ndarray:
    """dy @ dequantize(qweight, scales): (..., N) -> (..., K), by panels of rows."""
    N, K = _rows_of(layer), layer.qpanels.shape[1]
    dx = kernels.int8_matmul_t(dy.reshape(-1, N), layer.qpanels, layer.spanels, N)
    return dx.reshape(dy.shape[:-1] + (K,))


class QuantizedLinear(Module):
    """y = x @ dequantize(qweight, scales)^T + b.   x: (..., in), y: (..., out)

    qweight: (out, in) int8; scales: (out, in / block) float32; bias: (out,) float, frozen.
    """

    quantization = "int8"
    _shared = ("qpanels", "spanels")  # arrays a thread's replica shares (npgpt.runtime.parallel)

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 block: int = 32, dtype=np.float32):
        super().__init__(dtype)
        check_quantization("int8", block)
        if in_features % block:
            raise ConfigError(f"in_features={in_features} is not a multiple of the "
                              f"quantization block {block}")
        self.in_features, self.out_features, self.block = in_features, out_features, block
        _empty_panels(self, in_features)
        self.bias = Parameter(np.zeros(out_features, dtype), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: Linear, block: int = 32) -> "QuantizedLinear":
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, block,
                    linear.dtype)
        layer.set_weights(*_quantize(linear.weight.data.T, block))
        if linear.bias is not None:
            layer.bias.data = linear.bias.data
        return layer

    set_weights = _set_weights
    qweight = property(_qweight, doc="The int8 weight (out, in): an unpacked copy.")
    scales = property(_scales, doc="The scales (out, in / block), float32: an unpacked copy.")
    buffer_nbytes = property(_buffer_nbytes, doc=_buffer_nbytes.__doc__)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.in_features:
            raise InputError(f"QuantizedLinear expects inputs with last dimension "
                             f"{self.in_features}, got shape {x.shape}")
        y = kernels.int8_matmul(x.reshape(-1, self.in_features), self.qpanels, self.spanels,
                                self.out_features, not self.training)
        if self.bias is not None:
            y += self.bias.data
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx = dy @ dequantize(qweight, scales).   dy: (..., out) -> dx: (..., in); the int8
        weight and the bias are frozen (no gradient)."""
        return _input_gradient(dy, self)

    def __repr__(self):
        return (f"QuantizedLinear(in={self.in_features}, out={self.out_features}, "
                f"block={self.block}, bias={self.bias is not None})")


class QuantizedEmbedding(Module):
    """rows = dequantize(qweight, scales)[idx];  attend(x) = x @ dequantize(...)^T (the head).

    idx: (...) int in [0, V) -> (..., C); qweight: (V, C) int8; scales: (V, C / block).
    ``positional``: a learned position table (ids are positions 0..block_size-1).
    """

    quantization = "int8"
    _shared = ("qpanels", "spanels")

    def __init__(self, num_embeddings: int, embedding_dim: int, block: int = 32,
                 positional: bool = False, dtype=np.float32):
        super().__init__(dtype)
        check_quantization("int8", block)
        if embedding_dim % block:
            raise ConfigError(f"embedding_dim={embedding_dim} is not a multiple of the "
                              f"quantization block {block}")
        self.num_embeddings, self.embedding_dim, self.block = num_embeddings, embedding_dim, block
        self.positional = positional
        _empty_panels(self, embedding_dim)

    @classmethod
    def from_embedding(cls, emb: Embedding, block: int = 32) -> "QuantizedEmbedding":
        layer = cls(emb.num_embeddings, emb.embedding_dim, block,
                    isinstance(emb, LearnedPositionalEmbedding), emb.dtype)
        layer.set_weights(*_quantize(emb.weight.data, block))
        return layer

    set_weights = _set_weights
    qweight = property(_qweight, doc="The int8 table (V, C): an unpacked copy.")
    scales = property(_scales, doc="The scales (V, C / block), float32: an unpacked copy.")
    buffer_nbytes = property(_buffer_nbytes, doc=_buffer_nbytes.__doc__)

    @property
    def weight(self):
        raise BackwardError("QuantizedEmbedding has no float weight (it holds int8 rows and "
                            "their scales, frozen)")

    def forward(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise InputError(f"QuantizedEmbedding expects integer ids, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            what = "position" if self.positional else "id"
            bad = int(idx.min() if idx.min() < 0 else idx.max())
            raise InputError(f"QuantizedEmbedding: {what} {bad} is outside [0, "
                             f"{self.num_embeddings})")
        from ..kernels.int8_layout import dequantize_ref, take_rows
        rows = dequantize_ref(*take_rows(self.qpanels, self.spanels, idx.reshape(-1)), self.dtype)
        return rows.reshape(idx.shape + (self.embedding_dim,))

    def attend(self, x: np.ndarray) -> np.ndarray:
        """x @ W^T against every row: the tied LM head.  x: (..., C) -> (..., V)"""
        C = self.embedding_dim
        y = kernels.int8_matmul(x.reshape(-1, C), self.qpanels, self.spanels,
                                self.num_embeddings, not self.training)
        return y.reshape(x.shape[:-1] + (self.num_embeddings,))

    def attend_backward(self, dlogits: np.ndarray) -> np.ndarray:
        """The input gradient of :meth:`attend`: dlogits @ dequantize(qweight, scales).
        dlogits: (..., V) -> (..., C); the rows are frozen (no gradient)."""
        return _input_gradient(dlogits, self)

    def backward(self, dy) -> None:
        """The ids are integers and the rows frozen: nothing to return or accumulate."""
        return None

    def __repr__(self):
        return (f"QuantizedEmbedding(num_embeddings={self.num_embeddings}, "
                f"embedding_dim={self.embedding_dim}, block={self.block})")


def is_quantized(model: Module) -> bool:
    """Whether any layer of ``model`` holds quantized weights."""
    return any(isinstance(m, (QuantizedLinear, QuantizedEmbedding)) for m in model.modules())


def int8_weights(model: Module) -> int:
    """How many int8 weights ``model`` holds (they are not Parameters, so
    ``num_parameters`` leaves them out)."""
    return sum(_rows_of(m) * m.qpanels.shape[1] for m in model.modules()
               if isinstance(m, (QuantizedLinear, QuantizedEmbedding)))


def _slots(module: Module):
    """(parent, key, child) for every direct child: key is an attribute name, or an index
    into a ModuleList."""
    if isinstance(module, ModuleList):
        return [(module, i, m) for i, m in enumerate(module._items)]
    return [(module, name, m) for name, m in module.named_children()]


def _replace(parent, key, new) -> None:
    if isinstance(parent, ModuleList):
        parent._items[key] = new
    else:
        setattr(parent, key, new)          # an existing attribute keeps its place (and name)


def _targets(model: Module):
    """(name, parent, key, module) of every float Linear and Embedding, depth first."""
    out = []

    def walk(module, prefix):
        for parent, key, child in _slots(module):
            name = f"{prefix}.{key}" if prefix else str(key)
            if type(child) in (Linear, Embedding, LearnedPositionalEmbedding):
                out.append((name, parent, key, child))
            else:
                walk(child, name)
    walk(model, "")
    return out


def quantize_model(model: Module, scheme: str = "int8", block: int = 32,
                   empty: bool = False) -> Module:
    """Swap every Linear for a :class:`QuantizedLinear` and every Embedding (positions too)
    for a :class:`QuantizedEmbedding`, in place; returns the model. A tied head needs nothing
    more: the model's head calls its embedding's ``attend``.

    ``empty``: the quantized layers are left zero (their weights are about to be read from a
    file), and the float weights are not read. Every layer is checked before any changes,
    so a model that cannot be quantized (a width not a multiple of ``block``, float64, LoRA
    adapters, already quantized) is left as it was.
    """
    check_quantization(scheme, block)
    if is_quantized(model):
        raise ConfigError("the model is already quantized")
    if np.dtype(model.dtype) != np.float32:
        raise ConfigError(f"only float32 models are quantized; this one is {model.dtype}")
    targets = _targets(model)
    adapters = [n for n, m in model.named_modules() if type(m).__name__.startswith("LoRA")]
    if adapters:
        raise ConfigError(f"the model has LoRA adapters ({adapters[0]}, ...): merge them into "
                          "the weights first, then quantize")
    widths = [f"{name} ({m.in_features if isinstance(m, Linear) else m.embedding_dim})"
              for name, _, _, m in targets
              if (m.in_features if isinstance(m, Linear) else m.embedding_dim) % block]
    if widths:
        raise ConfigError(f"quantization block {block} does not divide the input width of "
                          f"{', '.join(widths)}")
    for _, parent, key, m in targets:
        if isinstance(m, Linear):
            new = (QuantizedLinear(m.in_features, m.out_features, m.bias is not None, block)
                   if empty else QuantizedLinear.from_linear(m, block))
        else:
            new = (QuantizedEmbedding(m.num_embeddings, m.embedding_dim, block,
                                      isinstance(m, LearnedPositionalEmbedding))
                   if empty else QuantizedEmbedding.from_embedding(m, block))
        new.training = m.training
        _replace(parent, key, new)
    model._quantization = {"scheme": scheme, "block": block}
    return model


def quantized_tensors(model: Module, shapes_only: bool = False) -> dict:
    """Name -> array of everything a quantized model's file holds: ``<layer>.qweight`` and
    ``<layer>.scales`` of each quantized layer ((out, in) layout, unpacked from the panels),
    and every float parameter by its name. ``shapes_only``: name -> shape, unpacking nothing."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
            if shapes_only:
                rows, width = _rows_of(m), m.qpanels.shape[1]
                out[f"{name}.qweight"] = (rows, width)
                out[f"{name}.scales"] = (rows, width // m.block)
            else:
                out[f"{name}.qweight"] = m.qweight
                out[f"{name}.scales"] = m.scales
    for name, value in model.state_dict().items():
        out[name] = value.shape if shapes_only else value
    return out
