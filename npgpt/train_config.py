"""TrainConfig: every setting of a training run, checked where it enters (the flags, the API,
trainer.json), for :class:`npgpt.trainer.Trainer`."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .fields import above, at_least, check_fields, from_dict, in_range, one_of, positive
from .optim.schedules import COOLDOWNS, SCHEDULES
from .runtime.parallel import MODES
from .time_budget import EXPECTED, is_duration, parse_duration


@dataclass
class TrainConfig:
    """Every setting of a training run; the ``npgpt train`` flags are built from these fields.

    Defaults are the baby char-level Shakespeare run (nanoGPT's CPU recipe).
    """

    batch_size: int = 12          # B: sequences per micro-batch
    block_size: int = 64          # T: tokens per training window (<= the model's block_size)
    max_steps: int = 2000         # optimizer steps of the whole run
    lr: float = 1e-3              # peak learning rate, reached after warmup
    min_lr: float = 1e-4          # learning rate at the end of the decay (cosine or wsd)
    warmup_steps: int = 100       # steps of linear warmup from lr / warmup_steps to lr
    schedule: str = "cosine"      # the decay after warmup: cosine, or wsd (warmup-stable-decay)
    cooldown_frac: float = 0.2    # wsd: the last fraction of the run, where lr falls to min_lr
    cooldown: str = "linear"      # wsd: the fall's shape, linear or sqrt (1 - sqrt)
    time_budget: str | None = None  # train this long instead of max_steps: 300, 90s, 5m or 1h
    #                               (evaluation not counted); lr decays over the elapsed share
    budget_clock: str = "wall"    # what time_budget counts: wall (time passed) or cpu (this
    #                               process's CPU time: the compute it got on a shared machine)
    optimizer: str = "adamw"      # adamw, or muon: Muon on the hidden weight matrices, AdamW
    #                               (lr, betas) on embeddings, head, norms and biases
    muon_lr: float = 0.02         # muon: peak learning rate of the matrices (same schedule as lr)
    muon_momentum: float = 0.95   # muon: momentum of the matrices' (Nesterov) updates
    muon_weight_decay: float = 0.0  # muon: decoupled weight decay of the matrices
    weight_decay: float = 0.1     # AdamW decoupled decay on weight matrices only
    beta1: float = 0.9            # AdamW first-moment decay
    beta2: float = 0.99           # AdamW second-moment decay (0.99 suits small batches)
    eps: float = 1e-8             # AdamW denominator epsilon
    grad_clip: float = 1.0        # largest global gradient norm; 0 turns clipping off
    grad_accum: int = 1           # micro-batches per optimizer step (effective batch B * this)
    eval_interval: int = 250      # evaluate and checkpoint every this many steps, and at the end
    eval_steps: int = 20          # batches per split averaged by an evaluation
    log_interval: int = 10        # write a metrics line (and refresh the progress bar) this often
    seed: int = 1337              # seeds the batch sampler
    out_dir: str = "out"          # where checkpoint/, metrics.jsonl and loss.png go
    save_checkpoints: bool = True  # write out_dir/checkpoint at each evaluation
    progress: bool = True         # show a tqdm progress bar
    plot: bool = True             # write out_dir/loss.png (needs matplotlib)
    data_parallel: str = "auto"   # split each batch across threads (npgpt.runtime.parallel): on, off,
    #                               or auto: when every thread gets >= n_embd token rows
    zero: int = 0                 # under mpiexec: 1 shards the AdamW moments across the ranks
    #                               (ZeRO-1, npgpt.distributed.zero); 0 keeps them on every rank
    stats_interval: int = 0       # write out_dir/stats.jsonl (weights, updates, activations) every
    #                               this many steps (docs/glassbox.md); 0 = off
    probe_prompt: str = ""        # text whose attention and logit lens stats.jsonl records at each
    #                               evaluation; "" = the first tokens of the validation text

    def __post_init__(self):
        if isinstance(self.time_budget, (int, float)) and not isinstance(self.time_budget, bool):
            self.time_budget = f"{self.time_budget:g}"       # seconds, kept as a duration text
        check_fields(self, _TRAIN_RULES)
        if self.time_budget is not None and self.max_steps != TrainConfig.max_steps:
            raise ConfigError(f"time_budget={self.time_budget!r} and max_steps={self.max_steps} "
                              "both say when the run ends: give one (under a time budget "
                              "max_steps is not used)")
        if self.optimizer == "muon" and self.zero == 1:
            raise ConfigError("zero=1 shards AdamW's moments across the ranks; Muon "
                              "orthogonalises whole matrices: use zero 0 with optimizer muon")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr={self.min_lr} is larger than lr={self.lr}")

    @property
    def budget_seconds(self) -> float | None:
        """``time_budget`` in seconds (None without one)."""
        return None if self.time_budget is None else parse_duration(self.time_budget)

    @classmethod
    def from_dict(cls, d: dict, source=None, required: bool = False) -> TrainConfig:
        """From a file's dict (trainer.json's ``train_config``), naming ``source``; with
        ``required``, a field missing from it must be one of ``ADDED_FIELDS``."""
        return from_dict(cls, d, None if source is None else str(source), required,
                         ADDED_FIELDS)


# what each TrainConfig field may hold (the type comes from the annotation; npgpt.fields)
_TRAIN_RULES = {
    **{name: positive for name in ("batch_size", "block_size", "max_steps", "grad_accum",
                                   "eval_interval", "eval_steps", "log_interval")},
    "warmup_steps": at_least(0), "seed": at_least(0),
    **{name: at_least(0) for name in ("lr", "min_lr", "weight_decay", "grad_clip")},
    "eps": above(0),
    "beta1": in_range(0, 1, hi_open=True), "beta2": in_range(0, 1, hi_open=True),
    "out_dir": (lambda v: v != "", "a non-empty path"),
    "data_parallel": one_of(*MODES),
    "zero": one_of(0, 1),           # the ZeRO stage
    "schedule": one_of(*SCHEDULES), "cooldown": one_of(*COOLDOWNS),
    "cooldown_frac": in_range(0, 1, lo_open=True),
    "time_budget": (is_duration, EXPECTED),
    "budget_clock": one_of("wall", "cpu"), "optimizer": one_of("adamw", "muon"),
    "muon_lr": at_least(0),
    "muon_momentum": in_range(0, 1, hi_open=True), "muon_weight_decay": at_least(0),
    "stats_interval": at_least(0),
}

# fields added after trainer.json files were first written, each with the value an older file,
# which lacks it, meant (the run as it was then trained, which need not be today's default):
# such a run resumes as it would have
ADDED_FIELDS = {
    "schedule": "cosine", "cooldown_frac": 0.2, "cooldown": "linear", "time_budget": None,
    "budget_clock": "wall", "optimizer": "adamw", "muon_lr": 0.02, "muon_momentum": 0.95,
    "muon_weight_decay": 0.0,
    "stats_interval": 0, "probe_prompt": "",
}

# the training half of the recipes among the model presets (npgpt.models.gpt.PRESETS): a
# preset named here also sets these TrainConfig fields (flags given beside it win)
TRAIN_PRESETS: dict[str, dict] = {
    # the best found for one minute and five minutes of training on two CPU cores
    # (docs/performance.md, "Time to quality")
    "speedrun-1m": dict(time_budget="1m", lr=3e-3, min_lr=0.0, warmup_steps=100,
                        schedule="wsd", cooldown="sqrt", cooldown_frac=0.4,
                        optimizer="muon", muon_lr=0.02),
    "speedrun-5m": dict(time_budget="5m", lr=3e-3, min_lr=0.0, warmup_steps=100,
                        schedule="wsd", cooldown="sqrt", cooldown_frac=0.4,
                        optimizer="muon", muon_lr=0.02),
}


def preset_training(preset: str | None, given: dict) -> dict:
    """The TrainConfig fields of ``preset``'s recipe under the ones ``given`` (by flag); a
    recipe's time budget gives way to a given ``max_steps``."""
    recipe = dict(TRAIN_PRESETS.get(preset) or {})
    if "max_steps" in given:
        recipe.pop("time_budget", None)
    return {**recipe, **given}
