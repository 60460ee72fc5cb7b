"""Every registered kernel equals its NumPy reference, on drawn shapes, dtypes and magnitudes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt.kernels import KERNELS, VARIANTS

from ._helpers import check_kernel

CASES = [(name, name, spec.make_inputs) for name, spec in KERNELS.items()] + \
        [(label, name, maker) for label, (name, maker) in VARIANTS.items()]

shapes = st.fixed_dictionaries({"B": st.integers(1, 5), "T": st.integers(1, 5), "H": st.integers(1, 4),
                                    "hs": st.integers(1, 8), "V": st.integers(1, 64)})


def _shape(d):
    return {"B": d["B"], "T": d["T"], "H": d["H"], "C": d["H"] * d["hs"], "V": d["V"]}


def _strided(a):
    """The same values in a non-contiguous view."""
    wide = np.empty(a.shape + (2,), a.dtype)
    wide[..., 0] = a
    return wide[..., 0]


@pytest.mark.parametrize("label, name, maker", CASES, ids=[c[0] for c in CASES])
@given(shape=shapes, dtype=st.sampled_from([np.float32, np.float64]),
       magnitude=st.sampled_from([1.0, 1e-3, 1e3]), seed=st.integers(0, 2**32 - 1))
def test_kernel_matches_reference(label, name, maker, shape, dtype, magnitude, seed):
    args = maker(_shape(shape), dtype, np.random.default_rng(seed), magnitude)
    check_kernel(name, args, dtype)


@pytest.mark.parametrize("label, name, maker", CASES, ids=[c[0] for c in CASES])
@given(shape=shapes, dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_kernel_accepts_non_contiguous_inputs(label, name, maker, shape, dtype, seed):
    args = maker(_shape(shape), dtype, np.random.default_rng(seed))
    inplace = KERNELS[name].inplace
    args = [_strided(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" and i not in inplace
            else a for i, a in enumerate(args)]
    check_kernel(name, args, dtype)


@pytest.fixture
def parallel_always(monkeypatch):
    """Every row kernel runs its prange-parallel version, whatever the size or thread count
    (small calls run the serial one: the parity tests above exercise only that)."""
    from npgpt.runtime import jit as _jit
    monkeypatch.setattr(_jit.RowKernel, "pick", lambda self, n_elements: self.parallel)


# Large enough that each kernel's blocks come out several, the last one partial: GELU's blocks
# are 4,096 elements (here 3 * 37 * 4 * 96), AdamW's 32,768 (here 96 * 384), attention's
# queries 32 or 64 (here T = 37 is two causal blocks or one plain one, T = 150 three).
PARALLEL_SHAPES = [{"B": 3, "T": 37, "H": 4, "C": 96, "V": 301},
                   {"B": 2, "T": 150, "H": 2, "C": 16, "V": 7}]


@pytest.mark.parametrize("shape", PARALLEL_SHAPES, ids=["wide", "long"])
@pytest.mark.parametrize("label, name, maker", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_kernel_matches_reference(parallel_always, label, name, maker, shape, dtype):
    args = maker(shape, dtype, np.random.default_rng(0), 1.0)
    check_kernel(name, args, dtype)
