"""Data sets for the book and the exercises.

Nothing is downloaded: the handwritten digits ship inside scikit-learn
(1,797 images of 8x8 pixels, 10 classes; Alpaydin & Kaynak, 1998), and every
other data set is generated from a seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    """A train/test split. ``x_*`` are ``(n, 64)`` float arrays, ``y_*`` are ``(n,)`` int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(
    test_fraction: float = 0.25, seed: int = 0, scale: bool = True, dtype: type = np.float32
) -> Split:
    """Return scikit-learn's 8x8 digits, shuffled and split into train and test sets.

    Inputs:
    - test_fraction: share of the 1,797 images held out, in (0, 1).
    - seed: seed of the shuffle, so a split is reproducible.
    - scale: divide pixel values (0..16) by 16 so inputs lie in [0, 1]. The
      pixels are deliberately *not* standardised: un-normalised inputs are
      part of what the book studies.
    - dtype: floating dtype of the images.

    Returns a ``Split`` with ``x_train (n_train, 64)``, ``y_train (n_train,)``,
    ``x_test (n_test, 64)``, ``y_test (n_test,)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = bunch.data.astype(dtype)
    if scale:
        x = x / dtype(16.0)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Split(x[train], y[train], x[test], y[test])


def correlated_gaussian_2d(
    n: int = 500, seed: int = 0, mean: tuple[float, float] = (3.0, -2.0)
) -> np.ndarray:
    """Draw ``n`` points of a strongly correlated, off-centre 2-D Gaussian.

    The covariance has eigenvalues 4 and 0.25 along axes rotated by 30 degrees,
    so centring, standardising and whitening each visibly change the cloud.

    Returns an ``(n, 2)`` float64 array.
    """
    if n < 2:
        raise ValueError(f"n: expected at least 2 points, got {n!r}")
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cov = rotation @ np.diag([4.0, 0.25]) @ rotation.T
    return np.random.default_rng(seed).multivariate_normal(np.asarray(mean), cov, size=n)


def minibatches(
    x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffle ``(x, y)`` with ``rng`` and cut it into full batches of ``batch_size``.

    The last incomplete batch is dropped, so every batch has exactly
    ``batch_size`` rows (BN's statistics then always use the same m).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    order = rng.permutation(len(x))
    n_full = len(x) // batch_size
    return [
        (x[idx], y[idx])
        for idx in np.split(order[: n_full * batch_size], n_full)
    ] if n_full else []
