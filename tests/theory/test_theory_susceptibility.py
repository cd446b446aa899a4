"""Checks of theory/susceptibility.py: Monte Carlo, finite differences, quadrature, scipy."""

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate, stats

from theory.susceptibility import (
    bayesian_influence_gaussian,
    classical_influence,
    gaussian_posterior,
    linear_quadratic_covariance,
    perturbed_gaussian_posterior,
    posterior_mean_derivative,
    quadratic_form_covariance,
    quadratic_form_mean,
    quadratic_quadratic_covariance,
    singular_energy_moments,
    singular_energy_variance,
    susceptibility,
)

DIM = 4


def _spd(rng, dim=DIM, floor=0.3):
    x = rng.standard_normal((dim, dim))
    return x @ x.T / dim + floor * np.eye(dim)


def _sym(rng, dim=DIM):
    x = rng.standard_normal((dim, dim))
    return (x + x.T) / 2


@pytest.fixture
def problem():
    rng = np.random.default_rng(20250518)
    return dict(
        A=_spd(rng), m=rng.standard_normal(DIM), center=rng.standard_normal(DIM),
        c=rng.standard_normal(DIM), C=_sym(rng), g=rng.standard_normal(DIM), B=_sym(rng),
    )


def _quadratic(w, lin, quad):
    return w @ lin + 0.5 * np.einsum("ni,ij,nj->n", w, quad, w)


def _assert_mc_covariance(x, y, exact, n_se=4.0):
    """Sample covariance within n_se Monte-Carlo standard errors of the exact value."""
    prod = (x - x.mean()) * (y - y.mean())
    se = prod.std(ddof=1) / math.sqrt(len(prod))
    assert abs(prod.mean() - exact) < n_se * se, (prod.mean(), exact, se)
    assert se < 0.05 * max(abs(exact), 1e-3) + 0.05  # the check is not vacuous


# ----------------------------------------------------------------------------- posterior


@pytest.mark.parametrize("gamma", [0.0, 2.5])
def test_gaussian_posterior_is_stationary_point_with_right_curvature(problem, gamma):
    t = 7.0
    A, m, w0 = problem["A"], problem["m"], problem["center"]
    mu, Sigma = gaussian_posterior(A, m, nbeta=t, localization=gamma, center=w0)
    # grad log p(mu) = -t A (mu - m) - gamma (mu - w*) = 0 and -Hessian = Sigma^{-1}.
    np.testing.assert_allclose(t * A @ (mu - m) + gamma * (mu - w0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Sigma @ (t * A + gamma * np.eye(DIM)), np.eye(DIM), atol=1e-12)


def test_gaussian_posterior_one_dimensional_quadrature():
    a, m, t, gamma, w0 = 1.7, 0.4, 3.0, 2.0, -1.0
    density = lambda w: math.exp(-t * a * (w - m) ** 2 / 2 - gamma * (w - w0) ** 2 / 2)
    moments = [integrate.quad(lambda w, p=p: w**p * density(w), -30, 30, points=[m, w0])[0]
               for p in range(3)]
    mu, Sigma = gaussian_posterior([[a]], [m], nbeta=t, localization=gamma, center=[w0])
    assert mu[0] == pytest.approx(moments[1] / moments[0], rel=1e-10)
    assert Sigma[0, 0] == pytest.approx(moments[2] / moments[0] - (moments[1] / moments[0]) ** 2,
                                        rel=1e-9)


def test_singular_A_needs_localization(problem):
    A = np.diag([1.0, 2.0, 0.0, 3.0])
    with pytest.raises(ValueError, match="localization > 0"):
        gaussian_posterior(A, problem["m"], nbeta=5.0)
    mu, Sigma = gaussian_posterior(A, problem["m"], nbeta=5.0, localization=1.0)
    assert Sigma[2, 2] == pytest.approx(1.0)  # the flat direction is held only by gamma


# ----------------------------------------------------------------------------- covariances


def test_covariances_against_monte_carlo(problem):
    rng = np.random.default_rng(7)
    mu, Sigma = gaussian_posterior(problem["A"], problem["m"], nbeta=3.0, localization=1.0,
                                   center=problem["center"])
    w = rng.multivariate_normal(mu, Sigma, size=400_000)
    c, C, g, B = (problem[k] for k in "cCgB")
    zero_v, zero_m = np.zeros(DIM), np.zeros((DIM, DIM))
    dl = _quadratic(w, g, B)
    _assert_mc_covariance(w @ c, dl, linear_quadratic_covariance(c, g, B, mu, Sigma))
    _assert_mc_covariance(_quadratic(w, zero_v, C), _quadratic(w, zero_v, B),
                          quadratic_quadratic_covariance(C, B, mu, Sigma))
    _assert_mc_covariance(_quadratic(w, c, C), dl,
                          quadratic_form_covariance(mu, Sigma, c=c, C=C, g=g, B=B))
    _assert_mc_covariance(_quadratic(w, c, zero_m), w @ g,
                          quadratic_form_covariance(mu, Sigma, c=c, g=g))
    # Means of quadratic forms too: standard error from the sample spread.
    phi = 0.3 + _quadratic(w, c, C)
    se = phi.std(ddof=1) / math.sqrt(len(phi))
    assert abs(phi.mean() - quadratic_form_mean(mu, Sigma, c0=0.3, c=c, C=C)) < 4 * se


def test_general_covariance_is_sum_of_the_four_pieces(problem):
    mu, Sigma = gaussian_posterior(problem["A"], problem["m"], nbeta=2.0)
    c, C, g, B = (problem[k] for k in "cCgB")
    pieces = (linear_quadratic_covariance(c, g, B, mu, Sigma)
              + quadratic_form_covariance(mu, Sigma, C=C, g=g)
              + quadratic_quadratic_covariance(C, B, mu, Sigma))
    assert quadratic_form_covariance(mu, Sigma, c=c, C=C, g=g, B=B) == pytest.approx(pieces,
                                                                                    rel=1e-12)
    # Cov(1/2 w^T C w, g^T w) = g^T Sigma C mu, and symmetry in the two arguments.
    assert quadratic_form_covariance(mu, Sigma, C=C, g=g) == pytest.approx(g @ Sigma @ C @ mu)
    assert quadratic_form_covariance(mu, Sigma, c=c, C=C, g=g, B=B) == pytest.approx(
        quadratic_form_covariance(mu, Sigma, c=g, C=B, g=c, B=C), rel=1e-12)


# ------------------------------------------------------------------- fluctuation-dissipation


@pytest.mark.parametrize("gamma", [0.0, 1.5])
@pytest.mark.parametrize("quadratic_phi", [False, True])
def test_fluctuation_dissipation_against_finite_differences(problem, gamma, quadratic_phi):
    t, delta = 4.0, 1e-5  # central difference: O(delta^2) error ~ 1e-9 relative here
    A, m, w0, c, g, B = (problem[k] for k in ("A", "m", "center", "c", "g", "B"))
    C = problem["C"] if quadratic_phi else None
    kw = dict(nbeta=t, localization=gamma, center=w0)

    def expected_phi(h):
        mu_h, Sigma_h = perturbed_gaussian_posterior(A, m, g, B, h, **kw)
        return quadratic_form_mean(mu_h, Sigma_h, c=c, C=C)

    finite_difference = (expected_phi(delta) - expected_phi(-delta)) / (2 * delta)
    exact = posterior_mean_derivative(A, m, g, B, c, C=C, **kw)
    chi = susceptibility(A, m, c=c, C=C, g=g, B=B, **kw)
    assert finite_difference == pytest.approx(exact, rel=1e-7)
    assert exact == pytest.approx(t * chi, rel=1e-12)  # d/dh E[phi] = n beta chi
    assert abs(chi) > 1e-3  # not a trivially zero case


def test_perturbed_posterior_at_zero_is_unperturbed(problem):
    A, m, g, B = (problem[k] for k in ("A", "m", "g", "B"))
    for got, want in zip(perturbed_gaussian_posterior(A, m, g, B, 0.0, nbeta=2.0),
                         gaussian_posterior(A, m, nbeta=2.0)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_energy_energy_susceptibility_of_regular_model_is_half_dimension(problem):
    # dL = L: t^2 Var(L) = d/2 at gamma = 0 (E[tK] and Var(tK) are both d/2 for a Gaussian).
    A, m = problem["A"], problem["m"]
    t = 9.0
    chi = susceptibility(A, m, nbeta=t, g=-A @ m, B=A, c=-A @ m, C=A)
    assert -t * t * chi == pytest.approx(DIM / 2, rel=1e-12)


# ----------------------------------------------------------------------------- influence


@pytest.fixture
def samples():
    rng = np.random.default_rng(11)
    n = 30
    A_each = [_spd(rng, floor=0.05) for _ in range(n)]
    x_each = [rng.standard_normal(DIM) for _ in range(n)]
    nA = sum(A_each)
    m = np.linalg.solve(nA, sum(a @ x for a, x in zip(A_each, x_each)))  # minimiser of sum l_j
    return dict(n=n, A_each=A_each, x_each=x_each, A=nA / n, m=m, c=rng.standard_normal(DIM),
                C=_sym(rng))


@pytest.mark.parametrize("beta", [0.05, 1 / math.log(30), 3.0])
def test_bayesian_influence_times_beta_is_classical_influence_exactly(samples, beta):
    n, A, m, c = samples["n"], samples["A"], samples["m"], samples["c"]
    for A_i, x_i in list(zip(samples["A_each"], samples["x_each"]))[:5]:
        bif = bayesian_influence_gaussian(A, m, A_i, x_i, c, nbeta=n * beta)
        classical = classical_influence(A, c, A_i @ (m - x_i), n)
        assert beta * bif == pytest.approx(classical, rel=1e-10)
        assert abs(classical) > 1e-4


def test_weighted_posterior_mean_is_weighted_least_squares_and_derivative_is_influence(samples):
    # exp(-beta sum_j (1 + eps_j) l_j) = exp(-n beta (L + (eps_i / n) l_i)): h = eps_i / n.
    n, A, m, c = samples["n"], samples["A"], samples["m"], samples["c"]
    A_i, x_i = samples["A_each"][0], samples["x_each"][0]
    beta, delta = 0.4, 1e-4

    def mean_phi(eps, nbeta):
        mu, _ = perturbed_gaussian_posterior(A, m, -A_i @ x_i, A_i, eps / n, nbeta=nbeta)
        return c @ mu

    # At gamma = 0 the mean is the eps-weighted least-squares minimiser, for every beta.
    eps = 0.7
    weighted = np.linalg.solve(n * A + eps * A_i, n * A @ m + eps * A_i @ x_i)
    for nbeta in (n * 0.01, n * beta, n * 50.0):
        assert mean_phi(eps, nbeta) == pytest.approx(c @ weighted, rel=1e-10)
    fd = (mean_phi(delta, n * beta) - mean_phi(-delta, n * beta)) / (2 * delta)
    assert fd == pytest.approx(classical_influence(A, c, A_i @ (m - x_i), n), rel=1e-7)
    assert fd == pytest.approx(
        beta * bayesian_influence_gaussian(A, m, A_i, x_i, c, nbeta=n * beta), rel=1e-7)
    # ... but the shift is not linear in eps: the influence is first order only.
    assert abs(mean_phi(eps, n * beta) - mean_phi(0.0, n * beta) - eps * fd) > 1e-6


def test_quadratic_observable_differs_from_classical_by_a_temperature_term(samples):
    n, A, m, c, C = (samples[k] for k in ("n", "A", "m", "c", "C"))
    A_i, x_i = samples["A_each"][1], samples["x_each"][1]
    nA_inv = np.linalg.inv(n * A)
    for beta in (0.1, 1.0, 10.0):
        bif = bayesian_influence_gaussian(A, m, A_i, x_i, c, C=C, nbeta=n * beta)
        classical = classical_influence(A, c + C @ m, A_i @ (m - x_i), n)
        correction = np.trace(C @ nA_inv @ A_i @ nA_inv) / (2 * beta)
        assert beta * bif == pytest.approx(classical - correction, rel=1e-10)


def test_localization_turns_influence_into_ridge_influence_at_posterior_mean(samples):
    n, A, m, c = samples["n"], samples["A"], samples["m"], samples["c"]
    A_i, x_i = samples["A_each"][2], samples["x_each"][2]
    beta, gamma, w0 = 0.3, 4.0, np.ones(DIM)
    mu, _ = gaussian_posterior(A, m, nbeta=n * beta, localization=gamma, center=w0)
    bif = bayesian_influence_gaussian(A, m, A_i, x_i, c, nbeta=n * beta, localization=gamma,
                                      center=w0)
    ridge = -c @ np.linalg.solve(n * A + gamma / beta * np.eye(DIM), A_i @ (mu - x_i))
    assert beta * bif == pytest.approx(ridge, rel=1e-10)
    assert abs(beta * bif - classical_influence(A, c, A_i @ (m - x_i), n)) > 1e-4


def test_influences_of_all_samples_sum_to_zero_at_gamma_zero(samples):
    # sum_i grad l_i(m) = 0 at the minimiser, and Cov(phi, n L) = 0 for linear phi when mu = m.
    n, A, m, c = samples["n"], samples["A"], samples["m"], samples["c"]
    total = sum(bayesian_influence_gaussian(A, m, A_i, x_i, c, nbeta=n * 0.5)
                for A_i, x_i in zip(samples["A_each"], samples["x_each"]))
    assert abs(total) < 1e-10


# ----------------------------------------------------------------------------- singular 1-D


@pytest.mark.parametrize("k, h, expected", [(1, 0, Fraction(1, 2)), (2, 0, Fraction(1, 4)),
                                            (3, 2, Fraction(1, 2)), (2, Fraction(1, 2),
                                                                     Fraction(3, 8))])
def test_singular_energy_variance_is_lambda(k, h, expected):
    value = singular_energy_variance(k, h)
    assert value == expected and isinstance(value, Fraction)


def _truncated_moments_by_quadrature(k, h, t, upper):
    # Rescale v = t^(1/2k) w so that tK = v^(2k) and the density is v^h exp(-v^(2k)).
    top = t ** (1 / (2 * k)) * upper
    moment = lambda p: integrate.quad(lambda v: v ** (h + 2 * k * p) * math.exp(-v ** (2 * k)),
                                      0, top, epsabs=0, epsrel=1e-12, limit=200)[0]
    z, first, second = moment(0), moment(1), moment(2)
    return first / z, second / z - (first / z) ** 2


@pytest.mark.parametrize("k, h", [(1, 0), (2, 0), (2, 3), (3, 1)])
def test_energy_law_is_gamma(k, h):
    s = (h + 1) / (2 * k)
    mean, var = singular_energy_moments(k, h, 1e4)
    law = stats.gamma(s)
    assert mean == pytest.approx(law.mean(), rel=1e-14)
    assert var == pytest.approx(law.var(), rel=1e-14)
    assert var == float(singular_energy_variance(k, h))
    quad_mean, quad_var = _truncated_moments_by_quadrature(k, h, 1.0, math.inf)
    assert quad_mean == pytest.approx(s, rel=1e-9) and quad_var == pytest.approx(s, rel=1e-8)
    # The distribution function of tK, by quadrature in w, is the Gamma(s, 1) one.
    t = 50.0
    z = integrate.quad(lambda w: w**h * math.exp(-t * w ** (2 * k)), 0, math.inf)[0]
    for u in (0.1, 0.5, 2.0):
        cdf = integrate.quad(lambda w: w**h * math.exp(-t * w ** (2 * k)), 0,
                             (u / t) ** (1 / (2 * k)))[0] / z
        assert cdf == pytest.approx(law.cdf(u), rel=1e-8)


@pytest.mark.parametrize("k, h, t", [(1, 0, 0.5), (1, 0, 20.0), (2, 1, 3.0), (3, 0, 1e3)])
def test_truncated_energy_moments_against_quadrature(k, h, t):
    got = singular_energy_moments(k, h, t, upper=1.0)
    want = _truncated_moments_by_quadrature(k, h, t, 1.0)
    assert got == (pytest.approx(want[0], rel=1e-8), pytest.approx(want[1], rel=1e-7))


def test_truncated_energy_moments_at_large_t_approach_lambda():
    mean, var = singular_energy_moments(2, 0, 1e8, upper=1.0)
    assert mean == pytest.approx(0.25, rel=1e-12) and var == pytest.approx(0.25, rel=1e-12)
    mean, _ = singular_energy_moments(2, 0, 1.0, upper=1.0)
    assert mean < 0.25 - 0.01  # finite t pulls the energy below lambda


# ----------------------------------------------------------------------------- validation


def test_bad_input_raises(problem):
    A, m = problem["A"], problem["m"]
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_posterior(A + np.triu(np.ones((DIM, DIM)), 1), m, nbeta=1.0)
    with pytest.raises(ValueError, match="square"):
        gaussian_posterior(np.ones((2, 3)), m, nbeta=1.0)
    with pytest.raises(ValueError, match=r"m must have shape \(4,\)"):
        gaussian_posterior(A, m[:3], nbeta=1.0)
    with pytest.raises(ValueError, match="nbeta must be a positive"):
        gaussian_posterior(A, m, nbeta=0.0)
    with pytest.raises(ValueError, match="localization must be a non-negative"):
        gaussian_posterior(A, m, nbeta=1.0, localization=-1.0)
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_posterior(A, m * np.nan, nbeta=1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        gaussian_posterior(-A, m, nbeta=1.0)
    with pytest.raises(ValueError, match=r"B must have shape \(4, 4\)"):
        susceptibility(A, m, nbeta=1.0, B=np.eye(3))
    with pytest.raises(ValueError, match="h must be a finite number"):
        perturbed_gaussian_posterior(A, m, None, None, math.inf, nbeta=1.0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        classical_influence(A, m, m, 2.5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        singular_energy_variance(0)
    with pytest.raises(ValueError, match="h must be a number > -1"):
        singular_energy_variance(1, -1)
    with pytest.raises(ValueError, match="int or Fraction"):
        singular_energy_variance(1, 0.5)
    with pytest.raises(ValueError, match="t must be a positive"):
        singular_energy_moments(1, 0, -2.0)
