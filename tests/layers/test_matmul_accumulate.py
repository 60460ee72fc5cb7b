import numpy as np
import pytest

from npgpt.layers.linear import matmul_accumulate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["aT_b", "a_bT", "aT_bT", "strided"])
@pytest.mark.parametrize("M, N", [(7, 5), (3000, 1000)])   # one block and several blocks of rows
def test_matmul_accumulate_adds_the_product_in_place(dtype, layout, M, N, rng):
    K = 9
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    if layout == "aT_b":          # a weight gradient: x2.T @ dy2
        a = np.ascontiguousarray(a.T).T
    elif layout == "a_bT":
        b = np.ascontiguousarray(b.T).T
    elif layout == "aT_bT":       # the tied head: dlogits.T @ x
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    else:
        a = np.repeat(a, 2, axis=1)[:, ::2]
    out = rng.standard_normal((M, N)).astype(dtype)
    expected = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    buffer = out
    matmul_accumulate(out, a, b)
    assert out is buffer and out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
