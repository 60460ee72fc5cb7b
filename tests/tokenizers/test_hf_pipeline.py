"""Each normalizer, pre-tokenizer and decoder npgpt reads from a tokenizer.json, in
combinations the families do not use, against HuggingFace's tokenizers on drawn text."""
import pytest
from hypothesis import given, settings, strategies as st

from npgpt.tokenizers import load

from .families import ASSIGNED

tokenizers = pytest.importorskip("tokenizers")

TEXT = st.lists(st.sampled_from(["Hello", " World", "  ", "\n", "\t", "12", "3456", "a-b",
                                 "x,y", "ÉCOLE", "e\u0301", "ﬁ", "Ⅻ", "😀", "你好", " ▁",
                                 "_under", "'s", "¹²", "x_1"]) | st.text(ASSIGNED, max_size=4), max_size=8).map("".join)


def _variants():
    from tokenizers import Regex, decoders, normalizers
    from tokenizers import pre_tokenizers as pre
    byte_level = pre.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "merged-with-previous": (None, pre.Sequence([pre.Split(" ", "merged_with_previous"),
                                                     byte_level]), decoders.ByteLevel()),
        "merged-with-next": (None, pre.Sequence([pre.Split(Regex(r"\s+"), "merged_with_next"),
                                                 byte_level]), decoders.ByteLevel()),
        "contiguous": (None, pre.Sequence([pre.Split(Regex(r"\p{P}"), "contiguous"),
                                           byte_level]), decoders.ByteLevel()),
        "removed-inverted": (None, pre.Sequence([pre.Split(Regex(r"\w+"), "removed", invert=True),
                                                 byte_level]), decoders.ByteLevel()),
        "digit-runs": (None, pre.Sequence([pre.Digits(individual_digits=False),
                                           pre.ByteLevel(add_prefix_space=False)]),
                       decoders.ByteLevel()),
        "lowercase-nfkc-strip": (normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                                       normalizers.Strip()]),
                                 pre.ByteLevel(add_prefix_space=False), decoders.ByteLevel()),
        "nfd-replace-regex": (normalizers.Sequence([normalizers.NFD(),
                                                    normalizers.Replace(Regex(r"\d"), "#")]),
                              pre.ByteLevel(add_prefix_space=False), decoders.ByteLevel()),
        "metaspace-always-split": (normalizers.Prepend("!"),
                                   pre.Metaspace(prepend_scheme="always", split=True),
                                   decoders.Metaspace(prepend_scheme="always", split=True)),
        "whitespace": (normalizers.NFKD(), pre.Whitespace(), decoders.Fuse()),
        "whitespace-split": (None, pre.WhitespaceSplit(), None),
    }


VARIANTS = list(_variants())
_BUILT = {}


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request, shakespeare, tmp_path_factory):
    if request.param not in _BUILT:
        from tokenizers import Tokenizer, models, trainers
        from tokenizers import pre_tokenizers as pre
        norm, pre_tok, dec = _variants()[request.param]
        hf = Tokenizer(models.BPE(unk_token="<unk>"))
        hf.normalizer, hf.pre_tokenizer = norm, pre_tok
        if dec is not None:
            hf.decoder = dec
        byte_level = "ByteLevel" in repr(pre_tok)
        hf.train_from_iterator([shakespeare[:40_000]], trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<unk>"], show_progress=False,
            initial_alphabet=pre.ByteLevel.alphabet() if byte_level else []))
        folder = tmp_path_factory.mktemp(request.param)
        hf.save(str(folder / "tokenizer.json"))
        _BUILT[request.param] = (hf, load(folder / "tokenizer.json"))
    return _BUILT[request.param]


@settings(max_examples=15, deadline=None)
@given(text=TEXT)
def test_pipeline_variant_encodes_and_decodes_like_tokenizers(variant, text):
    hf, ours = variant
    ids = hf.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == ids
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
