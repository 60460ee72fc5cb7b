"""Tokenizer benchmark: BPE training vs HuggingFace `tokenizers` and a pure-Python trainer,
encoding vs tiktoken.  Prints both sides and the ratio.  Peers are skipped when not installed.

    python benchmarks/bench_tokenizers.py [--vocab-size 4096] [--baseline-kb 256] [--repeat 3]
    python benchmarks/bench_tokenizers.py --long-only      # one 100k-character piece vs tiktoken
    python benchmarks/bench_tokenizers.py --fresh-train    # first train call, each side fresh
    python benchmarks/bench_tokenizers.py --fresh-train --hf-feed one   # HF given one string
    python benchmarks/bench_tokenizers.py --unique-words   # 900k distinct words, 1 thread
"""
import argparse
import collections
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time

import regex

from npgpt.data import shakespeare_text
from npgpt.tokenizers import ByteBPE, bytebpe, ranks
from npgpt.tokenizers.patterns import GPT4_PATTERN
from npgpt.tokenizers.ranks import offline_encoding_spec
from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding


FRESH = """
import time
t = time.perf_counter()
from npgpt.data import shakespeare_text
from npgpt.tokenizers import ByteBPE
text = shakespeare_text("all")
t0 = time.perf_counter()
tok = ByteBPE.from_tiktoken("cl100k_base")
t1 = time.perf_counter()
tok.encode_ordinary(text)
t2 = time.perf_counter()
tok.encode_ordinary(text)
t3 = time.perf_counter()
mb = len(text.encode("utf-8")) / 1e6
print(f"from_tiktoken {t1 - t0:.2f} s, first encode {t2 - t1:.2f} s ({mb / (t2 - t1):.1f} MB/s, "
      f"loading numba included), second {t3 - t2:.2f} s ({mb / (t3 - t2):.1f} MB/s)")
"""


# The corpus is read from a file, so each side's clock starts before it imports anything of
# its own: npgpt pays ``import npgpt`` (NumPy included) and numba, HF pays ``import tokenizers``.
FRESH_TRAIN = {
    "npgpt": """
import sys, time
text = open(sys.argv[1], encoding="utf-8").read()
t = time.perf_counter()
from npgpt.tokenizers import ByteBPE
ByteBPE.train(text, int(sys.argv[2]))
print(time.perf_counter() - t)
""",
    "HF tokenizers": """
import re, sys, time
{hf_feed}
GPT4_PATTERN = {pattern}
text = open(sys.argv[1], encoding="utf-8").read()
t = time.perf_counter()
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]), show_progress=False,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(hf_feed(text, sys.argv[3]), trainer)
print(time.perf_counter() - t)
"""}


def hf_feed(text, how="batches"):
    """The corpus as HF ``tokenizers`` is meant to be fed (its "Training from memory" guide:
    an iterator of texts, best in batches), so its trainer pre-tokenizes and counts on all
    its threads; one string keeps it on one thread.  The text is cut after each newline that
    a non-space character follows: the GPT-2/GPT-4 patterns end a piece there, so the pieces
    HF counts are exactly the pieces npgpt counts.  ``how``: "batches" (lists of 1,000 lines,
    the guide's batch iterator), "lines" (one line at a time) or "one" (a single string)."""
    if how == "one":
        return [text]
    lines = re.split(r"(?<=\n)(?=\S)", text)
    if how == "lines":
        return lines
    return (lines[i:i + 1000] for i in range(0, len(lines), 1000))


FEW_REPEATS = """
import random, sys, time
if sys.argv[2] == "unique":
    rng = random.Random(0)
    words = set()
    while len(words) < 900_000:
        words.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10))))
    text = " ".join(sorted(sorted(words), key=lambda w: rng.random()))
else:
    from npgpt.data import shakespeare_text
    text = shakespeare_text("all")
if sys.argv[1] == "npgpt":
    from npgpt.tokenizers import ByteBPE
    enc = ByteBPE.from_tiktoken("cl100k_base")
    enc._encode_fast("warm up")  # the numba kernels loaded
else:
    from npgpt.tokenizers.tiktoken_adapter import tiktoken_encoding
    enc = tiktoken_encoding()
t = time.perf_counter()
enc.encode_ordinary(text)
print(len(text.encode("utf-8")) / 1e6 / (time.perf_counter() - t))
"""


def unique_words(args):
    """cl100k encoding of text with few repeats (900k distinct random words, so no piece
    repeats), and beside it the repetitive corpus, one thread, each side in its own process,
    taking turns, medians."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    for kind, what in (("unique", "encode 900k unique words, 1 thread"),
                       ("corpus", "encode Shakespeare 5 MB, 1 thread")):
        speeds = {"npgpt": [], "tiktoken": []}
        for _ in range(args.repeat):
            for name in speeds:
                out = subprocess.run([sys.executable, "-c", FEW_REPEATS, name, kind],
                                     capture_output=True, text=True, check=True, env=env)
                speeds[name].append(float(out.stdout.split()[-1]))
        med = {k: sorted(v)[len(v) // 2] for k, v in speeds.items()}
        row(what, med["npgpt"], med["tiktoken"], "tiktoken", unit="MB/s")
        rounds(speeds)


def rounds(values):
    """Each round's figures and ratio (the machine's noise shows in their spread)."""
    (a, xs), (b, ys) = values.items()
    print(f"    rounds {a}: {' '.join(f'{x:.2f}' for x in xs)}; {b}: {' '.join(f'{y:.2f}' for y in ys)}; "
          f"ratios {' '.join(f'{x / y:.2f}' for x, y in zip(xs, ys))}")


def fresh_train(args):
    """The first train call of a fresh process (numba's cache on disk; each side's imports
    included), the two systems taking turns (the first of a round alternating), medians.
    Both sides get two threads; HF is fed as ``--hf-feed`` says (batches of lines)."""
    env = dict(os.environ, RAYON_NUM_THREADS="2", NUMBA_NUM_THREADS="2")
    text = shakespeare_text("all")
    for size in (1_000_000, 10**9):
        times = {name: [] for name in FRESH_TRAIN}
        cpu = {name: [] for name in FRESH_TRAIN}    # the whole process's, both threads
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as corpus:
            corpus.write(text[:size])
            corpus.flush()
            for r in range(args.repeat):
                order = list(FRESH_TRAIN.items())
                for name, code in order[::-1] if r % 2 else order:   # who goes first alternates
                    code = code.replace("{hf_feed}", inspect.getsource(hf_feed))
                    code = code.replace("{pattern}", repr(GPT4_PATTERN))
                    before = _children_cpu()
                    out = subprocess.run([sys.executable, "-c", code, corpus.name,
                                          str(args.vocab_size), args.hf_feed],
                                         capture_output=True, text=True, check=True, env=env)
                    times[name].append(float(out.stdout.split()[-1]))
                    cpu[name].append(_children_cpu() - before)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        what = "1 MB" if size < 10**9 else "full corpus"
        row(f"first train {args.vocab_size}, {what}, 2 thr", med["npgpt"], med["HF tokenizers"],
            "HF tokenizers")
        rounds(times)
        print("    CPU time of each whole process (interpreter start and reading included), "
              "medians: " + ", ".join(f"{k} {sorted(v)[len(v) // 2]:.2f} s" for k, v in cpu.items()))
        print(f"    load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def long_pieces(args):
    """One pre-split piece of 100k characters (the worst case: BPE inside one piece), npgpt's
    regex + Python path and its numba path against tiktoken, taking turns."""
    import random
    rng = random.Random(0)
    runs = {"'a' * 100k": "a" * 100_000, "spaces": " " * 100_000,
            "DNA": "".join(rng.choice("ACGT") for _ in range(100_000)),
            "minified JS": "".join(rng.choice("(){};=+-*/<>!&|,.[]") for _ in range(100_000))}
    ours = ByteBPE.from_tiktoken("cl100k_base")
    enc = tiktoken_encoding()
    ours._encode_fast("warm up")
    for name, text in runs.items():
        t_py, t_fast, t_tk = [], [], []
        for _ in range(args.repeat):
            for out, fn in ((t_py, lambda: [ours._encode_piece(p.encode()) for p in ours._split.findall(text)]),
                            (t_fast, lambda: ours._encode_fast(text)),
                            (t_tk, lambda: enc.encode_ordinary(text))):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        med = [sorted(x)[len(x) // 2] for x in (t_py, t_fast, t_tk)]
        row(f"encode 100k {name}, numba", med[1], med[2], "tiktoken")
        row(f"encode 100k {name}, Python heap", med[0], med[2], "tiktoken")


def median_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], result


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def naive_train(text, vocab_size):
    """The straightforward trainer: recount every pair of every chunk after each merge."""
    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT4_PATTERN, text)]
    for new in range(256, vocab_size):
        stats = collections.Counter()
        for ids in chunks:
            stats.update(zip(ids, ids[1:]))
        if not stats:
            break
        pair = max(stats, key=stats.get)
        for ids in chunks:
            i = 0
            while i < len(ids) - 1:
                if ids[i] == pair[0] and ids[i + 1] == pair[1]:
                    ids[i:i + 2] = [new]
                i += 1


def hf_train(text, vocab_size, how="batches"):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(hf_feed(text, how), trainer)
    return tok


def row(what, ours, peer, peer_name, unit="s"):
    if unit == "s":
        print(f"{what:38s} npgpt {ours:8.3f} s   {peer_name} {peer:8.3f} s   "
              f"npgpt/peer {ours / peer:6.3f} (peer/npgpt {peer / ours:7.1f}x)")
    else:
        print(f"{what:38s} npgpt {ours:8.2f} MB/s {peer_name} {peer:8.2f} MB/s "
              f"npgpt/peer {ours / peer:6.2f}")


def train_comparisons(text, args):
    ours_train, _ = best_of(lambda: ByteBPE.train(text, args.vocab_size), args.repeat)
    try:
        hf_time, _ = best_of(lambda: hf_train(text, args.vocab_size, args.hf_feed), args.repeat)
        row(f"train {args.vocab_size} vocab, full corpus", ours_train, hf_time, "HF tokenizers")
    except ImportError:
        print(f"train {args.vocab_size} vocab, full corpus: npgpt {ours_train:.3f} s (HF tokenizers not installed)")

    small = text[:args.baseline_kb * 1000]
    ours_small, _ = best_of(lambda: ByteBPE.train(small, args.baseline_vocab), args.repeat)
    naive, _ = best_of(lambda: naive_train(small, args.baseline_vocab), 1)
    row(f"train {args.baseline_vocab} vocab, {args.baseline_kb} kB", ours_small, naive, "pure Python")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--baseline-kb", type=int, default=256, help="corpus slice for the naive trainer")
    ap.add_argument("--baseline-vocab", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--encode-only", action="store_true", help="skip the training comparisons")
    ap.add_argument("--long-only", action="store_true", help="only the one-long-piece rows")
    ap.add_argument("--fresh-train", action="store_true", help="only the first-train-call rows")
    ap.add_argument("--unique-words", action="store_true", help="only the few-repeats encode row")
    ap.add_argument("--hf-feed", choices=["batches", "lines", "one"], default="batches",
                    help="how HF tokenizers gets the corpus (see hf_feed); 'one' is a single "
                    "string, which keeps its trainer on one thread")
    args = ap.parse_args()
    if args.long_only or args.fresh_train or args.unique_words:
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        (long_pieces if args.long_only else unique_words if args.unique_words else fresh_train)(args)
        return

    text = shakespeare_text("all")
    mb = len(text.encode("utf-8")) / 1e6
    print(f"corpus: Shakespeare, {mb:.2f} MB, pattern gpt4, vocab {args.vocab_size}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    t = time.perf_counter()
    ByteBPE.train(text[:20000], 300)  # load (or compile, first time ever) the numba kernels
    print(f"numba kernels load/compile: {time.perf_counter() - t:.2f} s (once per process)")
    if args.encode_only:
        tok = ByteBPE.train(text, args.vocab_size)
    else:
        train_comparisons(text, args)
        tok = ByteBPE.train(text, args.vocab_size)
    enc = tiktoken_encoding()
    spec = offline_encoding_spec("cl100k_base")
    recover, _ = median_of(lambda: ranks.recover_merges(spec["mergeable_ranks"]), 1)
    ByteBPE.from_tiktoken("cl100k_base")  # writes the merge cache if it is not there yet
    cached, cl = median_of(lambda: (ranks._MERGES.clear(), ByteBPE.from_tiktoken("cl100k_base"))[1],
                           args.repeat)
    print(f"from_tiktoken cl100k_base: recovering the merges {recover:.2f} s, "
          f"with the disk cache {cached:.2f} s")
    fresh = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    print("fresh process, cl100k_base: " + fresh.stdout.strip())

    for name, ours in (("cl100k_base", cl), (f"trained {args.vocab_size}", tok)):
        ours.encode_ordinary(text)  # kernels loaded
        fast, _ = median_of(lambda o=ours: o.encode_ordinary(text), args.repeat)
        limits = bytebpe._FAST_MIN_CHARS, bytebpe._FAST_COLD_MIN_CHARS
        bytebpe._FAST_MIN_CHARS = bytebpe._FAST_COLD_MIN_CHARS = float("inf")
        try:  # the regex.findall + piece cache path (other patterns take it)
            slow, _ = median_of(lambda o=ours: (o._cache.clear(), o.encode_ordinary(text)), args.repeat)
        finally:
            bytebpe._FAST_MIN_CHARS, bytebpe._FAST_COLD_MIN_CHARS = limits
        print(f"encode {name}: one-call numba {mb / fast:.2f} MB/s, "
              f"regex + piece cache {mb / slow:.2f} MB/s (medians of {args.repeat})")
    tk, _ = median_of(lambda: enc.encode_ordinary(text), args.repeat)
    ours_cl, _ = median_of(lambda: cl.encode_ordinary(text), args.repeat)
    row("encode cl100k_base, 1 thread", mb / ours_cl, mb / tk, "tiktoken", unit="MB/s")


if __name__ == "__main__":
    main()
