"""theory.volumes: exact prior volumes of {K < ε}, each value checked a second, independent way."""

import math
from fractions import Fraction

import numpy as np
import pytest

from theory.normal_crossing import learning_coefficient
from theory.volumes import (
    hypoexponential_terms,
    normal_crossing_leading_term,
    normal_crossing_volume,
    quadratic_leading_term,
    quadratic_volume_box,
    quadratic_volume_gaussian,
    volume_learning_coefficient,
)

MONOMIALS = [([1, 1], None), ([1, 2], None), ([2, 2], None), ([1, 1, 1], None),
             ([1, 2], [1, 0]), ([1, 1], [Fraction(1, 2), Fraction(1, 2)]), ([1, 0, 2], None)]


def test_hypoexponential_known_cases_in_exact_rationals():
    # one rate: e^{-ρL}; two equal rates (Erlang 2): e^{-ρL}(1 + ρL)
    assert hypoexponential_terms([Fraction(1, 2)]) == [(Fraction(1, 2), [Fraction(1)])]
    assert hypoexponential_terms([Fraction(1, 2)] * 2) == [(Fraction(1, 2), [Fraction(1), Fraction(1, 2)])]
    # two distinct rates: (ρ2 e^{-ρ1 L} − ρ1 e^{-ρ2 L})/(ρ2 − ρ1)
    assert hypoexponential_terms([Fraction(1, 4), Fraction(1, 2)]) == [
        (Fraction(1, 4), [Fraction(2)]), (Fraction(1, 2), [Fraction(-1)])]
    # survival at L = 0 is 1 for any rates
    for rates in ([1, 2, 3], [Fraction(1, 3)] * 3 + [1], [Fraction(1, 2), Fraction(1, 2), 2]):
        assert sum(c[0] for _, c in hypoexponential_terms(rates)) == 1


def test_x2y2_closed_form():
    # P(|xy| < √ε) on [0,1]² = √ε (1 + log(1/√ε))
    for eps in (1e-1, 1e-4, 1e-9):
        exact = math.sqrt(eps) * (1 + 0.5 * math.log(1 / eps))
        assert normal_crossing_volume([1, 1], eps=eps) == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("k,h", MONOMIALS)
def test_normal_crossing_closed_form_equals_quadrature(k, h):
    for eps in (0.3, 1e-3, 1e-8):
        closed = normal_crossing_volume(k, h, eps=eps)
        quad = normal_crossing_volume(k, h, eps=eps, method="quadrature")
        assert closed == pytest.approx(quad, rel=1e-9)


def test_blocks_closed_form_equals_quadrature_and_monte_carlo():
    k = [[1], [1, 1]]
    for eps in (1e-2, 1e-5):
        assert normal_crossing_volume(k, eps=eps) == pytest.approx(
            normal_crossing_volume(k, eps=eps, method="quadrature"), rel=1e-8)
    rng = np.random.default_rng(0)
    n = 1_000_000
    u = rng.uniform(-1, 1, (n, 3))
    K = u[:, 0] ** 2 + u[:, 1] ** 2 * u[:, 2] ** 2
    p = normal_crossing_volume(k, eps=1e-2)
    assert abs((K < 1e-2).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_box_and_prior_exponents_against_monte_carlo():
    rng = np.random.default_rng(1)
    n = 1_000_000
    # prior ∝ |x|^1 on [-2, 2], uniform on y: |x| = 2 U^{1/2}
    x = 2 * np.sqrt(rng.uniform(size=n))
    y = rng.uniform(-2, 2, n)
    K = x**2 * y**4
    for eps in (0.5, 1e-2):
        p = normal_crossing_volume([1, 2], [1, 0], eps=eps, box=2.0)
        assert abs((K < eps).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("k,h", MONOMIALS + [([[1], [1, 1]], None), ([[1, 1], [2]], None)])
def test_leading_term_matches_learning_coefficient_and_the_volume(k, h):
    lam, m, C = normal_crossing_leading_term(k, h)
    assert (lam, m) == learning_coefficient(k, h)
    if m == 1:  # the correction is a higher power of ε: the ratio is 1 to many digits
        eps = 1e-14
        assert normal_crossing_volume(k, h, eps=eps) / (C * eps ** float(lam)) == pytest.approx(1, rel=1e-3)
    else:  # the next term is one power of log lower: ratio 1 + O(1/log(1/ε))
        ratios = [normal_crossing_volume(k, h, eps=e) / (C * e ** float(lam) * math.log(1 / e) ** (m - 1))
                  for e in (1e-20, 1e-80)]
        assert abs(ratios[1] - 1) < abs(ratios[0] - 1) < 0.5


def test_volume_is_one_above_the_box_maximum():
    assert normal_crossing_volume([1, 1], eps=1.5) == 1.0
    assert normal_crossing_volume([1, 1], eps=20.0, box=2.0) == 1.0
    assert normal_crossing_volume([1, 1], eps=15.0, box=2.0) < 1.0


@pytest.mark.parametrize("eigenvalues,gamma", [([1.0], 1.0), ([1.0, 2.0, 3.0], 1.0), ([0.1, 10.0], 3.0),
                                               ([2.0, 0.0, 5.0, 1.0], 0.5)])
def test_gaussian_quadratic_ruben_equals_conditional(eigenvalues, gamma):
    for eps in (1e-3, 0.1, 1.0, 5.0):
        a = quadratic_volume_gaussian(eigenvalues, eps=eps, localization=gamma)
        b = quadratic_volume_gaussian(eigenvalues, eps=eps, localization=gamma, method="conditional")
        assert a == pytest.approx(b, rel=1e-9)


def test_gaussian_quadratic_equal_eigenvalues_is_chi_square():
    from scipy import stats
    for q in (1, 2, 5):
        for eps in (0.01, 1.0):
            # K = a|z|²/(2γ) < ε  ⟺  χ²_q < 2γε/a
            assert quadratic_volume_gaussian([2.0] * q, eps=eps, localization=0.5) == pytest.approx(
                stats.chi2.cdf(2 * 0.5 * eps / 2.0, q), rel=1e-12)


def test_quadratic_leading_terms():
    a = [1.0, 2.0, 3.0]
    lam, m, C = quadratic_leading_term(a, localization=2.0)
    assert (lam, m) == (Fraction(3, 2), 1)
    eps = 1e-8
    assert quadratic_volume_gaussian(a, eps=eps, localization=2.0) / (C * eps**1.5) == pytest.approx(1, rel=1e-6)
    lam, m, C = quadratic_leading_term(a, prior="box", box=2.0)
    assert quadratic_volume_box(a, eps=eps, box=2.0) == pytest.approx(C * eps**1.5, rel=1e-12)


def test_box_quadratic_closed_form_equals_quadrature_and_monte_carlo():
    a = [1.0, 4.0]
    assert quadratic_volume_box(a, eps=0.1, method="closed") == pytest.approx(
        quadratic_volume_box(a, eps=0.1, method="quadrature"), rel=1e-9)
    # beyond the inscribed regime (2ε/a_1 > B²): quadrature against Monte Carlo
    rng = np.random.default_rng(2)
    n = 1_000_000
    u = rng.uniform(-1, 1, (n, 2))
    K = 0.5 * (u[:, 0] ** 2 + 4 * u[:, 1] ** 2)
    p = quadratic_volume_box(a, eps=0.7)
    assert abs((K < 0.7).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    with pytest.raises(ValueError, match="does not fit"):
        quadratic_volume_box(a, eps=0.7, method="closed")


def test_local_slope_tends_to_lambda():
    slope = volume_learning_coefficient(1e-12, 1e-10, lambda e: normal_crossing_volume([1, 2], eps=e))
    assert slope == pytest.approx(0.25, rel=1e-3)
    slope = volume_learning_coefficient(1e-12, 1e-10, lambda e: normal_crossing_volume([1, 1], eps=e))
    # m = 2: d log V / d log ε = ½ − 1/(2 + log(1/ε)) at this ε, below ½
    assert 0.45 < slope < 0.48


@pytest.mark.parametrize("bad", [0, -1e-3, float("nan"), float("inf"), "1e-3", True])
def test_bad_eps_is_refused(bad):
    with pytest.raises(ValueError, match="eps"):
        normal_crossing_volume([1, 1], eps=bad)
    with pytest.raises(ValueError, match="eps"):
        quadratic_volume_gaussian([1.0], eps=bad)


def test_other_bad_input_is_refused():
    with pytest.raises(ValueError, match="box"):
        normal_crossing_volume([1, 1], eps=0.1, box=0)
    with pytest.raises(ValueError, match="h_i"):
        normal_crossing_volume([1, 1], [-1, 0], eps=0.1)
    with pytest.raises(ValueError, match="eigenvalues"):
        quadratic_volume_gaussian([-1.0], eps=0.1)
    with pytest.raises(ValueError, match="all eigenvalues are 0"):
        quadratic_volume_box([0.0, 0.0], eps=0.1)
    with pytest.raises(ValueError, match="method"):
        normal_crossing_volume([1, 1], eps=0.1, method="mc")
