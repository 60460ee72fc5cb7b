"""The trainer's counting kernel (npgpt/tokenizers/_count_kernels.py) against its definition,
bpe_train.count_words with the GPT-4 pattern: the same pieces, counts and order."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.tokenizers import bpe_train
from npgpt.tokenizers.patterns import GPT4_PATTERN
from npgpt.tokenizers.unicode_classes import PinnedSplit

from .test_fast_encode import drawn

SPLIT = PinnedSplit(GPT4_PATTERN)


def definition(text):
    return list(bpe_train.count_words(text, SPLIT).items())


@settings(max_examples=200, deadline=None)
@given(text=st.lists(drawn, max_size=8).map("".join))
def test_counting_kernel_equals_findall_and_counter(text):
    assert list(bpe_train.count_words_gpt4(text).items()) == definition(text)


def test_counting_kernel_equals_the_definition_on_shakespeare_growing_its_table(shakespeare):
    # more distinct pieces than half the first table's 4,096 slots: it grows on the way
    text = shakespeare[:200_000]
    counted = list(bpe_train.count_words_gpt4(text).items())
    assert len(counted) > 4096 and counted == definition(text)


def test_counting_kernel_refuses_lone_surrogates_like_the_definition():
    with pytest.raises(UnicodeEncodeError):
        definition("a\ud800b")
    with pytest.raises(UnicodeEncodeError):
        bpe_train.count_words_gpt4("a\ud800b")
