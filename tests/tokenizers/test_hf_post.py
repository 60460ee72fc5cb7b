"""A tokenizer.json's post_processor: the BOS (or more) HuggingFace adds around an encoding
by default is added by ``encode``, and left out with ``add_special_tokens=False``, with the
ids of the ``tokenizers`` library both ways; tiktoken's surfaces never add it."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import ByteBPE, load, tiktoken_compat
from npgpt.tokenizers.hf import to_tokenizer_json
from npgpt.tokenizers.hf_tokenizer import HFTokenizer

from . import families
from .families import ASSIGNED

tokenizers = pytest.importorskip("tokenizers")

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune. Привет, 你好 😀 12345\n") * 20
KINDS = ("llama3", "gemma", "qwen2", "llama2")
_BUILT = {}


def _built(kind, tmp_path_factory):
    if kind not in _BUILT:
        hf = families.with_post_processor(families.build(kind, TEXT, vocab_size=420), kind)
        _BUILT[kind] = (hf, load(families.save(hf, tmp_path_factory.mktemp(kind))))
    return _BUILT[kind]


@pytest.fixture(scope="module", params=KINDS)
def family(request, tmp_path_factory):
    return (request.param, *_built(request.param, tmp_path_factory))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from(["Hello", " world", "  ", "\n", "😀", "你好", "123", "<s>",
                                      "<bos>", "<|begin_of_text|>"]) | st.text(ASSIGNED, max_size=4),
                     max_size=8).map("".join))
def test_encode_adds_the_post_processors_tokens_as_tokenizers_does(family, text):
    kind, hf, ours = family
    assert ours.encode(text, allowed_special="all") == hf.encode(text).ids
    assert ours.encode(text, allowed_special="all", add_special_tokens=False) == \
        hf.encode(text, add_special_tokens=False).ids


def test_llama3_and_gemma_add_a_bos_and_qwen_nothing(family):
    kind, hf, ours = family
    assert isinstance(ours, ByteBPE if kind == "llama3" else HFTokenizer)   # the fast path too
    bos = families.BOS.get(kind)
    if bos is None:
        assert ours.post_processor is None and ours.encode("Hi") == hf.encode("Hi").ids
        assert ours.num_special_tokens_to_add() == 0
    else:
        assert ours.encode("Hi") == [hf.token_to_id(bos)] + ours.encode("Hi", add_special_tokens=False)
        assert ours.encode("") == [hf.token_to_id(bos)] == hf.encode("").ids
        assert ours.num_special_tokens_to_add() == 1
        assert ours.encode_batch(["a", "b"], add_special_tokens=False) == \
            [ours.encode("a", add_special_tokens=False), ours.encode("b", add_special_tokens=False)]


def test_the_post_processor_survives_saving_and_export(family, tmp_path):
    kind, hf, ours = family
    sample = "Hello  world 123 😀 To be, or not to be: that is the question."
    ours.save(tmp_path / "tok")
    again = load(tmp_path / "tok")
    assert again.encode(sample) == ours.encode(sample) == hf.encode(sample).ids
    assert again.name == ours.name
    exported = tokenizers.Tokenizer.from_str(json.dumps(to_tokenizer_json(ours)))
    assert exported.encode(sample).ids == ours.encode(sample)


def test_a_bytebpe_with_a_bos_has_its_own_name(tmp_path, tmp_path_factory):
    hf, ours = _built("llama3", tmp_path_factory)
    obj = json.loads(hf.to_str())
    obj["post_processor"] = None
    (tmp_path / "t.json").write_text(json.dumps(obj), encoding="utf-8")
    plain = load(tmp_path / "t.json")
    assert plain.post_processor is None and plain.name != ours.name   # data caches differ
    assert ours.encode("a b") == [hf.token_to_id("<|begin_of_text|>")] + plain.encode("a b")


def test_tiktoken_surfaces_add_nothing(tmp_path_factory):
    _, ours = _built("llama3", tmp_path_factory)
    enc = tiktoken_compat.Encoding.from_tokenizer(ours)
    plain = ours.encode("Hello world", add_special_tokens=False)
    assert enc.encode("Hello world") == plain == enc.encode_batch(["Hello world"])[0]
    np.testing.assert_array_equal(ours.encode_to_numpy("Hello world"), plain)


@pytest.mark.parametrize("make", [
    lambda p, bos, eos: p.TemplateProcessing(single="<s> $A </s>",
                                             special_tokens=[("<s>", bos), ("</s>", eos)]),
    lambda p, bos, eos: p.RobertaProcessing(("</s>", eos), ("<s>", bos)),
    lambda p, bos, eos: p.BertProcessing(("</s>", eos), ("<s>", bos)),
    lambda p, bos, eos: p.Sequence([p.ByteLevel(), p.RobertaProcessing(("</s>", eos),
                                                                       ("<s>", bos))]),
], ids=["template-eos", "roberta", "bert", "sequence"])
def test_eos_and_the_other_processors(make, tmp_path, tmp_path_factory):
    from tokenizers import processors
    hf, _ = _built("llama2", tmp_path_factory)
    hf = tokenizers.Tokenizer.from_str(hf.to_str())
    hf.post_processor = make(processors, hf.token_to_id("<s>"), hf.token_to_id("</s>"))
    ours = load(families.save(hf, tmp_path))
    for text in ("Hello world", "", "a </s> b"):
        assert ours.encode(text, allowed_special="all") == hf.encode(text).ids
    assert ours.encode("x")[-1] == hf.token_to_id("</s>")


@pytest.mark.parametrize("post, match", [
    ({"type": "Pipeline"}, "post_processor 'Pipeline' is not supported"),
    ({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}},
                                               {"Sequence": {"id": "A", "type_id": 0}}],
      "special_tokens": {}}, "'<x>', which its special_tokens do not define"),
    ({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>", "type_id": 0}}],
      "special_tokens": {"<x>": {"id": "<x>", "ids": [0], "tokens": ["<x>"]}}}, "0 sequences"),
    ({"type": "BertProcessing", "cls": ["<x>", 99], "sep": ["<y>", 0]}, "adds id 99, outside"),
    ({"type": "Sequence", "processors": [{"type": "BertProcessing", "cls": ["a", 0],
                                          "sep": ["b", 1]}] * 2}, "2 processors that add"),
    ({"type": "Sequence", "processors": 5}, "processors=5 is not a list"),
    ({"type": "TemplateProcessing", "single": 5}, "single=5 is not a list"),
    ({"type": "TemplateProcessing", "single": ["$A"]}, "neither a Sequence nor a SpecialToken"),
    ({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>"}},
                                               {"Sequence": {"id": "A"}}],
      "special_tokens": {"<x>": {"ids": ["1"]}}}, "expected a list of integers"),
    ({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>"}}],
      "special_tokens": ["<x>"]}, "do not define"),
    ({"type": "RobertaProcessing", "cls": ["<s>", True], "sep": ["</s>", 1]}, "list of integers"),
    ({"type": "RobertaProcessing", "cls": "<s>", "sep": ["</s>", 1]}, "no valid 'cls'"),
    ({"type": "BertProcessing", "cls": ["<x>", -1], "sep": ["<y>", 0]}, "adds id -1, outside"),
    ("TemplateProcessing", "'TemplateProcessing' is not a JSON object"),
])
def test_a_bad_post_processor_is_refused_by_name(post, match, tmp_path):
    obj = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
           "post_processor": post}
    (tmp_path / "t.json").write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(TokenizerError, match=match):
        load(tmp_path / "t.json")
