"""``npgpt quantize SRC DST [--block 32]``: a model directory with int8 weights.

    npgpt quantize out/checkpoint out-int8          # an npgpt checkpoint
    npgpt quantize path/to/gpt2 gpt2-int8           # a HuggingFace directory
    npgpt sample --ckpt out-int8 --prompt "ROMEO:"

SRC is anything ``npgpt sample --ckpt`` reads (an npgpt checkpoint or output directory, a
HuggingFace directory). Every Linear, the head and the embeddings are quantized
(:mod:`npgpt.layers.quantized`); DST gets the source's config with a ``quantization`` entry,
the int8 weights with their float16 scales, and the source's tokenizer files
(:mod:`npgpt.quantized_io`). Everything is checked before anything is written, and DST is
built beside itself and renamed into place, so a refused or interrupted run writes nothing.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .io import CONFIG, load_json, resolve_checkpoint
from .layers.quantized import BLOCKS, SCHEMES, check_quantization, quantize_model
from .quantized_io import KEY, quantization_entry, save_quantized

# a HuggingFace directory's files that are not weights and travel with the quantized model
_HF_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "vocab.json", "merges.txt", "generation_config.json")


def quantize(src, dst, scheme: str = "int8", block: int = 32) -> Path:
    """Write the model in ``src`` to directory ``dst`` with ``scheme`` weights in blocks of
    ``block`` inputs; returns ``dst``."""
    check_quantization(scheme, block)
    src = resolve_checkpoint(src)
    dst = Path(dst)
    config = load_json(src / CONFIG)
    stored = quantization_entry(config, src / CONFIG)
    if stored is not None:
        raise ConfigError(f"{src} is already quantized ({stored['scheme']}, block "
                          f"{stored['block']}): quantize its float source instead")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"DST {dst} must not be SRC {src} or inside it")
    from .checkpoints import load_model      # (the CLI imports this module at start)
    model, _, _, path = load_model(src)
    quantize_model(model, scheme, block)
    if "model_type" in config:                       # HuggingFace's config, kept as it is
        copy = [path / name for name in _HF_FILES if (path / name).is_file()]
    else:                                            # npgpt's: the model's own fields
        config = model.config.to_dict()
        copy = sorted(path.glob("tokenizer*"))
    return save_quantized(model, dst, {k: v for k, v in config.items() if k != KEY}, copy)


def cmd_quantize(args) -> int:
    dst = quantize(args.src, args.dst, args.scheme, args.block)
    size = sum(f.stat().st_size for f in dst.iterdir() if f.suffix == ".safetensors")
    print(f"wrote {dst} ({args.scheme}, blocks of {args.block}): {size / 1e6:,.1f} MB of weights")
    return 0


def add_quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help="write a model with int8 weights (every Linear, the "
                                        "head and the embeddings), for faster decoding")
    p.add_argument("src", help="npgpt checkpoint (or training output directory) or "
                               "HuggingFace directory")
    p.add_argument("dst", help="the directory to write (replaced only once complete)")
    p.add_argument("--scheme", default="int8", choices=SCHEMES,
                   help="weight format: int8 = symmetric, one float16 scale per block")
    p.add_argument("--block", type=int, default=32, choices=BLOCKS,
                   help="inputs per scale (every Linear's input width must be a multiple)")
    p.set_defaults(func=cmd_quantize)
