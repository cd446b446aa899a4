"""Exact Bayes risks for in-context linear regression (no torch, no sampling).

Setting (Garg et al. 2022; Raventós et al. 2023, arXiv 2306.15063, section 2): a sequence holds K
pairs ``(x_k, y_k)`` with ``x_k ~ N(0, I_D)`` and ``y_k = wᵀx_k + ε_k``, ``ε_k ~ N(0, σ²)``. The
prediction of ``y_k`` may use the first ``k - 1`` pairs and ``x_k``. Positions are 1-indexed: at
position ``k`` the context holds ``n = k - 1`` pairs.

Ridge. For the task prior ``w ~ N(0, I_D)`` the posterior of ``w`` given the context ``(X, Y)`` is
Gaussian with mean ``(XᵀX + σ²I)⁻¹XᵀY`` (the ridge estimate) and covariance
``Σ = σ²(XᵀX + σ²I)⁻¹ = (I + XᵀX/σ²)⁻¹``, so the Bayes risk of ridge at position k is

    R_ridge(k) = σ² + E tr (I + XᵀX/σ²)⁻¹,        X ∈ R^{(k-1)×D} standard Gaussian,

which is ``D + σ²`` at the first position. The expectation is computed here without sampling:
if ``p = min(n, D)`` and ``N = max(n, D)``, the nonzero eigenvalues of ``XᵀX`` are those of a real
Wishart matrix ``W_p(N, I)``, whose joint density is
``∝ Π_i λ_i^{(N-p-1)/2} e^{-λ_i/2} Π_{i<j} |λ_i - λ_j|`` (Muirhead 1982, Theorem 3.2.18), and

    E tr (I + XᵀX/σ²)⁻¹ = (D - p) + E Σ_{i≤p} g(λ_i),      g(λ) = σ²/(σ² + λ).

The last expectation is ``d/dt log Z(t)`` at ``t = 0`` for ``Z(t) = E Π_i (1 + t g(λ_i))``, and
de Bruijn's formula (de Bruijn 1955, "On some multiple integrals involving determinants") turns
``Z`` into a Pfaffian of one- and two-dimensional integrals; ``d log Pf(A) = ½ tr(A⁻¹ dA)``.
Every integral is a deterministic adaptive quadrature (scipy.integrate.quad), accurate to about
1e-10 relative.

dMMSE. For the uniform prior on a finite pool ``{t_1, …, t_M}`` the posterior mean is
``Σ_m softmax_m(-Σ_{j<k}(y_j - t_mᵀx_j)²/(2σ²)) t_m`` (Raventós et al. 2023, eq. 3). Its risk has a
closed form at the first position, where the prediction is ``x_1ᵀ t̄`` with ``t̄`` the pool mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import integrate, special

__all__ = [
    "ridge_bayes_risk",
    "ridge_bayes_risks",
    "ridge_mean_bayes_risk",
    "expected_trace_posterior_covariance",
    "dmmse_first_position_risk",
    "dmmse_first_position_risk_gaussian_tasks",
    "first_position_bayes_risk",
]

# Checked against the inverse-Wishart limit and Monte Carlo up to here (D ≤ 10 covers the papers'
# D = 4 and D = 8); at p ≥ 12 the moment matrix is too ill-conditioned for float64.
_MAX_WISHART_SIZE = 10
_QUAD_OPTIONS = {"epsabs": 0.0, "epsrel": 1e-11, "limit": 200}


def _check_dim_and_noise(dim: int, noise_variance: float) -> None:
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer (the task dimension D); got {dim!r}")
    if not (noise_variance > 0 and math.isfinite(noise_variance)):
        raise ValueError(f"noise_variance must be a positive finite number (σ²); got {noise_variance!r}")


def _half_line_integral(f) -> float:
    """``∫_0^∞ f(x) dx`` after the substitution ``x = v²``.

    The Wishart weights carry ``x^a`` with ``a`` possibly ``-1/2``; in ``v`` the integrand
    ``2v f(v²)`` is smooth at 0, which keeps quad at full accuracy.
    """
    value, _ = integrate.quad(lambda v: 2.0 * v * f(v * v), 0.0, math.inf, **_QUAD_OPTIONS)
    return value


def _pfaffian_log_derivative(matrix: np.ndarray, derivative: np.ndarray) -> float:
    """``d/dt log Pf(A(t)) = ½ tr(A⁻¹ A')`` (Pf² = det, so this is half of d log det)."""
    return 0.5 * float(np.trace(np.linalg.solve(matrix, derivative)))


def expected_trace_posterior_covariance(num_context: int, dim: int, noise_variance: float) -> float:
    """``E tr (I_D + XᵀX/σ²)⁻¹`` for ``X ∈ R^{n×D}`` with i.i.d. N(0, 1) entries.

    This is the expected trace of the posterior covariance of ``w ~ N(0, I_D)`` after ``n`` noisy
    linear observations (module docstring; Muirhead 1982, Thm 3.2.18; de Bruijn 1955). Equal to
    ``D`` at ``n = 0``; to first order in σ² it is ``σ² D/(n - D - 1)`` for ``n > D + 1``
    (the mean of the inverse Wishart). Supported for ``min(n, D) ≤ 10``.
    """
    _check_dim_and_noise(dim, noise_variance)
    if not isinstance(num_context, (int, np.integer)) or num_context < 0:
        raise ValueError(f"num_context must be a non-negative integer (pairs in the context); got {num_context!r}")
    p = min(num_context, dim)
    if p == 0:
        return float(dim)
    if p > _MAX_WISHART_SIZE:
        raise ValueError(
            f"min(num_context, dim) = {p} exceeds {_MAX_WISHART_SIZE}: the de Bruijn Pfaffian in the "
            "monomial basis loses float64 accuracy beyond that; estimate the risk by Monte Carlo "
            "(toymodels.models.icl.ridge_predictions with position_risks) instead"
        )
    big_n = max(num_context, dim)
    a = (big_n - p - 1) / 2.0  # exponent of λ in the Wishart eigenvalue density
    s2 = float(noise_variance)

    # Scale λ = 2u so the weight is u^a e^{-u}: moments become Γ-functions of order one.
    # g(λ) = σ²/(σ² + 2u). The scale cancels in the ratio Z'(0)/Z(0).
    def weight(i: int):
        return lambda u: u ** (i + a) * math.exp(-u)

    def g(u: float) -> float:
        return s2 / (s2 + 2.0 * u)

    moments = [math.gamma(i + a + 1.0) for i in range(p)]  # ∫ u^{i+a} e^{-u} du

    def lower_moment(i: int, y: float) -> float:  # ∫_0^y u^{i+a} e^{-u} du
        return moments[i] * special.gammainc(i + a + 1.0, y)

    g_moments = [_half_line_integral(lambda u, i=i: weight(i)(u) * g(u)) for i in range(p)]

    # A_ij = ∫∫ sign(y - x) φ_i(x) φ_j(y) = ∫ φ_j(y) (2 F_i(y) - F_i(∞)) dy, φ_i(u) = u^{i+a} e^{-u}.
    size = p + (p % 2)
    a_matrix = np.zeros((size, size))
    a_prime = np.zeros((size, size))
    for i in range(p):
        for j in range(i + 1, p):
            a_matrix[i, j] = _half_line_integral(
                lambda y, i=i, j=j: weight(j)(y) * (2.0 * lower_moment(i, y) - moments[i])
            )
            # With φ_i → φ_i (1 + t g) the derivative at t = 0 puts one g on either factor; the
            # term with g on φ_i(x) is integrated over y first: ∫ sign(y - x) φ_j(y) dy =
            # F_j(∞) - 2 F_j(x), so no nested quadrature is needed.
            a_prime[i, j] = _half_line_integral(
                lambda y, i=i, j=j: g(y)
                * (
                    weight(i)(y) * (moments[j] - 2.0 * lower_moment(j, y))
                    + weight(j)(y) * (2.0 * lower_moment(i, y) - moments[i])
                )
            )
            a_matrix[j, i] = -a_matrix[i, j]
            a_prime[j, i] = -a_prime[i, j]
    if p % 2 == 1:  # odd size: border with the one-dimensional integrals (de Bruijn)
        for i in range(p):
            a_matrix[i, p] = moments[i]
            a_prime[i, p] = g_moments[i]
            a_matrix[p, i] = -moments[i]
            a_prime[p, i] = -g_moments[i]
    expected_sum_g = _pfaffian_log_derivative(a_matrix, a_prime)
    return (dim - p) + expected_sum_g


def ridge_bayes_risk(position: int, dim: int, noise_variance: float) -> float:
    """Bayes risk of ridge (the posterior mean for ``w ~ N(0, I_D)``) at a 1-indexed position.

    ``R(k) = σ² + E tr(σ²(XᵀX + σ²I)⁻¹)`` with ``X`` the ``(k-1)×D`` Gaussian context
    (Raventós et al. 2023, section 2; module docstring for the computation). ``R(1) = D + σ²``.
    """
    if not isinstance(position, (int, np.integer)) or position < 1:
        raise ValueError(f"position must be an integer ≥ 1 (positions are 1-indexed); got {position!r}")
    return float(noise_variance) + expected_trace_posterior_covariance(position - 1, dim, noise_variance)


def ridge_bayes_risks(num_examples: int, dim: int, noise_variance: float) -> list[float]:
    """``[R_ridge(1), …, R_ridge(K)]``: the ridge Bayes risk at every position of a length-K sequence."""
    if not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
        raise ValueError(f"num_examples must be a positive integer (K); got {num_examples!r}")
    return [ridge_bayes_risk(k, dim, noise_variance) for k in range(1, num_examples + 1)]


def ridge_mean_bayes_risk(num_examples: int, dim: int, noise_variance: float) -> float:
    """``(1/K) Σ_k R_ridge(k)``: the Bayes risk of the loss averaged over positions."""
    risks = ridge_bayes_risks(num_examples, dim, noise_variance)
    return sum(risks) / len(risks)


def first_position_bayes_risk(dim: int, noise_variance: float) -> float:
    """``D + σ²``: with no context the best prediction is the prior mean ``0``
    (Hoogland et al. 2024, stage LR1: the first-position loss tends to this value)."""
    _check_dim_and_noise(dim, noise_variance)
    return dim + float(noise_variance)


def _pool_array(task_pool: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    pool = np.asarray(task_pool, dtype=np.float64)
    if pool.ndim != 2 or pool.shape[0] < 1:
        raise ValueError(f"task_pool must be a (M, D) array of M ≥ 1 task vectors; got shape {pool.shape}")
    return pool


def dmmse_first_position_risk(task_pool, noise_variance: float) -> float:
    """Risk of dMMSE at position 1 on its own pool (task drawn uniformly from the pool).

    With no context the posterior is the uniform prior, so the prediction is ``x_1ᵀt̄``,
    ``t̄ = (1/M)Σ t_m``, and the risk is ``σ² + (1/M) Σ_m ||t_m - t̄||²`` (``σ²`` for M = 1).
    """
    pool = _pool_array(task_pool)
    _check_dim_and_noise(pool.shape[1], noise_variance)
    centred = pool - pool.mean(axis=0)
    return float(noise_variance) + float((centred**2).sum(axis=1).mean())


def dmmse_first_position_risk_gaussian_tasks(task_pool, noise_variance: float) -> float:
    """Risk of dMMSE_M at position 1 on fresh tasks ``w ~ N(0, I_D)`` (out of distribution).

    The prediction is ``x_1ᵀt̄``, so the risk is ``σ² + E||w - t̄||² = σ² + D + ||t̄||²``.
    """
    pool = _pool_array(task_pool)
    _check_dim_and_noise(pool.shape[1], noise_variance)
    mean = pool.mean(axis=0)
    return float(noise_variance) + pool.shape[1] + float(mean @ mean)
