import numpy as np
import pytest

from npgpt import gradcheck
from npgpt.errors import GradcheckError
from npgpt.layers import Linear
from npgpt.layers.ffn import SiLU


class LinearWithWrongWeightGradient(Linear):
    """A Linear whose weight gradient is corrupted: one element off, or all scaled."""

    def __init__(self, *args, element=None, scale=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.element, self.scale = element, scale

    def backward(self, dy):
        before = self.weight.grad.copy()
        dx = super().backward(dy)
        dW = self.weight.grad - before
        dW *= self.scale
        if self.element is not None:
            dW[self.element] += 0.1 * (abs(dW[self.element]) + 1.0)
        self.weight.grad[...] = before + dW
        return dx


class LinearWithWrongInputGradient(Linear):
    def backward(self, dy):
        return 1.001 * super().backward(dy)


def _layer(cls=Linear, **kwargs):
    rng = np.random.default_rng(0)
    layer = cls(3, 2, dtype=np.float64, rng=rng, std=1.0, **kwargs)
    layer.bias.data[:] = rng.standard_normal(2)
    return layer


def test_gradcheck_passes_a_correct_layer_and_reports_every_tensor():
    report = gradcheck(_layer(), np.random.default_rng(1).standard_normal((4, 3)))
    assert [c.name for c in report.checks] == ["input[0]", "weight", "bias"]
    assert report.max_error < 1e-8 and not report.failures
    assert "weight" in str(report)


def test_gradcheck_names_the_tensor_and_element_of_a_one_element_error():
    layer = _layer(LinearWithWrongWeightGradient, element=(2, 1))
    with pytest.raises(GradcheckError,
                       match=r"gradient of weight is wrong.*worst element \(2, 1\)"):
        gradcheck(layer, np.random.default_rng(1).standard_normal((4, 3)))


def test_gradcheck_catches_a_gradient_off_by_one_part_in_a_thousand():
    layer = _layer(LinearWithWrongWeightGradient, scale=1.001)
    # |a - n| / max(|a|, |n|) = 0.001 / 1.001
    with pytest.raises(GradcheckError,
                       match=r"gradient of weight is wrong: relative error 9\.99e-04"):
        gradcheck(layer, np.random.default_rng(1).standard_normal((4, 3)))
    with pytest.raises(GradcheckError, match=r"gradient of input\[0\] is wrong"):
        gradcheck(_layer(LinearWithWrongInputGradient),
                  np.random.default_rng(1).standard_normal((4, 3)))


def test_gradcheck_can_report_instead_of_raising():
    layer = _layer(LinearWithWrongWeightGradient, scale=1.001)
    report = gradcheck(layer, np.ones((2, 3)), raise_on_fail=False)
    assert [c.name for c in report.failures] == ["weight"]
    assert report.max_error == pytest.approx(1e-3 / 1.001, rel=1e-3)


def test_gradcheck_refuses_float32_parameters():
    with pytest.raises(GradcheckError, match="float64.*weight.*float32"):
        gradcheck(Linear(3, 2), np.ones((2, 3)))


def test_gradcheck_leaves_parameters_and_gradients_clean():
    layer = _layer()
    before = layer.weight.data.copy()
    gradcheck(layer, np.ones((2, 3)))
    np.testing.assert_array_equal(layer.weight.data, before)
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


class SiLUOffBy(SiLU):
    def backward(self, dy):
        return 1.001 * super().backward(dy)


def _small_gradients_beside_large_outputs():
    """SiLU at -10 (gradient ~4e-4) everywhere but three elements at 30 (output 30): the
    loss's rounding error, ~1e-14, is ~1e-9 in each central difference."""
    x = np.full((5, 5, 8), -10.0)
    x.reshape(-1)[[7, 99, 150]] = 30.0
    return x


@pytest.mark.parametrize("seed", range(8))
def test_gradcheck_allows_for_the_rounding_error_of_the_differences(seed):
    # with the 64 checked elements all at -10, the differences alone were off by up to 5e-6
    gradcheck(SiLU(dtype=np.float64), _small_gradients_beside_large_outputs(), seed=seed)


@pytest.mark.parametrize("seed", range(8))
def test_gradcheck_still_catches_one_part_in_a_thousand_there(seed):
    with pytest.raises(GradcheckError, match=r"gradient of input\[0\] is wrong"):
        gradcheck(SiLUOffBy(dtype=np.float64), _small_gradients_beside_large_outputs(),
                  seed=seed)
