"""numba for kernels that a short process loads from the cache: ``njit`` as numba's, cheaper
to start.

Two costs of numba's start that such a process (a tokenizer training) pays for nothing:

- Loading a cached kernel first "refreshes" numba's typing and lowering registries: it imports
  and registers every NumPy, list, dict and random implementation numba has (a fifth of a
  second), which only compiling uses.  Loading needs the runtime's allocator symbols alone, so
  the kernels made by this ``njit`` load with those; compiling still refreshes the registries
  itself (``compiler.compile_extra`` does), so a cache miss compiles as ever.
- Registering the NumPy implementations (on the first compile in a process) asks "is there a
  BLAS?" by importing ``scipy.linalg``: a third of a second.  The answer only decides whether
  ``np.convolve`` / ``np.correlate`` call BLAS.  Here the probe checks that SciPy is installed
  without importing it; every kernel that does use BLAS still imports
  ``scipy.linalg.cython_blas`` itself when it is compiled.
- A first call types its arguments in Python, and typing an array asks whether it is a
  ``numpy.ma.MaskedArray``, which imports ``numpy.ma`` (tens of ms).  A plain ``ndarray``
  cannot be one, so here it is typed without asking; anything else is typed as numba does.
- The first call of a dispatcher also runs numba's extension entry points (a scan of every
  installed package's metadata) in case compiling needs them.  Loading from the cache does
  not, and compiling runs them anyway (through the registry refresh), so these dispatchers
  leave them to the first compile in the process.
- A kernel given ``_nrt=False`` (no allocation, no array returned, so no reference counts)
  loads without numba's runtime, which is otherwise compiled at the first load (~0.03 s).
  Every kernel it calls with an array must be ``_nrt=False`` too: the callee's code is
  linked into it, and reference counting without the runtime crashes.

numba keys a cached kernel on its own file only, yet the tokenizer kernels link helpers from
one another's files (a stale copy of a changed helper would load, and with the runtime's
absence at stake it could crash), so their caches are stamped with a hash of all the files
they are made from, as npgpt/runtime/jit.py does for npgpt/kernels.

    from ..runtime.numba_start import njit
"""
import hashlib
import importlib.util
import os
import sys
import types

import numba
import numpy as np
from numba.core import cpu

__all__ = ["njit"]


def _scipy_installed():
    if importlib.util.find_spec("scipy") is None:
        raise ImportError("scipy is required for linear algebra")


def _registries_without_scipy(self, _load=cpu.CPUContext.load_additional_registries):
    if "numba.np.arraymath" not in sys.modules:
        from numba.np import linalg
        ensure_blas = linalg.ensure_blas
        linalg.ensure_blas = _scipy_installed
        try:
            from numba.np import arraymath
        finally:
            linalg.ensure_blas = ensure_blas
        arraymath.ensure_blas = ensure_blas
    _load(self)


if not getattr(cpu.CPUContext.load_additional_registries, "_npgpt", False):
    _registries_without_scipy._npgpt = True
    cpu.CPUContext.load_additional_registries = _registries_without_scipy


def _load_overload(cache, sig, target_context, nrt=True):
    """numba's ``Cache.load_overload`` without the registry refresh (see the module docstring)."""
    if nrt:
        from numba.core.runtime import rtsys
        rtsys.initialize(target_context)
    with cache._guard_against_spurious_io_errors():
        return cache._load_overload(sig, target_context)


def _light(dispatcher):
    cache = getattr(dispatcher, "_cache", None)
    # numba's own loading, as it is, where a numba version lacks the private parts used here
    if cache is not None and all(hasattr(cache, name) for name in
                                 ("_load_overload", "_guard_against_spurious_io_errors")):
        nrt = dispatcher.targetoptions.get("_nrt", True) is not False
        cache.load_overload = types.MethodType(
            lambda self, sig, ctx: _load_overload(self, sig, ctx, nrt), cache)
        if hasattr(dispatcher, "_compilation_chain_init_hook"):
            dispatcher._compilation_chain_init_hook = _no_extensions_yet
    return dispatcher


_TOKENIZERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "tokenizers")
# the files the tokenizer kernels are compiled from: the kernels, the class constants they
# read as globals, and this loader
_KERNEL_SOURCES = ("_bpe_kernels.py", "_count_kernels.py", "_encode_kernels.py",
                   "_split_kernels.py", "unicode_classes.py")


def _stamp_tokenizer_kernel_caches():
    from numba.core import caching

    from .jit import sources_stamp
    digest = hashlib.sha256(sources_stamp(os.path.dirname(os.path.abspath(__file__))))
    for name in _KERNEL_SOURCES:
        try:
            with open(os.path.join(_TOKENIZERS_DIR, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read() + b"\0")
        except OSError:
            pass
    stamp = digest.digest()

    class _Stamp:
        def get_source_stamp(self):
            return stamp

        @classmethod
        def from_function(cls, py_func, py_file):
            path = os.path.abspath(py_file)
            if os.path.dirname(path) != _TOKENIZERS_DIR or \
                    os.path.basename(path) not in _KERNEL_SOURCES:
                return None
            return super().from_function(py_func, py_file)

    try:
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl    # (older numba)
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                 caching.UserWideCacheLocator)
        impl._locator_classes[:0] = [
            type("TokenizerKernels" + base.__name__, (_Stamp, base), {}) for base in bases]
    except AttributeError:      # another numba layout: its own per-file stamps apply
        pass


if not getattr(numba, "_npgpt_tokenizer_stamp", False):
    numba._npgpt_tokenizer_stamp = True
    _stamp_tokenizer_kernel_caches()


def _no_extensions_yet():
    """Extensions are initialised by the registry refresh of the first compile instead."""


def _typeof_plain_ndarray(original):
    """numba's typing of an ndarray, asked of a plain ``ndarray`` without importing numpy.ma
    (its first question is ``isinstance(val, np.ma.MaskedArray)``, false for an exact ndarray)."""
    class _NoMaskedArrays:
        class MaskedArray:  # no value is an instance
            pass

    class _NumPyView(types.ModuleType):
        def __getattr__(self, name):
            return _NoMaskedArrays if name == "ma" else getattr(np, name)

    plain = types.FunctionType(original.__code__, {**original.__globals__,
                                                   "np": _NumPyView("numpy")},
                               original.__name__, original.__defaults__, original.__closure__)

    def typeof_ndarray(val, c):
        return (plain if type(val) is np.ndarray else original)(val, c)
    return typeof_ndarray


def _install_typeof():
    from numba.core.typing import typeof
    original = typeof.typeof_impl.dispatch(np.ndarray)
    if getattr(original, "_npgpt", False) or "np" not in original.__code__.co_names:
        return
    wrapped = _typeof_plain_ndarray(original)
    wrapped._npgpt = True
    typeof.typeof_impl.register(np.ndarray)(wrapped)


_install_typeof()


def njit(*args, **kwargs):
    """``numba.njit``, whose cached kernels load without the registry refresh."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _light(numba.njit(args[0]))
    decorate = numba.njit(*args, **kwargs)
    return lambda fn: _light(decorate(fn))
