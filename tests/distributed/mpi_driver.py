"""A tiny float64 training run for the MPI tests: ``mpiexec -n N python mpi_driver.py OUT ...``.

Trains a 2-layer GPT on seeded random tokens with the Trainer, as ``npgpt train`` does on
each rank, and writes (rank 0) ``OUT/weights.npz`` and ``OUT/history.json``. Fault options
make one rank fail the way the tests need: SIGKILL at a step, a NaN loss at a step, or a
SIGTERM (a stop request) at a step.
"""
import argparse
import json
import os
import signal
import sys

import numpy as np

from npgpt.distributed.launch import start
from npgpt.errors import NpgptError


def make(args):
    from npgpt.models import GPT, GPTConfig
    from npgpt.trainer import TrainConfig, Trainer
    data = np.random.default_rng(0).integers(0, 256, size=6000)
    model = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=2, n_head=2, n_embd=16,
                          dtype="float64"), seed=0)
    ends = (dict(time_budget=args.budget) if args.budget else dict(max_steps=args.max_steps))
    config = TrainConfig(batch_size=args.batch, block_size=8, **ends,
                         lr=3e-3, warmup_steps=2, grad_accum=args.accum, grad_clip=args.clip,
                         eval_interval=args.eval_interval, eval_steps=3, log_interval=1,
                         out_dir=args.out, progress=False, plot=False, zero=args.zero,
                         optimizer=args.optimizer,
                         data_parallel="off")
    return Trainer(model, data[:5000], data[5000:], config)


def main(args):
    trainer = make(args)
    if args.resume:
        trainer.resume(args.resume)
    rank = int(os.environ.get("PMI_RANK", "0"))
    step = trainer.train_step

    def faulty_step():
        if rank == args.fault_rank and trainer.step + 1 == args.fault_step:
            if args.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if args.fault == "sigterm":      # this rank only: the step ends, all ranks stop
                os.kill(os.getpid(), signal.SIGTERM)
                return step()
            forward = trainer.model.forward

            def nan_forward(*a, **k):
                logits, _ = forward(*a, **k)
                return logits, float("nan")
            trainer.model.forward = nan_forward
        return step()

    def skewed_step():      # this rank's own clock runs 1000 s fast: rank 0's must decide
        trainer.clock._start -= 1000.0
        return faulty_step()

    trainer.train_step = skewed_step if args.budget and rank == 1 else faulty_step
    trainer.train(until=None if args.budget else args.steps)
    if trainer.is_main:
        np.savez(os.path.join(args.out, "weights.npz"), **trainer.model.state_dict())
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump(trainer.history, f)
        if trainer.dist is not None:
            with open(os.path.join(args.out, "sync.json"), "w") as f:
                json.dump({**trainer.dist.sync.stats, "buckets": len(trainer.dist.sync.buckets)},
                          f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--zero", type=int, default=0)
    ap.add_argument("--eval-interval", type=int, default=5)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--fault", choices=["kill", "nan", "sigterm"], default=None)
    ap.add_argument("--fault-rank", type=int, default=1)
    ap.add_argument("--fault-step", type=int, default=0)
    ap.add_argument("--budget", default=None)
    ap.add_argument("--optimizer", default="adamw")
    args = ap.parse_args()
    world = start("mpi_driver", threads=1)
    try:
        main(args)
    except NpgptError as e:
        if world is None:
            print(f"mpi_driver: error: {e}", file=sys.stderr)
            sys.exit(2)
        sys.exit(world.fail(e))
