"""``npgpt.sample(...)`` and ``npgpt.eval(...)``: what ``npgpt sample`` and ``npgpt eval`` do,
from Python, with their flags as keywords.

    texts = npgpt.sample(ckpt="out", prompt="ROMEO:", max_new_tokens=200, seed=1)
    result = npgpt.eval(ckpt="out", data="shakespeare-val")    # a Perplexity
    npgpt.sample(ckpt=run, prompt="ROMEO:")     # the model of a Run, as npgpt.train returned it

``ckpt`` is an npgpt checkpoint (or a training output directory), a HuggingFace model
directory, or anything holding ``model`` and ``tokenizer`` (a :class:`~npgpt.run.Run`).
The options are declared once, by :class:`SampleOptions` and :class:`EvalOptions`; the
commands build their flags from them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, ConfigError
from .fields import at_least, check_fields, one_of, positive


def _nonempty(v) -> bool:
    return str(v).strip() != ""


_PATH = (_nonempty, "a non-empty path")


@dataclass
class SampleOptions:
    """The options of ``npgpt sample``."""

    ckpt: str = "out"                # npgpt checkpoint (or run directory) or HuggingFace directory
    prompt: str = "\n"               # the text every sample continues
    max_new_tokens: int = 500        # tokens generated per sample
    temperature: float = 0.8         # softmax temperature; 0 = greedy
    top_k: int | None = None         # sample among the k likeliest tokens only; None = all
    top_p: float | None = None       # sample among the likeliest tokens holding probability p;
    #                                  None = all
    seed: int | None = None          # seed of sample i is seed + i; None = a fresh random seed
    num_samples: int = 1             # samples to generate, one after the other
    quantize: str | None = None      # int8: weights quantized to int8 as they load (faster
    #                                  decoding); None = as stored

    def __post_init__(self):
        check_fields(self, SAMPLE_RULES)


# what each option may hold (the type comes from the annotation; npgpt.fields)
SAMPLE_RULES = {"max_new_tokens": positive, "num_samples": positive, "quantize": one_of("int8"),
                "temperature": at_least(0), "top_k": positive,
                "top_p": (lambda v: 0 < v <= 1, "{t} in (0, 1]"), "seed": at_least(0)}


@dataclass
class EvalOptions:
    """The options of ``npgpt eval``."""

    ckpt: str = "out"                # npgpt checkpoint (or run directory) or HuggingFace directory
    data: str = "shakespeare-val"    # a UTF-8 text file, or shakespeare-val (the held-out plays)
    adapter: str | None = None       # a PEFT LoRA adapter directory to apply; None = none
    block: int | None = None         # tokens per window; None = the model's block_size
    stride: int | None = None        # tokens the window moves by (smaller scores each token with
    #                                  more context, at block/stride times the cost); None = block

    def __post_init__(self):
        check_fields(self, EVAL_RULES)


EVAL_RULES = {"data": _PATH, "adapter": _PATH, "block": positive, "stride": positive}


def _options(cls, options: dict):
    """``cls(**options)`` with the paths and Runs of ``ckpt`` let through unchecked and an
    unknown keyword refused, naming the known ones; None means "not given"."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                          f"(options: {', '.join(names)})")
    given = {k: v for k, v in options.items() if v is not None}
    ckpt = given.pop("ckpt", cls.ckpt)
    if isinstance(ckpt, (str, os.PathLike)) and not str(ckpt).strip():
        raise ConfigError(f"ckpt={str(ckpt)!r} is empty: expected a path")
    return cls(**given), ckpt


def load(ckpt, quantize: str | None = None):
    """(model, tokenizer or None) of a checkpoint path, or of a Run (its model and tokenizer).
    ``quantize``: the path's model quantized as it loads (see npgpt.checkpoints.load_model)."""
    if hasattr(ckpt, "model") and hasattr(ckpt, "tokenizer"):
        if quantize is not None:
            raise ConfigError("quantize applies to a checkpoint path, not to a Run's model in "
                              "memory (npgpt.layers.quantized.quantize_model quantizes that)")
        return ckpt.model, ckpt.tokenizer
    from .checkpoints import load_model
    model, tokenizer, _, _ = load_model(Path(ckpt), quantize)
    return model, tokenizer


def _template_prefix(tokenizer, ids) -> int:
    """How many of the first ``ids`` the tokenizer's post-processor put there (a BOS, as a
    Llama 3 or Gemma tokenizer.json says): the model sees them, the printed text does not,
    as HuggingFace prints a generation decoded without its special tokens."""
    prefix = getattr(getattr(tokenizer, "post_processor", None), "prefix", None) or []
    return len(prefix) if list(ids[:len(prefix)]) == prefix else 0


class _Streamer:
    """Writes text as tokens arrive, holding back an incomplete UTF-8 sequence."""

    def __init__(self, tokenizer, prompt_ids, out):
        self.tokenizer, self.ids, self.out = tokenizer, list(prompt_ids), out
        self.printed = len(tokenizer.decode(self.ids))

    def __call__(self, column):
        self.ids.append(int(column[0]))
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        if self.out is not None:
            self.out.write(text[self.printed:])
            self.out.flush()
        self.printed = len(text)


def sample(stream=None, **options) -> list[str]:
    """The texts ``npgpt sample`` prints (prompt included), as a list; ``stream`` (a text
    file such as ``sys.stdout``) receives them as they are generated, separated as the
    command separates them. Options: :class:`SampleOptions`."""
    import numpy as np

    from .generate import generate
    o, ckpt = _options(SampleOptions, options)
    model, tokenizer = load(ckpt, o.quantize)
    if tokenizer is None:
        raise CheckpointError(f"{ckpt} has no tokenizer to encode the prompt with")
    texts = []
    for i in range(o.num_samples):
        ids = tokenizer.encode(o.prompt) or [0]     # with the BOS a tokenizer.json adds
        shown = _template_prefix(tokenizer, ids)    # (fed to the model, not printed)
        if stream is not None:
            stream.write(tokenizer.decode(ids[shown:]))
        streamer = _Streamer(tokenizer, ids[shown:], stream)
        out = generate(model, np.array([ids]), o.max_new_tokens, temperature=o.temperature,
                       top_k=o.top_k, top_p=o.top_p,
                       seed=None if o.seed is None else o.seed + i, on_token=streamer)
        texts.append(tokenizer.decode([int(t) for t in out[0][shown:]]))
        if stream is not None:     # what the streamer held back: bytes no token completed
            stream.write(texts[-1][streamer.printed:])
            stream.write("\n" if i + 1 == o.num_samples else "\n---------------\n")
            stream.flush()
    return texts


def eval(**options):    # noqa: A001  (named as the command; npgpt.evaluate is the module)
    """Perplexity and bits per byte of a model on a text, as ``npgpt eval`` measures them:
    a :class:`~npgpt.evaluate.Perplexity`. Options: :class:`EvalOptions` (and ``progress``:
    a tqdm bar, default when there are more than 8 windows)."""
    progress = options.pop("progress", None)
    o, ckpt = _options(EvalOptions, options)
    from .data import encode_text, read_text, shakespeare_text
    from .evaluate import perplexity
    model, tokenizer = load(ckpt)
    if o.adapter is not None:
        from .adapters import load_adapter
        load_adapter(model, o.adapter)
    if tokenizer is None:
        raise CheckpointError(f"{ckpt} has no tokenizer to encode the text with")
    text = shakespeare_text("val") if o.data == "shakespeare-val" else read_text(o.data)
    ids = encode_text(text, tokenizer)      # with the BOS a tokenizer.json adds: context only
    added = tokenizer.num_special_tokens_to_add() \
        if callable(getattr(tokenizer, "num_special_tokens_to_add", None)) else 0
    return perplexity(model, ids, o.block, o.stride, n_bytes=len(text.encode("utf-8")),
                      progress=progress, special_tokens=added)
