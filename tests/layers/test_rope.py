import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npgpt import gradcheck, no_grad
from npgpt.errors import BackwardError, ConfigError, InputError
from npgpt.layers.rope import RotaryEmbedding, apply_rope, inverse_frequencies

LAYOUTS = ["half", "interleaved"]


def rope_direct(x, positions, base, layout):
    """The definition, one pair at a time, in float64."""
    hs = x.shape[-1]
    out = np.array(x, dtype=np.float64)
    for t, m in enumerate(positions):
        for k in range(hs // 2):
            theta = m * base ** (-2.0 * k / hs)
            i, j = (k, k + hs // 2) if layout == "half" else (2 * k, 2 * k + 1)
            a, b = x[..., t, i], x[..., t, j]
            out[..., t, i] = a * np.cos(theta) - b * np.sin(theta)
            out[..., t, j] = a * np.sin(theta) + b * np.cos(theta)
    return out


def rotation_matrix(m, hs, base, layout):
    """The (hs, hs) block-diagonal rotation R(m), y = R x, in the layout's channel order."""
    R = np.zeros((hs, hs))
    for k in range(hs // 2):
        theta = m * base ** (-2.0 * k / hs)
        i, j = (k, k + hs // 2) if layout == "half" else (2 * k, 2 * k + 1)
        c, s = np.cos(theta), np.sin(theta)
        R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5),
                   st.integers(1, 4).map(lambda n: 2 * n))


@pytest.mark.parametrize("layout", LAYOUTS)
@given(shape=shapes, offset=st.integers(0, 100), seed=st.integers(0, 2**31))
def test_rope_matches_direct_formula(layout, shape, offset, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    T = shape[2]
    positions = np.arange(offset, offset + T)
    rope = RotaryEmbedding(shape[-1], base=10000.0, layout=layout, dtype=np.float64)
    expected = rope_direct(x, positions, 10000.0, layout)
    np.testing.assert_allclose(rope(x, positions), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(apply_rope(x, positions, layout=layout), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rope_is_the_block_rotation_matrix(layout, rng):
    hs, base = 8, 500.0
    x = rng.standard_normal((1, 1, 4, hs))
    positions = np.array([0, 3, 7, 1000])
    y = apply_rope(x, positions, base=base, layout=layout)
    for t, m in enumerate(positions):
        np.testing.assert_allclose(y[0, 0, t], rotation_matrix(m, hs, base, layout) @ x[0, 0, t],
                                   atol=1e-12)


def test_inverse_frequencies():
    np.testing.assert_allclose(inverse_frequencies(4, 10000.0), [1.0, 0.01])
    np.testing.assert_allclose(inverse_frequencies(8, 10000.0), 10000.0 ** (-np.arange(4) / 4))


@pytest.mark.parametrize("layout", LAYOUTS)
@given(m=st.integers(0, 50), n=st.integers(0, 50), shift=st.integers(0, 1000),
       seed=st.integers(0, 2**31))
def test_rope_dot_product_depends_only_on_relative_position(layout, m, n, shift, seed):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, 1, 1, 1, 8))
    rot = lambda x, p: apply_rope(x, np.array([p]), layout=layout)[0, 0, 0]
    dot = rot(q, m) @ rot(k, n)
    np.testing.assert_allclose(rot(q, m + shift) @ rot(k, n + shift), dot, atol=1e-10)
    # and it is q . R(n - m) k
    rel = rotation_matrix(n - m, 8, 10000.0, layout) @ k[0, 0, 0]
    np.testing.assert_allclose(q[0, 0, 0] @ rel, dot, atol=1e-10)


@given(shape=shapes, seed=st.integers(0, 2**31))
def test_half_and_interleaved_are_a_channel_permutation_apart(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    hs = shape[-1]
    # interleaved position 2k <-> half position k, 2k+1 <-> k + hs/2
    perm = np.empty(hs, dtype=int)
    perm[0::2] = np.arange(hs // 2)
    perm[1::2] = np.arange(hs // 2) + hs // 2
    positions = np.arange(3, 3 + shape[2])
    half = apply_rope(x, positions, layout="half")
    inter = apply_rope(x[..., perm], positions, layout="interleaved")
    np.testing.assert_allclose(inter, half[..., perm], atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@given(shape=shapes, offset=st.integers(0, 20), seed=st.integers(0, 2**31))
def test_rope_gradcheck(layout, shape, offset, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    rope = RotaryEmbedding(shape[-1], layout=layout, dtype=np.float64)
    positions = np.arange(offset, offset + shape[2])
    gradcheck(rope, x, positions, seed=seed % 1000)


def test_rope_backward_is_inverse_rotation(rng):
    rope = RotaryEmbedding(8, dtype=np.float64)
    x = rng.standard_normal((2, 3, 5, 8))
    y = rope(x, np.arange(10, 15))
    np.testing.assert_allclose(rope.backward(y), x, atol=1e-12)


def test_rope_positions_per_sequence(rng):
    rope = RotaryEmbedding(4, dtype=np.float64)
    x = rng.standard_normal((2, 3, 5, 4))
    positions = np.array([np.arange(5), np.arange(7, 12)])
    y = rope(x, positions)
    np.testing.assert_allclose(y[0], rope(x[:1], positions[0])[0], atol=1e-14)
    np.testing.assert_allclose(y[1], rope(x[1:], positions[1])[0], atol=1e-14)


def test_rope_tables_grow_on_demand_and_stay_exact():
    rope = RotaryEmbedding(4, dtype=np.float64)
    cos, _ = rope.tables(np.arange(3))
    assert cos.shape == (3, 2)
    cos, sin = rope.tables(np.array([5000]))
    np.testing.assert_allclose(cos[0], np.cos(5000 * np.array([1.0, 0.01])), atol=1e-12)
    np.testing.assert_allclose(sin[0], np.sin(5000 * np.array([1.0, 0.01])), atol=1e-12)


def test_rope_float32_stays_float32(rng):
    rope = RotaryEmbedding(8)
    x = rng.standard_normal((2, 2, 3, 8)).astype(np.float32)
    y = rope(x, np.arange(3))
    assert y.dtype == np.float32
    assert rope.backward(y).dtype == np.float32
    assert apply_rope(x).dtype == np.float32
    np.testing.assert_allclose(y, apply_rope(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_rope_matches_transformers_rotate_half(rng):
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    hs, T, base = 8, 6, 10000.0
    q, k = rng.standard_normal((2, 2, 3, T, hs))
    inv_freq = torch.tensor(inverse_frequencies(hs, base))
    angles = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)
    q_ref, k_ref = llama.apply_rotary_pos_emb(torch.tensor(q), torch.tensor(k),
                                              emb.cos()[None], emb.sin()[None])
    np.testing.assert_allclose(apply_rope(q, base=base), q_ref.numpy(), atol=1e-12)
    np.testing.assert_allclose(apply_rope(k, base=base), k_ref.numpy(), atol=1e-12)


def test_rope_errors(rng):
    with pytest.raises(ConfigError, match="head_dim=5"):
        RotaryEmbedding(5)
    with pytest.raises(ConfigError, match="layout"):
        RotaryEmbedding(4, layout="spiral")
    rope = RotaryEmbedding(4)
    with pytest.raises(InputError, match="hs=4"):
        rope(np.zeros((1, 1, 2, 6), np.float32), np.arange(2))
    with pytest.raises(InputError, match="T=2"):
        rope(np.zeros((1, 1, 2, 4), np.float32), np.arange(3))
    with pytest.raises(InputError, match="integers"):
        rope(np.zeros((1, 1, 2, 4), np.float32), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match=">= 0"):
        rope(np.zeros((1, 1, 2, 4), np.float32), np.array([-1, 0]))
    with no_grad():
        rope(np.zeros((1, 1, 2, 4), np.float32), np.arange(2))
    with pytest.raises(BackwardError):
        rope.backward(np.zeros((1, 1, 2, 4), np.float32))
