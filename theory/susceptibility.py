"""Exact susceptibilities and influence functions for Gaussian (and 1-D singular) posteriors.

Convention (Baker et al., "Structural inference: interpreting small language models with
susceptibilities", arXiv 2504.18274): perturb the loss ``L^h = L + h dL`` (``dL = L_{q'} - L_q``
for a data mixture ``q_h = (1 - h) q + h q'``) and let ``p_h ∝ exp(-n beta L^h - (gamma/2)
||w - w*||^2)``. The susceptibility of an observable ``phi`` is::

    chi = -Cov_{p_0}(phi, dL),

and fluctuation-dissipation (exact, differentiate the log-normaliser) gives the Jacobian::

    d/dh E_{p_h}[phi] |_{h=0} = n beta chi = -n beta Cov_{p_0}(phi, dL).

Per-sample version, the Bayesian influence function (Kreer et al., "Bayesian influence functions
for Hessian-free data attribution", arXiv 2509.26544):
``BIF(z_i, phi) = -Cov(l_i, phi)``; with per-sample weights ``(1 + eps_i)`` on the losses,
``exp(-beta sum_i (1 + eps_i) l_i)``, one has ``d/d eps_i E[phi] = -beta Cov(phi, l_i) = beta BIF``.

Everything here is float64 numpy in closed form: the posterior of ``L = ½ (w - m)^T A (w - m)`` is
Gaussian, ``N(mu, Sigma)``, and covariances of linear and quadratic forms under it are exact.
The 1-D singular oracle ``K = w^{2k}`` (Watanabe, Algebraic Geometry and Statistical Learning
Theory, 2009, ch. 2) shows that the energy-energy fluctuation recovers ``lambda``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from numbers import Integral, Rational, Real

import numpy as np
from scipy.special import gammainc

__all__ = [
    "bayesian_influence_gaussian",
    "classical_influence",
    "gaussian_posterior",
    "linear_quadratic_covariance",
    "perturbed_gaussian_posterior",
    "posterior_mean_derivative",
    "quadratic_form_covariance",
    "quadratic_form_mean",
    "quadratic_quadratic_covariance",
    "singular_energy_moments",
    "singular_energy_variance",
    "susceptibility",
]


# ----------------------------------------------------------------------------- input checks


def _matrix(value, name: str, dim: int | None = None) -> np.ndarray:
    """A finite symmetric float64 matrix (a quadratic form only sees its symmetric part, so a
    non-symmetric one is almost surely a caller's mistake and is refused)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"{name} must have shape ({dim}, {dim}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    scale = max(1.0, float(np.abs(arr).max()))
    if np.abs(arr - arr.T).max() > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric; pass (M + M.T) / 2")
    return (arr + arr.T) / 2  # remove round-off asymmetry


def _vector(value, name: str, dim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (dim,):
        raise ValueError(f"{name} must have shape ({dim},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


def _optional_vector(value, name: str, dim: int) -> np.ndarray:
    return np.zeros(dim) if value is None else _vector(value, name, dim)


def _optional_matrix(value, name: str, dim: int) -> np.ndarray:
    return np.zeros((dim, dim)) if value is None else _matrix(value, name, dim)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 <= value < math.inf):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def _mean_and_covariance(mu, Sigma) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu must be a vector, got shape {mu.shape}")
    return _vector(mu, "mu", mu.shape[0]), _matrix(Sigma, "Sigma", mu.shape[0])


# ----------------------------------------------------------------------------- posteriors


def _gaussian_from_natural(precision: np.ndarray, shift: np.ndarray):
    """``exp(-½ w^T P w + b^T w)`` is ``N(P^{-1} b, P^{-1})``; P must be positive definite."""
    try:
        chol = np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the posterior precision n beta A + gamma I is not positive definite: make A positive "
            "definite or use localization > 0"
        ) from None
    inv_chol = np.linalg.solve(chol, np.eye(len(shift)))
    sigma = inv_chol.T @ inv_chol
    return sigma @ shift, (sigma + sigma.T) / 2


def _natural_parameters(A, m, nbeta, localization, center):
    A = _matrix(A, "A")
    dim = A.shape[0]
    m = _vector(m, "m", dim)
    t = _positive(nbeta, "nbeta")
    gamma = _nonnegative(localization, "localization")
    center = m if center is None else _vector(center, "center", dim)
    return A, m, t, gamma, center


def gaussian_posterior(A, m, *, nbeta, localization=0.0, center=None):
    """Mean and covariance of the localised tempered posterior of a quadratic loss.

    ``L(w) = ½ (w - m)^T A (w - m)`` and ``p(w) ∝ exp(-n beta L(w) - (gamma/2) ||w - w*||^2)``
    (Lau et al. arXiv 2308.12108, eq. for the localised posterior) is ``N(mu, Sigma)`` with::

        Sigma = (t A + gamma I)^{-1},   mu = Sigma (t A m + gamma w*),   t = n beta.

    ``center`` is ``w*`` and defaults to ``m`` (the minimum, where the LLC is usually estimated).
    ``A`` may be singular when ``localization > 0``. Returns ``(mu, Sigma)``.
    """
    A, m, t, gamma, center = _natural_parameters(A, m, nbeta, localization, center)
    return _gaussian_from_natural(t * A + gamma * np.eye(len(m)), t * A @ m + gamma * center)


def perturbed_gaussian_posterior(A, m, g, B, h, *, nbeta, localization=0.0, center=None):
    """The posterior of ``L^h = L + h dL`` with ``dL(w) = g^T w + ½ w^T B w`` (still Gaussian).

    ``p_h ∝ exp(-t L^h - (gamma/2)||w - w*||^2)``, ``t = n beta``, is ``N(mu(h), Sigma(h))``::

        Sigma(h) = (t A + t h B + gamma I)^{-1},   mu(h) = Sigma(h) (t A m - t h g + gamma w*).

    ``g`` or ``B`` may be ``None`` (zero). Used for finite differences in ``h``.
    """
    A, m, t, gamma, center = _natural_parameters(A, m, nbeta, localization, center)
    dim = len(m)
    g, B = _optional_vector(g, "g", dim), _optional_matrix(B, "B", dim)
    if isinstance(h, bool) or not isinstance(h, Real) or not math.isfinite(h):
        raise ValueError(f"h must be a finite number, got {h!r}")
    precision = t * A + t * h * B + gamma * np.eye(dim)
    return _gaussian_from_natural(precision, t * A @ m - t * h * g + gamma * center)


# ----------------------------------------------------------------------------- covariances


def quadratic_form_mean(mu, Sigma, *, c0=0.0, c=None, C=None) -> float:
    """``E[c0 + c^T w + ½ w^T C w] = c0 + c^T mu + ½ (mu^T C mu + tr(C Sigma))``, w ~ N(mu, Sigma).
    """
    mu, Sigma = _mean_and_covariance(mu, Sigma)
    dim = len(mu)
    c, C = _optional_vector(c, "c", dim), _optional_matrix(C, "C", dim)
    return float(c0 + c @ mu + 0.5 * (mu @ C @ mu + np.trace(C @ Sigma)))


def quadratic_form_covariance(mu, Sigma, *, c=None, C=None, g=None, B=None) -> float:
    """``Cov(phi, dL)`` for ``phi = c0 + c^T w + ½ w^T C w``, ``dL = g0 + g^T w + ½ w^T B w``.

    For ``w ~ N(mu, Sigma)`` write ``w = mu + z``. Constants drop out; odd moments of z vanish;
    ``Cov(z^T C z, z^T B z) = 2 tr(C Sigma B Sigma)`` (Isserlis). Collecting the terms::

        Cov = c^T Sigma g + c^T Sigma B mu + g^T Sigma C mu + mu^T C Sigma B mu
              + ½ tr(C Sigma B Sigma)
            = (c + C mu)^T Sigma (g + B mu) + ½ tr(C Sigma B Sigma),

    i.e. gradients at the mean through Sigma plus the curvature term. ``None`` means zero.
    """
    mu, Sigma = _mean_and_covariance(mu, Sigma)
    dim = len(mu)
    c, g = _optional_vector(c, "c", dim), _optional_vector(g, "g", dim)
    C, B = _optional_matrix(C, "C", dim), _optional_matrix(B, "B", dim)
    return float((c + C @ mu) @ Sigma @ (g + B @ mu) + 0.5 * np.trace(C @ Sigma @ B @ Sigma))


def linear_quadratic_covariance(c, g, B, mu, Sigma) -> float:
    """``Cov(c^T w, g^T w + ½ w^T B w) = c^T Sigma g + c^T Sigma B mu`` for w ~ N(mu, Sigma).

    Gaussian moments (Isserlis); the linear-observable case of ``quadratic_form_covariance``.
    """
    return quadratic_form_covariance(mu, Sigma, c=c, g=g, B=B)


def quadratic_quadratic_covariance(C, B, mu, Sigma) -> float:
    """``Cov(½ w^T C w, ½ w^T B w) = ½ tr(C Sigma B Sigma) + mu^T C Sigma B mu``, w ~ N(mu, Sigma).
    """
    return quadratic_form_covariance(mu, Sigma, C=C, B=B)


def susceptibility(A, m, *, nbeta, localization=0.0, center=None, c=None, C=None, g=None, B=None):
    """Susceptibility ``chi = -Cov_p(phi, dL)`` under the posterior of ``gaussian_posterior``.

    ``phi = c^T w + ½ w^T C w``, ``dL = g^T w + ½ w^T B w`` (constants do not matter). The sign
    convention is that of Baker et al. arXiv 2504.18274: the response of the posterior mean to
    ``L -> L + h dL`` is ``d/dh E[phi] = n beta chi = -n beta Cov(phi, dL)``
    (fluctuation-dissipation; see ``posterior_mean_derivative``).
    """
    mu, Sigma = gaussian_posterior(A, m, nbeta=nbeta, localization=localization, center=center)
    return -quadratic_form_covariance(mu, Sigma, c=c, C=C, g=g, B=B)


def posterior_mean_derivative(A, m, g, B, c, *, nbeta, localization=0.0, center=None, C=None):
    """Exact ``d/dh E_{p_h}[phi]`` at ``h = 0``, ``phi = c^T w + ½ w^T C w``, by differentiating
    the Gaussian posterior of ``perturbed_gaussian_posterior`` (not via a covariance).

    With ``P(h) = t A + t h B + gamma I`` and ``b(h) = t A m - t h g + gamma w*``, ``t = n beta``:
    ``Sigma' = -Sigma (t B) Sigma`` and ``mu' = Sigma' b + Sigma b' = -t Sigma (B mu + g)``, so::

        d/dh E[phi] = (c + C mu)^T mu' + ½ tr(C Sigma')
                    = -t (c + C mu)^T Sigma (g + B mu) - (t/2) tr(C Sigma B Sigma),

    which is ``-n beta Cov(phi, dL)`` (fluctuation-dissipation, Baker et al. arXiv 2504.18274).
    ``g``, ``B``, ``c`` may be ``None`` (zero).
    """
    mu, Sigma = gaussian_posterior(A, m, nbeta=nbeta, localization=localization, center=center)
    dim = len(mu)
    t = float(nbeta)
    g, c = _optional_vector(g, "g", dim), _optional_vector(c, "c", dim)
    B, C = _optional_matrix(B, "B", dim), _optional_matrix(C, "C", dim)
    d_mu = -t * Sigma @ (B @ mu + g)
    d_Sigma = -t * Sigma @ B @ Sigma
    return float((c + C @ mu) @ d_mu + 0.5 * np.trace(C @ d_Sigma))


# ----------------------------------------------------------------------------- influence


def classical_influence(A, grad_phi, grad_loss_i, n) -> float:
    """Classical influence of sample i on ``phi``: ``-grad_phi^T (n A)^{-1} grad_loss_i``.

    ``n A`` is the Hessian of the total loss ``sum_j l_j`` at the minimum (Koh & Liang 2017,
    up-weighting a sample by ``eps``: ``d w_hat / d eps = -(n A)^{-1} grad l_i``).
    """
    A = _matrix(A, "A")
    dim = A.shape[0]
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive integer (the sample size), got {n!r}")
    grad_phi = _vector(grad_phi, "grad_phi", dim)
    grad_loss_i = _vector(grad_loss_i, "grad_loss_i", dim)
    try:
        return float(-grad_phi @ np.linalg.solve(n * A, grad_loss_i))
    except np.linalg.LinAlgError:
        raise ValueError("A must be invertible for the classical influence") from None


def bayesian_influence_gaussian(A, m, A_i, x_i, c, *, nbeta, localization=0.0, center=None, C=None):
    """Bayesian influence ``BIF(z_i, phi) = -Cov(l_i, phi)`` under ``gaussian_posterior(A, m)``.

    Per-sample loss ``l_i(w) = ½ (w - x_i)^T A_i (w - x_i)`` (gradient ``A_i (w - x_i)``,
    Hessian ``A_i``), observable ``phi = c^T w + ½ w^T C w``. Kreer et al. arXiv 2509.26544.
    The beta factor: with weights ``(1 + eps_i)``, ``p ∝ exp(-beta sum_j (1 + eps_j) l_j)``, so
    ``d/d eps_i E[phi] = -beta Cov(phi, l_i) = beta BIF`` with ``beta = nbeta / n``.

    Exact link to the classical influence (loss ``sum_j l_j = n L``, ``gamma = 0``):

    - linear phi: the posterior mean is the eps-weighted least-squares minimiser for every beta,
      and ``beta BIF = -c^T (n A)^{-1} A_i (m - x_i)``, the classical influence, exactly;
    - quadratic phi:
      ``beta BIF = classical(grad phi(m)) - tr(C (nA)^{-1} A_i (nA)^{-1}) / (2 beta)``;
    - ``gamma > 0``, linear phi: ``beta BIF = -c^T (n A + (gamma/beta) I)^{-1} A_i (mu - x_i)``.
    """
    mu, Sigma = gaussian_posterior(A, m, nbeta=nbeta, localization=localization, center=center)
    dim = len(mu)
    A_i = _matrix(A_i, "A_i", dim)
    x_i = _vector(x_i, "x_i", dim)
    return -quadratic_form_covariance(mu, Sigma, c=c, C=C, g=-A_i @ x_i, B=A_i)


# ----------------------------------------------------------------------------- singular 1-D


def _exponent_and_prior(k, h) -> tuple[int, Fraction | float]:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer (K = w^(2k)), got {k!r}")
    if isinstance(h, bool) or not isinstance(h, Real) or not (-1 < h < math.inf):
        raise ValueError(f"h must be a number > -1 (prior |w|^h), got {h!r}")
    return int(k), h


def singular_energy_variance(k, h=0) -> Fraction:
    """``Var(t K) = lambda = (h + 1) / (2k)`` for ``K = w^{2k}`` on ``[0, inf)``, prior ``|w|^h``.

    Substituting ``u = t w^{2k}`` turns ``w^h exp(-t w^{2k}) dw`` into ``∝ u^{s-1} e^{-u} du``
    with ``s = (h + 1)/(2k)``: ``t K ~ Gamma(s, 1)`` for every t, so ``E[tK] = Var(tK) = s``
    (Watanabe 2009, ch. 2; Baker et al. arXiv 2504.18274). ``h`` must be rational (int or Fraction).
    """
    k, h = _exponent_and_prior(k, h)
    if not isinstance(h, Rational):
        raise ValueError(f"h must be an int or Fraction for an exact answer, got {h!r}")
    return (Fraction(h) + 1) / (2 * k)


def singular_energy_moments(k, h, t, *, upper=math.inf) -> tuple[float, float]:
    """Mean and variance of ``t K``, ``K = w^{2k}``, density ``∝ w^h exp(-t w^{2k})`` on [0, upper].

    ``t K`` is ``Gamma(s, 1)`` truncated to ``[0, T]``, ``s = (h + 1)/(2k)``, ``T = t upper^{2k}``
    (``[-1, 1]`` with prior ``|w|^h`` is the case ``upper = 1``). With ``P`` the regularised lower
    incomplete gamma function::

        E[tK] = s P(s + 1, T) / P(s, T),   E[(tK)^2] = s (s + 1) P(s + 2, T) / P(s, T),

    and ``(s, s)`` for ``upper = inf``. Returns ``(mean, variance)`` in float64.
    """
    k, h = _exponent_and_prior(k, h)
    t = _positive(t, "t")
    if isinstance(upper, bool) or not isinstance(upper, Real) or not upper > 0:
        raise ValueError(f"upper must be positive (math.inf for [0, inf)), got {upper!r}")
    s = (float(h) + 1) / (2 * k)
    if upper == math.inf:
        return s, s
    cutoff = t * upper ** (2 * k)
    norm = gammainc(s, cutoff)
    if norm == 0.0:
        raise ValueError(f"t * upper^(2k) = {cutoff!r} is too small to normalise in float64")
    mean = s * gammainc(s + 1, cutoff) / norm
    second = s * (s + 1) * gammainc(s + 2, cutoff) / norm
    return float(mean), float(second - mean * mean)
