"""Reading back what training saved: the model, its tokenizer and the trainer state, each
field checked where it enters.

Every command that takes a checkpoint (``npgpt sample``, ``npgpt train --resume`` and
``--init-from``) goes through :func:`load_model`, which finds the directory with
:func:`npgpt.io.resolve_checkpoint` (so an output directory, a save interrupted between its
renames and a HuggingFace directory are found the same way everywhere) and refuses a damaged
file the same way: one :class:`~npgpt.errors.CheckpointError` or
:class:`~npgpt.errors.ConfigError` naming the file, the field, the value and what was
expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import tokenizers
from .adapters import LoraConfig, apply_lora
from .errors import CheckpointError, ConfigError
from .hf import from_pretrained, load_tokenizer
from .io import CONFIG, TRAINER, load_checkpoint, load_json, resolve_checkpoint
from .layers.linear import no_init
from .layers.quantized import check_quantization, quantize_model
from .models import GPT, GPTConfig
from .quantized_io import load_quantized, quantization_entry
from .train_optimizer import build_optimizer
from .trainer import TrainConfig
from .trainer_state import check_trainer_state


def _apply_saved_lora(model, state: dict, source) -> None:
    """A LoRA run's checkpoint holds the adapters' weights: the model gets the same adapters
    (trainer.json's ``lora``) before they are read."""
    saved = state.get("lora")
    if saved is None:
        return
    try:
        config = LoraConfig(**saved)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: lora={saved!r:.80} is not a LoraConfig ({e})") from None
    apply_lora(model, config)


def optimizer_layout(model, config: TrainConfig) -> dict:
    """Name -> array with the shape and dtype of each tensor the Trainer's optimizer (AdamW
    or Muon) saves for ``model`` (the parameters themselves stand in: no state is allocated)."""
    optimizer = build_optimizer(model, config)
    return {"step": np.zeros((), np.int64),
            **{f"{i}.{name}": p.data for i, (p, names) in enumerate(optimizer._names())
               for name in names}}


def _quantized_tokenizer(path: Path, config: dict):
    """The tokenizer copied into a quantized directory: HuggingFace's files, or npgpt's one."""
    if "model_type" in config:
        return load_tokenizer(path)
    files = sorted(path.glob("tokenizer*"))
    if len(files) > 1:
        raise CheckpointError(f"{path} holds several tokenizer files: {[f.name for f in files]}")
    return tokenizers.load(files[0]) if files else None


def load_model(path, quantize: str | None = None):
    """(model, tokenizer or None, checked trainer state or {}, directory) from an npgpt
    checkpoint (or output directory), a HuggingFace model directory or a quantized one
    (``npgpt quantize``).

    The model is built from ``config.json`` (every field present and valid) before the
    weights are read, so the weights must match it in names, shapes and dtype, and be finite.
    The weights are views of a private memory map of the file (``npgpt.io.map_safetensors``).
    ``quantize`` ("int8"): the float model is quantized once loaded; a quantized directory
    must hold that scheme.
    """
    path = resolve_checkpoint(path)
    if quantize is not None:
        check_quantization(quantize, 32)
    config_dict = load_json(path / CONFIG)
    stored = quantization_entry(config_dict, path / CONFIG)
    if stored is not None:
        if quantize not in (None, stored["scheme"]):
            raise ConfigError(f"{path} holds {stored['scheme']} weights, not {quantize}")
        if not (path / TRAINER).exists():
            return load_quantized(path), _quantized_tokenizer(path, config_dict), {}, path
        # a LoRA run on an int8 base: its adapters go on before the file is read
        state = check_trainer_state(load_json(path / TRAINER), path / TRAINER, TrainConfig)
        model = load_quantized(path, lambda m: _apply_saved_lora(m, state, path / TRAINER))
        return model, _quantized_tokenizer(path, config_dict), state, path
    if not (path / TRAINER).exists() and "model_type" in config_dict:
        return (from_pretrained(path, quantize=quantize), load_tokenizer(path), {},
                path)   # HuggingFace's
    if not (path / TRAINER).exists():
        load_checkpoint(path)      # an npgpt checkpoint without trainer.json: says so
    config = GPTConfig.from_dict(config_dict, source=path / CONFIG, required=True)
    with no_init():                # every weight is read from the file next
        model = GPT(config)
    state = check_trainer_state(load_json(path / TRAINER), path / TRAINER, TrainConfig)
    _apply_saved_lora(model, state, path / TRAINER)
    ckpt = load_checkpoint(path, expect_model=model.state_dict(),
                           expect_optimizer=optimizer_layout(model, state["train_config"]),
                           mmap=True)
    for name, p in model.named_parameters():   # names, shapes and dtypes checked above
        p.data = ckpt.model_state[name]
    if quantize is not None:
        quantize_model(model, quantize)
        for p in model.parameters():            # norms and biases out of the map
            p.data = p.data.copy()
    tokenizer = None
    if ckpt.tokenizer_path is not None:
        tokenizer = tokenizers.load(ckpt.tokenizer_path)
        saved = state["tokenizer"]
        if saved is not None and (tokenizer.vocab_size != saved["vocab_size"]
                                  or tokenizer.name != saved["name"]):
            raise CheckpointError(f"{ckpt.tokenizer_path}: {tokenizer.name} (vocab "
                                  f"{tokenizer.vocab_size}) is not the tokenizer "
                                  f"{path / TRAINER} records ({saved['name']}, vocab "
                                  f"{saved['vocab_size']})")
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"{path / CONFIG}: vocab_size={config.vocab_size} is smaller than "
                          f"its tokenizer's {tokenizer.vocab_size} ids")
    return model, tokenizer, state, Path(path)


# --- what a resumed (or --init-from) run may change ----------------------------------------

def refuse_overridden(start: str, wanted: dict, tokenizer_spec, seed, model, tokenizer,
                      state: dict) -> None:
    """Settings that a loaded run decides (the model's fields in ``wanted``, the tokenizer
    named ``tokenizer_spec``, and for a resume the batch sampler's ``seed``) are accepted
    when they agree with it and refused when they do not, so none is silently ignored."""
    clashes = [f"{k}={v!r} (the model has {getattr(model.config, k)!r})"
               for k, v in wanted.items() if getattr(model.config, k) != v]
    if tokenizer_spec is not None and tokenizer is not None \
            and not same_tokenizer(tokenizer_spec, tokenizer):
        clashes.append(f"--tokenizer {tokenizer_spec} (the model's is {tokenizer.name})")
    if seed is not None and seed != state["train_config"].seed:
        clashes.append(f"--seed {seed} (the batch sampler continues from the checkpoint's "
                       f"state, seeded {state['train_config'].seed})")
    if clashes:
        raise ConfigError(f"{start} keeps the saved model, tokenizer and batch sampler, so "
                          f"{'; '.join(clashes)} cannot apply: drop the flag, or start a new "
                          f"run without {start}")


def same_tokenizer(spec: str, tokenizer) -> bool:
    """Whether ``--tokenizer spec`` names the tokenizer a checkpoint holds."""
    kind, _, size = spec.partition(":")
    if spec == tokenizer.name:
        return True
    if kind in ("char", "bpe"):    # built from the corpus: the kind (and size) must agree
        return tokenizer.name.startswith(kind + ":") and (
            not size or (size.isdigit() and int(size) == tokenizer.vocab_size))
    return tokenizers.get(spec).name == tokenizer.name


def check_resumable(config: TrainConfig, saved: TrainConfig, step: int, where,
                    max_steps_given: bool, train_time: float = 0.0) -> None:
    """Refuse a resume that would train nothing (the run is at or past ``max_steps``, or has
    spent its time budget)."""
    budget = config.budget_seconds
    if budget is not None:
        if train_time < budget:
            return
        raise ConfigError(f"the run in {where} has spent its time budget ({train_time:.1f} s "
                          f"of training, budget {config.time_budget}): nothing to train (give "
                          "a longer --time-budget)")
    if config.max_steps > step:
        return
    if config.max_steps != saved.max_steps or max_steps_given:
        raise ConfigError(f"--max-steps={config.max_steps} is not beyond step {step}, where "
                          f"{where} stands: nothing to train (give --max-steps > {step})")
    raise ConfigError(f"the run in {where} is finished (step {step} of max_steps "
                      f"{saved.max_steps}): nothing to train (give --max-steps > {step})")
