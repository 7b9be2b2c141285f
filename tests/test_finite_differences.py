"""Tests of bncourse.finite_differences against gradients known in closed form."""

import numpy as np
import pytest

from bncourse import cpu
from bncourse.finite_differences import numerical_gradient, relative_error


def test_gradient_of_a_polynomial_matches_the_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3))
    dout = rng.normal(size=(4, 3))
    numeric = numerical_gradient(lambda v: v**3, x, dout, h=1e-5)
    # central differences on a cubic: truncation error is exactly h^2 * dout, i.e. ~1e-10 relative
    assert relative_error(numeric, 3 * x**2 * dout) < 1e-8


def test_gradient_of_batchnorm_matches_the_reference_backward():
    rng = np.random.default_rng(2)
    x, gamma, beta = rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=3)
    dout = rng.normal(size=(5, 3))
    _, cache = cpu.batchnorm_forward(x, gamma, beta)
    dx, _, _ = cpu.batchnorm_backward(dout, cache)
    numeric = numerical_gradient(lambda v: cpu.batchnorm_forward(v, gamma, beta)[0], x, dout)
    # float64 with h = 1e-5: the error is dominated by h^2 truncation, ~1e-10
    assert relative_error(numeric, dx) < 1e-7


def test_input_is_not_modified_and_wrong_gradients_are_caught():
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    before = x.copy()
    numeric = numerical_gradient(np.sin, x, np.ones_like(x))
    np.testing.assert_array_equal(x, before)
    assert relative_error(numeric, np.cos(x)) < 1e-9
    assert relative_error(numeric, np.cos(x) * 1.01) > 1e-3


def test_relative_error_is_scale_free_and_zero_for_zero():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 2.0, 3.3])
    assert relative_error(a, b) == pytest.approx(relative_error(1e6 * a, 1e6 * b))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="h"):
        numerical_gradient(np.sin, np.ones(3), np.ones(3), h=0.0)
    with pytest.raises(ValueError, match="dout"):
        numerical_gradient(np.sin, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="actual"):
        relative_error(np.ones(2), np.ones(3))
