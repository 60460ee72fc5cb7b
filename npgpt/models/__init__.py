from .gpt import GPT, GPTConfig, PRESETS, count_params, params_formula

__all__ = ["GPT", "GPTConfig", "PRESETS", "count_params", "params_formula"]
from .seq2seq import Seq2SeqConfig, Transformer

__all__ += ["Seq2SeqConfig", "Transformer"]
from .classifier import TextClassifier

__all__ += ["TextClassifier"]
