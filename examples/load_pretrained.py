"""Load a HuggingFace directory and generate, showing the top-5 next tokens: GPT-2, Llama
(1, 2, 3.x), Mistral, Qwen2 / 2.5, Qwen3, SmolLM2 / 3 or Gemma 3 text.

    python examples/load_pretrained.py path/to/Qwen3-0.6B --prompt "Hello, I am" --steps 20
    python examples/load_pretrained.py --demo        # no download: a small random checkpoint
    python examples/load_pretrained.py --demo gemma3_text   # ... of another family

Every step is the seed's "logits -> softmax with temperature" made visible: the logits of the
last position become probabilities, the five most likely tokens are printed, and one is
chosen (greedy with --temperature 0). The KV cache means each step feeds only the new token.

--demo (or no path) builds a small random npgpt model of a family (LLaMA-style by default),
writes it with ``save_pretrained`` into a temporary directory (config.json says its
model_type) and loads it back with ``from_pretrained``: the same files transformers reads.
Its tokens are bytes, so the text is gibberish; the numbers are the point.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from npgpt.generate import sample_next, softmax_with_temperature
from npgpt.hf import from_pretrained, load_tokenizer, save_pretrained
from npgpt.hf_config import model_type
from npgpt.models import GPT, GPTConfig
from npgpt.module import no_grad


class Bytes:
    """Token id = byte value: the demo model's stand-in tokenizer."""

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="backslashreplace")


# what each family sets beyond a LLaMA decoder (npgpt.hf_config maps config.json onto these)
DEMO_FAMILIES = {
    "llama": dict(tie_embeddings=False),
    "llama3": dict(rope_theta=500000.0, rope_scaling="llama3", rope_factor=32.0,
                   rope_original_context=64),
    "qwen2": dict(qkv_bias=True, tie_embeddings=False),
    "qwen3": dict(qk_norm=True, head_dim=32),
    "smollm3": dict(rope_layers="10"),
    "gemma3_text": dict(mlp="geglu", qk_norm=True, norm_plus_one=True, sandwich_norm=True,
                        embed_scale=True, attn_scalar=32.0, head_dim=32, sliding_window=8,
                        layer_types="sf", rope_local_theta=10000.0, rope_theta=1e6),
}


def demo_checkpoint(directory: Path, family: str) -> Path:
    fields = dict(vocab_size=256, block_size=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                  pos="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=172, bias=False,
                  init_std=0.1)
    config = GPTConfig(**{**fields, **DEMO_FAMILIES[family]})
    path = save_pretrained(GPT(config, seed=0), directory / f"demo-{family}")
    print(f"wrote a random {config.n_layer}-layer {model_type(config)} checkpoint: "
          f"{', '.join(sorted(p.name for p in path.iterdir()))}")
    return path


def show(tok, i):
    return repr(tok.decode([int(i)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", help="a HuggingFace model directory")
    parser.add_argument("--demo", nargs="?", const="llama", choices=sorted(DEMO_FAMILIES),
                        help="use a small random checkpoint of this family (default llama)")
    parser.add_argument("--prompt", default="The meaning of life is")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo or (None if args.path else "llama")
        path = demo_checkpoint(Path(tmp), demo) if demo else Path(args.path)
        model = from_pretrained(path).eval()
        c = model.config
        print(f"loaded {path.name} ({model_type(c)}): {model.num_parameters():,} parameters, "
              f"L={c.n_layer} H={c.n_head} Hkv={c.n_kv_head} hs={c.head_size} C={c.n_embd} "
              f"V={c.vocab_size}, pos={c.pos}, norm={c.norm}, mlp={c.mlp}")
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
