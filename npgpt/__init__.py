"""npgpt: a transformer language-model toolkit in NumPy, every backward written by hand.

    import npgpt
    run = npgpt.train(max_steps=500, out_dir="out")    # what `npgpt train` does
    npgpt.sample(ckpt="out", prompt="ROMEO:")          # `npgpt sample`
    npgpt.eval(ckpt="out")                             # `npgpt eval`
    npgpt.tokenizers.get("gpt2")                       # every subpackage, loaded on first use

The training and sampling functions and the subpackages (``npgpt.tokenizers``,
``npgpt.optim``, ``npgpt.data``, ...) are loaded when first used, so ``import npgpt`` costs
NumPy and the model code only.
"""
from . import runtime  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads)
from . import errors
from .module import Module, ModuleList, Parameter, no_grad
from .gradcheck import gradcheck
from .adapters import from_pretrained
from .hf import save_pretrained
from . import generate as _generate  # noqa: F401  (GPT.generate)
from .models import GPT, GPTConfig, count_params
from .models.classifier import TextClassifier as _TextClassifier
from .models.seq2seq import Transformer as _Transformer


def _run_with_cache(self, *args, **kwargs):
    """(logits, Cache) of one forward with the activations by name: see npgpt.glassbox.
    Importing npgpt.glassbox (here, at the first call) installs the method itself; it is not
    imported with npgpt because it loads the numba kernels."""
    from . import glassbox  # noqa: F401  (replaces this method on the three classes)
    return type(self).run_with_cache(self, *args, **kwargs)


for _cls in (GPT, _Transformer, _TextClassifier):
    if "run_with_cache" not in vars(_cls):     # (npgpt.glassbox already imported: keep it)
        _cls.run_with_cache = _run_with_cache
del _cls

__version__ = "0.1.0"

# attribute -> the module that defines it, imported on first use (module __getattr__). A
# submodule never shares a name with these: importing it would replace the attribute.
_LAZY = {"train": "run", "Run": "run", "sample": "infer", "eval": "infer",
         "TrainConfig": "train_config", "Trainer": "trainer"}

__all__ = ["errors", "Module", "ModuleList", "Parameter", "no_grad", "gradcheck", "GPT", "GPTConfig",
           "count_params", "from_pretrained", "save_pretrained", "train", "sample",
           "__version__"]            # (eval left out: a star import would shadow eval())


def __getattr__(name: str):
    """``npgpt.train`` and friends from ``_LAZY``, and any subpackage or module
    (``npgpt.tokenizers``, ``npgpt.optim``, ``npgpt.data``, ...) by its name."""
    import importlib.util
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    import pkgutil
    return sorted({*globals(), *_LAZY, *(m.name for m in pkgutil.iter_modules(__path__))})
