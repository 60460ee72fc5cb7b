"""The ``npgpt eval | export | lora`` commands and the ``--lora-*`` flags of ``npgpt train``.

    npgpt eval --ckpt out --data shakespeare-val [--block N] [--stride S] [--json]
    npgpt export out/checkpoint hf-dir           # weights + tokenizer, for transformers
    npgpt lora merge BASE ADAPTER OUT            # a PEFT adapter folded into its base

The commands load models with the loader ``npgpt.cli`` hands them (npgpt checkpoints and
HuggingFace directories alike), so this module never imports the CLI back.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import CheckpointError, ConfigError

# PEFT's own defaults when no targets are named
DEFAULT_TARGETS = {"gpt2": "c_attn", "llama": "q_proj,v_proj"}
# a HuggingFace directory's files that are not weights and travel with a merged model
_BASE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.json", "merges.txt", "generation_config.json")


# --- npgpt train --lora-* -----------------------------------------------------------------

def add_lora_flags(parser) -> None:
    group = parser.add_argument_group("LoRA fine-tuning (with --init-from)")
    group.add_argument("--lora-rank", type=int, default=None, metavar="R",
                       help="train only rank-R adapters on the target Linears (base frozen)")
    group.add_argument("--lora-alpha", type=float, default=None, metavar="ALPHA",
                       help="adapter scale alpha / R (default: 2 R)")
    group.add_argument("--lora-targets", default=None, metavar="NAMES",
                       help="comma-separated HuggingFace module names, or all-linear (default: "
                            "PEFT's, c_attn for GPT-2, q_proj,v_proj for LLaMA)")
    group.add_argument("--lora-dropout", type=float, default=0.0, metavar="P",
                       help="dropout on the adapters' input (default: 0)")


def apply_lora_flags(args, model, seed: int) -> None:
    """Put the adapters ``--lora-*`` describe on ``model`` (a freshly loaded base)."""
    from .adapters import LoraConfig, apply_lora
    from .hf import family
    if args.resume:
        raise ConfigError("--resume continues the saved adapters; --lora-* flags cannot "
                          "change them")
    if not args.init_from:
        raise ConfigError(f"--lora-rank={args.lora_rank} fine-tunes an existing model: give "
                          "--init-from HFDIR (or an npgpt checkpoint)")
    targets = args.lora_targets or DEFAULT_TARGETS[family(model.config)]
    config = LoraConfig.from_flags(args.lora_rank, args.lora_alpha, targets, args.lora_dropout)
    apply_lora(model, config, seed=seed)
    n = sum(p.size for p in model.trainable_parameters())
    print(f"LoRA: rank {config.r}, alpha {config.alpha:g} on {targets}: {n:,} trainable "
          f"parameters of {model.num_parameters():,}", flush=True)


# --- npgpt eval -------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from .data import encode_text, read_text, shakespeare_text
    from .evaluate import perplexity
    model, tokenizer, _ = args.load_model(Path(args.ckpt))
    if args.adapter is not None:
        from .adapters import load_adapter
        load_adapter(model, args.adapter)
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} has no tokenizer to encode the text with")
    text = shakespeare_text("val") if args.data == "shakespeare-val" else read_text(args.data)
    ids = encode_text(text, tokenizer)
    result = perplexity(model, ids, args.block, args.stride, n_bytes=len(text.encode("utf-8")),
                        progress=None if not args.json else False)
    if args.json:
        print(json.dumps({"ckpt": str(args.ckpt), "data": args.data, **result.to_dict()}))
    else:
        print(f"{args.data}: {result.tokens:,} tokens scored in {result.windows} windows of "
              f"{result.block_size} (stride {result.stride}): mean NLL {result.nll:.4f} "
              f"nats/token, perplexity {result.perplexity:.3f}, "
              f"{result.bits_per_byte:.4f} bits/byte")
    return 0


# --- npgpt export -----------------------------------------------------------------------------

def cmd_export(args) -> int:
    from .adapters import lora_config, merge
    from .hf import save_pretrained
    model, tokenizer, _ = args.load_model(Path(args.ckpt))
    merged = lora_config(model) is not None
    if merged:
        merge(model)             # a LoRA run exports as the fine-tuned model itself
    save_pretrained(model, args.out, tokenizer=tokenizer)
    what = "weights and tokenizer" if tokenizer is not None else \
        "weights (the checkpoint has no tokenizer)"
    print(f"wrote {args.out}: {what}{', LoRA adapters merged' if merged else ''}")
    return 0


# --- npgpt lora merge -------------------------------------------------------------------------

def cmd_lora_merge(args) -> int:
    from .adapters import from_pretrained, merge
    from .hf import save_pretrained
    from .io import atomic_write
    base, out = Path(args.base), Path(args.out)
    if out.resolve() == base.resolve():
        raise ConfigError(f"OUT {out} is the base directory; merge into a new directory")
    model = merge(from_pretrained(base, adapter=args.adapter))
    save_pretrained(model, out)
    for name in _BASE_FILES:           # the base's tokenizer travels with it, byte for byte
        if (base / name).is_file():
            atomic_write(out / name, (base / name).read_bytes())
            shutil.copymode(base / name, out / name)
    print(f"wrote {out}: {base} with {args.adapter} merged in")
    return 0


def add_hf_parsers(sub, load_model) -> None:
    """The eval, export and lora subcommands; ``load_model(path) -> (model, tokenizer or
    None, trainer state)`` reads a checkpoint or HuggingFace directory."""
    p = sub.add_parser("eval", help="perplexity and bits per byte of a model on a text "
                                    "(sliding window)")
    p.add_argument("--ckpt", default="out", help="npgpt checkpoint or HuggingFace directory")
    p.add_argument("--data", default="shakespeare-val",
                   help="a UTF-8 text file, or shakespeare-val (the held-out plays)")
    p.add_argument("--adapter", default=None, help="a PEFT LoRA adapter directory to apply")
    p.add_argument("--block", type=int, default=None,
                   help="tokens per window (default: the model's block_size)")
    p.add_argument("--stride", type=int, default=None,
                   help="tokens the window moves by (default: --block; smaller scores every "
                        "token with more context, at block/stride times the cost)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval, load_model=load_model)

    p = sub.add_parser("export", help="write a checkpoint as a HuggingFace directory, "
                                      "tokenizer included")
    p.add_argument("ckpt", help="npgpt checkpoint (or training output directory)")
    p.add_argument("out", help="the HuggingFace directory to write")
    p.set_defaults(func=cmd_export, load_model=load_model)

    p = sub.add_parser("lora", help="LoRA adapters in PEFT's format")
    lora = p.add_subparsers(dest="lora_command", required=True)
    m = lora.add_parser("merge", help="fold a PEFT adapter into its base model and save it")
    m.add_argument("base", help="the base model's HuggingFace directory")
    m.add_argument("adapter", help="the adapter directory (adapter_config.json + "
                                   "adapter_model.safetensors)")
    m.add_argument("out", help="the merged model's HuggingFace directory to write")
    m.set_defaults(func=cmd_lora_merge)
