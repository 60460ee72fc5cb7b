"""HuggingFace checkpoints: GPT-2 and LLaMA-family directories (Llama, Mistral, Qwen2/3,
SmolLM2/3, Gemma 3 text: see :mod:`npgpt.hf_config`) in and out, no torch needed.

    model = from_pretrained("path/to/gpt2")       # config.json + model.safetensors (or shards)
    save_pretrained(model, "out/")                # transformers' from_pretrained reads it back
    tok = load_tokenizer("path/to/gpt2")          # npgpt's byte-level BPE, or None

Both families map one-to-one onto npgpt's :class:`~npgpt.models.GPT`:

    GPT-2 (``transformer.`` prefix)             npgpt
      wte, wpe, h.i.ln_1, h.i.attn.c_attn, ...    the same names; Conv1D is (in, out) already
      lm_head.weight (V, C), when untied          lm_head.weight (C, V): transposed
    LLaMA (``model.`` prefix)
      embed_tokens.weight                         wte.weight
      layers.i.input_layernorm                    h.i.ln_1
      layers.i.self_attn.{q,k,v}_proj (out, in)   h.i.attn.c_attn (C, (H + 2 Hkv) hs): q | k | v
                                                  columns, each transposed
      layers.i.self_attn.{q,k}_norm (Qwen3, Gemma) h.i.attn.{q,k}_norm
      layers.i.self_attn.o_proj                   h.i.attn.c_proj (transposed)
      layers.i.post_attention_layernorm           h.i.ln_2 (Gemma: h.i.ln_attn_out, and its
                                                  pre/post_feedforward_layernorm: ln_2, ln_mlp_out)
      layers.i.mlp.{gate,up,down}_proj            h.i.mlp.{gate,up,down}_proj (transposed)
      norm                                        ln_f
      lm_head.weight, when untied                 lm_head.weight (transposed)

HF's LLaMA checkpoints already use the half-split RoPE layout (``rotate_half``) and group
consecutive query heads per key/value head (``repeat_kv``), which is npgpt's ``rope_layout
"half"`` and its GQA, so no head permutation is needed.

Loading builds the model without drawing initial weights (``no_init``), checks every
safetensors header (``npgpt.io.read_safetensors_header``) and maps each file
(``npgpt.io.map_safetensors``, private copy-on-write): a tensor already in the parameter's
dtype and layout becomes the parameter itself, read from the page cache as it is used, so
the loaded process holds one copy of the weights, shared with the page cache; one that must
be transposed or converted (float16, bfloat16, float64 -> float32) is copied into its
parameter one tensor at a time. Training such a model writes its weights in place: each
page written is copied into the process, never written to the file. No torch is imported.
A config that npgpt would run differently from transformers is refused with a
:class:`~npgpt.errors.ConfigError` naming the field.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import checked
from .errors import CheckpointError, ConfigError, TokenizerError
from .io import atomic_directory, load_json, map_safetensors, read_safetensors_header, save_json
from .layers.linear import no_init
from .layers.quantized import check_quantization, quantize_model
from .quantized_io import load_quantized, quantization_entry
from .models.gpt import GPT, GPTConfig

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
# checkpoint tensors that are buffers, not weights: GPT-2's causal masks, old RoPE tables
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
from .hf_config import (  # noqa: E402,F401  (config_from_hf and family are public here too)
    LLAMA_TYPES, _TOKEN_IDS, config_from_hf, config_to_hf, family)


# --- tensor layout -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """Checkpoint tensor ``hf`` is ``ours[..., cols]`` of npgpt's parameter ``ours``,
    transposed when ``transpose`` (the (out, in) vs (in, out) Linear layouts)."""
    hf: str
    ours: str
    transpose: bool = False
    cols: slice | None = None


def layout(config: GPTConfig) -> list[Entry]:
    """Every checkpoint tensor of ``config``'s HuggingFace counterpart and where it lives."""
    c, L = config, range(config.n_layer)
    entries = []
    if family(c) == "gpt2":
        p = "transformer."
        names = ["wte.weight", "wpe.weight"]
        for i in L:
            for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
                names += [f"h.{i}.{m}.weight", f"h.{i}.{m}.bias"]
        names += ["ln_f.weight", "ln_f.bias"]
        entries = [Entry(p + n, n) for n in names]
    else:
        p, H, Hkv, hs = "model.", c.n_head, c.n_kv_head, c.head_size
        qkv = {"q": slice(0, H * hs), "k": slice(H * hs, (H + Hkv) * hs),
               "v": slice((H + Hkv) * hs, (H + 2 * Hkv) * hs)}
        qkv_kinds = ("weight", "bias") if (c.bias if c.qkv_bias is None else c.qkv_bias) \
            else ("weight",)
        kinds = ("weight", "bias") if c.bias else ("weight",)
        # Gemma's four norms per block: post_attention_layernorm is then the attention's
        # output norm, and pre_feedforward_layernorm the one before the MLP
        norms = ([("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_attn_out"),
                  ("pre_feedforward_layernorm", "ln_2"), ("post_feedforward_layernorm", "ln_mlp_out")]
                 if c.sandwich_norm else
                 [("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")])
        entries.append(Entry(p + "embed_tokens.weight", "wte.weight"))
        for i in L:
            hf, ours = f"{p}layers.{i}.", f"h.{i}."
            entries += [Entry(f"{hf}{a}.weight", f"{ours}{b}.weight") for a, b in norms]
            for kind in qkv_kinds:
                entries += [Entry(f"{hf}self_attn.{x}_proj.{kind}", f"{ours}attn.c_attn.{kind}",
                                  kind == "weight", s) for x, s in qkv.items()]
            if c.qk_norm:
                entries += [Entry(f"{hf}self_attn.{x}_norm.weight", f"{ours}attn.{x}_norm.weight")
                            for x in ("q", "k")]
            for kind in kinds:
                t = kind == "weight"
                entries.append(Entry(f"{hf}self_attn.o_proj.{kind}", f"{ours}attn.c_proj.{kind}", t))
                entries += [Entry(f"{hf}mlp.{m}.{kind}", f"{ours}mlp.{m}.{kind}", t)
                            for m in ("gate_proj", "up_proj", "down_proj")]
        entries.append(Entry(p + "norm.weight", "ln_f.weight"))
    if not c.tie_embeddings:
        entries.append(Entry("lm_head.weight", "lm_head.weight", True))
    return entries


def _hf_view(param: np.ndarray, e: Entry) -> np.ndarray:
    """npgpt's array seen in the checkpoint's layout (a view, no copy)."""
    view = param if e.cols is None else param[..., e.cols]
    return view.T if e.transpose else view


# --- loading ------------------------------------------------------------------------------------

def _weight_files(path: Path) -> dict[str, Path]:
    """Checkpoint tensor name -> the safetensors file holding it (one file or the shards)."""
    if (path / WEIGHTS).is_file():
        return {name: path / WEIGHTS for name in read_safetensors_header(path / WEIGHTS)}
    if (path / INDEX).is_file():
        weight_map = load_json(path / INDEX).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{path / INDEX}: no 'weight_map' object")
        files = {}
        for shard in sorted(set(weight_map.values())):
            names = set(read_safetensors_header(path / shard)) if (path / shard).is_file() else None
            if names is None:
                raise CheckpointError(f"{path / INDEX} names shard {shard!r}, which is missing")
            for name, where in weight_map.items():
                if where == shard and name not in names:
                    raise CheckpointError(f"{path / INDEX} puts {name!r} in {shard}, which does "
                                          "not hold it")
        for name, shard in weight_map.items():
            files[name] = path / shard
        return files
    found = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    if found is None:
        raise CheckpointError(f"{path} is not a directory")
    raise CheckpointError(f"{path} holds neither {WEIGHTS} nor {INDEX} (found: "
                          f"{', '.join(found) or 'nothing'}); pytorch_model.bin is not read "
                          "(npgpt never unpickles)")


# safetensors dtype tags npgpt reads; bfloat16 (which NumPy lacks) arrives as its raw 16 bits
_FLOAT_TAGS = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "<u2"}


def _read_into(f, data_start: int, info: dict, dst: np.ndarray, where: str) -> None:
    """Read one tensor of the open safetensors file ``f`` into ``dst`` (a view of a parameter
    in the checkpoint's layout). Same dtype and contiguous: the bytes go straight into the
    parameter; otherwise one temporary of this tensor is converted (bfloat16 is the top half
    of a float32) or transposed on the way."""
    begin, end = info["data_offsets"]
    f.seek(data_start + begin)
    source = np.dtype(_FLOAT_TAGS[info["dtype"]])
    if info["dtype"] != "BF16" and source == dst.dtype and dst.flags.c_contiguous:
        if f.readinto(memoryview(dst).cast("B")) != end - begin:
            raise CheckpointError(f"{where}: file ended inside the tensor")
        return
    raw = np.fromfile(f, dtype=source, count=(end - begin) // source.itemsize)
    if raw.nbytes != end - begin:
        raise CheckpointError(f"{where}: file ended inside the tensor")
    if info["dtype"] == "BF16":
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    np.copyto(dst, raw.reshape(info["shape"]), casting="unsafe")


def _load_tensor(src: np.ndarray, tag: str, param, e: Entry) -> None:
    """Put one checkpoint tensor ``src`` (a view of the file's memory map) into ``param``.
    Same dtype and layout: the parameter becomes the mapped array itself (no copy; pages are
    read when first used, and a write copies the page: the file never changes). Otherwise
    it is converted (bfloat16 is the top half of a float32) or transposed into the
    parameter, one tensor at a time."""
    if tag != "BF16" and src.dtype == param.data.dtype and not e.transpose and e.cols is None:
        param.data = src
        return
    dst = _hf_view(param.data, e)
    if tag == "BF16" and dst.dtype == np.float32:      # the 16 bits shifted straight in
        np.left_shift(src, 16, out=dst.view(np.uint32), dtype=np.uint32)
    elif tag == "BF16":
        dst[...] = (src.astype(np.uint32) << 16).view(np.float32)
    else:
        np.copyto(dst, src, casting="unsafe")


def load_weights(model: GPT, path) -> GPT:
    """Read a HuggingFace checkpoint (``model.safetensors`` or shards + index) into ``model``'s
    parameters, in place, one tensor at a time. Every missing, unexpected or mis-shaped
    tensor is named in one :class:`CheckpointError`, raised before any parameter changes."""
    path = Path(path)
    files = _weight_files(path)
    entries = layout(model.config)
    params = dict(model.named_parameters())
    expected = {e.hf: e for e in entries}

    def canonical(name):   # openai's GPT-2 files have no "transformer." prefix
        if name not in expected and "transformer." + name in expected:
            return "transformer." + name
        return name

    stored = {canonical(n): n for n in files}
    headers = {f: read_safetensors_header(f) for f in set(files.values())}
    ignored = lambda n: n.endswith(_IGNORED_SUFFIXES) or (
        n == "lm_head.weight" and model.config.tie_embeddings)   # tied: a copy of wte
    missing = [n for n in expected if n not in stored]
    unexpected = [stored[n] for n in stored if n not in expected and not ignored(n)]
    misshaped = []
    for n, e in expected.items():
        if n in stored:
            info = headers[files[stored[n]]][stored[n]]
            want = _hf_view(params[e.ours].data, e).shape
            if tuple(info["shape"]) != want:
                misshaped.append(f"{stored[n]}: checkpoint {tuple(info['shape'])} vs expected {want}")
            if info["dtype"] not in _FLOAT_TAGS:
                misshaped.append(f"{stored[n]}: dtype {info['dtype']} is not one of "
                                 f"{', '.join(_FLOAT_TAGS)}")
    problems = ([f"missing tensors: {', '.join(missing)}"] if missing else []) \
        + ([f"unexpected tensors: {', '.join(unexpected)}"] if unexpected else []) \
        + ([f"mis-shaped or non-float tensors: {'; '.join(misshaped)}"] if misshaped else [])
    if problems:
        raise CheckpointError(f"{path} does not match the {family(model.config)} model its "
                              "config.json describes: " + " | ".join(problems))
    by_file: dict[Path, list[Entry]] = {}
    for n, e in expected.items():
        by_file.setdefault(files[stored[n]], []).append(e)
    for file, file_entries in by_file.items():
        _, arrays = map_safetensors(file)
        for e in file_entries:
            name = stored[e.hf]
            _load_tensor(arrays[name], headers[file][name]["dtype"], params[e.ours], e)
    return model


def from_pretrained(path, dtype="float32", quantize: str | None = None, block: int = 32,
                    **overrides) -> GPT:
    """A :class:`GPT` from a local HuggingFace directory (``config.json`` + safetensors).

    dtype      float32 (default) or float64; the checkpoint's float16 / bfloat16 / float32
               tensors are converted on the way in.
    quantize   "int8": every Linear, the head and the embeddings quantized as they load
               (blocks of ``block`` inputs, :mod:`npgpt.layers.quantized`). A directory
               written by ``npgpt quantize`` is read as it is (int8 without a float copy).
    overrides  GPTConfig fields to change, e.g. ``dropout=0.1`` before fine-tuning.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"from_pretrained takes a directory path, got {type(path).__name__}")
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise CheckpointError(f"{path} has no {CONFIG}: not a HuggingFace model directory")
    if quantize is not None:
        check_quantization(quantize, block)
    hf = load_json(path / CONFIG)
    stored = quantization_entry(hf, path / CONFIG)
    if stored is not None:
        if overrides or dtype != "float32":
            raise ConfigError(f"{path} holds {stored['scheme']} weights: they load as they "
                              "are (no dtype or config overrides)")
        if quantize is not None and quantize != stored["scheme"]:
            raise ConfigError(f"{path} holds {stored['scheme']} weights, not {quantize}")
        return load_quantized(path)
    try:
        config = config_from_hf(hf, dtype=dtype, **overrides)
    except ConfigError as e:       # name the file itself, not just "config.json"
        text = str(e).removeprefix("config.json: ")
        raise ConfigError(f"{path / CONFIG}: {text}") from None
    with no_init():               # every weight is read from the file next
        model = GPT(config)
    for p in model.parameters():
        # fresh np.zeros pages stay unmapped until a backward writes them: an inference-only
        # model pays no gradient memory (Parameter's zeros_like grads are written at once)
        p.grad = np.zeros(p.shape, p.dtype)
    load_weights(model, path)
    for name, p in model.named_parameters():   # a damaged file, never a model
        if not np.isfinite(p.data).all():
            raise CheckpointError(f"{path}: the weights of {name} hold NaN or infinite values")
    model._hf_token_ids = {k: hf.get(k) for k in _TOKEN_IDS}   # written back by save_pretrained
    if quantize is not None:
        quantize_model(model, quantize, block)
        for p in model.parameters():   # the float norms and biases left: copied out, so the
            p.data = p.data.copy()     # map of the float file (and its pages) can go
    return model


# --- saving -------------------------------------------------------------------------------------

def _write_safetensors(file: Path, model: GPT, entries: list[Entry]) -> None:
    """Stream the checkpoint tensors to ``file``: header, then one tensor at a time (a
    transposed one is copied alone), so saving never holds a second copy of the model."""
    params = dict(model.named_parameters())
    tag = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}[model.dtype]
    header, offset = {}, 0
    for e in entries:
        view = _hf_view(params[e.ours].data, e)
        header[e.hf] = {"dtype": tag, "shape": list(view.shape),
                        "data_offsets": [offset, offset + view.nbytes]}
        offset += view.nbytes
    header["__metadata__"] = {"format": "pt"}   # transformers refuses files without it
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)               # the data starts 8-byte aligned
    with open(file, "wb") as f:
        f.write(np.uint64(len(raw)).astype("<u8").tobytes())
        f.write(raw)
        for e in entries:
            view = _hf_view(params[e.ours].data, e)
            f.write(np.ascontiguousarray(view, dtype=view.dtype.newbyteorder("<")).data)
        f.flush()
        os.fsync(f.fileno())


@checked
def save_pretrained(model: GPT, path, tokenizer=None) -> Path:
    """Write ``model`` as a HuggingFace directory: ``config.json`` + ``model.safetensors``,
    and ``tokenizer.json`` + ``tokenizer_config.json`` when ``tokenizer`` is given (see
    :func:`npgpt.tokenizers.hf.to_tokenizer_json`).

    The directory is built beside ``path`` and renamed into place, so an interrupted save
    (or a tokenizer that cannot be exported) leaves any earlier one whole. Files of an earlier
    save that are not weights (a tokenizer, generation_config.json) are kept; its old weight
    files are replaced.
    """
    path = Path(path)
    entries = layout(model.config)          # refuses configs with no HF counterpart first
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's "
                          f"vocab_size is {model.config.vocab_size}")
    with atomic_directory(path) as tmp:
        if tokenizer is not None:
            from .tokenizers.hf import save_pretrained_tokenizer
            save_pretrained_tokenizer(tokenizer, tmp, model_max_length=model.config.block_size)
        if path.is_dir():
            for old in path.iterdir():
                if old.is_file() and not (old.name == CONFIG or old.name.endswith(".safetensors")
                                          or old.name == INDEX or (tmp / old.name).exists()):
                    shutil.copy2(old, tmp / old.name)
        save_json(tmp / CONFIG, config_to_hf(model.config, getattr(model, "_hf_token_ids", None)))
        _write_safetensors(tmp / WEIGHTS, model, entries)
        for name in (CONFIG, WEIGHTS):
            os.chmod(tmp / name, 0o644)        # as any saved model: readable, not private
    return path


def _from_pretrained_method(cls, path, dtype: str = "float32", quantize: str | None = None,
                            block: int = 32, **overrides) -> GPT:
    """A GPT-2 or LLaMA-family model from a local HuggingFace directory
    (:func:`npgpt.hf.from_pretrained`)."""
    return from_pretrained(path, dtype, quantize, block, **overrides)


def _save_pretrained_method(self, path, tokenizer=None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that transformers loads, and the
    tokenizer's files when given (:func:`npgpt.hf.save_pretrained`)."""
    return save_pretrained(self, path, tokenizer)


# The methods a HuggingFace user reaches for, on the model class (``import npgpt`` loads this
# module, so every GPT has them); models/ itself knows nothing of the format.
GPT.from_pretrained = classmethod(_from_pretrained_method)
GPT.save_pretrained = _save_pretrained_method


# --- tokenizer ----------------------------------------------------------------------------------

def load_tokenizer(path):
    """The tokenizer of a HuggingFace directory (``tokenizer.json``, or ``vocab.json`` +
    ``merges.txt``) as npgpt's byte-level BPE, or None when the directory has none."""
    path = Path(path)
    if not ((path / "tokenizer.json").is_file()
            or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())):
        return None
    try:
        from .tokenizers.hf import from_pretrained_dir
    except ImportError as e:
        raise TokenizerError(f"{path} has a HuggingFace tokenizer, but npgpt.tokenizers cannot "
                             f"load it here ({e})") from None
    return from_pretrained_dir(str(path))
