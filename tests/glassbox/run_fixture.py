"""A tiny training run directory for the report's tests: six steps of a small char-level GPT,
with its metrics.jsonl, checkpoint and (unless asked not to) stats.jsonl every 2 steps and the
probe prompt's attention and logit lens at each evaluation (steps 3 and 6)."""
import numpy as np

from npgpt.models import GPT, GPTConfig
from npgpt.tokenizers.char import CharTokenizer
from npgpt.train_config import TrainConfig
from npgpt.trainer import Trainer

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\n" * 20
PROBE = "ROMEO: But, soft"


def train_tiny(out_dir, steps=6, stats=True):
    tokenizer = CharTokenizer.train(TEXT)
    ids = np.array(tokenizer.encode(TEXT), dtype=np.uint16)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2,
                       n_embd=16)
    train = TrainConfig(batch_size=4, block_size=16, max_steps=steps, warmup_steps=1,
                        eval_interval=3, eval_steps=2, log_interval=1, out_dir=str(out_dir),
                        progress=False, plot=False, stats_interval=2 if stats else 0,
                        probe_prompt=PROBE)
    Trainer(GPT(config, seed=0), ids, ids, train, tokenizer=tokenizer).train()
    return tokenizer, config


def make_run(out_dir, stats=True):
    train_tiny(out_dir, stats=stats)
    return out_dir
