"""The backend switch, the environment variables, lazy imports and the thread setting."""
import os
import subprocess
import sys

import numpy as np
import pytest

from npgpt import kernels
from npgpt.runtime import threads
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
    code = ("import sys, npgpt, npgpt.kernels, npgpt.runtime.threads; "
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
    code = ("import numpy as np, npgpt.runtime.threads as t, npgpt.kernels as k; t.set_num_threads(1); "
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

    from npgpt.runtime.threads import set_num_threads
    set_num_threads(2)
    pools = {os.path.basename(os.path.dirname(i["filepath"])): i["num_threads"]
             for i in threadpool_info() if i["user_api"] == "blas"}
    assert pools.get("numpy.libs", 2) == 2      # NumPy's matmuls get both threads
    if "scipy.libs" in pools:
        assert pools["scipy.libs"] == 1          # the kernels' gemm pool does not spin against it


_LAYER_PROBE = """
import os
import numba
from npgpt.runtime import jit as _jit
print(numba.threading_layer(), os.environ.get("GOMP_SPINCOUNT"))
"""


def test_kernels_run_on_openmp_and_leave_no_spin_setting_behind():
    """npgpt picks numba's OpenMP layer and sets libgomp's short spin only while it loads."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", _LAYER_PROBE], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["omp", "None"]


def test_a_threading_layer_the_user_chose_is_kept():
    assert _python(_LAYER_PROBE, NUMBA_THREADING_LAYER="workqueue").split()[0] == "workqueue"


def test_retain_freed_memory_stops_page_faults_in_a_repeated_loop():
    """Allocating and freeing a 64 MB array over and over faults its pages in each time with
    glibc's defaults, and once with freed memory kept (glibc on Linux; elsewhere False)."""
    code = """
import resource, numpy as np
from npgpt.runtime.memory import retain_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        a = np.ones(1 << 24, np.float32)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
default = faults()
ok = retain_freed_memory()
faults()
print(ok, retain_freed_memory(), default, faults())
"""
    ok, again, default, kept = _python(code).split()
    if ok == "False":
        pytest.skip("not glibc: retain_freed_memory does nothing here")
    assert again == "True"
    assert int(default) > 10 * max(1, int(kept))
