"""The backend switch, the environment variables, lazy imports and the thread setting."""
import os
import subprocess
import sys

import numpy as np
import pytest

from npgpt import kernels, threads
from npgpt.errors import ConfigError
from npgpt.kernels import layernorm, registry


def _python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return out.stdout.strip()


def test_use_switches_every_op_and_restores_the_previous_backend():
    assert kernels.get_backend() == "numba"
    assert kernels.kernel("layernorm_forward") is layernorm.layernorm_forward_numba
    with kernels.use("numpy"):
        assert kernels.get_backend() == "numpy"
        assert all(kernels.kernel(name).__name__.endswith("_ref") for name in kernels.KERNELS)
        with kernels.use("numba"):
            assert kernels.kernel("layernorm_forward") is layernorm.layernorm_forward_numba
        assert kernels.get_backend() == "numpy"
    assert kernels.get_backend() == "numba"


def test_public_functions_dispatch_to_the_current_backend(monkeypatch, rng):
    calls = []
    monkeypatch.setitem(registry._resolved, ("gelu_tanh_forward", "numpy"),
                        lambda x: calls.append("numpy") or x)
    with kernels.use("numpy"):
        kernels.gelu_tanh_forward(np.zeros(3))
    assert calls == ["numpy"]


def test_unknown_backend_and_op_are_config_errors():
    with pytest.raises(ConfigError, match="'cuda'"):
        kernels.set_backend("cuda")
    with pytest.raises(ConfigError, match="unknown kernel"):
        kernels.kernel("flash_attention")
    assert kernels.get_backend() == "numba"


def test_env_var_selects_the_numpy_references():
    code = "import npgpt.kernels as k; print(k.get_backend(), k.kernel('softmax_forward').__name__)"
    assert _python(code, NPGPT_KERNELS="numpy") == "numpy softmax_forward_ref"


def test_importing_npgpt_imports_no_kernel_and_compiles_nothing():
    code = ("import sys, npgpt, npgpt.kernels, npgpt.threads; "
            "print('numba' in sys.modules, any(m.startswith('npgpt.kernels.') and m != "
            "'npgpt.kernels.registry' for m in sys.modules))")
    assert _python(code) == "False False"


def test_set_num_threads_sets_numba_and_blas():
    before = threads.get_num_threads()["numba"]
    try:
        assert threads.set_num_threads(1) == 1
        counts = threads.get_num_threads()
        assert counts["numba"] == 1 and counts["blas"] in (1, None)
    finally:
        threads.set_num_threads(before)


def test_set_num_threads_still_holds_after_kernels_compile():
    code = ("import numpy as np, npgpt.threads as t, npgpt.kernels as k; t.set_num_threads(1); "
            "k.layernorm_forward(np.zeros((2, 3), np.float32), np.ones(3, np.float32), None); "
            "print(t.get_num_threads())")
    assert _python(code) in ("{'numba': 1, 'blas': 1}", "{'numba': 1, 'blas': None}")


def test_env_var_sets_threads_at_first_kernel_call():
    code = ("import numba, numpy as np, npgpt.kernels as k; k.gelu_tanh_forward(np.zeros(4)); "
            "print(numba.get_num_threads())")
    assert _python(code, NPGPT_NUM_THREADS="1") == "1"


@pytest.mark.parametrize("bad", ["0", "two", -3])
def test_bad_thread_counts_are_config_errors(bad):
    with pytest.raises(ConfigError, match="positive integer"):
        threads.set_num_threads(bad)


def test_set_num_threads_keeps_numpy_blas_at_n_and_scipy_blas_at_one():
    from threadpoolctl import threadpool_info

    from npgpt.threads import set_num_threads
    set_num_threads(2)
    pools = {os.path.basename(os.path.dirname(i["filepath"])): i["num_threads"]
             for i in threadpool_info() if i["user_api"] == "blas"}
    assert pools.get("numpy.libs", 2) == 2      # NumPy's matmuls get both threads
    if "scipy.libs" in pools:
        assert pools["scipy.libs"] == 1          # numba's np.dot pool does not spin against it
