import pytest
from hypothesis import given, strategies as st

from npgpt.errors import TokenizerError
from npgpt.tokenizers import CharTokenizer, ClassicBPE, get, load

PAPER = {"low": 5, "lower": 2, "newest": 6, "widest": 3}


def test_classic_bpe_reproduces_the_papers_first_merges():
    bpe = ClassicBPE.train(PAPER, 10)
    assert bpe.merges == [("e", "s"), ("es", "t"), ("est", "</w>"), ("l", "o"), ("lo", "w"),
                          ("n", "e"), ("ne", "w"), ("new", "est</w>"), ("low", "</w>"), ("w", "i")]
    assert bpe.merges_txt().splitlines()[1:4] == ["e s", "es t", "est </w>"]


def test_classic_bpe_encodes_new_words_with_the_merges_in_order():
    bpe = ClassicBPE.train(PAPER, 10)
    assert bpe.tokenize("lowest") == ["low", "est</w>"]
    assert bpe.tokenize("newer") == ["new", "e", "r", "</w>"]
    assert bpe.decode(bpe.encode("lowest  newer\n")) == "lowest newer"
    with pytest.raises(TokenizerError, match="'z'"):  # l, o, w, e, r, ... were seen; z was not
        bpe.encode("lowz")


def test_classic_bpe_save_load(tmp_path):
    bpe = ClassicBPE.train("the cat sat on the mat the end", 8, special_tokens=["<eos>"])
    bpe.save(tmp_path / "c.json")
    back = load(tmp_path / "c.json")
    assert back.name == bpe.name and back.merges == bpe.merges
    assert back.encode("the mat<eos>", allowed_special="all")[-1] == bpe.special_tokens["<eos>"]


@given(text=st.text(min_size=1, max_size=50))
def test_char_tokenizer_roundtrips_its_training_text(text):
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))


def test_char_tokenizer_names_the_unseen_character(tmp_path):
    tok = get("char", text="hello world")
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    with pytest.raises(TokenizerError, match=r"'Z' \(U\+005A\) at offset 2"):
        tok.encode("heZ")
    tok.save(tmp_path / "c.json")
    back = load(tmp_path / "c.json")
    assert back.name == tok.name and back.name.startswith("char:")
    assert back.encode("world") == tok.encode("world")
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([99])
