"""HuggingFace tokenizer files: ``tokenizer.json`` and GPT-2's ``vocab.json`` + ``merges.txt``.

A ``tokenizer.json`` that is plain byte-level BPE (GPT-2, LLaMA 3) loads as npgpt's ByteBPE;
any other BPE file (a normalizer, more pre-tokenizer steps, bytes without a token, SentencePiece
style with byte fallback, added tokens that are not special) as ``hf_tokenizer.HFTokenizer``,
which runs the file's whole pipeline.

Byte-level BPE writes each byte as a printable character (GPT-2's ``bytes_to_unicode`` table:
printable Latin-1 bytes stand for themselves, the other 68 bytes map to U+0100 onwards, so a
space is ``Ġ``).  Loading inverts that table, turns every merge line ``"Ġ t"`` into the ids
(a, b) -> vocab["Ġt"] with its line number as rank, and builds a ByteBPE.  Supported
pre-tokenizers on that path: ByteLevel (with its GPT-2 regex) and a Sequence of Split
(a regex, as LLaMA-3 style files have) + ByteLevel without regex.  Either keeps the file's
``post_processor`` (``hf_post``: Llama 3's BOS), which ``encode`` applies and export writes back.
"""
import json
import os
import re

from ..errors import TokenizerError
from . import hf_post
from .base import read_text
from .byte_chars import bytes_to_unicode
from .bytebpe import ByteBPE
from .patterns import GPT2_PATTERN


def _to_bytes(token, decoder, where):
    try:
        return bytes(decoder[c] for c in token)
    except KeyError as e:
        raise TokenizerError(f"{where}: token {token!r} has {e.args[0]!r}, which is not a "
                             "byte-level character (is this a byte-level BPE?)") from None


def from_vocab_merges_dicts(vocab, merges, pattern=GPT2_PATTERN, special_tokens=None,
                            ignore_merges=False, where="<vocab>", post_processor=None):
    """vocab {token string: id}, merges [(a, b) strings] -> ByteBPE."""
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    byte_ids = [None] * 256
    for b, c in bytes_to_unicode().items():
        if c not in vocab:
            raise TokenizerError(f"{where}: the vocabulary lacks the byte token {c!r} (byte {b})")
        byte_ids[b] = vocab[c]
    table = []
    for rank, (a, b) in enumerate(merges):
        ab = a + b
        if a not in vocab or b not in vocab or ab not in vocab:
            missing = [t for t in (a, b, ab) if t not in vocab][0]
            raise TokenizerError(f"{where}: merge #{rank} ({a!r}, {b!r}) uses {missing!r}, "
                                 "which is not in the vocabulary")
        table.append((vocab[a], vocab[b], vocab[ab]))
    specials = dict(special_tokens or {})
    # BPE tokens must be reachable from the bytes; any other vocab entry is a special token
    known = set(byte_ids) | {n for _, _, n in table}
    for tok, i in vocab.items():
        if i not in known and tok not in specials:
            _to_bytes(tok, decoder, where)  # a byte-level token nobody can form: ignore it
    return ByteBPE(table, pattern=pattern, special_tokens=specials, byte_ids=byte_ids,
                   ignore_merges=ignore_merges, post_processor=post_processor)


def from_vocab_merges(vocab_path, merges_path, special_tokens=None):
    """GPT-2's ``vocab.json`` (or ``encoder.json``) + ``merges.txt`` (or ``vocab.bpe``)."""
    try:
        vocab = json.loads(read_text(vocab_path, "vocab.json"))
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{vocab_path} is not valid JSON: {e}") from None
    merges = []
    for n, line in enumerate(read_text(merges_path, "merges.txt").split("\n"), 1):
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"{merges_path} line {n}: expected 'a b', got {line[:60]!r}")
        merges.append((parts[0], parts[1]))
    if special_tokens is None:
        special_tokens = {s: vocab[s] for s in ("<|endoftext|>",) if s in vocab}
    return from_vocab_merges_dicts(vocab, merges, GPT2_PATTERN, special_tokens, where=os.fspath(vocab_path))


def _fast_pattern(pre):
    """(pattern, True) when the pre_tokenizer is one ByteBPE runs itself: ByteLevel (its GPT-2
    regex or none) or Split(regex, Isolated) + ByteLevel without regex, no prefix space."""
    if pre is None:
        return None, False
    if pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space", True):
        return (GPT2_PATTERN if pre.get("use_regex", True) else None), True
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (len(steps) == 2 and steps[0].get("type") == "Split" and "Regex" in steps[0].get("pattern", {})
            and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
            and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space", True)):
        from .hf_pipeline import onig_to_python
        return onig_to_python(steps[0]["pattern"]["Regex"]), True
    return None, False


def _as_bytebpe(obj, where):
    """The file as npgpt's ByteBPE (numba encoder, tiktoken's methods) when that gives exactly
    the file's ids and text: a byte-level BPE with a token for every byte, no normalizer, a
    pre-tokenizer ByteBPE runs itself, every vocabulary entry a byte or a merge's result, and
    only special added tokens with no strip options whose text decodes as itself; else None."""
    model = obj.get("model") or {}
    pattern, ok = _fast_pattern(obj.get("pre_tokenizer"))
    if (not ok or obj.get("normalizer") or model.get("byte_fallback") or model.get("dropout")
            or (obj.get("decoder") or {}).get("type", "ByteLevel") != "ByteLevel"):
        return None
    table = bytes_to_unicode()
    added = obj.get("added_tokens", [])
    for t in added:
        if not t.get("special") or t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            return None
        if all(c in table.values() for c in t["content"]) and not t["content"].isascii():
            return None     # the ByteLevel decoder would read its characters as bytes
    specials = {t["content"]: t["id"] for t in added}
    vocab = {k: v for k, v in model["vocab"].items() if k not in specials}
    if any(c not in vocab for c in table.values()):
        return None
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    if len(set(merges)) != len(merges) or any(len(m) != 2 for m in merges):
        return None
    formed = {table[b] for b in range(256)} | {a + b for a, b in merges}
    if any(tok not in formed for tok in vocab) or set(specials.values()) & set(vocab.values()):
        return None
    post = hf_post.post_processor(obj.get("post_processor"), where)
    return from_vocab_merges_dicts(vocab, merges, pattern, specials,
                                   ignore_merges=model.get("ignore_merges", False), where=where,
                                   post_processor=post)


def from_tokenizer_json(path):
    """A HuggingFace ``tokenizer.json`` with a BPE model: npgpt's ByteBPE when it expresses
    the file exactly (see ``_as_bytebpe``), else the full pipeline (``HFTokenizer``: any
    normalizer, pre-tokenizer and decoder of the families, byte fallback, missing bytes,
    added tokens)."""
    from .hf_tokenizer import HFTokenizer
    where = os.fspath(path)
    try:
        obj = json.loads(read_text(path, "tokenizer.json"))
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise TokenizerError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    model = obj.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model:
        raise TokenizerError(f"{where}: model type {model.get('type')!r}; only BPE is supported")
    return _as_bytebpe(obj, where) or HFTokenizer(obj, where)


def from_pretrained_dir(folder):
    """A folder holding ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``."""
    if os.path.exists(os.path.join(folder, "tokenizer.json")):
        return from_tokenizer_json(os.path.join(folder, "tokenizer.json"))
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if os.path.exists(vocab) and os.path.exists(merges):
        return from_vocab_merges(vocab, merges)
    raise TokenizerError(f"{folder} holds neither tokenizer.json nor vocab.json + merges.txt")


# --- writing: npgpt's tokenizers as tokenizer.json + tokenizer_config.json ---------------------

TOKENIZER_JSON, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"


_POSSESSIVE_BOUND = re.compile(r"(\{\d+(?:,\d*)?\})\+")


def _onig_pattern(pattern):
    """The split regex as HuggingFace's tokenizers (Oniguruma, Ruby syntax) reads it to match
    what Python's ``regex`` matches: ``{1,3}+`` is possessive in ``regex`` but "one or more
    of {1,3}" in Ruby (a bounded greedy run that nothing follows matches the same; only a
    bound's ``}`` is meant: ``\\p{L}+`` is a letter run in both), and ``$`` is end of line
    in Ruby, ``\\z`` end of text in both."""
    return _POSSESSIVE_BOUND.sub(r"\1", pattern).replace("$", r"\z")


def _added_tokens(specials):
    return [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for s, i in sorted(specials.items(), key=lambda kv: kv[1])]


def _bytebpe_json(tok):
    table = bytes_to_unicode()
    def show(raw):
        return "".join(table[b] for b in raw)

    vocab = {}
    for i, raw in tok.vocab.items():
        if show(raw) in vocab:
            raise TokenizerError(f"ids {vocab[show(raw)]} and {i} are the same bytes {raw!r}: "
                                 "tokenizer.json's vocabulary maps each token to one id")
        vocab[show(raw)] = i
    merges = [f"{show(tok.vocab[a])} {show(tok.vocab[b])}" for a, b, _ in tok.merges]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": False}
    if tok.pattern is None:
        pre = byte_level
    elif tok.pattern == GPT2_PATTERN:     # GPT-2's own: ByteLevel with its built-in regex
        pre = {**byte_level, "use_regex": True}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _onig_pattern(tok.pattern)},
             "behavior": "Isolated", "invert": False}, byte_level]}
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": tok.ignore_merges, "vocab": vocab, "merges": merges}
    decoder = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
               "use_regex": True}
    return pre, model, decoder


def _char_json(tok):
    # every character its own piece (WordLevel looks each up; one outside the vocabulary is an
    # error, as in npgpt, since there is no unk token), and decoding concatenates (Fuse)
    pre = {"type": "Split", "pattern": {"Regex": r"[\s\S]"}, "behavior": "Isolated",
           "invert": False}
    model = {"type": "WordLevel", "vocab": dict(tok.stoi), "unk_token": "<npgpt-no-unk>"}
    return pre, model, {"type": "Fuse"}


def to_tokenizer_json(tok):
    """HuggingFace's ``tokenizer.json`` (a dict) that encodes and decodes as ``tok`` does:
    npgpt's byte-level BPE, GPT-2's, tiktoken's cl100k_base (its ranks as merges) or the char
    tokenizer. TokenizerError for a tokenizer the format cannot express exactly."""
    from .bytebpe import ByteBPE
    from .char import CharTokenizer
    from .hf_tokenizer import HFTokenizer
    from .tiktoken_adapter import TiktokenTokenizer
    if isinstance(tok, HFTokenizer):
        return json.loads(tok.to_json_text())     # the file it came from, as it was
    if isinstance(tok, TiktokenTokenizer):
        tok = ByteBPE.from_tiktoken(tok.name)       # the same ids, with the merges recovered
    if isinstance(tok, ByteBPE):
        pre, model, decoder = _bytebpe_json(tok)
    elif isinstance(tok, CharTokenizer):
        pre, model, decoder = _char_json(tok)
    else:
        raise TokenizerError(f"{getattr(tok, 'name', type(tok).__name__)}: a {tok.kind} "
                             "tokenizer has no exact tokenizer.json form (the classic word "
                             "BPE splits on whitespace and drops it, which HuggingFace's BPE "
                             "would not give back); byte-level BPE, gpt2, cl100k_base and char "
                             "are exported")
    # the special tokens belong in the model's vocabulary too: the tokenizers library numbers
    # an added token that is not there after the vocabulary, whatever id the file gives it
    model["vocab"].update(tok.special_tokens)
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": _added_tokens(tok.special_tokens), "normalizer": None,
            "pre_tokenizer": pre, "decoder": decoder, "model": model,
            "post_processor": tok.post_processor.spec if tok.post_processor else None}


def tokenizer_config(tok, model_max_length=None):
    """``tokenizer_config.json``: the fast tokenizer class, no BOS/EOS added to encodings, no
    space clean-up on decoding (which would change the text), and the special tokens."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
              "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "model_max_length": model_max_length or 1_000_000_000_000_000_019_884_624_838_656}
    # (the special tokens and their ids are tokenizer.json's added_tokens; listing them here
    # too makes transformers re-add them after the vocabulary, renumbering cl100k's, whose
    # ids leave gaps)
    end = [s for s in ("<|endoftext|>", "</s>", "<eos>") if s in tok.special_tokens]
    if end:
        config["eos_token"] = end[0]
    return config


def save_pretrained_tokenizer(tok, folder, model_max_length=None):
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` of ``tok`` into ``folder``
    (each file atomically; nothing is written if the tokenizer cannot be exported)."""
    from ..io import atomic_write
    tokenizer_json = json.dumps(to_tokenizer_json(tok), ensure_ascii=False)
    config = json.dumps(tokenizer_config(tok, model_max_length), indent=2)
    atomic_write(os.path.join(folder, TOKENIZER_JSON), tokenizer_json)
    atomic_write(os.path.join(folder, TOKENIZER_CONFIG), config + "\n")
    return folder
