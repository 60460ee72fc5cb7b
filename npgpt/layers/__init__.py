"""Layers: each a class with an explicit forward and backward (see ``npgpt.module``)."""
from .dropout import Dropout
from .embedding import Embedding, LearnedPositionalEmbedding
from .ffn import GELU, MLP, ReLU, SiLU, SwiGLU, erf, sigmoid
from .linear import Linear
from .loss import CrossEntropyLoss, log_softmax, softmax
from .norm import BatchNorm, LayerNorm, RMSNorm
from .positional import SinusoidalPositionalEncoding, sinusoidal_table

__all__ = [
    "Linear", "Embedding", "LearnedPositionalEmbedding", "SinusoidalPositionalEncoding",
    "sinusoidal_table", "LayerNorm", "RMSNorm", "BatchNorm", "ReLU", "GELU", "SiLU", "MLP",
    "SwiGLU", "erf", "sigmoid", "Dropout", "CrossEntropyLoss", "softmax", "log_softmax",
]

# attention.py and rope.py are written alongside; export them once they exist
try:
    from .attention import (
        CrossAttention,
        KVCache,
        MultiHeadAttention,
        ScaledDotProductAttention,
    )
    from .rope import RotaryEmbedding
except ImportError:
    pass
else:
    __all__ += ["ScaledDotProductAttention", "MultiHeadAttention", "CrossAttention", "KVCache",
                "RotaryEmbedding"]
