"""Quantized model directories: written by ``npgpt quantize``, read by memory map.

    config.json        the source's config (HuggingFace's or npgpt's) and a ``quantization``
                       entry: {"scheme": "int8", "block": 32, "scales": "float16"}
    model.safetensors  ``<layer>.qweight`` (int8, (out, in)) and ``<layer>.scales`` (float16,
                       (out, in / block)) of every quantized layer, and every float parameter
                       (norms, biases) under npgpt's own names
    tokenizer files    copied from the source

The tensors carry npgpt's names, not a family's, so any model npgpt builds is written and
read the same way. Reading maps the file (``npgpt.io.map_safetensors``) and packs each int8
weight straight from the map into the panels the kernels read (``npgpt.kernels.int8_layout.pack``:
the same bytes, never widened to float); the scales (1/16 of the int8 bytes) are converted
to float32 once. The map is dropped after loading, so the process holds one int8 copy.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .hf_config import _TOKEN_IDS, config_from_hf
from .io import atomic_directory, load_json, map_safetensors, save_json, save_safetensors
from .layers.linear import no_init
from .layers.quantized import (QuantizedEmbedding, QuantizedLinear, check_quantization,
                               quantize_model, quantized_tensors)
from .models.gpt import GPT, GPTConfig

CONFIG, WEIGHTS, KEY = "config.json", "model.safetensors", "quantization"
_SCALE_TAGS = ("F16", "F32")
_FLOAT_CONVERT = {"F32": None, "F16": None, "BF16": "bf16"}


def quantization_entry(config: dict, where) -> dict | None:
    """The checked ``quantization`` entry of a config.json dict, or None when it has none."""
    entry = config.get(KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: {KEY}={entry!r} must be an object with scheme and block")
    try:
        check_quantization(entry.get("scheme"), entry.get("block"))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if entry.get("scales", "float16") not in ("float16", "float32"):
        raise ConfigError(f"{where}: {KEY} scales={entry.get('scales')!r} must be float16 or "
                          "float32")
    return entry


def with_quantization(model: GPT, config: dict) -> dict:
    """config.json's dict ``config`` with quantized ``model``'s ``quantization`` entry."""
    q = getattr(model, "_quantization", None)
    if q is None:
        raise ConfigError("the model is not quantized (npgpt.layers.quantized.quantize_model)")
    return {**config, KEY: {**q, "scales": "float16"}}


def file_tensors(model: GPT) -> dict[str, np.ndarray]:
    """What quantized ``model``'s model.safetensors holds: ``quantized_tensors`` with the
    scales as float16 (exact: they were rounded to float16 when quantized)."""
    return {name: (a.astype(np.float16) if name.endswith(".scales") else a)
            for name, a in quantized_tensors(model).items()}


def save_quantized(model: GPT, path, config: dict, copy_files=()) -> Path:
    """Write quantized ``model`` to directory ``path`` (atomically: built beside it and
    renamed), with ``config`` (a config.json dict) and the files ``copy_files`` beside."""
    config = with_quantization(model, config)
    tensors = file_tensors(model)
    path = Path(path)
    with atomic_directory(path) as tmp:
        for f in copy_files:
            shutil.copyfile(f, tmp / Path(f).name)
        save_json(tmp / CONFIG, config)
        save_safetensors(tmp / WEIGHTS, tensors)
    return path


def _float(a: np.ndarray, tag: str) -> np.ndarray:
    """A float parameter from the file (the mapped array itself when already float32)."""
    if tag == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a if a.dtype == np.float32 else a.astype(np.float32)


def load_quantized(path, adapt=None) -> GPT:
    """The quantized :class:`GPT` in directory ``path`` (see the module docstring).
    ``adapt(model)``, when given, runs once the int8 layers exist and before the file is read:
    a LoRA run's checkpoint (an int8 base, its adapters) puts the adapters on. Every
    missing, unexpected or mis-shaped tensor (scales that do not fit their weights among
    them), a wrong dtype and a non-finite or negative scale is a :class:`CheckpointError`
    naming the file and the tensors."""
    path = Path(path)
    raw = load_json(path / CONFIG)
    entry = quantization_entry(raw, path / CONFIG)
    if entry is None:
        raise CheckpointError(f"{path / CONFIG} has no {KEY} entry: not a quantized model")
    config_dict = {k: v for k, v in raw.items() if k != KEY}
    try:
        config = (config_from_hf(config_dict) if "model_type" in config_dict
                  else GPTConfig.from_dict(config_dict, source=path / CONFIG, required=True))
    except ConfigError as e:
        raise ConfigError(f"{path / CONFIG}: {str(e).removeprefix('config.json: ')}") from None
    with no_init():
        model = GPT(config)
    quantize_model(model, entry["scheme"], entry["block"], empty=True)
    if adapt is not None:
        adapt(model)
    expected = quantized_tensors(model, shapes_only=True)
    header, arrays = map_safetensors(path / WEIGHTS)
    problems = []
    missing = [n for n in expected if n not in header]
    unexpected = [n for n in header if n not in expected]
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    for name, want in expected.items():
        if name not in header:
            continue
        shape, tag = tuple(header[name]["shape"]), header[name]["dtype"]
        if shape != want:
            what = (f"scales do not match their weights (block {entry['block']})"
                    if name.endswith(".scales") else "mis-shaped")
            problems.append(f"{name}: {what}: file {shape} vs expected {want}")
        elif name.endswith(".qweight") and tag != "I8":
            problems.append(f"{name}: dtype {tag}, expected I8")
        elif name.endswith(".scales") and tag not in _SCALE_TAGS:
            problems.append(f"{name}: dtype {tag}, expected F16 or F32")
        elif not name.endswith((".qweight", ".scales")) and tag not in _FLOAT_CONVERT:
            problems.append(f"{name}: dtype {tag} is not a float")
    if problems:
        raise CheckpointError(f"{path / WEIGHTS} does not match the int8 model {path / CONFIG} "
                              "describes: " + " | ".join(problems))
    for name, m in model.named_modules():
        if isinstance(m, (QuantizedLinear, QuantizedEmbedding)):
            scales = arrays[f"{name}.scales"].astype(np.float32)
            if not (np.isfinite(scales).all() and (scales >= 0).all()):
                raise CheckpointError(f"{path / WEIGHTS}: {name}.scales holds negative, NaN "
                                      "or infinite scales: the file is damaged")
            m.set_weights(arrays[f"{name}.qweight"], scales)
    for name, p in model.named_parameters():
        # a copy: the int8 weights were packed out of the map, and with the few float
        # arrays (norms, biases) copied too, nothing holds the map after loading
        p.data = np.array(_float(arrays[name], header[name]["dtype"]))
        if not np.isfinite(p.data).all():
            raise CheckpointError(f"{path / WEIGHTS}: {name} holds NaN or infinite values")
    if "model_type" in config_dict:
        model._hf_token_ids = {k: config_dict.get(k) for k in _TOKEN_IDS}
    return model
