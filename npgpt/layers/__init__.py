"""Layers: each a class with an explicit forward and backward (see ``npgpt.module``)."""
from ..kernels import erf
from .attention import CrossAttention, MultiHeadAttention
from .dropout import Dropout
from .embedding import Embedding, LearnedPositionalEmbedding
from .ffn import GELU, MLP, GeGLU, ReLU, ReLUSquared, SiLU, SwiGLU, sigmoid
from .kv_cache import KVCache
from .linear import Linear
from .loss import CrossEntropyLoss, log_softmax, softmax
from .norm import BatchNorm, LayerNorm, RMSNorm
from .positional import SinusoidalPositionalEncoding, sinusoidal_table
from .rope import RotaryEmbedding
from .sdpa import ScaledDotProductAttention
from .softcap import SoftCap

__all__ = [
    "Linear", "Embedding", "LearnedPositionalEmbedding", "SinusoidalPositionalEncoding",
    "sinusoidal_table", "LayerNorm", "RMSNorm", "BatchNorm", "ReLU", "ReLUSquared", "GELU", "SiLU",
    "MLP", "SwiGLU", "GeGLU", "erf", "sigmoid", "Dropout", "CrossEntropyLoss", "softmax",
    "log_softmax",
    "ScaledDotProductAttention", "MultiHeadAttention", "CrossAttention", "KVCache",
    "RotaryEmbedding", "SoftCap",
]
