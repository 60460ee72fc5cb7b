"""``npgpt.train(**options)``: a whole training run, as ``npgpt train`` does it, from Python.

    run = npgpt.train(data="shakespeare", max_steps=500, out_dir="out")
    run.model, run.tokenizer, run.val_loss            # the trained model, to look inside
    npgpt.train(out_dir="out", resume=True, max_steps=1000)       # continue it, bit for bit
    npgpt.train(init_from="hf-dir", lora_rank=8, data="my.txt")   # fine-tune adapters only
    npgpt.train(init_from="hf-dir", lora_rank=8, quantize="int8")  # ... on an int8 base

The keyword arguments are the flags of ``npgpt train`` with underscores: the fields of
:class:`RunOptions` (what to train on and from), of :class:`~npgpt.models.GPTConfig` (the
model, on top of ``preset``) and of :class:`~npgpt.train_config.TrainConfig` (the run).
``npgpt train`` only turns its flags into this call, so the two cannot drift. Everything a
run decides before its first step (the tokenizer, built or loaded and cached; the model, new,
resumed or loaded; the adapters; the tokenized data, checked against a resumed run's) is done
by :func:`prepare`, which :func:`train` then runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import check_resumable, load_model, refuse_overridden
from .errors import CheckpointError, ConfigError
from .fields import check_fields, one_of, positive
from .layers.quantized import SCHEMES, int8_weights
from .models import GPT, PRESETS, GPTConfig
from .train_config import TrainConfig, preset_training

# GPTConfig fields a run sets itself (from the tokenizer and the TrainConfig), not options
MODEL_FIELDS_NOT_OPTIONS = ("vocab_size", "block_size", "dtype")
# a new run without --preset: the speedrun-1m recipe (one minute of training, Muon, the
# modern block; docs/performance.md, "Time to quality")
DEFAULT_PRESET = "speedrun-1m"
DEFAULT_TOKENIZER = "char"
# the Linears LoRA adapts when lora_targets is not given: PEFT's own defaults (q_proj,v_proj
# for the LLaMA-like families)
DEFAULT_LORA_TARGETS = {"gpt2": "c_attn", "llama": "q_proj,v_proj"}


@dataclass
class RunOptions:
    """What ``npgpt train`` takes beside the model's and the run's fields: the data, the
    tokenizer, and where the weights start from."""

    data: str = "shakespeare"        # 'shakespeare' (the embedded corpus) or a UTF-8 text file
    tokenizer: str | None = None     # char | cl100k_base | gpt2 | bpe:<vocab size> | a tokenizer
    #                                  file; with --resume or --init-from, the checkpoint's
    preset: str | None = None        # the model preset the model flags change; with --resume or
    #                                  --init-from, the checkpoint's model
    resume: str | None = None        # continue the run saved in --out ("auto") or in the
    #                                  directory given
    init_from: str | None = None     # start from an npgpt checkpoint or a HuggingFace model
    #                                  directory
    lora_rank: int | None = None     # train only rank-R LoRA adapters on the target Linears
    #                                  (base frozen)
    lora_alpha: float | None = None  # adapter scale alpha / R; None = 2 * lora_rank
    lora_targets: str | None = None  # comma-separated module names, or all-linear; None = PEFT's:
    #                                  c_attn for GPT-2, q_proj,v_proj for LLaMA-like models
    lora_dropout: float | None = None  # dropout on the adapters' input; None = no dropout
    quantize: str | None = None      # int8: the base's weights in int8, frozen, under the
    #                                  adapters (QLoRA-style); None = the base as saved

    def __post_init__(self):
        check_fields(self, RUN_RULES)


def _nonempty(v) -> bool:
    return str(v).strip() != ""


RUN_RULES = {
    "data": (_nonempty, "a non-empty path"),
    "tokenizer": (_nonempty, "a tokenizer name or a non-empty path"),
    "preset": one_of(*PRESETS),
    "resume": (_nonempty, "a non-empty path"),
    "init_from": (_nonempty, "a non-empty path"),
    "lora_rank": positive,
    "lora_targets": (_nonempty, "a non-empty list of names"),
    "quantize": one_of(*SCHEMES),
}


@dataclass
class Run:
    """What :func:`train` returns: the trained model and what it was trained with."""

    model: object                    # the trained model (a GPT)
    tokenizer: object                # its tokenizer
    config: TrainConfig              # the run's settings
    out_dir: Path                    # where checkpoint/, metrics.jsonl and loss.png are
    step: int                        # the step the run reached
    train_loss: float | None         # the last evaluation's loss on the training split
    val_loss: float | None           # ... and on the validation split (None: no split)
    metrics: list                    # the metrics lines (dicts) of the run, from step 0
    trainer: object = dataclasses.field(repr=False)   # the Trainer, to train further
    stopped: str | None = None       # the signal that stopped the run early (SIGINT, SIGTERM)

    @property
    def checkpoint_dir(self) -> Path:
        return self.trainer.checkpoint_dir


def split_options(options: dict) -> tuple[RunOptions, dict, dict]:
    """(RunOptions, GPTConfig overrides, TrainConfig overrides) of ``train``'s keywords;
    an unknown keyword is refused, naming the known ones. ``None`` means "not given"."""
    run_names = [f.name for f in dataclasses.fields(RunOptions)]
    model_names = [f.name for f in dataclasses.fields(GPTConfig)
                   if f.name not in MODEL_FIELDS_NOT_OPTIONS]
    train_names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(options) - {*run_names, *model_names, *train_names, "threads"})
    if unknown:
        raise ConfigError(f"unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                          f"(options: {', '.join(run_names + model_names + train_names)}, "
                          "threads)")
    resume = options.get("resume")
    if resume is True:
        options = {**options, "resume": "auto"}
    elif resume is False:
        options = {**options, "resume": None}
    given = {k: v for k, v in options.items() if v is not None}
    run = RunOptions(**{k: v for k, v in given.items() if k in run_names})
    return (run, {k: v for k, v in given.items() if k in model_names},
            {k: v for k, v in given.items() if k in train_names})


# --- the text and the tokenizer -------------------------------------------------------------

def load_texts(data: str):
    """(train text, validation text) of ``data``: the embedded corpus, or a UTF-8 file whose
    last ~10% (cut at a line end) is held out."""
    from .data import read_text, shakespeare_text
    if data == "shakespeare":
        return shakespeare_text("train"), shakespeare_text("val")
    text = read_text(data)
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
    return text[:cut], text[cut:]


def make_tokenizer(spec: str, train_text: str, val_text: str, cache_dir: Path):
    """``tokenizer``: char (built from the corpus), bpe:N (trained on the training text,
    cached by the text's hash), cl100k_base, gpt2, or a tokenizer file."""
    from . import tokenizers
    from .data import sha256_text
    if spec == "char":
        return tokenizers.get("char", text=train_text + val_text)
    if spec.startswith("bpe:"):
        cached = cache_dir / f"{spec.replace(':', '')}-{sha256_text(train_text)[:16]}.bpe"
        if cached.exists():
            return tokenizers.load(cached)
        say(f"training a byte-level BPE tokenizer ({spec}) on {len(train_text):,} characters",
            flush=True)
        tokenizer = tokenizers.get(spec, text=train_text)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(cached)
        return tokenizer
    return tokenizers.get(spec)


def say(*args, **kwargs):
    """print on rank 0 of an MPI run (and in a one-process run); nothing on the others."""
    from .distributed import get_world
    w = get_world()
    if w is None or w.is_main:
        print(*args, **kwargs)


# --- preparing and running ------------------------------------------------------------------

@dataclass
class Prepared:
    """A run ready for its first step (what :func:`prepare` decided)."""

    options: RunOptions
    config: TrainConfig
    model: object
    tokenizer: object
    train_data: object
    val_data: object
    changed: dict                    # TrainConfig fields given that differ from a resumed run's
    checkpoint: Path | None          # the checkpoint a resumed run continues


def _check_probe(config: TrainConfig, given: dict) -> None:
    """A probe prompt given to a run without training statistics would be read by nothing."""
    if given.get("probe_prompt") and not config.stats_interval:
        raise ConfigError("--probe-prompt is read by the training statistics, which are off: "
                          "give --stats-interval too")


def prepare(**options) -> Prepared:
    """Everything :func:`train` does before training: see the module docstring."""
    run, model_overrides, train_overrides = split_options(options)
    if "time_budget" in train_overrides and "max_steps" in train_overrides:
        raise ConfigError("--time-budget and --max-steps both say when the run ends: give one")
    # a recipe's training settings: the preset's, or a new run's default recipe
    new_run = run.resume is None and run.init_from is None
    train_overrides = preset_training(run.preset or (DEFAULT_PRESET if new_run else None),
                                      train_overrides)
    if run.resume is None:
        config = TrainConfig(**train_overrides)    # refused before anything is written
        _check_probe(config, train_overrides)
    if run.quantize is not None and (run.lora_rank is None or run.resume is not None):
        raise ConfigError(f"--quantize {run.quantize} freezes the base's weights: it goes with "
                          "--init-from and --lora-rank, which train adapters on them "
                          "(a resumed run keeps its saved base)")
    if run.resume is not None and run.init_from is not None:
        raise ConfigError("--resume continues a run and --init-from starts a new one from "
                          "saved weights: give one of them")
    train_text, val_text = load_texts(run.data)
    out = Path(train_overrides.get("out_dir", TrainConfig.out_dir))

    state, ckpt_dir = {}, None
    if run.resume:
        model, tokenizer, state, ckpt_dir = load_model(out if run.resume == "auto"
                                                       else run.resume)
        if not state:
            raise CheckpointError(f"{ckpt_dir} is a HuggingFace model, not a training run to "
                                  "resume: use --init-from")
        saved = state["train_config"]
        if "out_dir" not in train_overrides:   # write where the checkpoint is, not where
            if ckpt_dir.name not in ("checkpoint", ".checkpoint.previous"):   # it once was
                raise ConfigError(f"{ckpt_dir} is not inside a run's output directory: give "
                                  "--out for the resumed run to write to")
            train_overrides["out_dir"] = str(ckpt_dir.parent)
        config = dataclasses.replace(saved, **train_overrides)
        _check_probe(config, train_overrides)
        check_resumable(config, saved, state["step"], ckpt_dir, "max_steps" in train_overrides,
                        state.get("train_time", 0.0))
    elif run.init_from:
        model, tokenizer, _, _ = load_model(run.init_from, quantize=run.quantize)
    else:
        run = dataclasses.replace(run, tokenizer=run.tokenizer or DEFAULT_TOKENIZER,
                                  preset=run.preset or DEFAULT_PRESET)    # (as applied)
        tokenizer = make_tokenizer(run.tokenizer, train_text, val_text, out / "cache")
        model_config = GPTConfig.preset(run.preset, **{
            "vocab_size": tokenizer.vocab_size, "block_size": config.block_size,
            **model_overrides})
        model = GPT(model_config, seed=config.seed)
    if run.resume or run.init_from:
        wanted = dict(model_overrides)
        if run.preset is not None:
            wanted = {**{k: v for k, v in PRESETS[run.preset].items()
                         if k not in MODEL_FIELDS_NOT_OPTIONS}, **wanted}
        refuse_overridden("--resume" if run.resume else "--init-from", wanted, run.tokenizer,
                          train_overrides.get("seed") if run.resume else None, model,
                          tokenizer, state)
    _apply_lora(run, model, config.seed)
    if tokenizer is None:
        raise CheckpointError("the checkpoint has no tokenizer file to encode the data with")

    from .data import tokenize
    cache_dir = Path(config.out_dir) / "cache"
    train_data = tokenize(train_text, tokenizer, cache_dir=cache_dir, name="train")
    val_data = tokenize(val_text, tokenizer, cache_dir=cache_dir, name="val") if val_text else None
    changed = {}
    if run.resume:
        saved_sha = ((state.get("data") or {}).get("train") or {}).get("source_sha256")
        if saved_sha and train_data.meta.get("source_sha256") not in (None, saved_sha):
            raise ConfigError(f"--data {run.data} is not the text {ckpt_dir} was trained on "
                              "(its sha256 differs): resuming would not continue that run; give "
                              "the same --data, or --init-from to start a new run from it")
        changed = {k: (getattr(state["train_config"], k), v) for k, v in train_overrides.items()
                   if getattr(state["train_config"], k) != v}
    return Prepared(run, config, model, tokenizer, train_data, val_data, changed, ckpt_dir)


def _apply_lora(run: RunOptions, model, seed: int) -> None:
    """Put the adapters the ``lora_*`` options describe on ``model`` (a freshly loaded base)."""
    given = [f"--{k.replace('_', '-')}" for k in ("lora_alpha", "lora_targets", "lora_dropout")
             if getattr(run, k) is not None]
    if run.lora_rank is None:
        if given:          # they would be silently ignored
            raise ConfigError(f"{', '.join(given)} given without --lora-rank: no adapters "
                              "are trained without a rank")
        return
    from .adapters import LoraConfig, apply_lora
    from .hf import family
    if run.resume:
        raise ConfigError("--resume continues the saved adapters; --lora-* flags cannot "
                          "change them")
    if not run.init_from:
        raise ConfigError(f"--lora-rank={run.lora_rank} fine-tunes an existing model: give "
                          "--init-from HFDIR (or an npgpt checkpoint)")
    targets = run.lora_targets or DEFAULT_LORA_TARGETS.get(family(model.config),
                                                      "q_proj,v_proj")
    config = LoraConfig.from_flags(run.lora_rank, run.lora_alpha, targets,
                                   run.lora_dropout or 0.0)
    apply_lora(model, config, seed=seed)
    n = sum(p.size for p in model.trainable_parameters())
    say(f"LoRA: rank {config.r}, alpha {config.alpha:g} on {targets}: {n:,} trainable "
        f"parameters of {model.num_parameters():,}", flush=True)


def train(**options) -> Run:
    """Train as ``npgpt train`` does, with its flags as keywords (``max_steps=500``,
    ``out_dir="out"``, ``resume=True``, ``init_from=..., lora_rank=8``, ...; see the module
    docstring). Returns the :class:`Run`. Bad options raise :mod:`npgpt.errors` exceptions
    before anything is written."""
    threads = options.pop("threads", None)
    if threads is not None:
        from .runtime.threads import set_num_threads
        set_num_threads(threads)
    p = prepare(**options)
    from .models import count_params
    from .trainer import Trainer
    model, tokenizer, config = p.model, p.tokenizer, p.config
    n_int8 = int8_weights(model)
    int8 = f" and {n_int8:,} int8 weights" if n_int8 else ""
    say(f"model: {model.num_parameters():,} parameters{int8} "
        f"({count_params(model.config)['total']:,} by formula), {model.config.n_layer} layers, {model.config.n_head} heads, "
        f"{model.config.n_embd} channels; tokenizer {tokenizer.name} "
        f"(vocab {tokenizer.vocab_size}); {len(p.train_data):,} training tokens", flush=True)
    trainer = Trainer(model, p.train_data, p.val_data, config, tokenizer=tokenizer)
    if trainer.dist is not None:
        from .runtime.threads import get_num_threads
        say(trainer.dist.describe(get_num_threads()["numba"]), flush=True)
    if p.checkpoint is not None:
        trainer.resume(p.checkpoint)
        changed = [f"{k} {old!r} -> {new!r}" for k, (old, new) in p.changed.items()]
        say(f"resumed from {p.checkpoint} at step {trainer.step}"
            + (f"; changed from the checkpoint: {', '.join(changed)}" if changed else ""),
            flush=True)
    if trainer.clock.budget is not None:
        say(trainer.clock.banner(), flush=True)
    try:
        result = trainer.train() or {}
    except KeyboardInterrupt:     # a second Ctrl-C: what is left on disk
        raise KeyboardInterrupt(f"at step {trainer.step}; {trainer._kept_checkpoint()}") from None
    saved_at = f"checkpoint in {trainer.checkpoint_dir}" if config.save_checkpoints \
        else "no checkpoint written (--no-save-checkpoints)"
    if trainer.stopped:
        say(stopped_line(trainer, p.options), flush=True)
    else:
        summary = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in result.items())
        say(f"done: {summary}; {saved_at}")
    return Run(model=model, tokenizer=tokenizer, config=config, out_dir=trainer.out_dir,
               step=trainer.step, train_loss=result.get("train_loss"),
               val_loss=result.get("val_loss"), metrics=list(trainer.history), trainer=trainer,
               stopped=trainer.stopped)


def stopped_line(trainer, options: RunOptions) -> str:
    """What a run ended by a signal says: the step reached, where it is kept, and the
    command that continues it bit for bit (the same data, threads and ranks)."""
    import shlex

    from .distributed import get_world
    from .runtime.threads import get_num_threads
    where = f"stopped by {trainer.stopped} at step {trainer.step}"
    if not trainer.config.save_checkpoints:
        return f"{where}; no checkpoint written (--no-save-checkpoints)"
    world = get_world()
    command = ["npgpt", "train", "--resume", str(trainer.checkpoint_dir)]
    if options.data != RunOptions.data:
        command += ["--data", options.data]
    command += ["--threads", str(get_num_threads()["numba"])]
    if world is not None:
        command = ["mpiexec", "-n", str(world.size)] + command
    return (f"{where}; checkpoint in {trainer.checkpoint_dir}; continue with: "
            f"{shlex.join(command)}")
