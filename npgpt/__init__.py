"""npgpt: a transformer language-model toolkit in NumPy, every backward written by hand."""
import os as _os
import sys as _sys

# OpenBLAS's idle workers spin for a long while after each product, on the core numba's
# kernels need next (measured: small config 0.90 -> 0.79 s/step with a short timeout). It can
# only be set before NumPy loads its OpenBLAS; a value the user set is kept.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
from . import errors
from .module import Module, ModuleList, Parameter, no_grad
from .gradcheck import gradcheck
from .hf import from_pretrained, save_pretrained
from .models import GPT, GPTConfig, count_params

__version__ = "0.1.0"

__all__ = ["errors", "Module", "ModuleList", "Parameter", "no_grad", "gradcheck", "GPT", "GPTConfig",
           "count_params", "from_pretrained", "save_pretrained", "__version__"]
