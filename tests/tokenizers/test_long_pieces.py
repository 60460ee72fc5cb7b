"""One long pre-split piece is O(m log m) on every encode path: the heap route (and the short
pieces' scan) equals the definition (plain Python and numba) and tiktoken on runs of a
hundred thousand characters."""
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.tokenizers import ByteBPE
from npgpt.tokenizers.bpe_encode import bpe_heap, bpe_piece, bpe_reference
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding


@pytest.fixture(scope="module")
def cl100k():
    return ByteBPE.from_tiktoken("cl100k_base"), tiktoken_encoding("cl100k_base")


@pytest.fixture(scope="module")
def trained(shakespeare):
    return ByteBPE.train(shakespeare[:100_000], 600, pattern=None)


def numba_heap(tok, ids):
    from npgpt.tokenizers._encode_kernels import bpe_heap as kernel
    buf = np.array(ids, np.int64)
    m = len(ids)
    scratch = np.empty(max(m, 1), np.int64), np.empty(max(m, 1), np.int64), np.empty(3 * max(m, 1), np.int64)
    return buf[:kernel(buf, m, *tok._pair_tables(), *scratch)].tolist()


def numba_scan(tok, ids):
    """The short pieces' route, on a piece of any length."""
    from npgpt.tokenizers._encode_kernels import bpe_scan
    buf = np.array(ids, np.int64)
    return buf[:bpe_scan(buf, len(ids), *tok._pair_tables(), np.empty(max(len(ids), 1), np.int64))].tolist()


# repetitive alphabets make long chains of equal pairs, where leftmost-first matters
text = st.one_of(st.text(alphabet="ab ", max_size=200), st.text(alphabet="eth ", max_size=200),
                 st.text(max_size=80))


@settings(max_examples=120, deadline=None)
@given(text=text)
def test_heap_routes_equal_the_definition(trained, text):
    ids = [trained.byte_ids[b] for b in text.encode("utf-8")]
    expected = bpe_reference(ids, trained.ranks)
    assert bpe_heap(ids, trained.ranks) == expected
    assert numba_heap(trained, ids) == expected
    assert numba_scan(trained, ids) == expected
    assert bpe_piece(ids, trained.ranks) == expected


def long_runs():
    rng = random.Random(0)
    return {"letters": "a" * 100_000, "spaces": " " * 100_000,
            "dna": "".join(rng.choice("ACGT") for _ in range(100_000)),
            "minified": "".join(rng.choice("(){};=+-*/<>!&|,.[]") for _ in range(100_000))}


@pytest.mark.parametrize("name", sorted(long_runs()))
def test_long_runs_equal_tiktoken_on_every_path(cl100k, name):
    ours, ref = cl100k
    run = long_runs()[name]
    expected = ref.encode_ordinary(run)
    assert ours._encode_fast(run) == expected                         # one numba call
    pieces = ours._split.findall(run)
    ours._cache.clear()
    ours._encode_many(set(pieces))                                   # numba, piece by piece
    assert [i for p in pieces for i in ours._cache[p]] == expected
    ours._cache.clear()
    short = run[:30_000]                                             # plain Python
    assert [i for p in ours._split.findall(short) for i in ours._encode_piece(p.encode())] \
        == ref.encode_ordinary(short)
