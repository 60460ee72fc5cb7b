import numpy as np
import pytest

from npgpt.kernels import KERNELS, kernel


@pytest.fixture(scope="session", autouse=True)
def warm_kernels():
    """Compile (or load from numba's cache) every kernel once, for both dtypes, up front."""
    rng = np.random.default_rng(0)
    shape = {"B": 1, "T": 2, "C": 4, "V": 5, "H": 2}
    for name, spec in KERNELS.items():
        for dtype in (np.float32, np.float64):
            kernel(name, "numba")(*spec.make_inputs(shape, dtype, rng))
