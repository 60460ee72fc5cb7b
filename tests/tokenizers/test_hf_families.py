"""Each family's kind of tokenizer.json (built in families.py with HuggingFace's tokenizers)
loads into npgpt and gives the reference's ids and text on hypothesis-drawn text."""
import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import ByteBPE, load
from npgpt.tokenizers.hf import to_tokenizer_json
from npgpt.tokenizers.hf_tokenizer import HFTokenizer

from . import families
from .families import ASSIGNED

tokenizers = pytest.importorskip("tokenizers")

ALL_ADDED = sorted({t for k in families.KINDS for t in families.SPECIALS[k]}
                   | {t for v in families.EXTRA.values() for t in v}
                   | {t for v in families.TURN.values() for t in v})
PIECES = ["Hello", " world", "  ", "   \n", "\n\n", "\t", " \u00a0", "\r\n", "123", "4567",
          "'s", "'LL", "你好", "世界", "😀", "👍🏽", "é", "e\u0301", "\u212b", "Привет", "مرحبا",
          "नमस्ते", "\u2581", "<0x41>", "ÿ", "Ā", "\x00", "\x7f", "\U0001fae9", "ß", "İ"] + ALL_ADDED
text_st = st.lists(st.sampled_from(PIECES) | st.text(ASSIGNED, max_size=5), max_size=12).map("".join)


_BUILT = {}


@pytest.fixture(scope="module")
def built(shakespeare, tmp_path_factory):
    """kind -> (kind, the reference Tokenizer, npgpt's tokenizer from its saved file)."""
    def get(kind):
        if kind not in _BUILT:
            hf = families.build(kind, shakespeare[:150_000])
            _BUILT[kind] = (kind, hf, load(families.save(hf, tmp_path_factory.mktemp(kind))))
        return _BUILT[kind]
    return get


@pytest.fixture(scope="module", params=families.KINDS)
def family(request, built):
    return built(request.param)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_st)
def test_family_tokenizer_json_encodes_and_decodes_like_tokenizers(family, text):
    kind, hf, ours = family
    ids = hf.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allowed_special="all") == ids
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
    if kind in ("llama3", "qwen2"):     # every byte has a token: the text comes back
        expect = unicodedata.normalize("NFC", text) if kind == "qwen2" else text
        assert ours.decode(ids) == expect


def test_each_family_loads_into_the_right_tokenizer(family):
    kind, hf, ours = family
    # plain byte-level BPE keeps npgpt's fast ByteBPE; the other pipelines run in full
    assert isinstance(ours, ByteBPE if kind == "llama3" else HFTokenizer)
    assert ours.vocab_size == hf.get_vocab_size()
    for s in families.SPECIALS[kind] + families.TURN.get(kind, []):
        assert ours.special_tokens[s] == hf.token_to_id(s)


def test_special_text_follows_allowed_special_and_added_words_are_always_cut(family):
    kind, hf, ours = family
    special = families.SPECIALS[kind][-1]
    with pytest.raises(TokenizerError, match="disallowed special token"):
        ours.encode(f"a {special} b")
    as_text = ours.encode(f"a {special} b", disallowed_special=())
    assert hf.token_to_id(special) not in as_text
    for word in families.EXTRA.get(kind, []):      # not special: cut out whatever is allowed
        assert ours.encode(f"x{word}y") == hf.encode(f"x{word}y", add_special_tokens=False).ids


def test_byte_level_vocabulary_without_some_bytes_loads_and_drops_them(built):
    kind, hf, ours = built("smollm2")
    vocab = json.loads(hf.to_str())["model"]["vocab"]
    from npgpt.tokenizers.hf import bytes_to_unicode
    missing = [b for b, c in bytes_to_unicode().items() if c not in vocab]
    assert missing                                   # the case under test
    text = "ok " + bytes([missing[0]]).decode("latin-1") + " \U0001fae9 ok"
    ids = hf.encode(text, add_special_tokens=False).ids
    assert ours.encode(text) == ids
    assert ours.decode(ids) == hf.decode(ids)


@pytest.mark.parametrize("kind", ["gemma", "llama2"])
def test_byte_fallback_spells_unknown_characters_in_bytes(built, kind):
    kind, hf, ours = built(kind)
    text = "a \U0001fae9 b"                          # no token for this emoji: four bytes
    ids = ours.encode(text)
    pieces = [ours.id_to_piece(i) for i in ids]
    assert [p for p in pieces if p.startswith("<0x")] == ["<0xF0>", "<0x9F>", "<0xAB>", "<0xA9>"]
    assert ids == hf.encode(text, add_special_tokens=False).ids
    assert ours.decode(ids) == hf.decode(ids)
    assert ours.decode(ids).strip() == text.strip()


@pytest.mark.parametrize("kind", ["gemma", "llama2"])
def test_a_long_piece_takes_the_numba_kernel_with_the_same_ids(built, kind, shakespeare):
    from npgpt.tokenizers import hf_tokenizer
    kind, hf, ours = built(kind)
    text = shakespeare[5000:9000] + " 😀 \U0001fae9 ü"       # one piece of thousands of symbols
    assert len(text) > 4 * hf_tokenizer._NUMBA_MIN_SYMBOLS
    ids = hf.encode(text, add_special_tokens=False).ids
    assert ours.encode(text) == ids
    assert ours._pair_table                              # the kernel's table was built
    word = [ours.vocab.get(c, ours.unk_id) for c in text.replace(" ", "\u2581")]
    assert ours._bpe_numba(word) == hf_tokenizer.bpe_piece(word, ours.ranks)


def test_saved_family_tokenizer_loads_back_and_exports_its_file(family, tmp_path):
    kind, hf, ours = family
    ours.save(tmp_path / "tok.json")
    again = load(tmp_path / "tok.json")
    sample = "Hello  world 123 😀 你好\nTo be, or not to be: that is the question."
    assert again.encode(sample) == ours.encode(sample)
    exported = tokenizers.Tokenizer.from_str(json.dumps(to_tokenizer_json(ours)))
    assert exported.encode(sample, add_special_tokens=False).ids == ours.encode(sample) \
        == hf.encode(sample, add_special_tokens=False).ids


def test_a_file_with_a_long_added_token_list_before_its_model_loads(built, tmp_path):
    from tokenizers import AddedToken
    kind, hf, _ = built("gemma")
    obj = json.loads(hf.to_str())
    many = tokenizers.Tokenizer.from_str(json.dumps(obj))
    many.add_special_tokens([AddedToken(f"<unused{i}>", special=True, normalized=False)
                             for i in range(300)])
    many.save(str(tmp_path / "tokenizer.json"))
    assert (tmp_path / "tokenizer.json").read_text().index('"model"') > 4096
    ours = load(tmp_path / "tokenizer.json")
    text = "a<unused7>b <start_of_turn>user"
    assert ours.encode(text, allowed_special="all") == many.encode(text, add_special_tokens=False).ids


def test_byte_level_with_a_prefix_space_adds_it_to_each_segment(shakespeare, tmp_path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator([shakespeare[:50_000]], trainers.BpeTrainer(
        vocab_size=400, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.add_special_tokens([AddedToken("<s>", special=True, normalized=False)])
    ours = load(families.save(hf, tmp_path))
    assert isinstance(ours, HFTokenizer)
    for text in ["Hello world", " Hello", "<s>thee<s> thou", "a\n\nb", ""]:
        ids = hf.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, allowed_special="all") == ids
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)


def test_unsupported_pipeline_pieces_are_refused_by_name(tmp_path):
    base = {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}
    for key, spec, name in (("normalizer", {"type": "Precompiled"}, "Precompiled"),
                            ("pre_tokenizer", {"type": "UnicodeScripts"}, "UnicodeScripts"),
                            ("decoder", {"type": "CTC"}, "CTC")):
        (tmp_path / "t.json").write_text(json.dumps({**base, key: spec}), encoding="utf-8")
        with pytest.raises(TokenizerError, match=name):
            load(tmp_path / "t.json")
