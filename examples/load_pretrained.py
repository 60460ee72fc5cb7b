"""Load a HuggingFace GPT-2 or LLaMA directory and generate, showing the top-5 next tokens.

    python examples/load_pretrained.py path/to/gpt2 --prompt "Hello, I am" --steps 20
    python examples/load_pretrained.py --demo        # no download: a small random checkpoint

Every step is the seed's "logits -> softmax with temperature" made visible: the logits of the
last position become probabilities, the five most likely tokens are printed, and one is
chosen (greedy with --temperature 0). The KV cache means each step feeds only the new token.

--demo (or no path) builds a small random LLaMA-style npgpt model, writes it with
``save_pretrained`` into a temporary directory and loads it back with ``from_pretrained``:
the same files transformers reads. Its tokens are bytes, so the text is gibberish; the
numbers are the point.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from npgpt.generate import sample_next, softmax_with_temperature
from npgpt.hf import from_pretrained, load_tokenizer, save_pretrained
from npgpt.models import GPT, GPTConfig
from npgpt.module import no_grad


class Bytes:
    """Token id = byte value: the demo model's stand-in tokenizer."""

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="backslashreplace")


def demo_checkpoint(directory: Path) -> Path:
    config = GPTConfig(vocab_size=256, block_size=128, n_layer=2, n_head=4, n_kv_head=2,
                       n_embd=64, pos="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=172,
                       bias=False, tie_embeddings=False, init_std=0.1)
    path = save_pretrained(GPT(config, seed=0), directory / "demo-llama")
    print(f"wrote a random {config.n_layer}-layer LLaMA-style checkpoint: "
          f"{', '.join(sorted(p.name for p in path.iterdir()))}")
    return path


def show(tok, i):
    return repr(tok.decode([int(i)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", help="a HuggingFace model directory")
    parser.add_argument("--demo", action="store_true", help="use a small random checkpoint")
    parser.add_argument("--prompt", default="The meaning of life is")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = demo_checkpoint(Path(tmp)) if args.demo or args.path is None else Path(args.path)
        model = from_pretrained(path).eval()
        c = model.config
        print(f"loaded {path.name}: {model.num_parameters():,} parameters, L={c.n_layer} "
              f"H={c.n_head} Hkv={c.n_kv_head} C={c.n_embd} V={c.vocab_size}, pos={c.pos}, "
              f"norm={c.norm}, mlp={c.mlp}")
        tok = load_tokenizer(path)
        if tok is None:
            if c.vocab_size > 256:
                raise SystemExit(f"{path} has no tokenizer.json / vocab.json + merges.txt")
            tok = Bytes()
        ids = tok.encode(args.prompt)
        if len(ids) + args.steps > c.block_size:
            raise SystemExit(f"prompt ({len(ids)} tokens) + {args.steps} steps > "
                             f"block_size={c.block_size}")
        rng = np.random.default_rng(args.seed)
        cache = model.new_kv_cache(1, len(ids) + args.steps)
        print(f"\nprompt: {args.prompt!r} -> {len(ids)} tokens {ids}")
        new = np.array([ids])
        with no_grad():
            for step in range(args.steps):
                logits, _ = model.forward(new, kv_cache=cache)       # only the new tokens
                last = logits[:, -1, :]
                probs = softmax_with_temperature(last, args.temperature or 1.0)[0]
                top = np.argsort(-probs)[:5]
                nxt = int(sample_next(last, rng, args.temperature)[0])
                ids.append(nxt)
                print(f"step {step:2d}: " + "  ".join(f"{show(tok, i)} {probs[i]:.3f}" for i in top)
                      + f"   -> {show(tok, nxt)}")
                new = np.array([[nxt]])
        print(f"\n{tok.decode(ids)!r}")


if __name__ == "__main__":
    main()
