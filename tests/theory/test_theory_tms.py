"""Tests of theory/tms.py: the exact population loss of the toy model of superposition (TMS).

The closed form is checked against the defining integral (adaptive quadrature, and exact sympy
integration at rational points); the closed-form derivatives against central differences of the
exact rational loss (step 1e-20, so the truncation error is ~1e-40); the k-gon radii and biases
against an independent 30-digit solution of the nearest-neighbour stationarity equations.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from theory.tms import (
    DEAD_BIAS,
    classify_critical_point,
    critical_sample_size,
    flatten_params,
    kgon_critical_point,
    kgon_learning_coefficient,
    kgon_loss,
    kgon_parameters,
    known_plateau_losses,
    local_free_energy,
    population_loss,
    population_loss_gradient,
    population_loss_hessian,
    unflatten_params,
)

# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def quadrature_loss(W: np.ndarray, b: np.ndarray) -> float:
    """``(1/c) Σ_i ∫_0^1 ||μ e_i - ReLU(WᵀW μ e_i + b)||² dμ`` by adaptive quadrature.

    Each integral is split at the kinks ``μ = -b_j/a_ji`` of the integrand, so every piece is a
    quadratic polynomial, which Gauss–Kronrod integrates to rounding error.
    """
    c = W.shape[1]
    total = 0.0
    for i in range(c):
        a = W.T @ W[:, i]
        target = np.zeros(c)
        target[i] = 1.0
        roots = [-b[j] / a[j] for j in range(c) if a[j] != 0]
        cuts = sorted({0.0, 1.0} | {r for r in roots if 0 < r < 1})

        def integrand(mu, a=a, target=target):
            return float(np.sum((target * mu - np.maximum(a * mu + b, 0.0)) ** 2))

        for lo, hi in zip(cuts[:-1], cuts[1:]):
            total += quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-13)[0]
    return total / c


def sympy_exact_loss(W, b) -> sympy.Rational:
    """The defining integral evaluated by sympy's exact integration (rational W, b)."""
    mu = sympy.symbols("mu", real=True)
    c = len(b)
    Ws = sympy.Matrix(2, c, lambda p, k: sympy.Rational(str(W[p][k])))
    bs = [sympy.Rational(str(x)) for x in b]
    gram = Ws.T * Ws
    total = sympy.Integer(0)
    for i in range(c):
        integrand = sum(
            ((mu if j == i else 0) - sympy.Max(gram[j, i] * mu + bs[j], 0)) ** 2 for j in range(c)
        )
        total += sympy.integrate(integrand.rewrite(sympy.Piecewise), (mu, 0, 1))
    return sympy.nsimplify(total / c)


def random_rational_point(rng, c: int, denominator: int = 7):
    def entry(bound):
        return Fraction(int(rng.integers(-bound, bound + 1)), denominator)

    W = [[entry(2 * denominator) for _ in range(c)] for _ in range(2)]
    b = [entry(denominator) for _ in range(c)]
    return W, b


def exact_is_off_boundaries(W, b) -> bool:
    """No pair sits on an activation boundary (t = 0 or s + t = 0): the loss is analytic."""
    c = len(b)
    for j in range(c):
        for i in range(c):
            s = W[0][j] * W[0][i] + W[1][j] * W[1][i]
            if b[j] == 0 or s + b[j] == 0:
                return False
    return True


def random_analytic_rational_point(rng, c: int):
    while True:
        W, b = random_rational_point(rng, c, denominator=int(rng.integers(3, 12)))
        if exact_is_off_boundaries(W, b):
            return W, b


# ---------------------------------------------------------------------------------------------
# The closed form
# ---------------------------------------------------------------------------------------------


def test_closed_form_matches_quadrature_at_random_points():
    rng = np.random.default_rng(20231006)
    for _ in range(40):
        c = int(rng.integers(1, 7))
        W = rng.normal(size=(2, c)) * rng.uniform(0.2, 2.0)
        b = rng.normal(size=c) * rng.uniform(0.1, 1.5)
        closed = population_loss(W, b)
        reference = quadrature_loss(W, b)
        assert abs(closed - reference) <= 1e-10 * max(1.0, abs(reference))


def test_closed_form_matches_quadrature_on_special_pieces():
    # s = 0 with t > 0 and t < 0, s < 0, roots at both ends of [0, 1] nearby.
    W = np.array([[0.0, 1.0, -0.8, 0.3], [0.0, 0.5, 0.2, -1.1]])
    for b in ([0.3, -0.2, 0.4, 0.1], [-0.3, 0.9, -0.05, 1.2], [0.7, 0.01, -0.99, -0.5]):
        b = np.array(b)
        assert population_loss(W, b) == pytest.approx(quadrature_loss(W, b), abs=1e-12, rel=1e-12)


def test_exact_rational_loss_equals_sympy_integration():
    rng = np.random.default_rng(7)
    for c in (1, 2, 3):
        W, b = random_rational_point(rng, c, denominator=5)
        exact = population_loss(W, b)
        assert isinstance(exact, Fraction)
        reference = sympy_exact_loss(W, b)
        assert sympy.Rational(exact.numerator, exact.denominator) == reference


def test_sympy_rational_input_gives_sympy_rational_equal_to_fraction_result():
    rng = np.random.default_rng(11)
    W, b = random_rational_point(rng, 4)
    as_fraction = population_loss(W, b)
    Ws = [[sympy.Rational(x.numerator, x.denominator) for x in row] for row in W]
    bs = [sympy.Rational(x.numerator, x.denominator) for x in b]
    as_sympy = population_loss(Ws, bs)
    assert isinstance(as_sympy, sympy.Rational)
    assert as_sympy == sympy.Rational(as_fraction.numerator, as_fraction.denominator)
    as_float = population_loss(np.array(W, dtype=float), np.array(b, dtype=float))
    assert isinstance(as_float, float)
    assert as_float == pytest.approx(float(as_fraction), rel=1e-14)


def test_single_zero_column_gives_the_s_equals_zero_pieces_exactly():
    # c = 1, W = 0: L = Q(0, t) = 1/3 - t + t² for 0 < t < 1 and 1/3 for t <= 0.
    for t in (Fraction(1, 5), Fraction(1, 2), Fraction(3, 4)):
        assert population_loss([[0], [0]], [t]) == Fraction(1, 3) - t + t * t
    assert population_loss([[0], [0]], [Fraction(-2, 3)]) == Fraction(1, 3)
    # c = 2, second column zero with bias t > 0: it outputs t on input 1, P(0, t) = t².
    t = Fraction(2, 7)
    expected = (0 + t * t + population_loss([[0], [0]], [t])) / 2
    assert population_loss([[1, 0], [0, 0]], [0, t]) == expected


def test_all_columns_dead_gives_exactly_one_third():
    for c in (1, 3, 6):
        assert population_loss([[0] * c, [0] * c], [-1] * c) == Fraction(1, 3)
        assert population_loss(np.zeros((2, c)), -np.ones(c)) == 1 / 3
    assert population_loss([[0, 0], [0, 0]], [Fraction(-1, 9), 0]) == Fraction(1, 3)


def test_a_dead_column_adds_exactly_one_third_over_c():
    # With every bias <= 0, a new feature whose column is dead costs its own Q = 1/3 and changes
    # nothing else: c L is additive.
    rng = np.random.default_rng(3)
    for c in (1, 2, 4):
        W, b = random_rational_point(rng, c)
        b = [-abs(x) for x in b]
        W_new = [row + [Fraction(0)] for row in W]
        b_new = b + [Fraction(-1, 2)]
        assert (c + 1) * population_loss(W_new, b_new) == c * population_loss(W, b) + Fraction(1, 3)


def test_loss_is_nonnegative_and_zero_at_identity_like_point():
    assert population_loss([[1, 0], [0, 1]], [0, 0]) == 0
    assert population_loss([[1, 0, -1, 0], [0, 1, 0, -1]], [0, 0, 0, 0]) == 0


# ---------------------------------------------------------------------------------------------
# Gradient and Hessian
# ---------------------------------------------------------------------------------------------

STEP = Fraction(1, 10**20)


def exact_central_difference(function, w: np.ndarray, c: int) -> list:
    """``(f(w + h e_k) - f(w - h e_k))/(2h)`` for every k, in exact rational arithmetic."""
    columns = []
    for k in range(3 * c):
        shift = np.array([Fraction(0)] * (3 * c), dtype=object)
        shift[k] = STEP
        plus = function(*unflatten_params(w + shift, c))
        minus = function(*unflatten_params(w - shift, c))
        columns.append((plus - minus) / (2 * STEP))
    return columns


def test_gradient_matches_exact_central_differences():
    rng = np.random.default_rng(5)
    for c in (1, 2, 3, 4):
        W, b = random_analytic_rational_point(rng, c)
        w = flatten_params(W, b)
        exact = population_loss_gradient(W, b, exact=True)
        differences = exact_central_difference(population_loss, w, c)
        for g, d in zip(exact, differences):
            assert abs(g - d) < Fraction(1, 10**30)
        floats = population_loss_gradient(np.array(W, dtype=float), np.array(b, dtype=float))
        assert floats.dtype == np.float64
        np.testing.assert_allclose(floats, [float(x) for x in exact], rtol=1e-13, atol=1e-15)


def test_hessian_matches_exact_central_differences_of_gradient():
    rng = np.random.default_rng(6)
    for c in (1, 2, 3):
        W, b = random_analytic_rational_point(rng, c)
        w = flatten_params(W, b)
        hess = population_loss_hessian(W, b, exact=True)
        columns = exact_central_difference(
            lambda Wm, bm: population_loss_gradient(Wm, bm, exact=True), w, c
        )
        for k, column in enumerate(columns):
            for row in range(3 * c):
                assert abs(hess[row, k] - column[row]) < Fraction(1, 10**30)
        assert all(hess[r, k] == hess[k, r] for r in range(3 * c) for k in range(3 * c))


def test_hessian_includes_moving_end_point_terms_of_q():
    # One feature, W = (w, 0), bias t < 0 with root r = -t/w² inside (0, 1): differentiate the
    # closed form Q(w², t) = ∫_0^r μ² dμ + ∫_r^1 (μ - w²μ - t)² dμ with sympy.
    w, t, mu = sympy.symbols("w t mu", real=True)
    r = -t / w**2
    q = sympy.integrate(mu**2, (mu, 0, r)) + sympy.integrate((mu - w**2 * mu - t) ** 2, (mu, r, 1))
    point = {w: sympy.Rational(3, 2), t: sympy.Rational(-1, 2)}
    variables = (w, t)
    hess = population_loss_hessian([[Fraction(3, 2)], [0]], [Fraction(-1, 2)], exact=True)
    index = {w: 0, t: 2}
    for x in variables:
        for y in variables:
            expected = sympy.diff(q, x, y).subs(point)
            got = hess[index[x], index[y]]
            assert sympy.Rational(got.numerator, got.denominator) == sympy.nsimplify(expected)


def test_flatten_order_and_round_trip():
    W = np.arange(8.0).reshape(2, 4)
    b = np.array([10.0, 11.0, 12.0, 13.0])
    w = flatten_params(W, b)
    np.testing.assert_array_equal(w, [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13])
    W2, b2 = unflatten_params(w, 4)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)
    # The gradient uses the same order: the b-part equals the bias derivative alone.
    grad = population_loss_gradient(W / 10, b / 20)
    shifted = population_loss(W / 10, b / 20 + np.array([0, 0, 1e-7, 0]))
    slope = (shifted - population_loss(W / 10, b / 20)) / 1e-7
    assert slope == pytest.approx(grad[2 * 4 + 2], rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Symmetries
# ---------------------------------------------------------------------------------------------

finite = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def parameter_points(draw):
    c = draw(st.integers(min_value=1, max_value=5))
    W = np.array(draw(st.lists(finite, min_size=2 * c, max_size=2 * c))).reshape(2, c)
    b = np.array(draw(st.lists(finite, min_size=c, max_size=c)))
    return W, b


@settings(deadline=None, max_examples=40)
@given(
    parameter_points(),
    st.floats(min_value=0.0, max_value=2 * math.pi),
    st.randoms(use_true_random=False),
)
def test_loss_invariant_under_feature_permutation_and_plane_rotation(point, angle, random):
    W, b = point
    c = W.shape[1]
    perm = list(range(c))
    random.shuffle(perm)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    reflection = np.diag([1.0, -1.0])
    loss = population_loss(W, b)
    assert loss >= 0
    assert population_loss(W[:, perm], b[perm]) == pytest.approx(loss, rel=1e-12, abs=1e-14)
    assert population_loss(rotation @ W, b) == pytest.approx(loss, rel=1e-12, abs=1e-14)
    assert population_loss(reflection @ W, b) == pytest.approx(loss, rel=1e-12, abs=1e-14)
    # The gradient is equivariant: permuted with the features, rotated with the plane.
    grad_W, grad_b = unflatten_params(population_loss_gradient(W, b), c)
    perm_W, perm_b = unflatten_params(population_loss_gradient(W[:, perm], b[perm]), c)
    np.testing.assert_allclose(perm_W, grad_W[:, perm], atol=1e-12)
    np.testing.assert_allclose(perm_b, grad_b[perm], atol=1e-12)
    rot_W, rot_b = unflatten_params(population_loss_gradient(rotation @ W, b), c)
    np.testing.assert_allclose(rot_W, rotation @ grad_W, atol=1e-12)
    np.testing.assert_allclose(rot_b, grad_b, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# k-gons
# ---------------------------------------------------------------------------------------------


def nearest_neighbour_kgon_solution(k: int, digits: int = 30):
    """Independent solution of ``∇φ = 0`` on the piece where only nearest neighbours fire.

    ``φ(l, b) = ∫_0^r μ² dμ + ∫_r^1 (μ - l²μ - b)² dμ + 2 (l² cos(2π/k) + b)³/(3 l² cos(2π/k))``
    with ``r = -b/l²``: the live input's reconstruction and its two nearest neighbours'
    interference ``∫_{r'}^1 (sμ + b)² dμ = (s + b)³/(3s)``.
    """
    l, b, mu = sympy.symbols("l b mu", real=True)
    r = -b / l**2
    cos = sympy.cos(2 * sympy.pi / k)
    phi = (
        sympy.integrate(mu**2, (mu, 0, r))
        + sympy.integrate((mu - l**2 * mu - b) ** 2, (mu, r, 1))
        + 2 * (l**2 * cos + b) ** 3 / (3 * l**2 * cos)
    )
    start = {5: (1.17, -0.28), 6: (1.32, -0.62), 7: (1.45, -0.97), 8: (1.55, -1.29)}[k]
    return sympy.nsolve([sympy.diff(phi, l), sympy.diff(phi, b)], (l, b), start, prec=digits)


@pytest.mark.parametrize("k", [5, 6, 7, 8])
def test_kgon_parameters_match_independent_30_digit_solution(k):
    length, bias = kgon_parameters(k)
    reference = nearest_neighbour_kgon_solution(k)
    assert length == float(reference[0])  # correctly rounded
    assert bias == float(reference[1])
    # The piece assumptions: b < 0, nearest neighbours fire, next-nearest do not.
    assert bias < 0
    assert length**2 * math.cos(2 * math.pi / k) + bias > 0
    assert length**2 * math.cos(4 * math.pi / k) + bias < 0


def test_pentagon_matches_the_paper():
    length, bias = kgon_parameters(5)
    assert round(length, 5) == 1.17046
    assert round(bias, 5) == -0.28230


@pytest.mark.parametrize("c", [5, 6, 7, 8])
def test_gradient_vanishes_at_every_kgon(c):
    for k in range(5, min(c, 8) + 1):
        for positive in range(c - k + 1):
            W, b = kgon_critical_point(k, c, positive)
            assert np.linalg.norm(population_loss_gradient(W, b)) < 1e-12


def test_kgon_layout():
    W, b = kgon_critical_point(5, 8, 2)
    length, bias = kgon_parameters(5)
    np.testing.assert_allclose(np.linalg.norm(W[:, :5], axis=0), length, rtol=1e-15)
    second = length * np.array([math.cos(2 * math.pi / 5), math.sin(2 * math.pi / 5)])
    np.testing.assert_allclose(W[:, 1], second, rtol=1e-15)
    assert np.all(b[:5] == bias)
    assert np.all(W[:, 5:] == 0)
    assert np.all(b[5:7] == 1 / 16)
    assert b[7] == DEAD_BIAS


def test_small_kgons_are_exact_and_on_kinks():
    for k in (2, 3, 4):
        assert kgon_parameters(k) == (1, 0)
        for positive in (0, 1):
            c = 6
            expected = Fraction(c - k, 3 * c) - Fraction(positive, 4 * c * c)
            assert kgon_loss(k, c, positive) == expected
            W, b = kgon_critical_point(k, c, positive)
            assert population_loss(W, b) == pytest.approx(float(expected), rel=1e-14)
            assert classify_critical_point(W, b).kind == "kink"
    # The exact 4-gon at c = 4 has zero loss.
    W, b = kgon_critical_point(4, 4, exact=True)
    assert population_loss(W, b) == 0
    with pytest.raises(ValueError, match="kinks"):
        kgon_learning_coefficient(4, 6)


def test_known_plateau_losses_at_c_6():
    levels = known_plateau_losses(6)
    assert levels["4"] == Fraction(1, 9)
    assert levels["4+"] == Fraction(5, 48)
    assert levels["4++"] == Fraction(7, 72)
    for name in ("4", "4+", "4++"):
        assert isinstance(levels[name], Fraction)
        W, b = kgon_critical_point(4, 6, name.count("+"), exact=True)
        assert population_loss(W, b) == levels[name]
    # Each positive column lowers the loss by exactly 1/(4c²) (also for the 5-gon).
    assert levels["5"] - levels["5+"] == pytest.approx(1 / 144, abs=1e-15)
    assert levels["4"] > levels["4+"] > levels["4++"] > levels["5"] > levels["5+"] > levels["6"]


# ---------------------------------------------------------------------------------------------
# Hessian rank and learning coefficients
# ---------------------------------------------------------------------------------------------


def test_learning_coefficients_at_c_6():
    assert kgon_learning_coefficient(5, 6) == 7
    assert kgon_learning_coefficient(5, 6, 1) == Fraction(17, 2)
    assert kgon_learning_coefficient(6, 6) == Fraction(17, 2)


@pytest.mark.parametrize("c", [6, 7, 8])
def test_learning_coefficient_formula_and_saddles(c):
    for k in range(5, min(c, 8) + 1):
        for positive in range(c - k + 1):
            dead = c - k - positive
            info = classify_critical_point(*kgon_critical_point(k, c, positive))
            if positive and dead:
                assert info.kind == "saddle"
                assert info.hessian_eigenvalues[0] < -1e-5 * info.hessian_eigenvalues[-1]
                with pytest.raises(ValueError, match="saddle"):
                    kgon_learning_coefficient(k, c, positive)
            else:
                assert info.kind == "minimum"
                expected = Fraction(3 * k - 1, 2) + Fraction(3 * positive, 2)
                assert info.learning_coefficient == expected
                # The rank is not a threshold artefact: a wide gap separates zero and nonzero.
                eig = np.sort(np.abs(info.hessian_eigenvalues))
                nonzero = eig[-info.rank :]
                assert nonzero[0] > 1e-3 * eig[-1]
                assert np.all(eig[: 3 * c - info.rank] < 1e-14 * eig[-1])


def test_dead_columns_are_exactly_flat():
    W, b = kgon_critical_point(5, 6)
    H = population_loss_hessian(W, b)
    grad = population_loss_gradient(W, b)
    dead = [5, 6 + 5, 12 + 5]
    assert np.all(H[dead, :] == 0) and np.all(H[:, dead] == 0)
    assert np.all(grad[dead] == 0)
    # Any other negative dead bias gives the same loss.
    b2 = b.copy()
    b2[5] = -0.01
    assert population_loss(W, b2) == population_loss(W, b)


def test_positive_zero_column_is_a_local_minimum_direction():
    c, k = 6, 5
    W, b = kgon_critical_point(k, c, 1)
    H = population_loss_hessian(W, b)
    length, _ = kgon_parameters(k)
    beta = 1 / (2 * c)
    block = [5, 6 + 5, 12 + 5]  # W[0, 5], W[1, 5], b[5]
    sub = H[np.ix_(block, block)]
    # Closed form: W_p-block (1/c)(2(β - 2/3) + k l²/3) I (own Q plus the live columns'
    # quadratic interference), bias entry (1/c) d²/dβ² (1/3 - β + cβ²) = 2.
    w_entry = (2 * (beta - 2 / 3) + k * length**2 / 3) / c
    np.testing.assert_allclose(sub, np.diag([w_entry, w_entry, 2.0]), atol=1e-14)
    assert w_entry > 0
    assert np.all(np.linalg.eigvalsh(H) > -1e-14)


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


def test_classification_of_other_points():
    rng = np.random.default_rng(2)
    info = classify_critical_point(rng.normal(size=(2, 4)), rng.normal(size=4) - 0.1)
    assert info.kind in ("not critical", "kink")
    W = rng.normal(size=(2, 4))
    info = classify_critical_point(W, np.full(4, -0.3) + rng.uniform(-0.01, 0.01, size=4))
    assert info.kind == "not critical" and info.gradient_norm > 1e-3
    all_dead = classify_critical_point(np.zeros((2, 6)), -np.ones(6))
    assert all_dead.kind == "minimum" and all_dead.learning_coefficient == 0
    assert all_dead.loss == 1 / 3
    # A zero column with bias exactly 0: Q's gradient jumps there.
    kink = classify_critical_point([[0, 1], [0, 0]], [0, -0.5])
    assert kink.kind == "kink" and (0, 0, "mu=0") in kink.kinks
    # Exact input: exact kink detection on the μ = 1 boundary (a_ii + b_i = 0).
    exact_kink = classify_critical_point([[1, 0], [0, 0]], [-1, -1])
    assert exact_kink.kind == "kink" and (0, 0, "mu=1") in exact_kink.kinks


def test_saddle_with_positive_and_dead_zero_columns_has_the_coupling_entry():
    c = 7
    W, b = kgon_critical_point(5, c, 1)
    H = population_loss_hessian(W, b)
    positive, dead = 5, 6
    for p in range(2):
        assert H[p * c + dead, p * c + dead] == 0
        assert H[p * c + positive, p * c + dead] == pytest.approx(1 / (2 * c) / c, rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Free energy
# ---------------------------------------------------------------------------------------------


def test_critical_sample_size_five_to_six_gon():
    n_c = critical_sample_size((5, 0), (6, 0), 6)
    assert 600 < n_c < 602  # Chen et al. (2023) report n ≈ 600
    assert local_free_energy(n_c, 5, 6) == pytest.approx(local_free_energy(n_c, 6, 6), abs=1e-9)
    # Below n_c the 5-gon has the lower free energy, above it the 6-gon.
    assert local_free_energy(n_c / 2, 5, 6) < local_free_energy(n_c / 2, 6, 6)
    assert local_free_energy(2 * n_c, 5, 6) > local_free_energy(2 * n_c, 6, 6)
    without_prior = critical_sample_size((5, 0), (6, 0), 6, include_prior=False)
    loss_gap = kgon_loss(5, 6) - kgon_loss(6, 6)
    assert loss_gap * without_prior == pytest.approx(1.5 * math.log(without_prior), rel=1e-12)


def test_local_free_energy_formula():
    n = 1000
    length, bias = kgon_parameters(6)
    expected = n * kgon_loss(6, 6) + 8.5 * math.log(n) + 0.5 * 6 * (length**2 + bias**2)
    assert local_free_energy(n, 6, 6) == pytest.approx(expected, rel=1e-15)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "W, b, match",
    [
        (np.zeros((3, 2)), np.zeros(2), "shape \\(2, c\\)"),
        (np.zeros(4), np.zeros(2), "shape \\(2, c\\)"),
        (np.zeros((2, 0)), np.zeros(0), "at least one column"),
        (np.zeros((2, 3)), np.zeros(2), "length c = 3"),
        (np.array([[np.nan, 0.0], [0.0, 0.0]]), np.zeros(2), "finite"),
        (np.zeros((2, 2)), np.array([np.inf, 0.0]), "finite"),
        ([[1j, 0], [0, 0]], [0, 0], "complex"),
        ([[True, 0], [0, 0]], [0, 0], "bool"),
        ([[0.5, 0], [0, 0]], [Fraction(1, 3), 0], "mixed float and exact"),
        ([[sympy.sqrt(2), 0], [0, 0]], [0, 0], "sympy Rationals"),
        ([["a", 0], [0, 0]], [0, 0], "unsupported type"),
    ],
)
def test_bad_parameters_raise(W, b, match):
    with pytest.raises(ValueError, match=match):
        population_loss(W, b)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="k must be in"):
        kgon_critical_point(9, 10)
    with pytest.raises(ValueError, match="k must be in"):
        kgon_critical_point(1, 6)
    with pytest.raises(ValueError, match="c >= k"):
        kgon_critical_point(6, 5)
    with pytest.raises(ValueError, match="positive"):
        kgon_critical_point(5, 6, 2)
    with pytest.raises(ValueError, match="must be an int"):
        kgon_loss(5.0, 6)
    with pytest.raises(ValueError, match="exact=True is only available"):
        kgon_critical_point(5, 6, exact=True)
    with pytest.raises(ValueError, match="exact=True needs exact input"):
        population_loss_gradient(np.zeros((2, 2)), np.zeros(2), exact=True)
    with pytest.raises(ValueError, match="length 3c"):
        unflatten_params(np.zeros(7), 2)
    with pytest.raises(ValueError, match="positive int"):
        unflatten_params(np.zeros(6), 0)
    with pytest.raises(ValueError, match="n must be"):
        local_free_energy(0.5, 5, 6)
    with pytest.raises(ValueError, match="do not cross"):
        critical_sample_size((5, 0), (6, 0), 6, n_max=100.0)
    with pytest.raises(ValueError, match="tuple"):
        critical_sample_size([5, 0], (6, 0), 6)
    with pytest.raises(ValueError, match="saddle"):
        local_free_energy(100, 5, 7, 1)
