"""The ``npgpt`` command: train | sample | eval | export | lora | params | tokenizer | bench.

Errors a user can cause (a missing checkpoint, a bad flag value, an unreadable data file, a
prompt the tokenizer cannot encode) end the command with one line on stderr and exit code 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from .chat.cli import add_chat_parser
from .cli_hf import add_hf_parsers, add_lora_flags
from .glassbox.inspect_cli import add_inspect_parser
from .glassbox.report_cli import add_report_parser
from .quantize import add_quantize_parser
from .errors import CheckpointError, ConfigError, NpgptError, describe

# GPTConfig fields the command sets itself rather than by flag
_MODEL_FIELDS_NOT_FLAGS = {"vocab_size", "block_size", "dtype"}
_FLAG_ALIASES = {"out_dir": ["--out", "--out-dir"]}
BENCHMARKS = ("kernels", "train_step", "generate", "memory", "tokenizers")


def _field_type(f: dataclasses.Field):
    """The concrete type of a dataclass field (``int | None`` -> int)."""
    t = f.type
    if isinstance(t, str):
        t = t.split("|")[0].strip()
        return {"int": int, "float": float, "str": str, "bool": bool}[t]
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def add_dataclass_flags(parser, cls, skip=(), group_title=None):
    """One flag per dataclass field (``n_layer`` -> ``--n-layer``), help from the field's
    comment-free name and default. Every flag defaults to None, so a flag the user did not give
    can be told from one given with the default value."""
    group = parser.add_argument_group(group_title or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        names = _FLAG_ALIASES.get(f.name, ["--" + f.name.replace("_", "-")])
        t = _field_type(f)
        default = f.default if f.default is not dataclasses.MISSING else None
        if t is bool:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=f"(default: {default})")
        else:
            group.add_argument(*names, dest=f.name, type=t, default=None, metavar=f.name.upper(),
                               help=f"(default: {default})")


def _given(args, cls, skip=()) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


# --- train ----------------------------------------------------------------------------------

def _load_texts(data: str):
    """(train text, validation text) of ``--data``: the embedded corpus or a UTF-8 file."""
    from .data import read_text, shakespeare_text
    if data == "shakespeare":
        return shakespeare_text("train"), shakespeare_text("val")
    text = read_text(data)
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
    return text[:cut], text[cut:]


def _make_tokenizer(spec: str, train_text: str, val_text: str, cache_dir: Path):
    """``--tokenizer``: char (built from the corpus), bpe:N (trained on the training text,
    cached by the text's hash), cl100k_base, gpt2, or a tokenizer file."""
    from . import tokenizers
    from .data import sha256_text
    if spec == "char":
        return tokenizers.get("char", text=train_text + val_text)
    if spec.startswith("bpe:"):
        cached = cache_dir / f"{spec.replace(':', '')}-{sha256_text(train_text)[:16]}.bpe"
        if cached.exists():
            return tokenizers.load(cached)
        print(f"training a byte-level BPE tokenizer ({spec}) on {len(train_text):,} characters",
              flush=True)
        tokenizer = tokenizers.get(spec, text=train_text)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(cached)
        return tokenizer
    return tokenizers.get(spec)


def cmd_train(args) -> int:
    from .checkpoints import check_resumable, load_model, refuse_overridden
    from .data import tokenize
    from .models import GPT, PRESETS, GPTConfig
    from .trainer import Trainer, TrainConfig

    out = Path(args.out_dir or TrainConfig.out_dir)
    train_overrides = _given(args, TrainConfig)
    model_overrides = _given(args, GPTConfig, skip=_MODEL_FIELDS_NOT_FLAGS)
    for flag, value in (("--data", args.data), ("--resume", args.resume),
                        ("--init-from", args.init_from)):
        _nonempty(flag, value)
    if "time_budget" in train_overrides and "max_steps" in train_overrides:
        raise ConfigError("--time-budget and --max-steps both say when the run ends: give one")
    if args.resume is None:
        config = TrainConfig(**train_overrides)    # refused before anything is written
    if args.resume is not None and args.init_from is not None:
        raise ConfigError("--resume continues a run and --init-from starts a new one from "
                          "saved weights: give one of them")
    train_text, val_text = _load_texts(args.data)
    cache_dir = out / "cache"

    state = {}
    if args.resume:
        model, tokenizer, state, ckpt_dir = load_model(args.resume if args.resume != "auto"
                                                       else out)
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
        check_resumable(config, saved, state["step"], ckpt_dir, "max_steps" in train_overrides,
                        state.get("train_time", 0.0))
    elif args.init_from:
        model, tokenizer, _, _ = load_model(args.init_from)
    else:
        tokenizer = _make_tokenizer("char" if args.tokenizer is None else args.tokenizer,
                                    train_text, val_text, cache_dir)
        model_config = GPTConfig.preset("baby" if args.preset is None else args.preset, **{
            "vocab_size": tokenizer.vocab_size,
            "block_size": config.block_size,
            **model_overrides})
        model = GPT(model_config, seed=config.seed)
    if args.resume or args.init_from:
        wanted = dict(model_overrides)
        if args.preset is not None:
            wanted = {**{k: v for k, v in PRESETS[args.preset].items()
                         if k not in _MODEL_FIELDS_NOT_FLAGS}, **wanted}
        refuse_overridden("--resume" if args.resume else "--init-from", wanted, args.tokenizer,
                          args.seed if args.resume else None, model, tokenizer, state)
    lora_flags = [flag for flag, given in (("--lora-alpha", args.lora_alpha is not None),
                                           ("--lora-targets", args.lora_targets is not None),
                                           ("--lora-dropout", args.lora_dropout != 0.0)) if given]
    if args.lora_rank is None and lora_flags:      # they would be silently ignored
        raise ConfigError(f"{', '.join(lora_flags)} given without --lora-rank: no adapters "
                          "are trained without a rank")
    if args.lora_rank is not None:
        from .cli_hf import apply_lora_flags
        apply_lora_flags(args, model, config.seed)
    if tokenizer is None:
        raise CheckpointError("the checkpoint has no tokenizer file to encode the data with")
    cache_dir = Path(config.out_dir) / "cache"
    train_data = tokenize(train_text, tokenizer, cache_dir=cache_dir, name="train")
    val_data = tokenize(val_text, tokenizer, cache_dir=cache_dir, name="val") if val_text else None
    if args.resume:
        saved_sha = ((state.get("data") or {}).get("train") or {}).get("source_sha256")
        if saved_sha and train_data.meta.get("source_sha256") not in (None, saved_sha):
            raise ConfigError(f"--data {args.data} is not the text {ckpt_dir} was trained on "
                              "(its sha256 differs): resuming would not continue that run; give "
                              "the same --data, or --init-from to start a new run from it")

    from .models import count_params
    say = _say()
    say(f"model: {model.num_parameters():,} parameters ({count_params(model.config)['total']:,} "
          f"by formula), {model.config.n_layer} layers, {model.config.n_head} heads, "
          f"{model.config.n_embd} channels; tokenizer {tokenizer.name} "
          f"(vocab {tokenizer.vocab_size}); {len(train_data):,} training tokens", flush=True)
    trainer = Trainer(model, train_data, val_data, config, tokenizer=tokenizer)
    if trainer.dist is not None:
        from .runtime.threads import get_num_threads
        say(trainer.dist.describe(get_num_threads()["numba"]), flush=True)
    if args.resume:
        trainer.resume(ckpt_dir)
        changed = [f"{k} {getattr(state['train_config'], k)!r} -> {v!r}"
                   for k, v in train_overrides.items() if getattr(state["train_config"], k) != v]
        say(f"resumed from {ckpt_dir} at step {trainer.step}"
            + (f"; changed from the checkpoint: {', '.join(changed)}" if changed else ""),
            flush=True)
    if trainer.clock.budget is not None:
        say(trainer.clock.banner(), flush=True)
    result = trainer.train()
    summary = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in (result or {}).items())
    saved_at = f"checkpoint in {trainer.checkpoint_dir}" if config.save_checkpoints \
        else "no checkpoint written (--no-save-checkpoints)"
    say(f"done: {summary}; {saved_at}")
    return 0


def _say():
    """print on rank 0 of an MPI run (and in a one-process run); nothing on the others."""
    from .distributed import get_world
    w = get_world()
    return print if w is None or w.is_main else (lambda *a, **k: None)


def _nonempty(flag, value):
    """An empty path would silently mean the current directory (or the default)."""
    if value is not None and not str(value).strip():
        raise ConfigError(f"{flag}={value!r} is empty: expected a path")


# --- loading models -------------------------------------------------------------------------

def _load_model(path: Path, quantize=None):
    """(model, tokenizer or None, trainer state) from an npgpt checkpoint or a HuggingFace
    model directory (see npgpt.checkpoints.load_model)."""
    from .checkpoints import load_model
    model, tokenizer, state, _ = load_model(path, quantize)
    return model, tokenizer, state


# --- sample ---------------------------------------------------------------------------------

class _Streamer:
    """Prints text as tokens arrive, holding back an incomplete UTF-8 sequence."""

    def __init__(self, tokenizer, prompt_ids, out=None):
        self.tokenizer, self.ids, self.out = tokenizer, list(prompt_ids), out or sys.stdout
        self.printed = len(tokenizer.decode(self.ids))

    def __call__(self, column):
        self.ids.append(int(column[0]))
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self.out.write(text[self.printed:])
        self.out.flush()
        self.printed = len(text)


def cmd_sample(args) -> int:
    import numpy as np

    from .generate import check_sampling, generate
    _nonempty("--ckpt", args.ckpt)
    check_sampling(args.temperature, args.top_k, args.top_p, args.seed)
    for flag, value in (("--num-samples", args.num_samples),
                        ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:     # zero would print nothing (or only the prompt) and exit 0
            raise ConfigError(f"{flag}={value} must be a positive integer")
    model, tokenizer, _ = _load_model(Path(args.ckpt), args.quantize)
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} has no tokenizer to encode the prompt with")
    for i in range(args.num_samples):
        ids = tokenizer.encode(args.prompt) if args.prompt else []
        if not ids:
            ids = [0]
        sys.stdout.write(tokenizer.decode(ids))
        stream = _Streamer(tokenizer, ids)
        generate(model, np.array([ids]), args.max_new_tokens, temperature=args.temperature,
                 top_k=args.top_k, top_p=args.top_p,
                 seed=None if args.seed is None else args.seed + i, on_token=stream)
        sys.stdout.write("\n" if i + 1 == args.num_samples else "\n---------------\n")
    return 0


# --- params ---------------------------------------------------------------------------------

def cmd_params(args) -> int:
    from .models import GPTConfig, count_params, params_formula
    overrides = _given(args, GPTConfig, skip={"dtype"})
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

def build_parser() -> argparse.ArgumentParser:
    from .models import PRESETS, GPTConfig
    from .trainer import TrainConfig

    parser = _Parser(prog="npgpt", description="A NumPy GPT: train, sample, count.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a GPT (default: the baby char-level Shakespeare model)")
    p.add_argument("--data", default="shakespeare",
                   help="'shakespeare' (the embedded corpus) or a UTF-8 text file")
    p.add_argument("--tokenizer", default=None,
                   help="char | cl100k_base | gpt2 | bpe:<vocab size> | a tokenizer file "
                   "(default: char)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="model preset (default: baby)")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue the run saved in --out (or in the directory given)")
    p.add_argument("--init-from", default=None,
                   help="start from an npgpt checkpoint or a HuggingFace model directory")
    add_dataclass_flags(p, GPTConfig, skip=_MODEL_FIELDS_NOT_FLAGS, group_title="model")
    add_dataclass_flags(p, TrainConfig, group_title="training")
    add_lora_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate text from a checkpoint, streaming it")
    p.add_argument("--ckpt", default="out", help="npgpt checkpoint or HuggingFace directory")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="int8: quantize the weights as they load (faster decoding)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("params", help="parameter count per component, beside the closed form")
    p.add_argument("--preset", default="gpt2", choices=sorted(PRESETS))
    add_dataclass_flags(p, GPTConfig, skip={"dtype"}, group_title="model")
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
        if world is not None:        # one line from one rank; ends the job if not all failed
            return world.fail(e)
        print(f"{command}: error: {describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
