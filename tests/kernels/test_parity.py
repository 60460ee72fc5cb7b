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
