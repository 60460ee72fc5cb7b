"""The split's character classes are Unicode 16.0.0's whatever `regex` is installed: every code
point of planes 0-3 and 14, in a few contexts, gives tiktoken's ids on the regex path and the
numba path, and a tokenizer's name does not depend on the environment."""
import re
import subprocess
import sys

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.tokenizers import ByteBPE
from npgpt.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from npgpt.tokenizers.unicode_classes import (DIGIT, LETTER, SPACE, PinnedSplit,
                                              changed_code_points, class_table, pinned_pattern)

# planes 0-3 and 14 hold every assigned code point but the private-use planes
SWEEP = [c for c in list(range(0x40000)) + list(range(0xE0000, 0xE1000)) if not 0xD800 <= c < 0xE000]
CONTEXTS = ["{c}:A\n", "a{c}1\n", " {c}{c}\n", "'{c}x\n", "1{c}\n"]


@pytest.fixture(scope="module")
def cl100k():
    tiktoken_adapter = pytest.importorskip("npgpt.tokenizers.tiktoken_adapter")
    try:
        ref = tiktoken_adapter.tiktoken_encoding("cl100k_base")
    except Exception as e:  # the offline rank file is not installed
        pytest.skip(f"tiktoken's cl100k_base cannot be loaded offline: {e}")
    return ByteBPE.from_tiktoken("cl100k_base"), ref


def first_difference(ours, ref, text):
    """Localise a mismatch to one context for the failure message."""
    for line in text.split("\n"):
        if ours(line) != ref(line):
            return f"{line!r}: npgpt {ours(line)}, tiktoken {ref(line)}"
    return "(only across lines)"


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_code_point_splits_as_tiktoken(cl100k, context):
    ours, ref = cl100k
    before, after = context.split("{c}", 1)
    text = "".join(before + chr(c) + after.replace("{c}", chr(c)) for c in SWEEP)
    expected = ref.encode_ordinary(text)
    fast = ours._encode_fast(text)
    assert fast == expected, first_difference(ours._encode_fast, ref.encode_ordinary, text)
    # the regex path: every code point whose class changed after Unicode 16 (these take the
    # spelled-out pattern) and every 7th other one (the pattern as written)
    changed = set(changed_code_points().tolist())
    some = [c for i, c in enumerate(SWEEP) if c in changed or i % 7 == 0]
    text = "".join(before + chr(c) + after.replace("{c}", chr(c)) for c in some)

    def by_regex(t):
        return [i for p in ours._split.findall(t) for i in ours._encode_piece(p.encode())]
    assert by_regex(text) == ref.encode_ordinary(text), first_difference(
        by_regex, ref.encode_ordinary, text)


def test_class_table_is_unicode_16():
    table = class_table()
    assert table[ord("A")] & LETTER and table[0x0558] & LETTER == 0  # U+0558: Unicode 17
    assert table[0x10D4A] & LETTER                                     # U+10D4A: Unicode 16
    assert table[ord("7")] & DIGIT and table[ord("\u2163")] & DIGIT    # Nd and Nl
    assert table[0x3000] & SPACE and table[0x1C] & SPACE == 0          # White_Space, not isspace


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN])
def test_pinned_pattern_splits_like_the_pattern_on_old_characters(pattern, shakespeare):
    # characters in every Unicode since 15: the installed regex and the pinned ranges agree
    text = shakespeare[:50_000] + " 你好 ١٢٣ x\u00a0y \u2028 ﬁ 😀 ''ll 'S"
    assert regex.findall(pinned_pattern(pattern), text) == regex.findall(pattern, text)
    assert "\\p{" not in pinned_pattern(pattern)


ascii_text = st.lists(st.one_of(
    st.sampled_from(["'s", "'LL", "'Ve", "'x", " !!\n\n", "\r\n", "  \n  x", "\x0b", "\x0c",
                     "\x1c", "\x1f", " 1234", "\t\t", "  ", "\n"]),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=8)), max_size=20).map("".join)


@settings(max_examples=300)
@given(text=ascii_text)
@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN])
def test_ascii_text_splits_by_the_ascii_spelling_as_by_regex(pattern, text):
    # PinnedSplit takes the standard library's re for ASCII text (Python 3.11+)
    assert PinnedSplit(pattern).findall(text) == regex.findall(pattern, text)
    if sys.version_info >= (3, 11):
        assert re.findall(pinned_pattern(pattern, ascii_only=True), text) == regex.findall(pattern, text)


def test_name_does_not_depend_on_the_environment():
    # the name hashes ids and the pattern's text, never how this Python prints a token
    code = ("import unicodedata, sys; from npgpt.tokenizers import ByteBPE;"
            "tok = ByteBPE([(0x41, 0x42, 256), (256, 0xcc, 257)], 'gpt4');"
            "print(tok.name)")
    name = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()
    tok = ByteBPE([(0x41, 0x42, 256), (256, 0xcc, 257)], "gpt4")
    assert name == tok.name
    assert tok.name == "bpe:" + tok._identity_hash()
