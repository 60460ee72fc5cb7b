"""The ``npgpt eval | export | lora`` commands.

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

from .errors import ConfigError

# a HuggingFace directory's files that are not weights and travel with a merged model
_BASE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.json", "merges.txt", "generation_config.json")


# --- npgpt eval -------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from .cli_flags import given
    from .infer import EvalOptions
    from . import infer
    options = given(args, EvalOptions)
    result = infer.eval(**options, progress=None if not args.json else False)
    data = options.get("data", EvalOptions.data)
    if args.json:
        print(json.dumps({"ckpt": str(options.get("ckpt", EvalOptions.ckpt)), "data": data,
                          **result.to_dict()}))
    else:
        print(f"{data}: {result.tokens:,} tokens scored in {result.windows} windows of "
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
    from .cli_flags import add_dataclass_flags
    from .infer import EVAL_RULES, EvalOptions
    p = sub.add_parser("eval", help="perplexity and bits per byte of a model on a text "
                                    "(sliding window)")
    add_dataclass_flags(p, EvalOptions, group_title="evaluation", rules=EVAL_RULES)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of a line of text")
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
