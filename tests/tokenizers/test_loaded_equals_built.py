"""A saved and loaded tokenizer derives everything a freshly built one does: the same
attributes, the same ids, the same encode path (the one-call numba encoder)."""
import numpy as np
import pytest

from npgpt.tokenizers import ByteBPE, CharTokenizer, ClassicBPE, bytebpe, load


def derived(tok):
    """Every attribute, with arrays as lists (the pair table) so they compare by value."""
    out = {}
    for k, v in vars(tok).items():
        if k in ("_cache", "_split", "_special_re", "_encode_fast"):  # caches, the spy
            continue
        if isinstance(v, tuple) and v and isinstance(v[0], np.ndarray):
            v = [x.tolist() for x in v]
        out[k] = v
    return out


@pytest.mark.parametrize("how", ["cl100k", "trained"])
def test_loaded_bytebpe_equals_the_built_one(how, shakespeare, tmp_path, monkeypatch):
    built = (ByteBPE.from_tiktoken("cl100k_base") if how == "cl100k"
             else ByteBPE.train(shakespeare[:50_000], 400, special_tokens=["<|endoftext|>"]))
    path = tmp_path / "tok.bpe"
    built.save(path)
    loaded = load(path)
    text = shakespeare[:40_000]
    paths = {}
    monkeypatch.setattr(bytebpe, "_FAST_LOADED", True)  # as once its kernels are loaded
    for name, tok in (("built", built), ("loaded", loaded)):
        calls = []
        fast = tok._encode_fast
        with pytest.MonkeyPatch.context() as m:
            m.setattr(tok, "_encode_fast", lambda t, f=fast, c=calls: c.append(1) or f(t))
            ids = tok.encode_ordinary(text)
        paths[name] = (len(calls), ids)
    assert paths["built"] == paths["loaded"] and paths["built"][0] == 1
    assert derived(loaded) == derived(built)
    assert loaded.name == built.name and loaded._fast_path_applies() == built._fast_path_applies()


@pytest.mark.parametrize("make", [lambda t: CharTokenizer.train(t, special_tokens=["<eos>"]),
                                  lambda t: ClassicBPE.train(t, 50, special_tokens=["<eos>"])])
def test_loaded_char_and_classic_equal_the_built_ones(make, shakespeare, tmp_path):
    built = make(shakespeare[:5_000])
    built.save(tmp_path / "tok.json")
    loaded = load(tmp_path / "tok.json")
    assert type(loaded) is type(built)
    assert {k: v for k, v in vars(loaded).items() if k != "_cache"} == \
        {k: v for k, v in vars(built).items() if k != "_cache"}


def test_saved_files_get_the_mode_of_an_ordinary_open(tmp_path):
    import os
    old = os.umask(0o027)
    try:
        ByteBPE([], None).save(tmp_path / "tok.bpe")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "tok.bpe").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o640
