"""The data helpers: reproducible, correctly shaped, and clear about bad input."""

import numpy as np
import pytest

from bncourse import data


def test_digits_split_is_reproducible_and_disjoint():
    a = data.load_digits(seed=3)
    b = data.load_digits(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape[1] == 64 and len(a.x_train) + len(a.x_test) == 1797
    assert a.x_train.dtype == np.float32 and a.x_train.max() <= 1.0
    assert set(np.unique(a.y_test)) == set(range(10))


def test_digits_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.5)


def test_minibatches_have_equal_size_and_cover_rows_once():
    x = np.arange(130, dtype=float).reshape(65, 2)
    y = np.arange(65)
    batches = data.minibatches(x, y, 20, np.random.default_rng(0))
    assert [len(b[0]) for b in batches] == [20, 20, 20]
    seen = np.concatenate([b[1] for b in batches])
    assert len(np.unique(seen)) == 60


def test_correlated_gaussian_has_the_stated_covariance():
    pts = data.correlated_gaussian_2d(n=20000, seed=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(pts.T)))
    # 20,000 samples: the sample eigenvalues are within a few percent of 0.25 and 4.
    np.testing.assert_allclose(eig, [0.25, 4.0], rtol=0.05)
