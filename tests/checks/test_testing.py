"""``bncourse.testing.check`` and ``run_case``: what a test cell calls and what it prints."""

from __future__ import annotations

import numpy as np
import pytest
from judging import correct_forward

from bncourse.testing import check


def _unbiased_forward(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    x_hat = (x - mu) / np.sqrt(x.var(axis=axes, keepdims=True, ddof=1) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), None


def test_check_prints_on_success_and_raises_the_diagnosis(capsys):
    check("03_bn_transform-forward_4d_hidden", correct_forward)
    assert capsys.readouterr().out.startswith("passed: ")
    with pytest.raises(AssertionError, match="divide by m - 1"):
        check("03_bn_transform-forward_2d", _unbiased_forward)


def test_check_reports_the_students_exception():
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="raised NotImplementedError"):
        check("03_bn_transform-forward_2d", batchnorm_forward)


def test_check_rejects_unknown_parts():
    with pytest.raises(KeyError, match="part_id"):
        check("03_bn_transform-nope", correct_forward)


def test_the_hidden_cases_line_names_the_twin_that_grades_the_same_function():
    from bncourse.checks import PARTS
    from bncourse.testing import hidden_twin

    twins = {part.id: hidden_twin(part) for part in PARTS.values()}
    # A hidden cell has nothing hidden after it, so it prints no such line.
    assert all(twins[part.id] is None for part in PARTS.values() if part.hidden)
    assert twins["03_bn_transform-forward_2d"].id == "03_bn_transform-forward_2d_hidden"
    # 02's two visible whitening parts share one hidden part, which has no visible namesake.
    assert twins["02_whitening-whiten_zca"].id == twins["02_whitening-whiten_pca"].id == "02_whitening-whiten_hidden"
    # 06's hidden part trains the BN network: the plain network's parts must not announce it.
    assert twins["06_in_practice-train_plain"] is None
    assert twins["06_in_practice-train_bn"].id == "06_in_practice-train_bn_hidden"


def _array_kinds(part) -> tuple[set[int], set[str]]:
    """The numbers of dimensions and the dtypes of the float arrays in a part's cases."""
    ndims, dtypes = set(), set()
    for case in part.cases():
        for value in case.values():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                ndims.add(min(value.ndim, 4))  # 4 stands for "two or more spatial axes"
                dtypes.add(str(value.dtype))
    return ndims, dtypes


def test_no_hidden_case_has_a_layout_or_dtype_that_no_visible_case_has():
    """No surprises at grading: (N, C), one spatial axis, (N, C, H, W), float32 and float64."""
    from bncourse.checks import PARTS
    from bncourse.testing import hidden_twin

    pairs = [(part, hidden_twin(part)) for part in PARTS.values() if hidden_twin(part) is not None]
    assert len(pairs) >= 20
    for visible, hidden in pairs:
        (seen_ndims, seen_dtypes), (graded_ndims, graded_dtypes) = _array_kinds(visible), _array_kinds(hidden)
        assert graded_ndims <= seen_ndims, (visible.id, graded_ndims - seen_ndims)
        assert graded_dtypes <= seen_dtypes, (visible.id, graded_dtypes - seen_dtypes)
