"""npgpt: a transformer language-model toolkit in NumPy, every backward written by hand."""
from . import runtime  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads)
from . import errors
from .module import Module, ModuleList, Parameter, no_grad
from .gradcheck import gradcheck
from .adapters import from_pretrained
from .hf import save_pretrained
from . import generate as _generate  # noqa: F401  (GPT.generate)
from . import glassbox as _glassbox  # noqa: F401  (GPT.run_with_cache)
from .models import GPT, GPTConfig, count_params

__version__ = "0.1.0"

__all__ = ["errors", "Module", "ModuleList", "Parameter", "no_grad", "gradcheck", "GPT", "GPTConfig",
           "count_params", "from_pretrained", "save_pretrained", "__version__"]
