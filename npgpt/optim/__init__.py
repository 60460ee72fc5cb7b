"""Optimizers, gradient clipping and learning-rate schedules.

- :class:`SGD`, :class:`Adam`, :class:`AdamW` (npgpt.optim.sgd, npgpt.optim.adam);
- :class:`Muon`: orthogonalised momentum on the hidden weight matrices, AdamW on the rest,
  in one optimizer object (npgpt.optim.muon);
- :func:`clip_grad_norm` (npgpt.optim.clip);
- schedules (npgpt.optim.schedules): :func:`cosine_schedule`, :func:`wsd_schedule` by step,
  and :func:`schedule_lr`, their common form over the run's progress (steps or a time budget).

Every optimizer keeps its state as a flat ``name -> array`` dict (``state_dict()``), ready
for a checkpoint's safetensors file.
"""
from .adam import Adam, AdamW, adamw_update
from .base import LearningRate, Optimizer
from .clip import clip_grad_norm
from .muon import Muon, newton_schulz
from .schedules import (COOLDOWNS, SCHEDULES, cosine_schedule, decay_factor, schedule_lr,
                        step_progress, wsd_schedule)
from .sgd import SGD

__all__ = ["Optimizer", "LearningRate", "SGD", "Adam", "AdamW", "adamw_update", "Muon",
           "newton_schulz",
           "clip_grad_norm", "cosine_schedule", "wsd_schedule", "schedule_lr", "decay_factor",
           "step_progress", "SCHEDULES", "COOLDOWNS"]
