"""The exported tokenizers on the whole corpus: HuggingFace's ids against npgpt's.

    python benchmarks/check_tokenizer_export.py [--tokenizers bpe,gpt2,cl100k_base,char]

For each tokenizer: write tokenizer.json + tokenizer_config.json (npgpt.tokenizers.hf), load
them with ``tokenizers.Tokenizer.from_file`` and ``transformers.AutoTokenizer``, encode the
whole embedded Shakespeare corpus with both and with npgpt, and decode HF's ids back. Prints
whether the ids and the text agree, and how long each side took (on a shared machine: the
times are indicative only). Exit code 1 if any tokenizer disagrees. The tests run the same
comparison on part of the held-out plays (tests/tokenizers/test_hf_export.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizers", default="bpe,gpt2,cl100k_base,char")
    args = ap.parse_args(argv)
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from npgpt import tokenizers
    from npgpt.data import shakespeare_text
    from npgpt.tokenizers.hf import TOKENIZER_JSON, save_pretrained_tokenizer

    text = shakespeare_text("all")
    print(f"corpus: {len(text):,} characters, {len(text.encode('utf-8')):,} bytes")
    failed = False
    for name in args.tokenizers.split(","):
        if name == "bpe":
            tok = tokenizers.get("bpe:4096", text=text[:1_000_000])
        elif name == "char":
            tok = tokenizers.get("char", text=text)
        else:
            tok = tokenizers.get(name)
        with tempfile.TemporaryDirectory() as folder:
            save_pretrained_tokenizer(tok, folder)
            hf = Tokenizer.from_file(os.path.join(folder, TOKENIZER_JSON))
            auto = AutoTokenizer.from_pretrained(folder)
            t0 = time.perf_counter()
            ours = list(tok.encode(text))
            t1 = time.perf_counter()
            theirs = hf.encode(text).ids
            t2 = time.perf_counter()
            auto_ids = auto(text)["input_ids"]
            same = ours == theirs == auto_ids
            back = hf.decode(theirs) == text
        failed |= not (same and back)
        print(f"{name:12s} {len(ours):>10,} ids  ids equal: {same}  text back: {back}  "
              f"npgpt {t1 - t0:6.1f} s  tokenizers {t2 - t1:6.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
