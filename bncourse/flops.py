"""Floating-point operation counts of standardisation and whitening (assignment 02).

The counting rules (stated in the assignment, so that a count is gradeable):

- an elementwise operation on an array of n numbers costs n flops (+, -, *, /, sqrt alike);
- summing n numbers costs n flops (we do not quibble about n - 1);
- a matrix product of an (a, b) and a (b, c) matrix costs 2abc flops (a multiply and an add
  per term);
- the symmetric eigendecomposition of a d x d matrix, eigenvectors included, costs 9 d^3
  flops: the classical estimate for the symmetric QR algorithm (Golub & Van Loan, *Matrix
  Computations*, 4th ed., section 8.3). LAPACK's divide-and-conquer routine behind
  ``np.linalg.eigh`` is faster in practice, but every method is cubic in d.

The recipes are the ones ``bncourse.cpu.standardize`` and ``bncourse.cpu.whiten`` follow.
The point of the exercise is the shape of the counts: standardising is linear in N and d;
whitening is quadratic in d through the covariance and the product with W, and cubic in d
through the eigendecomposition.
"""

from __future__ import annotations

__all__ = ["EIGH_FLOPS_PER_D3", "standardize_flops", "whiten_flops"]

EIGH_FLOPS_PER_D3 = 9


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def standardize_flops(N: int, d: int) -> int:
    """Flops of standardising an (N, d) data matrix feature by feature.

    mean: N d sums + d divisions; centre: N d; variance: N d squares + N d sums + d divisions;
    sqrt(var + eps): 2 d; divide: N d. Total 5 N d + 4 d.
    """
    _check_size("N", N)
    _check_size("d", d)
    return 5 * N * d + 4 * d


def whiten_flops(N: int, d: int, method: str = "zca", matmul_cost: int = 2, eigh_cost: int = EIGH_FLOPS_PER_D3) -> int:
    """Flops of whitening an (N, d) data matrix (``x_white = (x - mean) @ W``).

    mean: N d + d; centre: N d; covariance x_c^T x_c: 2 N d^2, then / N: d^2;
    eigendecomposition: 9 d^3; 1 / sqrt(lambda + eps): 3 d; W = U * s: d^2 (PCA), then
    ZCA's W = (U * s) @ U^T: 2 d^3 more; x_c @ W: 2 N d^2.

    ``matmul_cost`` (flops per term of a matrix product) and ``eigh_cost`` (flops per d^3 of
    the eigendecomposition) exist so that the checks can compute what a count with another
    rule gives; leave them at their defaults.
    """
    _check_size("N", N)
    _check_size("d", d)
    if method not in ("zca", "pca"):
        raise ValueError(f"method: expected 'zca' or 'pca', got {method!r}")
    mean_and_centre = 2 * N * d + d
    covariance = matmul_cost * N * d * d + d * d
    eigen = eigh_cost * d**3 + 3 * d
    build_w = d * d + (matmul_cost * d**3 if method == "zca" else 0)
    apply_w = matmul_cost * N * d * d
    return mean_and_centre + covariance + eigen + build_w + apply_w
