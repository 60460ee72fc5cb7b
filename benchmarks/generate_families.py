"""The model families of bench_generate.py at their real smallest shapes, random weights.

Each shape is the published config.json of the smallest model of its family (sizes only: the
weights are drawn at random, so no download is needed). The directory is written once by
transformers in bfloat16, as the Hub's files are, under ``--cache-dir``; both systems load it
the way a user would (npgpt widens to float32, transformers is asked for float32), so the
load time is measured on the same files.
"""
from __future__ import annotations

import os
import time

FAMILIES = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0,
                         max_position_embeddings=8192, rms_norm_eps=1e-5),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, tie_word_embeddings=True, rope_theta=1000000.0,
                         max_position_embeddings=32768, rms_norm_eps=1e-6,
                         use_sliding_window=False, sliding_window=32768, max_window_layers=21),
    "qwen3-0.6b": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, vocab_size=151936, tie_word_embeddings=True,
                       rope_theta=1000000.0, max_position_embeddings=40960, rms_norm_eps=1e-6),
    "gemma3-270m": dict(model_type="gemma3_text", hidden_size=640, intermediate_size=2048,
                        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                        head_dim=256, vocab_size=262144, query_pre_attn_scalar=256,
                        sliding_window=512, sliding_window_pattern=6, rope_theta=1000000.0,
                        rope_local_base_freq=10000.0, max_position_embeddings=32768,
                        rms_norm_eps=1e-6, tie_word_embeddings=True),
    "llama3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                        head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                        rope_theta=500000.0, max_position_embeddings=131072, rms_norm_eps=1e-5,
                        rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192}),
}


def directory(name: str, cache_dir: str) -> str:
    """The random-weight bfloat16 directory of family ``name`` (written on first use)."""
    path = os.path.join(cache_dir, name)
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    import torch
    import transformers
    fields = dict(FAMILIES[name])
    kind = fields.pop("model_type")
    config = transformers.AutoConfig.for_model(kind, **fields, bos_token_id=None,
                                               eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    model = transformers.AutoModelForCausalLM.from_config(config)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    model.save_pretrained(path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def npgpt_family_decoder(name: str, cache_dir: str, quantize: str | None = None):
    """npgpt: from_pretrained (timed; ``quantize="int8"``: its weights int8 as they load),
    then GPT.generate with its KV cache, greedy."""
    import npgpt
    from bench_generate import step_weight_bytes

    path = directory(name, cache_dir)
    t0 = time.perf_counter()
    model = npgpt.GPT.from_pretrained(path, quantize=quantize).eval()
    load = time.perf_counter() - t0

    def run(prompt, n_new):
        stamps = []
        t0 = time.perf_counter()
        out = model.generate(prompt, n_new, temperature=0,
                             on_token=lambda _: stamps.append(time.perf_counter()))
        return out, stamps[0] - t0, stamps[-1] - stamps[0]
    return run, step_weight_bytes(model), load


def torch_family_decoder(name: str, cache_dir: str):
    """transformers on PyTorch: AutoModelForCausalLM.from_pretrained in float32 (timed), sdpa
    attention (its default), then model.generate, greedy; a streamer stamps each token."""
    import torch
    import transformers

    path = directory(name, cache_dir)
    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load = time.perf_counter() - t0

    class Stamps(transformers.generation.streamers.BaseStreamer):
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    def run(prompt, n_new):
        stamps = Stamps()
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model.generate(torch.from_numpy(prompt), do_sample=False, max_new_tokens=n_new,
                                 min_new_tokens=n_new, pad_token_id=0, streamer=stamps)
        t = stamps.times[1:]                    # the first put is the prompt itself
        return out.numpy(), t[0] - t0, t[-1] - t[0]
    # every weight is read per step (the tied embedding table as the head)
    weights = sum(p.numel() * 4 for p in model.parameters())
    return run, weights, load
