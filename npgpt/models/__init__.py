from .gpt import GPT, GPTConfig, PRESETS, count_params, params_formula

__all__ = ["GPT", "GPTConfig", "PRESETS", "count_params", "params_formula"]
