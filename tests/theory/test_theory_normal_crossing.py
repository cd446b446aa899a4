"""Exact normal-crossing learning coefficients and finite-temperature targets
(Watanabe 2009, ch. 2–3)."""

from fractions import Fraction

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from theory.regular import localized_llc, regular_learning_coefficient


@pytest.mark.parametrize(
    "k, h, expected",
    [
        ([1, 1], None, (Fraction(1, 2), 2)),  # a²b²
        ([1, 2], None, (Fraction(1, 4), 1)),  # a²b⁴
        ([2, 2], None, (Fraction(1, 4), 2)),  # a⁴b⁴
        ([1], [1], (Fraction(1), 1)),  # |w| prior on w²
        ([1, 1], [1, 0], (Fraction(1, 2), 1)),
        ([0, 3], None, (Fraction(1, 6), 1)),  # a variable absent from K does not count
        ([[1, 1], [1]], None, (Fraction(1), 2)),  # blocks: 1/2 + 1/2, m = (2-1)+(1-1)+1
        ([[1, 1], [2, 2]], None, (Fraction(3, 4), 3)),
    ],
)
def test_learning_coefficient_examples(k, h, expected):
    assert learning_coefficient(k, h) == expected
    assert isinstance(learning_coefficient(k, h)[0], Fraction)


exponents = st.lists(st.integers(0, 4), min_size=1, max_size=5).filter(lambda ks: any(ks))


@settings(deadline=None, max_examples=200)
@given(exponents, st.randoms(use_true_random=False))
def test_learning_coefficient_is_permutation_invariant(k, rnd):
    h = [rnd.randint(0, 3) for _ in k]
    order = list(range(len(k)))
    rnd.shuffle(order)
    assert learning_coefficient(k, h) == learning_coefficient([k[i] for i in order], [h[i] for i in order])


@settings(deadline=None, max_examples=200)
@given(st.lists(exponents, min_size=1, max_size=4))
def test_blocks_add(blocks):
    lam, m = learning_coefficient(blocks)
    parts = [learning_coefficient(b) for b in blocks]
    assert lam == sum(p[0] for p in parts)
    assert m == sum(p[1] - 1 for p in parts) + 1


@settings(deadline=None, max_examples=200)
@given(exponents)
def test_flat_prior_bounds(k):
    lam, m = learning_coefficient(k)
    d = len(k)
    assert 0 < lam <= Fraction(d, 2)
    assert 1 <= m <= d


@pytest.mark.parametrize("bad", [[], [-1], [1.5], [0, 0], [[1], 2], [True]])
def test_learning_coefficient_rejects_bad_exponents(bad):
    with pytest.raises(ValueError):
        learning_coefficient(bad)


def test_learning_coefficient_rejects_bad_prior():
    with pytest.raises(ValueError, match="same shape"):
        learning_coefficient([1, 1], [0])
    with pytest.raises(ValueError, match="> -1"):
        learning_coefficient([1], [-1])


@pytest.mark.parametrize("k, h, t, box", [(1, 0, 50.0, 1.0), (2, 0, 1e4, 1.0), (1, 1, 300.0, 0.5), (3, 2, 10.0, 2.0)])
def test_one_dimensional_closed_form(k, h, t, box):
    """t E[K] = s P(s+1, tB^{2k}) / P(s, tB^{2k}) with s = (h+1)/(2k)  (Watanabe 2009, ch. 2–3)."""
    s = (h + 1) / (2 * k)
    z = t * box ** (2 * k)
    expected = s * special.gammainc(s + 1, z) / special.gammainc(s, z)
    assert finite_temperature_llc([k], [h], nbeta=t, box=box) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "k, h, t, gamma, box",
    [
        ([1, 1], None, 1e4, 0.0, 1.0),
        ([1, 2], None, 1e3, 0.0, 1.0),
        ([2, 2], [1, 0], 300.0, 0.0, 1.0),
        ([1, 1], None, 1e3, 1.0, None),
        ([1, 1], [1, 0], 1e3, 2.0, None),
        ([1, 1], None, 100.0, 4.0, 1.5),
        ([1, 2], None, 1e3, 1.0, None),  # reduction after moving the k=1 variable last
    ],
)
def test_two_routes_agree(k, h, t, gamma, box):
    """The one-dimensional reduction and direct 2-D quadrature are independent computations."""
    red = finite_temperature_llc(k, h, nbeta=t, localization=gamma, box=box, method="reduction")
    direct = finite_temperature_llc(k, h, nbeta=t, localization=gamma, box=box, method="direct")
    assert red == pytest.approx(direct, rel=1e-8)


def test_independent_quadrature_one_dimension_with_localization():
    """w⁴ with γ > 0 has no closed form: check against scipy quad written out here."""
    t, g = 500.0, 3.0
    f = lambda w: math.exp(-t * w**4 - g * w * w / 2)
    num = integrate.quad(lambda w: t * w**4 * f(w), 0, math.inf, epsabs=0, epsrel=1e-12, points=None)[0]
    den = integrate.quad(f, 0, math.inf, epsabs=0, epsrel=1e-12)[0]
    assert finite_temperature_llc([2], nbeta=t, localization=g, box=None) == pytest.approx(num / den, rel=1e-8)


def test_reduction_unavailable_is_an_error():
    with pytest.raises(ValueError, match="direct"):
        finite_temperature_llc([2, 2], nbeta=10.0, localization=1.0, box=None, method="reduction")


def test_blocks_add_at_finite_temperature():
    t, g = 200.0, 1.0
    both = finite_temperature_llc([[1, 1], [2]], nbeta=t, localization=g, box=None)
    parts = finite_temperature_llc([1, 1], nbeta=t, localization=g, box=None) + finite_temperature_llc(
        [2], nbeta=t, localization=g, box=None
    )
    assert both == pytest.approx(parts, rel=1e-12)


def test_target_approaches_lambda():
    # m = 1: the finite-t value converges to λ; m = 2 lags far below at practical t (≈ 1/log t)
    assert finite_temperature_llc([1, 2], nbeta=1e10) == pytest.approx(0.25, abs=2e-3)
    lam_m2 = finite_temperature_llc([1, 1], nbeta=1e4)
    assert 0.35 < lam_m2 < 0.45
    assert finite_temperature_llc([1, 1], nbeta=1e8) > lam_m2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nbeta=0.0), "nbeta"),
        (dict(nbeta=10.0, localization=-1.0), "localization"),
        (dict(nbeta=10.0, box=None), "localization > 0"),
        (dict(nbeta=10.0, box=-1.0), "box"),
        (dict(nbeta=10.0, method="magic"), "method"),
    ],
)
def test_finite_temperature_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        finite_temperature_llc([1, 1], **kwargs)


def test_localized_quadratic_target():
    assert localized_llc([1.0, 2.0, 3.0], nbeta=1e3, localization=0.0) == pytest.approx(1.5, rel=1e-15)
    # ½ Σ t a/(t a + γ), computed by hand
    expected = 0.5 * (10 / (10 + 2) + 20 / (20 + 2))
    assert localized_llc([1.0, 2.0], nbeta=10.0, localization=2.0) == pytest.approx(expected, rel=1e-15)
    assert localized_llc([0.0, 2.0], nbeta=10.0, localization=2.0) == pytest.approx(0.5 * 20 / 22, rel=1e-15)
    assert regular_learning_coefficient(5) == (Fraction(5, 2), 1)
    with pytest.raises(ValueError):
        localized_llc([-1.0], nbeta=1.0, localization=0.0)


def test_localized_quadratic_against_one_dimensional_quadrature():
    a, t, g = 3.0, 40.0, 5.0
    f = lambda w: math.exp(-t * a * w * w / 2 - g * w * w / 2)
    num = integrate.quad(lambda w: t * a * w * w / 2 * f(w), -math.inf, math.inf)[0]
    den = integrate.quad(f, -math.inf, math.inf)[0]
    assert localized_llc([a], nbeta=t, localization=g) == pytest.approx(num / den, rel=1e-10)
