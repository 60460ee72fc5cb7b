"""The ``npgpt`` command: train | sample | eval | export | lora | params | tokenizer | bench.

Errors a user can cause (a missing checkpoint, a bad flag value, an unreadable data file, a
prompt the tokenizer cannot encode) end the command with one line on stderr and exit code 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import select
import sys
from pathlib import Path

from .chat.cli import add_chat_parser
from .cli_flags import add_dataclass_flags, given, state_defaults
from .cli_hf import add_hf_parsers
from .glassbox.inspect_cli import add_inspect_parser
from .errors import ConfigError, NpgptError, describe
from .glassbox.report_cli import add_report_parser
from .quantize import add_quantize_parser

BENCHMARKS = ("kernels", "train_step", "generate", "memory", "tokenizers")
PARAMS_PRESET = "gpt2"         # the model npgpt params counts without --preset


# --- train, sample: npgpt.train and npgpt.sample with the flags as keywords --------------

def cmd_train(args) -> int:
    from .models import GPTConfig
    from .run import MODEL_FIELDS_NOT_OPTIONS, RunOptions, train
    from .train_config import TrainConfig
    run = train(**given(args, RunOptions), **given(args, TrainConfig),
                **given(args, GPTConfig, skip=MODEL_FIELDS_NOT_OPTIONS))
    if run.stopped:             # ended by Ctrl-C or SIGTERM, the step kept: 128 + the signal
        import signal
        return 128 + signal.Signals[run.stopped].value
    return 0


def cmd_sample(args) -> int:
    from .infer import SampleOptions, sample
    sample(stream=sys.stdout, **given(args, SampleOptions))
    return 0


def _load_model(path: Path):
    """(model, tokenizer or None, trainer state) from an npgpt checkpoint or a HuggingFace
    model directory (see npgpt.checkpoints.load_model)."""
    from .checkpoints import load_model
    model, tokenizer, state, _ = load_model(path)
    return model, tokenizer, state


# --- params ---------------------------------------------------------------------------------

def cmd_params(args) -> int:
    from .models import GPTConfig, count_params, params_formula
    overrides = given(args, GPTConfig, skip={"dtype"})
    config = GPTConfig.preset(args.preset, **overrides)
    parts = count_params(config)
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    print(f"{args.preset}: L={L} layers, C={C} channels, H={config.n_head} heads, V={V}, "
          f"block_size={config.block_size}")
    for name, n in parts.items():
        if name != "total":
            print(f"  {name:12s} {n:>15,}")
    print(f"  {'total':12s} {parts['total']:>15,}")
    f = params_formula(config)
    print(f"12·C²·L + 13·C·L + V·C = {12 * C * C * L:,} + {13 * C * L:,} + {V * C:,} = {f:,}")
    rest = parts["total"] - f
    if rest:
        print(f"difference {rest:+,}: the formula leaves out learned positions (wpe "
              f"{parts['wpe']:,}) and the final norm, and assumes biases, LayerNorm, a 4·C "
              "MLP and a tied head")
    return 0


# --- bench ----------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    import runpy
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    if not root.is_dir():
        raise ConfigError("npgpt bench runs the scripts in benchmarks/ of a source checkout; "
                          f"none found at {root}")
    names = [args.which] if args.which != "all" else list(BENCHMARKS)
    for name in names:
        script = root / f"bench_{name}.py"
        if not script.exists():
            raise ConfigError(f"no benchmark {name!r} ({script} is missing)")
        print(f"== {name} ==", flush=True)
        sys.argv = [str(script)] + args.rest
        runpy.run_path(str(script), run_name="__main__")
    return 0


# --- the parser -----------------------------------------------------------------------------

def add_train_parser(sub) -> None:
    """``npgpt train``: the flags of npgpt.train, each field's help from its comment and the
    default it gets in a new run (the model's from the default preset)."""
    from .models import GPTConfig
    from .run import DEFAULT_PRESET, DEFAULT_TOKENIZER, MODEL_FIELDS_NOT_OPTIONS, RUN_RULES, \
        RunOptions
    from .train_config import _TRAIN_RULES, TRAIN_PRESETS, TrainConfig
    from .models.gpt import _RULES
    p = sub.add_parser("train", help="train a GPT (default: the speedrun-1m char-level "
                       "Shakespeare recipe, one minute of training)")
    lora = [f.name for f in dataclasses.fields(RunOptions)
            if f.name.startswith("lora_") or f.name == "quantize"]
    add_dataclass_flags(p, RunOptions, skip=lora, group_title="run", rules=RUN_RULES,
                        defaults={"tokenizer": DEFAULT_TOKENIZER, "preset": DEFAULT_PRESET},
                        extra={"resume": dict(nargs="?", const="auto", metavar="DIR")})
    add_dataclass_flags(p, GPTConfig, skip=MODEL_FIELDS_NOT_OPTIONS, rules=_RULES,
                        group_title=f"model (defaults: the {DEFAULT_PRESET} preset's; with "
                        "--preset, --resume or --init-from, theirs)",
                        defaults=preset_defaults(DEFAULT_PRESET))
    add_dataclass_flags(p, TrainConfig, group_title=f"training (defaults: the {DEFAULT_PRESET} "
                        "recipe's; with --preset, its recipe's; with --resume, the checkpoint's)",
                        rules=_TRAIN_RULES, flag_names={"out_dir": ["--out", "--out-dir"]},
                        defaults=TRAIN_PRESETS.get(DEFAULT_PRESET, {}))
    add_dataclass_flags(p, RunOptions, skip=[f.name for f in dataclasses.fields(RunOptions)
                                             if f.name not in lora],
                        group_title="LoRA fine-tuning (with --init-from)", rules=RUN_RULES,
                        extra={"lora_rank": dict(metavar="R")})
    p.set_defaults(func=cmd_train)


def preset_defaults(name: str) -> dict:
    """The GPTConfig fields preset ``name`` sets: the model flags' defaults under it."""
    from .models import PRESETS
    return dict(PRESETS[name])


def build_parser() -> argparse.ArgumentParser:
    from .models import PRESETS, GPTConfig
    from .models.gpt import _RULES

    parser = _Parser(prog="npgpt", description="A NumPy GPT: train, sample, count.")
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_parser(sub)

    from .infer import SAMPLE_RULES, SampleOptions
    p = sub.add_parser("sample", help="generate text from a checkpoint, streaming it")
    add_dataclass_flags(p, SampleOptions, group_title="sampling", rules=SAMPLE_RULES)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("params", help="parameter count per component, beside the closed form")
    p.add_argument("--preset", default=PARAMS_PRESET, choices=sorted(PRESETS),
                   help="the model the flags below change")
    add_dataclass_flags(p, GPTConfig, skip={"dtype"}, rules=_RULES,
                        group_title=f"model (defaults: the {PARAMS_PRESET} preset's; with "
                        "--preset, that one's)", defaults=preset_defaults(PARAMS_PRESET))
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("bench", help="run the benchmarks (from a source checkout)")
    p.add_argument("which", nargs="?", default="all",
                   choices=["all", *BENCHMARKS])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark script")
    p.set_defaults(func=cmd_bench)

    add_hf_parsers(sub, _load_model)
    add_report_parser(sub)
    add_inspect_parser(sub)
    add_chat_parser(sub)
    add_quantize_parser(sub)

    try:
        from .tokenizers.cli import add_tokenizer_parser
    except ImportError:
        pass
    else:
        add_tokenizer_parser(sub)
    _add_global_options(parser)
    state_defaults(parser)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as the one line every npgpt error is (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _threads(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads={value!r} must be a positive integer")
    return n


def _add_global_options(parser, top: bool = True):
    """The options every command takes, accepted before or after the subcommand
    (``npgpt --threads 1 train`` and ``npgpt train --threads 1``). Below the top level the
    default is SUPPRESS, so a subcommand that was not given the flag keeps the top level's."""
    parser.add_argument("--threads", type=_threads, default=None if top else argparse.SUPPRESS,
                        help="threads for numba and BLAS (default: NPGPT_NUM_THREADS or all cores)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_global_options(child, top=False)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (``npgpt sample ... |
    head``): the write end of such a pipe polls as an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):     # no poll here, or stdout not a file
        return False


def _quit_on_closed_stdout() -> int:
    """The reader took what it wanted: stop quietly, as a command killed by SIGPIPE does
    (status 128 + 13), with standard output pointed at /dev/null so that the interpreter's
    last flush of the unread text raises nothing."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return 141


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:      # --help (0), or a flag argparse refused (its one line, 2)
        return e.code if isinstance(e.code, int) else 2
    command = " ".join(filter(None, ("npgpt", args.command,
                                     getattr(args, "tokenizer_command", None))))
    world = None
    try:
        from .distributed.launch import start
        world = start(f"npgpt {args.command}", args.threads)   # None: one process
        if args.threads is not None:
            from .runtime.threads import set_num_threads
            set_num_threads(args.threads)
        return args.func(args) or 0
    except (NpgptError, OSError, UnicodeDecodeError) as e:
        if isinstance(e, BrokenPipeError) and _stdout_reader_gone():
            return _quit_on_closed_stdout()
        if world is not None:        # one line from one rank; ends the job if not all failed
            return world.fail(e)
        print(f"{command}: error: {describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{command}: interrupted" + (f" {e}" if str(e) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
