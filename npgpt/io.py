"""Checkpoints: a directory of safetensors and JSON, written atomically, read without pickle.

A checkpoint directory holds::

    config.json            the model's config (a dict of plain values)
    model.safetensors      parameter name -> array
    optimizer.safetensors  optimizer state name -> array (flat, as ``opt.state_dict()`` gives)
    trainer.json           step, RNG states, tokenizer identity, data position, ...
    tokenizer.<ext>        the tokenizer file, copied in (optional)

:func:`save_checkpoint` writes everything into a temporary sibling directory and only then
renames it into place, so an interrupted save (crash, kill, full disk) leaves the previous
checkpoint as it was. :func:`load_checkpoint` parses safetensors headers itself before reading
any data, and every problem (a missing file, a truncated or corrupted tensor file, bad JSON,
tensors whose names or shapes do not match what is expected) is a :class:`CheckpointError`
that says which file and what is wrong.
"""
from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError

CONFIG, MODEL, OPTIMIZER, TRAINER = ("config.json", "model.safetensors",
                                     "optimizer.safetensors", "trainer.json")

# safetensors dtype tag -> bytes per element
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2,
             "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}
_MAX_HEADER = 100 * 1024 * 1024


# --- safetensors files ----------------------------------------------------------------------

def read_safetensors_header(path) -> dict:
    """Parse and check a safetensors header: name -> {dtype, shape, data_offsets}.

    Checks, without reading the tensor data: the 8-byte header length, that the header is a
    JSON object, each tensor's dtype, shape and byte range (inside the file, and as long as
    its shape says), and that the ranges cover the data exactly (a truncated file fails here).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: {size} bytes, too short to be a safetensors "
                                      "file (no 8-byte header length)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise CheckpointError(f"{path}: header length {n} is larger than the file "
                                      f"({size} bytes): truncated or not a safetensors file")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupted safetensors header ({e})") from None
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    end_max = 0
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            nbytes = _ITEMSIZE[dtype] * math.prod(shape)
            if any(not isinstance(d, int) or d < 0 for d in shape) or not 0 <= begin <= end:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupted safetensors header entry for "
                                  f"{name!r}: {info!r}") from None
        if end - begin != nbytes:
            raise CheckpointError(f"{path}: tensor {name!r} of shape {shape} {dtype} needs "
                                  f"{nbytes} bytes but its offsets span {end - begin}")
        if end > data_size:
            raise CheckpointError(f"{path}: tensor {name!r} ends at byte {end} of the data, but "
                                  f"the file holds only {data_size}: the file is truncated")
        end_max = max(end_max, end)
    if end_max != data_size:
        raise CheckpointError(f"{path}: {data_size - end_max} bytes after the last tensor: "
                              "corrupted safetensors file")
    return header


# safetensors dtype tag -> NumPy dtype (bfloat16, which NumPy lacks, as its raw 16 bits)
NUMPY_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2",
                "F16": "<f2", "BF16": "<u2", "U32": "<u4", "I32": "<i4", "F32": "<f4",
                "U64": "<u8", "I64": "<i8", "F64": "<f8"}


def map_safetensors(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, name -> array) of a safetensors file, the arrays views of one private
    (copy-on-write) memory map of it: nothing is read until an array is used, the pages are
    the page cache's (a second process mapping the file shares them), and writing into an
    array (training updates weights in place) copies that page into this process only: the
    file never changes. A tensor whose offset is not a multiple of its item size is copied
    out instead. bfloat16 arrives as its raw 16 bits (``<u2``).

    The file is replaced by atomic writes (a new file renamed over it), which leaves a live
    map on the old one; a file truncated in place under a live map would fault, and npgpt
    never writes one in place.
    """
    path = Path(path)
    header = read_safetensors_header(path)
    unknown = sorted({info["dtype"] for info in header.values()} - set(NUMPY_DTYPES))
    if unknown:
        raise CheckpointError(f"{path}: tensors of dtype {', '.join(unknown)} cannot be read")
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot map {path}: {getattr(e, 'strerror', None) or e}") from None
    start = 8 + n
    arrays = {}
    for name, info in header.items():
        dtype = np.dtype(NUMPY_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        count = (end - begin) // dtype.itemsize
        a = np.frombuffer(buf, dtype=dtype, count=count, offset=start + begin)
        if (start + begin) % dtype.itemsize:
            a = a.copy()                       # unaligned: NumPy and BLAS want aligned data
        arrays[name] = a.reshape(info["shape"])
    return header, arrays


def save_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``tensors`` (name -> NumPy array) to ``path`` atomically (temp file + rename)."""
    from safetensors.numpy import save

    path = Path(path)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"tensor name {name!r} is not a string")
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"tensor {name!r} is a {type(value).__name__}, expected a "
                                  "NumPy array")
        # (np.ascontiguousarray would turn a 0-d array into shape (1,))
        arrays[name] = value if value.flags.c_contiguous else value.copy(order="C")
    payload = save(arrays, metadata={k: str(v) for k, v in (metadata or {}).items()} or None)
    atomic_write(path, payload)


def load_safetensors(path, expected: dict | None = None, mmap: bool = False) -> dict[str, np.ndarray]:
    """Read a safetensors file (no pickle), checking its header first; with ``mmap`` the
    arrays are views of a private memory map of it (:func:`map_safetensors`), not copies.

    ``expected``: name -> array or shape; when given, the file must hold exactly those names
    with those shapes (and, for arrays, that dtype), or a :class:`CheckpointError` names every
    missing, unexpected and mis-shaped tensor. Floating-point tensors must be finite: a NaN
    or infinity in a weight file is damage (a bit flip, a poisoned save), never a model.
    """
    from safetensors.numpy import load_file

    header = read_safetensors_header(path)
    if expected is not None:
        check_tensors({k: tuple(v["shape"]) for k, v in header.items()}, expected, str(path))
    if mmap:
        _, tensors = map_safetensors(path)
        if any(info["dtype"] == "BF16" for info in header.values()):
            raise CheckpointError(f"{path}: bfloat16 tensors are not read here")
    else:
        try:
            tensors = load_file(str(path))
        except Exception as e:  # the header checked out, yet the library refuses the file
            raise CheckpointError(f"{path}: cannot read safetensors data ({e})") from None
    for name, value in tensors.items():
        want = getattr((expected or {}).get(name), "dtype", None)
        if want is not None and value.dtype != want:
            raise CheckpointError(f"{path}: tensor {name!r} is {value.dtype}, expected {want}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            raise CheckpointError(f"{path}: tensor {name!r} holds {bad} NaN or infinite "
                                  "values: the file is damaged")
    return tensors


def check_tensors(found: dict, expected: dict, where: str) -> None:
    """Raise :class:`CheckpointError` unless ``found`` and ``expected`` (name -> array or
    shape) have the same names and shapes; every offender is named."""
    def shape(v):
        return tuple(v.shape) if hasattr(v, "shape") else tuple(v)

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [f"{k}: file {shape(found[k])} vs expected {shape(expected[k])}"
                 for k in expected if k in found and shape(found[k]) != shape(expected[k])]
    problems = ([f"missing tensors: {', '.join(missing)}"] if missing else []) \
        + ([f"unexpected tensors: {', '.join(unexpected)}"] if unexpected else []) \
        + ([f"mis-shaped tensors: {'; '.join(misshaped)}"] if misshaped else [])
    if problems:
        raise CheckpointError(f"{where} does not match: " + " | ".join(problems))


# --- JSON -----------------------------------------------------------------------------------

def _plain(value):
    """JSON fallback for NumPy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_json(path, obj) -> None:
    """Write ``obj`` as JSON atomically (NaN and infinity are refused: JSON has no such values)."""
    try:
        text = json.dumps(obj, indent=2, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot write {path} as JSON: {e}") from None
    atomic_write(Path(path), (text + "\n").encode("utf-8"))


def load_json(path) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def cache_root() -> Path:
    """Where npgpt caches what it derives (token files, tokenizer tables): ``$NPGPT_CACHE`` if
    set, else ``~/.cache/npgpt``."""
    return Path(os.environ.get("NPGPT_CACHE") or Path.home() / ".cache" / "npgpt")


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to a temporary sibling of ``path``, flush it to disk and rename it in
    place, so readers see either the old file or the whole new one, never a part.  The file
    gets the mode an ordinary ``open`` would give it (0o666 less the umask), not the temp
    file's 0o600."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)       # a full disk's error names no file by itself
        raise


@contextlib.contextmanager
def atomic_directory(path):
    """Build a directory at ``path`` all at once: yields an empty temporary sibling to fill;
    when the block ends without error, any old ``path`` is renamed to ``.<name>.previous``,
    the new one renamed to ``path`` and the old one removed. An error (or a crash) before the
    renames leaves the old directory untouched; a crash between them leaves it at
    ``.<name>.previous``, where :func:`load_checkpoint` finds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):      # left by an earlier crash
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        yield tmp
        previous = _previous(path)
        if path.exists():
            if previous.exists():
                shutil.rmtree(previous)
            os.rename(path, previous)
        os.rename(tmp, path)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- checkpoint directories -----------------------------------------------------------------

@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read. ``tokenizer_path`` is None when none was saved."""
    config: dict
    model_state: dict
    optimizer_state: dict
    trainer_state: dict
    tokenizer_path: Path | None = None
    path: Path | None = None          # the directory it was read from (see resolve_checkpoint)


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def save_checkpoint(path, config: dict, model_state: dict, optimizer_state: dict,
                    trainer_state: dict, tokenizer_file=None, tokenizer=None) -> Path:
    """Write a checkpoint directory at ``path``, replacing any checkpoint there only once the
    new one is complete.

    The files go into ``.<name>.tmp-<pid>`` beside ``path``; then the old checkpoint (if any)
    is renamed to ``.<name>.previous``, the new one renamed to ``path``, and the old one
    removed. A crash before the renames leaves the old checkpoint untouched; a crash between
    them leaves it at ``.<name>.previous``, where :func:`load_checkpoint` finds it.
    A NaN or infinity in any tensor is refused before anything is written: such a model
    must never replace a good checkpoint (and would be refused at load).
    The tokenizer goes in as ``tokenizer_file`` (copied) or ``tokenizer`` (an object whose
    ``save(path)`` writes it as ``tokenizer.json``).
    """
    for where, tensors in (("model", model_state), ("optimizer", optimizer_state)):
        for name, value in tensors.items():
            if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all():
                raise CheckpointError(f"{where} tensor {name!r} holds NaN or infinite values: "
                                      f"not saved, and {path} is left as it was")
    try:
        with atomic_directory(path) as tmp:
            save_json(tmp / CONFIG, config)
            save_safetensors(tmp / MODEL, model_state)
            save_safetensors(tmp / OPTIMIZER, optimizer_state)
            if tokenizer_file is not None:
                source = Path(tokenizer_file)
                try:
                    shutil.copyfile(source, tmp / ("tokenizer" + source.suffix))
                except OSError as e:
                    raise CheckpointError(f"cannot copy tokenizer file {source}: "
                                          f"{e.strerror or e}") from None
            elif tokenizer is not None:   # written inside the temporary directory, so a
                tokenizer.save(tmp / "tokenizer.json")   # crash leaves no stray file
            save_json(tmp / TRAINER, trainer_state)  # last: its presence marks a whole save
    except OSError as e:     # a full disk, a read-only directory: the old checkpoint stands
        kept = "the previous checkpoint is kept" if _readable(path) else "nothing saved"
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; "
                              f"{kept}") from None
    return Path(path)


def _readable(path) -> bool:
    """Whether a checkpoint can be read at ``path`` (see :func:`resolve_checkpoint`)."""
    try:
        return (resolve_checkpoint(path) / TRAINER).is_file()
    except CheckpointError:
        return False


def resolve_checkpoint(path) -> Path:
    """The checkpoint directory that ``path`` names, for every command that takes one.

    ``path`` may be the checkpoint itself, a training output directory holding it in
    ``checkpoint/``, or a HuggingFace model directory (``config.json`` without
    ``trainer.json``). When a save was interrupted between its two renames, the checkpoint
    is at ``.<name>.previous`` and is found there. :class:`CheckpointError` otherwise.
    """
    path = Path(path)
    for candidate in (path, path / "checkpoint"):
        if (candidate / TRAINER).is_file():
            return candidate
        previous = _previous(candidate) if candidate.name else None     # ("." has no name)
        if previous is not None and not candidate.exists() and (previous / TRAINER).is_file():
            return previous          # a save was interrupted between its two renames
    if (path / CONFIG).is_file():
        return path                  # a HuggingFace directory, or an incomplete checkpoint
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    if path.is_dir() and (path / "checkpoint").is_dir():
        return path / "checkpoint"   # incomplete: load_checkpoint says what is missing
    raise CheckpointError(f"no checkpoint at {path} (expected {path}/{TRAINER} or "
                          f"{path}/checkpoint/{TRAINER})")


def load_checkpoint(path, expect_model: dict | None = None,
                    expect_optimizer: dict | None = None, mmap: bool = False) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint` (never unpickles).

    ``path`` is resolved by :func:`resolve_checkpoint` (an output directory, or a save
    interrupted between its renames, is found). ``expect_model`` / ``expect_optimizer``:
    name -> array or shape (e.g. ``model.state_dict()``); when given, the stored tensors
    must match them exactly (:class:`CheckpointError` otherwise). ``mmap``: the model's
    tensors are views of a private memory map of its file (:func:`map_safetensors`).
    """
    path = resolve_checkpoint(path)
    missing = [name for name in (CONFIG, MODEL, OPTIMIZER, TRAINER) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    tokenizers = sorted(path.glob("tokenizer*"))
    if len(tokenizers) > 1:
        raise CheckpointError(f"checkpoint {path} holds several tokenizer files: "
                              f"{[t.name for t in tokenizers]}")
    return Checkpoint(
        config=load_json(path / CONFIG),
        model_state=load_safetensors(path / MODEL, expect_model, mmap=mmap),
        optimizer_state=load_safetensors(path / OPTIMIZER, expect_optimizer),
        trainer_state=load_json(path / TRAINER),
        tokenizer_path=tokenizers[0] if tokenizers else None,
        path=path,
    )
