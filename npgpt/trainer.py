"""The Trainer: AdamW, warmup + cosine learning rate, clipping, accumulation, eval, checkpoints.

One optimizer step::

    lr = cosine_schedule(step, lr, min_lr, warmup_steps, max_steps)
    for each of grad_accum micro-batches (x, y) ~ get_batch(train, B, T, rng):
        loss = model.forward(x, y); model.backward()          # grads add up with +=
    grads /= grad_accum;  clip to global norm grad_clip;  AdamW step

Every ``eval_interval`` steps (and at the end) the mean loss over ``eval_steps`` batches of
each split is measured and a checkpoint written to ``<out_dir>/checkpoint`` (see
:mod:`npgpt.io`); ``<out_dir>/metrics.jsonl`` gets one JSON line per log and eval, and
``<out_dir>/loss.png`` the loss curves when matplotlib is installed.

A checkpoint holds everything the run depends on: weights, AdamW moments and step count, the
batch sampler's RNG state (which is the position in the data) and every dropout RNG, so a
run resumed from step N continues bit for bit as if it had never stopped.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from . import __version__, distributed, metrics
from .adapters import lora_config, save_adapter
from .data import TokenData, check_length, get_batch, tokenizer_identity
from .errors import CheckpointError, ConfigError, TrainingError
from .layers.quantized import is_quantized
from .quantized_io import file_tensors, with_quantization
from .interrupt import StopSignals
from .io import TRAINER, load_checkpoint, load_json, resolve_checkpoint, save_checkpoint
from .runtime.memory import retain_freed_memory
from .module import no_grad
from .glassbox.stats import training_stats
from .optim import clip_grad_norm
from .runtime.parallel import DataParallel, shards_for
from .time_budget import TrainClock, learning_rate
from .train_optimizer import build_optimizer, param_groups  # noqa: F401 (param_groups: API)
from .train_config import TrainConfig
from .trainer_state import check_trainer_state


def _model_config(model) -> dict:
    config = getattr(model, "config", None)
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


class Trainer:
    """Trains ``model`` on token data.

    model: forward(idx (B, T), targets (B, T)) -> (logits, loss), backward(), the Module API.
    train_data, val_data: flat token ids (:class:`~npgpt.data.TokenData` or 1-D arrays);
    val_data may be None (then only the training split is evaluated).
    tokenizer: recorded in checkpoints (its identity) and, if it has a ``save(path)`` method or
    ``tokenizer_file`` is given, copied in as a file.
    """

    def __init__(self, model, train_data, val_data, config: TrainConfig | None = None,
                 tokenizer=None, tokenizer_file=None):
        self.config = config = TrainConfig() if config is None else config
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"Trainer config is a {type(config).__name__}, expected a "
                              "TrainConfig (TrainConfig(**d) builds one from a dict)")
        for what, data in (("train_data", train_data), ("val_data", val_data)):
            if data is not None and not isinstance(data, TokenData) and not (
                    isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "iu"):
                raise ConfigError(f"{what} is a {type(data).__name__}, expected token ids: a "
                                  "TokenData or a 1-D integer array (npgpt.data.tokenize)")
        if is_quantized(model) and lora_config(model) is None:   # int8 weights never train
            raise ConfigError("the model holds int8 (quantized) weights, which are frozen: "
                              "train LoRA adapters on it (--quantize int8 --lora-rank R), or "
                              "train the float model, then quantize it")
        self.model = model
        if config.data_parallel == "on":
            DataParallel(model, 2)          # refuses a model it cannot split, before any step
        model_block = getattr(getattr(model, "config", None), "block_size", None)
        if model_block is not None and config.block_size > model_block:
            raise ConfigError(f"block_size={config.block_size} is longer than the model's "
                              f"block_size={model_block}")
        check_length(train_data, config.block_size, "training data")
        if val_data is not None:
            check_length(val_data, config.block_size, "validation data")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        data_vocab = train_data.vocab_size if isinstance(train_data, TokenData) else None
        if vocab is not None and data_vocab is not None and data_vocab > vocab:
            raise ConfigError(f"the data's tokenizer has {data_vocab} ids but the model's "
                              f"vocab_size is {vocab}")
        self.train_data, self.val_data = train_data, val_data
        self.tokenizer, self.tokenizer_file = tokenizer, tokenizer_file
        self.tokenizer_info = tokenizer_identity(tokenizer) if tokenizer is not None else None
        self.params = model.trainable_parameters()     # frozen ones (a LoRA base) left out
        self.optimizer = build_optimizer(model, config)     # AdamW, or Muon (npgpt.train_optimizer)
        self.rng = np.random.default_rng(config.seed)      # the batch sampler
        self.step = 0
        self.best_val_loss = math.inf
        self.out_dir = Path(config.out_dir)
        self.history: list[dict] = []       # the metrics lines of this run, as dicts
        self.stopped: str | None = None     # the signal that ended train() early (SIGINT, ...)
        self._parallel: DataParallel | None = None
        # under mpiexec: this rank's part in a run over several processes (None: one process)
        self.dist = None
        world = distributed.get_world()
        if world is not None:
            from .distributed.trainer import DistributedTraining
            self.dist = DistributedTraining(world, self)
        self.is_main = world is None or world.is_main     # writes logs and checkpoints
        # training time (evaluation excluded); ends the run under a time budget
        self.clock = TrainClock(config.budget_seconds, world=world, kind=config.budget_clock)
        self.stats = None                   # training statistics, set up by train()

    def _runner(self) -> DataParallel:
        """What runs this step's forward and backward: the batch split across the threads,
        or (one shard) the model itself; see TrainConfig.data_parallel."""
        c = self.config
        n = shards_for(c.data_parallel, self.model, c.batch_size, c.block_size)
        if self._parallel is None or self._parallel.n_shards != n:
            if self._parallel is not None:
                self._parallel.close()
            self._parallel = DataParallel(self.model, n)
        return self._parallel

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    @property
    def adapter_dir(self) -> Path:
        """Where a LoRA run's adapter is written (PEFT's adapter directory)."""
        return self.out_dir / "adapter"

    # --- one step -----------------------------------------------------------------------
    def train_step(self) -> tuple[float, float, float]:
        """One optimizer step; returns (mean loss, grad norm before clipping, lr)."""
        c = self.config
        lr = learning_rate(c, self.step, self.clock)
        self.optimizer.set_lr(lr)
        self.optimizer.zero_grad()
        total = 0.0
        runner = self._runner()
        if self.dist is not None:      # this rank's rows; gradients summed over the ranks
            batches = [get_batch(self.train_data, c.batch_size, c.block_size, self.rng)
                       for _ in range(c.grad_accum)]
            loss = self.dist.forward_backward(runner, batches)
            if not math.isfinite(loss):
                self._non_finite("loss", loss)
            total = loss * c.grad_accum
            norm = self.dist.clip_grad_norm(self.params, c.grad_clip)
        else:
            for _ in range(c.grad_accum):
                x, y = get_batch(self.train_data, c.batch_size, c.block_size, self.rng)
                loss = runner.forward_backward(x, y)     # the shards meet once (npgpt.runtime.parallel)
                if not math.isfinite(loss):
                    self._non_finite("loss", loss)
                total += loss
            if c.grad_accum > 1:
                scale = 1.0 / c.grad_accum
                for p in self.params:
                    p.grad *= p.grad.dtype.type(scale)
            norm = clip_grad_norm(self.params, c.grad_clip)
        if not math.isfinite(norm):
            self._non_finite("gradient norm", norm)
        measure = self.stats is not None and self.stats.due(self.step + 1)
        if measure:                  # npgpt.glassbox.stats: the gradients and weights before
            self.stats.before_update()
        self.optimizer.step()
        self.step += 1
        if measure:                  # ... and the update made, the activations after
            self.stats.after_update(lr, norm)
        return total / c.grad_accum, norm, lr

    def _non_finite(self, what: str, value: float, step: int | None = None):
        self._plot()
        error = TrainingError(f"{what} became {value} at step {step or self.step + 1} "
                              f"(lr={self.optimizer.lr:.3g}); training stopped and "
                              f"{self._kept_checkpoint()}. Try a lower lr, more warmup_steps "
                              "or grad_clip.")
        error.all_ranks = self.dist is not None      # every rank saw the same reduced value
        raise error

    def _kept_checkpoint(self) -> str:
        """Which checkpoint is left, and the step it holds (it was not replaced)."""
        try:
            path = resolve_checkpoint(self.checkpoint_dir)
            step = load_json(path / TRAINER).get("step")
        except CheckpointError:
            return "no checkpoint was saved"
        return f"the last good checkpoint, {path}, holds step {step}"

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Mean loss over ``eval_steps`` batches of each split, in inference mode.

        The batches come from a generator seeded from ``seed`` alone, so every evaluation of
        a run sees the same batches (comparable numbers) and the training stream is untouched.
        """
        c = self.config
        splits = {"train": self.train_data}
        if self.val_data is not None:
            splits["val"] = self.val_data
        out = {}
        forward = self._runner().forward
        self.model.eval()
        try:
            with no_grad():
                for k, (name, data) in enumerate(splits.items()):
                    rng = np.random.default_rng([c.seed, 1 + k])
                    batches = [get_batch(data, c.batch_size, c.block_size, rng)
                               for _ in range(c.eval_steps)]
                    losses = ([forward(*b) for b in batches] if self.dist is None
                              else self.dist.eval_losses(forward, batches))   # a share per rank
                    out[name] = float(np.mean(losses))
        finally:
            self.model.train()
        return out

    # --- the loop -----------------------------------------------------------------------
    def train(self, until: int | None = None) -> dict:
        """Train up to step ``until`` (default ``max_steps``) or until the time budget is
        spent, evaluating and checkpointing every ``eval_interval`` steps and at the end.
        Returns the last evaluation."""
        c = self.config
        if self.clock.budget is None:          # (under a budget, max_steps is not used)
            until = c.max_steps if until is None else min(until, c.max_steps)
        self.stats = training_stats(self)     # None when stats_interval is 0 (npgpt.glassbox.stats)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._trim_metrics()
        retain_freed_memory()         # each step reuses the last one's pages (npgpt.runtime.memory)
        self.model.train()
        bar = self._progress_bar(until)
        tokens_per_step = c.batch_size * c.block_size * c.grad_accum
        last = {}
        stop = StopSignals(distributed.get_world()).install()   # Ctrl-C, SIGTERM: npgpt.interrupt
        try:
            t0, s0 = time.perf_counter(), self.step
            self.clock.mark()
            done = self.clock.spent or (until is not None and self.step >= until)
            while not done:
                loss, norm, lr = self.train_step()
                self.clock.lap()
                done = self.clock.spent or self.step == until
                if self.step % c.log_interval == 0 or done:
                    dt = time.perf_counter() - t0
                    tok_s = tokens_per_step * (self.step - s0) / max(dt, 1e-9)
                    self._log({"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm,
                               "tokens_per_s": round(tok_s, 1)})
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                                        tok_s=f"{tok_s:,.0f}", refresh=False)
                    t0, s0 = time.perf_counter(), self.step
                if bar is not None:
                    bar.update(1)
                if self.step % c.eval_interval == 0 or done:
                    last = self._eval_and_save(bar)
                    t0, s0 = time.perf_counter(), self.step     # eval time is not training
                    self.clock.mark()
                if not done and stop.requested():    # the step is kept; the loop ends
                    if self.step % c.eval_interval and c.save_checkpoints:
                        self.checkpoint()
                    self.stopped = stop.name
                    break
        finally:
            stop.uninstall()
            if bar is not None:
                bar.close()
        self._plot()
        return last

    def _eval_and_save(self, bar) -> dict:
        if self.dist is not None:
            self.dist.check_weights(self.step)
        losses = self.evaluate()
        record = {"step": self.step, **{f"{k}_loss": v for k, v in losses.items()}}
        self._log(record)
        if self.stats is not None:
            self.stats.probe()
        for name, value in losses.items():
            if not math.isfinite(value):     # a poisoned model never replaces a good one
                self._non_finite(f"the evaluation's {name} loss", value, self.step)
        if "val" in losses:
            self.best_val_loss = min(self.best_val_loss, losses["val"])
        message = f"step {self.step}: " + ", ".join(f"{k} loss {v:.4f}" for k, v in losses.items())
        if bar is not None:
            bar.write(message)
        if self.config.save_checkpoints:
            self.checkpoint()
        return record

    def checkpoint(self) -> None:
        """Save the run to ``checkpoint_dir`` and, in a LoRA run, the adapter alone to
        ``adapter_dir`` in PEFT's layout (rank 0 writes both)."""
        self.save(self.checkpoint_dir)
        if lora_config(self.model) is not None and self.is_main:
            save_adapter(self.model, self.adapter_dir)

    # --- checkpoints --------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a checkpoint of the whole run state to the directory ``path`` (under
        mpiexec: every rank calls this, rank 0 writes); refused (TrainingError, the old
        checkpoint kept) when a weight is NaN or infinite."""
        for name, p in self.model.named_parameters():   # (the same weights on every rank)
            if not np.isfinite(p.data).all():
                error = TrainingError(f"parameter {name} holds NaN or infinite values at step "
                                      f"{self.step}: no checkpoint written, and "
                                      f"{self._kept_checkpoint()}")
                error.all_ranks = self.dist is not None
                raise error
        optimizer_state = self.optimizer.state_dict()     # gathered from the ranks (ZeRO-1)
        if not self.is_main:
            return Path(path)
        tokenizer_file = self.tokenizer_file
        tokenizer = self.tokenizer if tokenizer_file is None \
            and callable(getattr(self.tokenizer, "save", None)) else None
        trainer_state = {
            "step": self.step,
            "sampler_rng": self.rng.bit_generator.state,   # = the position in the data
            "model_rngs": [g.bit_generator.state for g in self.model.generators()],
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "train_time": self.clock.elapsed,          # seconds, against a time budget
            "tokenizer": self.tokenizer_info,
            "data": {"train": self._data_info(self.train_data),
                     "val": self._data_info(self.val_data)},
            "train_config": dataclasses.asdict(self.config),
            "npgpt_version": __version__,
        }
        lora = lora_config(self.model)
        if lora is not None:               # the model is rebuilt with these adapters on resume
            trainer_state["lora"] = lora.to_dict()
        config, tensors = _model_config(self.model), self.model.state_dict()
        if is_quantized(self.model):        # adapters on an int8 base: the base goes in too
            config, tensors = with_quantization(self.model, config), file_tensors(self.model)
        return save_checkpoint(path, config, tensors, optimizer_state, trainer_state,
                               tokenizer_file, tokenizer)

    @staticmethod
    def _data_info(data):
        if data is None:
            return None
        info = {"n_tokens": len(data)}
        if isinstance(data, TokenData):
            info["source_sha256"] = data.meta.get("source_sha256")
        return info

    def resume(self, path) -> Trainer:
        """Restore the run state saved in checkpoint directory ``path`` (or ``<path>/checkpoint``).

        The model must have the same parameters (names and shapes), and the tokenizer, when
        both sides know it, must be the same; the step, optimizer moments, sampler and dropout
        RNGs are restored so that training continues exactly where it stopped.
        """
        params = self.model.state_dict()
        ckpt = load_checkpoint(path, expect_model=file_tensors(self.model)
                               if is_quantized(self.model) else params,
                               expect_optimizer=self.optimizer.state_dict())
        path = ckpt.path
        state = check_trainer_state(ckpt.trainer_state, path / TRAINER, TrainConfig)
        saved_tok = state.get("tokenizer")
        if saved_tok and self.tokenizer_info and saved_tok != self.tokenizer_info:
            raise CheckpointError(f"{path} was trained with tokenizer {saved_tok['name']} "
                                  f"(vocab {saved_tok['vocab_size']}), not "
                                  f"{self.tokenizer_info['name']} "
                                  f"(vocab {self.tokenizer_info['vocab_size']})")
        generators = self.model.generators()
        step, sampler, model_rngs = state["step"], state["sampler_rng"], state["model_rngs"]
        if len(model_rngs) != len(generators):
            raise CheckpointError(f"{path} saved {len(model_rngs)} model RNGs, the model has "
                                  f"{len(generators)}")
        self.model.load_state_dict({k: v for k, v in ckpt.model_state.items() if k in params})
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        try:
            self.rng.bit_generator.state = sampler
            for g, s in zip(generators, model_rngs):
                g.bit_generator.state = s
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}/trainer.json: bad RNG state ({e})") from None
        self.step = step
        self.clock.elapsed = float(state.get("train_time", 0.0))
        best = state["best_val_loss"]
        self.best_val_loss = math.inf if best is None else float(best)
        return self

    # --- logging ------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    def _log(self, record: dict):
        record = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                  for k, v in record.items()}
        self.history.append(record)
        if not self.is_main:
            return
        try:
            metrics.append(self.metrics_path, record)
        except OSError as e:          # (a full disk names no file by itself)
            raise TrainingError(f"cannot write {self.metrics_path}: {e.strerror or e}; "
                                f"{self._kept_checkpoint()}") from None

    def _trim_metrics(self):
        """Keep the metrics lines up to the current step (a resumed run rewrites the rest)."""
        if not self.is_main:
            return
        self.history = metrics.trim(self.metrics_path, self.step)

    def _progress_bar(self, until: int | None):
        if not self.config.progress or not self.is_main:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=until, initial=self.step, desc="train", unit="step", dynamic_ncols=True)

    def _plot(self):
        """Loss curves to ``out_dir/loss.png`` (skipped without matplotlib or data)."""
        if self.config.plot and self.history and self.is_main:
            return metrics.plot_losses(self.history, self.out_dir / "loss.png")
        return None
