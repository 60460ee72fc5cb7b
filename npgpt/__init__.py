"""npgpt: a transformer language-model toolkit in NumPy, every backward written by hand."""
from . import errors
from .module import Module, ModuleList, Parameter, no_grad
from .gradcheck import gradcheck

__version__ = "0.1.0"

__all__ = ["errors", "Module", "ModuleList", "Parameter", "no_grad", "gradcheck", "__version__"]
