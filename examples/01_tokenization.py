"""Tokenization, the seed's first section: one English and one Chinese sentence through a char
tokenizer, the classic word BPE with </w>, a byte-level BPE trained here, and GPT-4's cl100k_base.

    python examples/01_tokenization.py
"""
from npgpt.data import shakespeare_text
from npgpt.tokenizers import ByteBPE, CharTokenizer, ClassicBPE, get

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "我爱自然语言处理。"]


def show(name, tok, text):
    try:
        ids = tok.encode(text)
    except Exception as e:  # the char and classic tokenizers refuse characters they never saw
        print(f"  {name:22s} cannot encode: {e}")
        return
    # classic BPE shows its symbols (with </w>); the others the text of each token
    pieces = tok.tokenize(text) if hasattr(tok, "tokenize") else [tok.decode([i]) for i in ids]
    print(f"  {name:22s} {len(ids):3d} tokens  {ids[:12]}{' ...' if len(ids) > 12 else ''}")
    print(f"  {'':22s} pieces: {' | '.join(map(repr, pieces))}")


def main():
    corpus = shakespeare_text("all")[:300_000] + "\n" + "\n".join(SENTENCES)
    print(f"training corpus: {len(corpus):,} characters of Shakespeare (+ the two sentences)\n")

    char = CharTokenizer.train(corpus)
    classic = ClassicBPE.train(corpus[:60_000] + " ".join(SENTENCES), 200)
    print("classic BPE, the first merges (pairs of symbols, </w> ends a word):")
    for a, b in classic.merges[:8]:
        print(f"  {a!r} + {b!r} -> {a + b!r}")
    byte_bpe = ByteBPE.train(corpus, 1024, pattern="gpt4")
    cl100k = get("cl100k_base")
    print(f"\nvocabulary sizes: char {char.vocab_size}, classic {classic.vocab_size}, "
          f"byte BPE {byte_bpe.vocab_size}, cl100k_base {cl100k.vocab_size}\n")

    for text in SENTENCES:
        print(f"{text!r}  ({len(text)} characters, {len(text.encode('utf-8'))} UTF-8 bytes)")
        show("char", char, text)
        show("classic BPE (</w>)", classic, text)
        show("byte BPE 1024", byte_bpe, text)
        show("cl100k_base", cl100k, text)
        print()
    print("byte-level BPE never fails: a character it never merged is still its UTF-8 bytes, and")
    print("decoding part of a character gives U+FFFD:", repr(byte_bpe.decode(byte_bpe.encode("爱")[:1])))


if __name__ == "__main__":
    main()
