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

from .cli_hf import add_hf_parsers, add_lora_flags
from .errors import CheckpointError, ConfigError, NpgptError

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
    from .data import tokenize
    from .models import GPT, GPTConfig
    from .train import Trainer, TrainConfig

    out = Path(args.out_dir or TrainConfig.out_dir)
    train_overrides = _given(args, TrainConfig)
    model_overrides = _given(args, GPTConfig, skip=_MODEL_FIELDS_NOT_FLAGS)
    train_text, val_text = _load_texts(args.data)
    cache_dir = out / "cache"

    if args.resume:
        ckpt_dir = _checkpoint_dir(Path(args.resume) if args.resume != "auto" else out)
        model, tokenizer, saved = _load_model(ckpt_dir)
        if model_overrides:
            raise ConfigError(f"--resume continues the saved model; model flags "
                              f"({', '.join('--' + k.replace('_', '-') for k in model_overrides)}) "
                              "cannot change it")
        config = TrainConfig(**{**saved.get("train_config", {}), **train_overrides})
    elif args.init_from:
        model, tokenizer, _ = _load_model(Path(args.init_from))
        config = TrainConfig(**train_overrides)
    else:
        tokenizer = _make_tokenizer(args.tokenizer, train_text, val_text, cache_dir)
        config = TrainConfig(**train_overrides)
        model_config = GPTConfig.preset(args.preset, **{
            "vocab_size": tokenizer.vocab_size,
            "block_size": config.block_size,
            **model_overrides})
        model = GPT(model_config, seed=config.seed)
    if args.lora_rank is not None:
        from .cli_hf import apply_lora_flags
        apply_lora_flags(args, model, config.seed)
    if tokenizer is None:
        raise CheckpointError("the checkpoint has no tokenizer file to encode the data with")
    train_data = tokenize(train_text, tokenizer, cache_dir=cache_dir, name="train")
    val_data = tokenize(val_text, tokenizer, cache_dir=cache_dir, name="val") if val_text else None

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
        say(f"resumed from {ckpt_dir} at step {trainer.step}", flush=True)
    result = trainer.train()
    summary = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in (result or {}).items())
    say(f"done: {summary}; checkpoint in {trainer.checkpoint_dir}")
    return 0


def _say():
    """print on rank 0 of an MPI run (and in a one-process run); nothing on the others."""
    from .distributed import get_world
    w = get_world()
    return print if w is None or w.is_main else (lambda *a, **k: None)


# --- loading models -------------------------------------------------------------------------

def _checkpoint_dir(path: Path) -> Path:
    if (path / "checkpoint" / "config.json").exists():
        return path / "checkpoint"
    if (path / "config.json").exists():
        return path
    raise CheckpointError(f"no checkpoint at {path} (expected {path}/config.json or "
                          f"{path}/checkpoint/config.json)")


def _load_model(path: Path):
    """(model, tokenizer or None, trainer state) from an npgpt checkpoint or a HuggingFace
    model directory."""
    from .io import load_checkpoint
    from .models import GPT, GPTConfig
    path = _checkpoint_dir(path)
    if not (path / "trainer.json").exists():     # a HuggingFace directory
        from .hf import from_pretrained, load_tokenizer
        return from_pretrained(path), load_tokenizer(path), {}
    ckpt = load_checkpoint(path)
    model = GPT(GPTConfig.from_dict(ckpt.config))
    if ckpt.trainer_state.get("lora"):           # a LoRA run: the same adapters, then the state
        from .adapters import LoraConfig, apply_lora
        apply_lora(model, LoraConfig(**ckpt.trainer_state["lora"]))
    model.load_state_dict(ckpt.model_state)
    tokenizer = None
    if ckpt.tokenizer_path is not None:
        from . import tokenizers
        tokenizer = tokenizers.load(ckpt.tokenizer_path)
    return model, tokenizer, ckpt.trainer_state


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

    from .generate import generate
    model, tokenizer, _ = _load_model(Path(args.ckpt))
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
    from .train import TrainConfig

    parser = argparse.ArgumentParser(prog="npgpt", description="A NumPy GPT: train, sample, count.")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numba and BLAS (default: NPGPT_NUM_THREADS or all cores)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a GPT (default: the baby char-level Shakespeare model)")
    p.add_argument("--data", default="shakespeare",
                   help="'shakespeare' (the embedded corpus) or a UTF-8 text file")
    p.add_argument("--tokenizer", default="char",
                   help="char | cl100k_base | gpt2 | bpe:<vocab size> | a tokenizer file")
    p.add_argument("--preset", default="baby", choices=sorted(PRESETS), help="model preset")
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

    try:
        from .tokenizers.cli import add_tokenizer_parser
    except ImportError:
        pass
    else:
        add_tokenizer_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"npgpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nnpgpt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
