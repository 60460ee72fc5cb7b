"""``npgpt tokenizer train | encode | inspect``: added to the main parser by npgpt/cli.py.

    npgpt tokenizer train --data shakespeare --vocab-size 4096 --out tok.bpe
    npgpt tokenizer encode --tokenizer tok.bpe "To be, or not to be"
    npgpt tokenizer inspect --tokenizer tok.bpe
"""
import sys
import time

from ..errors import NpgptError, describe


def corpus_text(data):
    """``shakespeare`` (the embedded corpus) or the path of a UTF-8 text file."""
    if data == "shakespeare":
        from ..data import shakespeare_text
        return shakespeare_text("all")
    with open(data, encoding="utf-8") as f:
        return f.read()


def _train(args):
    from .bytebpe import ByteBPE
    from .classic import ClassicBPE
    from .char import CharTokenizer
    from ..errors import ConfigError
    if args.vocab_size < 1:
        raise ConfigError(f"--vocab-size={args.vocab_size} must be a positive integer")
    if args.pattern is not None and args.kind != "bpe":
        raise ConfigError(f"--pattern applies to --kind bpe, not {args.kind}")
    args.pattern = "gpt4" if args.pattern is None else args.pattern
    specials = args.special or []
    if "" in specials:
        raise ConfigError("--special '' is empty: a special token needs text")
    text = corpus_text(args.data)
    start = time.perf_counter()
    if args.kind == "bpe":
        tok = ByteBPE.train(text, args.vocab_size, pattern=None if args.pattern == "none" else args.pattern,
                            special_tokens=specials, verbose=True)
    elif args.kind == "classic":
        tok = ClassicBPE.train(text, args.vocab_size, special_tokens=specials)
    else:
        tok = CharTokenizer.train(text, special_tokens=specials)
    tok.save(args.out)
    print(f"trained {tok.name} (vocab {tok.vocab_size}) on {len(text.encode('utf-8')) / 1e6:.2f} MB "
          f"in {time.perf_counter() - start:.2f} s -> {args.out}")
    return 0


def _piece(tok, i):
    """A token as readable text: bytes that are not printable are shown as \\xNN once."""
    if hasattr(tok, "id_to_piece"):
        return tok.id_to_piece(i)
    return repr(tok.decode([i]))[1:-1]


def _encode(args):
    from . import get
    tok = get(args.tokenizer)
    text = " ".join(args.text) if args.text else sys.stdin.read()
    ids = tok.encode(text, allowed_special="all")
    print(" ".join(map(str, ids)))
    print(" | ".join(_piece(tok, i) for i in ids))
    print(f"{len(ids)} tokens, {len(text)} characters, {len(text.encode('utf-8'))} bytes")
    return 0


def _inspect(args):
    from . import get
    if args.n < 1:
        from ..errors import ConfigError
        raise ConfigError(f"-n={args.n} must be a positive integer")
    tok = get(args.tokenizer)
    print(f"{tok.name}: {type(tok).__name__}, vocab {tok.vocab_size}, "
          f"special tokens {tok.special_tokens or 'none'}")
    merges = getattr(tok, "merges", None)
    if merges:
        print(f"first {min(args.n, len(merges))} merges:")
        for rank, m in enumerate(merges[:args.n]):
            if len(m) == 3:  # ByteBPE: (a, b, new id)
                a, b, n = m
                print(f"  {rank:5d}: {_piece(tok, a)!r} + {_piece(tok, b)!r} -> {_piece(tok, n)!r} ({n})")
            else:
                print(f"  {rank:5d}: {m[0]!r} + {m[1]!r} -> {m[0] + m[1]!r}")
    vocab = getattr(tok, "vocab", None)
    if vocab:
        longest = sorted(vocab, key=lambda i: (-len(vocab[i]), i))[:args.n]
        print(f"longest {len(longest)} tokens:")
        for i in longest:
            print(f"  {i:6d}: {_piece(tok, i)!r} ({len(vocab[i])} bytes)")
    return 0


def add_tokenizer_parser(subparsers):
    """Add ``tokenizer`` with its train / encode / inspect sub-commands; each sets ``func``
    to a handler ``func(args) -> exit code``."""
    p = subparsers.add_parser("tokenizer", help="train, apply and inspect tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = sub.add_parser("train", help="train a tokenizer on a corpus and save it")
    t.add_argument("--data", default="shakespeare", help="'shakespeare' or a UTF-8 text file")
    t.add_argument("--vocab-size", type=int, default=4096,
                   help="vocabulary size (bpe) or number of merges (classic)")
    t.add_argument("--kind", choices=["bpe", "classic", "char"], default="bpe")
    t.add_argument("--pattern", default=None,
                   help="pre-split: gpt4 (default), gpt2, none or a regex (--kind bpe)")
    t.add_argument("--special", action="append", help="a special token (repeatable)")
    t.add_argument("--out", required=True, help="where to write the tokenizer file")
    t.set_defaults(func=_guard(_train))

    e = sub.add_parser("encode", help="print the ids and pieces of a text")
    e.add_argument("--tokenizer", default="cl100k_base", help="a name (cl100k_base, gpt2) or a file")
    e.add_argument("text", nargs="*", help="the text (stdin when absent)")
    e.set_defaults(func=_guard(_encode))

    i = sub.add_parser("inspect", help="show the first merges and the longest tokens")
    i.add_argument("--tokenizer", default="cl100k_base")
    i.add_argument("-n", type=int, default=20, help="how many merges / tokens to show")
    i.set_defaults(func=_guard(_inspect))
    return p


def _guard(handler):
    def run(args):
        try:
            return handler(args)
        except (NpgptError, OSError, UnicodeDecodeError) as e:
            print(f"npgpt tokenizer: error: {describe(e)}", file=sys.stderr)
            return 2           # as every npgpt command: one line, exit 2
    return run


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="npgpt")
    add_tokenizer_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
