"""trainer.json, field by field: what each key of the trainer state may hold.

:func:`check_trainer_state` is called wherever a trainer.json enters (resuming a run,
loading a model to sample from it), so a damaged or hand-edited file is refused by name:
the file, the key, the value and what was expected.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import CheckpointError


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _rng_state(v):
    """A NumPy bit generator's state, as ``bit_generator.state`` gives it."""
    if not isinstance(v, dict) or not isinstance(v.get("bit_generator"), str):
        return False
    try:
        g = getattr(np.random, v["bit_generator"])()
        g.state = v
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def _tokenizer_info(v):
    return v is None or (isinstance(v, dict) and isinstance(v.get("name"), str)
                         and _is_int(v.get("vocab_size")) and v["vocab_size"] > 0)


def _data_info(v):
    return v is None or (isinstance(v, dict) and isinstance(v.get("train"), (dict, type(None)))
                         and isinstance(v.get("val"), (dict, type(None))))


# every key of trainer.json: (check, what is expected). A key npgpt adds to the trainer
# state is added here, so that an old, damaged or hand-edited file is refused by name.
TRAINER_FIELDS = {
    "step": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "sampler_rng": (_rng_state, "a NumPy bit generator state"),
    "model_rngs": (lambda v: isinstance(v, list) and all(map(_rng_state, v)),
                   "a list of NumPy bit generator states"),
    "best_val_loss": (lambda v: v is None or (isinstance(v, (int, float))
                                              and not isinstance(v, bool) and math.isfinite(v)),
                      "a finite number or null"),
    "train_time": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v) and v >= 0, "a number of seconds >= 0"),
    "tokenizer": (_tokenizer_info, "null or {name, vocab_size, ...}"),
    "data": (_data_info, "null or {train, val}"),
    "train_config": (lambda v: isinstance(v, dict), "an object of TrainConfig fields"),
    "npgpt_version": (lambda v: isinstance(v, str), "a version string"),
    "lora": (lambda v: isinstance(v, dict), "an object of LoraConfig fields"),
}
OPTIONAL = {"lora",        # present in a LoRA run's checkpoint only
            "train_time"}  # written since time budgets (an older checkpoint: 0 s spent)


def check_trainer_state(state: dict, source, config_cls) -> dict:
    """Refuse a trainer.json (``state``, read from ``source``) with an unknown, missing or
    ill-typed key, a ``train_config`` that ``config_cls`` (TrainConfig) refuses, or a
    ``step`` beyond its ``max_steps``. Returns ``state`` with ``train_config`` built."""
    unknown = sorted(set(state) - set(TRAINER_FIELDS))
    if unknown:
        raise CheckpointError(f"{source}: unknown field{'s' * (len(unknown) > 1)} "
                              f"{', '.join(unknown)} (known: {', '.join(TRAINER_FIELDS)})")
    missing = [k for k in TRAINER_FIELDS if k not in state and k not in OPTIONAL]
    if missing:
        raise CheckpointError(f"{source}: missing field{'s' * (len(missing) > 1)} "
                              f"{', '.join(missing)}")
    for key, (ok, expected) in TRAINER_FIELDS.items():
        if key in state and not ok(state[key]):
            raise CheckpointError(f"{source}: {key}={_short(state[key])} must be {expected}")
    config = config_cls.from_dict(state["train_config"], source=f"{source} train_config",
                                   required=True)
    if state["step"] > config.max_steps and config.time_budget is None:
        raise CheckpointError(f"{source}: step={state['step']} is beyond its train_config's "
                              f"max_steps={config.max_steps}")
    return {**state, "train_config": config}


def _short(value, n=60):
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."
