"""The text pipeline of a HuggingFace ``tokenizer.json``: normalizers, pre-tokenizers, decoders.

Each is built from its JSON object into a plain function, following the ``tokenizers``
library's definitions:

    normalizer(text) -> text                    NFC, Replace(" " -> "▁"), Prepend("▁"), ...
    pre_tokenizer([(piece, at_start)]) -> [(piece, at_start)]
                                                Split(regex), ByteLevel, Digits, Metaspace, ...
    decoder([token strings]) -> [strings]       ByteLevel, Replace, ByteFallback, Fuse, Strip, ...

A piece is the text BPE runs on; ``at_start`` says whether it begins at offset 0 of the
original text (Metaspace's ``prepend_scheme: first`` adds its ``▁`` only there).  A split
keeps the matches and the text between them by its ``behavior`` (Isolated: each its own piece;
MergedWithPrevious / MergedWithNext: a match joins the text before / after it; Contiguous:
runs of matches and of the rest; Removed: matches dropped), and empty pieces are dropped.
ByteLevel writes each piece's UTF-8 bytes as GPT-2's printable characters (``byte_chars.bytes_to_unicode``).
Anything else is refused with a TokenizerError naming it.
"""
import unicodedata

import regex

from ..errors import TokenizerError
from .patterns import GPT2_PATTERN
from .unicode_classes import PinnedSplit

_BYTE_CHARS = None


def byte_chars():
    """byte -> the printable character byte-level BPE writes for it (GPT-2's table)."""
    global _BYTE_CHARS
    if _BYTE_CHARS is None:
        from .byte_chars import bytes_to_unicode
        table = bytes_to_unicode()
        _BYTE_CHARS = [table[b] for b in range(256)]
    return _BYTE_CHARS


_WORD = r"\p{L}\p{M}\p{N}\p{Pc}"      # Oniguruma's Unicode \w: Letter, Mark, Number, Pc


def onig_to_python(pattern):
    """A tokenizer.json regex (Oniguruma, Ruby syntax) as Python's ``regex`` reads it the same:
    Ruby's ``\\z`` (end of text) is Python's ``\\Z``; Ruby's ``$`` is the end of a line; its
    ``\\w`` takes every Number (``¹``, ``Ⅻ``), Python's only decimal digits."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            esc = pattern[i + 1]
            if esc == "z" and not depth:
                out.append("\\Z")
            elif esc == "w":
                out.append(_WORD if depth else f"[{_WORD}]")
            elif esc == "W" and not depth:
                out.append(f"[^{_WORD}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]" and depth:
            depth -= 1
        out.append(r"(?=\n|\Z)" if c == "$" and not depth else c)
        i += 1
    return "".join(out)


def _pattern(spec, where):
    """A Split / Replace ``pattern`` object -> a compiled regex (a String is matched literally)."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise TokenizerError(f"{where}: pattern {spec!r} is neither {{'String': ...}} nor {{'Regex': ...}}")
    (kind, value), = spec.items()
    if kind == "String":
        return PinnedSplit(regex.escape(value)) if value else None
    if kind == "Regex":
        try:
            return PinnedSplit(onig_to_python(value))
        except regex.error as e:
            raise TokenizerError(f"{where}: regex {value!r} does not compile: {e}") from None
    raise TokenizerError(f"{where}: pattern kind {kind!r} (String and Regex are supported)")


def _spans(split, text):
    """[(start, end, is_match)] covering ``text``: the matches of ``split`` and the gaps."""
    if split is None or not text:
        return [(0, len(text), False)]
    out, prev = [], 0
    for m in split.finditer(text):
        if m.start() > prev:
            out.append((prev, m.start(), False))
        out.append((m.start(), m.end(), True))
        prev = m.end()
    if prev < len(text):
        out.append((prev, len(text), False))
    return out


def _merge(spans, behavior):
    """Group ``spans`` into the pieces a split ``behavior`` keeps: [(start, end)]."""
    if behavior == "Isolated":
        return [(s, e) for s, e, _ in spans]
    if behavior == "Removed":
        return [(s, e) for s, e, m in spans if not m]
    out, previous = [], False
    if behavior == "Contiguous":
        for s, e, m in spans:
            if out and m == previous:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
            previous = m
        return out
    if behavior == "MergedWithPrevious":
        for s, e, m in spans:
            if m and not previous and out:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
            previous = m
        return out
    if behavior == "MergedWithNext":
        for s, e, m in reversed(spans):
            if m and not previous and out:
                out[-1] = (s, out[-1][1])
            else:
                out.append((s, e))
            previous = m
        return out[::-1]
    raise TokenizerError(f"split behavior {behavior!r} is not one of Isolated, Removed, "
                         "Contiguous, MergedWithPrevious, MergedWithNext")


def split_pieces(pieces, split, behavior, invert=False):
    """Split every (piece, at_start) by ``split``; only the first part keeps ``at_start``."""
    out = []
    for text, at_start in pieces:
        spans = _spans(split, text)
        if invert:
            spans = [(s, e, not m) for s, e, m in spans]
        for k, (s, e) in enumerate(_merge(spans, behavior)):
            if e > s:
                out.append((text[s:e], at_start and k == 0 and s == 0))
    return out


# --- normalizers ----------------------------------------------------------------------------

_NOT_SPACE = regex.compile(r"[^\p{White_Space}]")


def _strip(text, left, right):
    first = _NOT_SPACE.search(text)
    if first is None:
        return ""
    start = first.start() if left else 0
    end = len(text)
    if right:
        while end > start and not _NOT_SPACE.match(text[end - 1]):
            end -= 1
    return text[start:end]


def normalizer(spec, where="tokenizer.json"):
    """The ``normalizer`` object -> text -> text (None: the identity)."""
    if spec is None:
        return None
    kind = spec.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return str.lower
    if kind == "Replace":
        pattern, content = _pattern(spec["pattern"], where), spec["content"]
        if pattern is None:
            return lambda text: text
        return lambda text: pattern.sub(content, text)
    if kind == "Prepend":
        prefix = spec["prepend"]
        return lambda text: prefix + text if text else text
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)
        return lambda text: _strip(text, left, right)
    if kind == "Sequence":
        steps = [normalizer(s, where) for s in spec.get("normalizers", [])]
        steps = [s for s in steps if s is not None]

        def sequence(text):
            for step in steps:
                text = step(text)
            return text
        return sequence
    raise TokenizerError(f"{where}: normalizer {kind!r} is not supported (NFC, NFD, NFKC, "
                         "NFKD, Lowercase, Replace, Prepend, Strip and Sequence are)")


# --- pre-tokenizers -------------------------------------------------------------------------

_GPT2_SPLIT = None
_NUMERIC = PinnedSplit(r"\p{N}")
_NUMERIC_RUN = PinnedSplit(r"\p{N}+")
_WHITESPACE = PinnedSplit(r"\w+|[^\w\s]+")
_SPACE_RUN = PinnedSplit(r"\s+")


def _to_byte_chars(pieces):
    table = byte_chars()
    return [("".join(table[b] for b in text.encode("utf-8")), at_start) for text, at_start in pieces]


def pre_tokenizer(spec, where="tokenizer.json"):
    """The ``pre_tokenizer`` object -> [(piece, at_start)] -> [(piece, at_start)]."""
    global _GPT2_SPLIT
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "ByteLevel":
        prefix, use_regex = spec.get("add_prefix_space", True), spec.get("use_regex", True)
        if use_regex and _GPT2_SPLIT is None:
            _GPT2_SPLIT = PinnedSplit(GPT2_PATTERN)

        def byte_level(pieces):
            if prefix:
                pieces = [(t if t.startswith(" ") else " " + t, s) for t, s in pieces]
            if use_regex:
                pieces = split_pieces(pieces, _GPT2_SPLIT, "Isolated")
            return _to_byte_chars(pieces)
        return byte_level
    if kind == "Split":
        split, behavior = _pattern(spec["pattern"], where), spec["behavior"]
        invert = spec.get("invert", False)
        _merge([], behavior)        # an unknown behavior is refused now, not at encode time
        return lambda pieces: split_pieces(pieces, split, behavior, invert)
    if kind == "Digits":
        if spec.get("individual_digits", False):
            return lambda pieces: split_pieces(pieces, _NUMERIC, "Isolated")
        return lambda pieces: split_pieces(pieces, _NUMERIC_RUN, "Isolated")
    if kind == "Metaspace":
        return _metaspace(spec, where)
    if kind == "Whitespace":
        return lambda pieces: split_pieces(pieces, _WHITESPACE, "Removed", invert=True)
    if kind == "WhitespaceSplit":
        return lambda pieces: split_pieces(pieces, _SPACE_RUN, "Removed")
    if kind == "Sequence":
        steps = [pre_tokenizer(s, where) for s in spec.get("pretokenizers", [])]

        def sequence(pieces):
            for step in steps:
                if step is not None:
                    pieces = step(pieces)
            return pieces
        return sequence
    raise TokenizerError(f"{where}: pre_tokenizer {kind!r} is not supported (ByteLevel, Split, "
                         "Digits, Metaspace, Whitespace, WhitespaceSplit and Sequence are)")


def _metaspace_scheme(spec, where):
    scheme = spec.get("prepend_scheme", "always")
    if spec.get("add_prefix_space") is False:
        scheme = "never"
    if scheme not in ("always", "first", "never"):
        raise TokenizerError(f"{where}: Metaspace prepend_scheme {scheme!r} is not "
                             "always, first or never")
    return scheme


def _metaspace(spec, where):
    mark, scheme = spec.get("replacement", "\u2581"), _metaspace_scheme(spec, where)
    split = spec.get("split", True)
    marks = PinnedSplit(regex.escape(mark))

    def metaspace(pieces):
        out = []
        for text, at_start in pieces:
            text = text.replace(" ", mark)
            if not text.startswith(mark) and (scheme == "always" or scheme == "first" and at_start):
                text = mark + text
            out.append((text, at_start))
        return split_pieces(out, marks, "MergedWithNext") if split else out
    return metaspace


# --- decoders -------------------------------------------------------------------------------

def _byte_level_decode(tokens):
    table = {c: b for b, c in enumerate(byte_chars())}
    raw = bytearray()
    for t in tokens:
        try:
            raw += bytes(table[c] for c in t)
        except KeyError:            # a token (an added one) that is not byte-level text
            raw += t.encode("utf-8")
    return [raw.decode("utf-8", errors="replace")]


def _byte_token(token):
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return int(token[3:5], 16)
        except ValueError:
            return None
    return None


def _byte_fallback_decode(tokens):
    out, pending = [], bytearray()

    def flush():
        try:
            out.append(pending.decode("utf-8"))
        except UnicodeDecodeError:
            out.extend("\ufffd" * len(pending))   # one per byte, as the reference does
        pending.clear()
    for t in tokens:
        b = _byte_token(t)
        if b is not None:
            pending.append(b)
            continue
        if pending:
            flush()
        out.append(t)
    if pending:
        flush()
    return out


def _strip_decode(content, start, stop):
    def strip(tokens):
        out = []
        for t in tokens:
            a = 0
            while a < min(start, len(t)) and t[a] == content:
                a += 1
            b = len(t)
            for _ in range(stop):
                if b > a and t[b - 1] == content:
                    b -= 1
                else:
                    break
            out.append(t[a:b])
        return out
    return strip


def decoder(spec, where="tokenizer.json"):
    """The ``decoder`` object -> [token strings] -> [strings] (joined by the caller)."""
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "ByteLevel":
        return _byte_level_decode
    if kind == "ByteFallback":
        return _byte_fallback_decode
    if kind == "Fuse":
        return lambda tokens: ["".join(tokens)]
    if kind == "Replace":
        pattern, content = _pattern(spec["pattern"], where), spec["content"]
        if pattern is None:
            return lambda tokens: tokens
        return lambda tokens: [pattern.sub(content, t) for t in tokens]
    if kind == "Strip":
        return _strip_decode(spec["content"], spec.get("start", 0), spec.get("stop", 0))
    if kind == "Metaspace":
        mark, scheme = spec.get("replacement", "\u2581"), _metaspace_scheme(spec, where)
        return lambda tokens: [t.replace(mark, "" if i == 0 and scheme != "never" else " ")
                               for i, t in enumerate(tokens)]
    if kind == "Sequence":
        steps = [decoder(s, where) for s in spec.get("decoders", [])]

        def sequence(tokens):
            for step in steps:
                tokens = step(tokens)
            return tokens
        return sequence
    raise TokenizerError(f"{where}: decoder {kind!r} is not supported (ByteLevel, ByteFallback, "
                         "Fuse, Replace, Strip, Metaspace and Sequence are)")
