"""Exact checks of the deep-linear-network learning coefficients in theory/dln.py."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.dln import (
    aoyagi_candidate_index_sets,
    aoyagi_index_set,
    learning_coefficient,
    parameter_count,
    rrr_learning_coefficient,
)


@st.composite
def widths_and_rank(draw, max_depth=6, max_width=12):
    depth = draw(st.integers(1, max_depth))
    widths = tuple(draw(st.integers(1, max_width)) for _ in range(depth + 1))
    return widths, draw(st.integers(0, min(widths)))


def _aoyagi_conditions(deltas, subset):
    """Conditions (i)-(iii) of Aoyagi's theorem, written out again for an arbitrary subset."""
    inside = [deltas[i] for i in subset]
    outside = [deltas[i] for i in range(len(deltas)) if i not in subset]
    ell, total = len(inside) - 1, sum(inside)
    cond_i = not outside or max(inside) < min(outside)
    cond_ii = ell * max(inside) <= total
    cond_iii = not outside or total < ell * min(outside)
    return cond_i and cond_ii and cond_iii


def test_depth_two_agrees_with_reduced_rank_regression_on_every_small_case():
    checked = 0
    for M, H, N in itertools.product(range(1, 9), repeat=3):
        for r in range(min(M, H, N) + 1):
            assert learning_coefficient((M, H, N), r) == rrr_learning_coefficient(M, H, N, r), (
                M, H, N, r)
            checked += 1
    assert checked == 1808  # sum over (M, H, N) of min(M, H, N) + 1


def test_width_5_3_5_rank_0_needs_ell_at_least_one():
    # A prefix of size 1 (l = 0) is never scanned; the true value is 13/2 with m = 2.
    assert learning_coefficient((5, 3, 5), 0) == (Fraction(13, 2), 2)
    assert rrr_learning_coefficient(5, 3, 5, 0) == (Fraction(13, 2), 2)
    assert aoyagi_index_set((5, 3, 5), 0) == (0, 1, 2)


@pytest.mark.parametrize("layers", range(1, 9))
def test_chain_of_scalar_layers_with_zero_truth_is_half_with_multiplicity_layers(layers):
    # K = (w_1 ... w_L)^2 is a normal crossing: lambda = 1/2, m = L.
    assert learning_coefficient((1,) * (layers + 1), 0) == (Fraction(1, 2), layers)


def test_one_layer_is_regular():
    for h_in, h_out in itertools.product(range(1, 7), repeat=2):
        for r in range(min(h_in, h_out) + 1):
            assert learning_coefficient((h_in, h_out), r) == (Fraction(h_in * h_out, 2), 1)


def test_staircase_values_for_widths_5_5_5_5():
    # The LLC staircase of the stagewise-learning experiment (experiments/dln_stagewise.py).
    expected = [Fraction(17, 2), 10, 11, 12, Fraction(25, 2), Fraction(25, 2)]
    assert [learning_coefficient((5, 5, 5, 5), r)[0] for r in range(6)] == expected


@settings(deadline=None, max_examples=300)
@given(widths_and_rank())
def test_exactly_one_index_set_and_bounds(case):
    widths, r = case
    deltas = [h - r for h in widths]
    # Brute force over every subset of size >= 2, not only prefixes of the sorted Delta.
    passing = [
        s
        for k in range(2, len(widths) + 1)
        for s in itertools.combinations(range(len(widths)), k)
        if _aoyagi_conditions(deltas, s)
    ]
    assert passing == aoyagi_candidate_index_sets(widths, r)
    assert len(passing) == 1 and passing[0] == aoyagi_index_set(widths, r)
    lam, m = learning_coefficient(widths, r)
    assert isinstance(lam, Fraction) and isinstance(m, int)
    assert 0 <= lam <= Fraction(parameter_count(widths), 2)
    assert m >= 1


def _product_jacobian_rank(widths, rng):
    """Generic rank of the Jacobian of (W_1, ..., W_M) -> W_M ... W_1 at Gaussian weights."""
    mats = [rng.standard_normal((b, a)) for a, b in zip(widths[:-1], widths[1:])]

    def product(factors, size):  # factors in application order; identity when empty
        out = np.eye(size)
        for w in factors:
            out = w @ out
        return out

    blocks = []
    for j in range(len(mats)):
        left = product(mats[j + 1:], widths[j + 1])  # W_M ... W_{j+1}
        right = product(mats[:j], widths[0])  # W_{j-1} ... W_1
        blocks.append(np.kron(right.T, left))  # vec(L dW R) = (R^T kron L) vec(dW)
    return np.linalg.matrix_rank(np.hstack(blocks))


@settings(deadline=None, max_examples=60)
@given(widths_and_rank(max_depth=4, max_width=6))
def test_rank_equal_to_narrowest_width_is_regular(case):
    # When r = min width the product map is a submersion onto the rank-<=r matrices, so lambda is
    # half the dimension r (H_1 + H_{M+1}) - r^2 of that set, and m = 1.
    widths, _ = case
    r = min(widths)
    dim = r * (widths[0] + widths[-1]) - r * r
    assert _product_jacobian_rank(widths, np.random.default_rng(0)) == dim
    assert learning_coefficient(widths, r) == (Fraction(dim, 2), 1)


def test_parameter_count():
    assert parameter_count((3, 4, 5)) == 12 + 20
    assert parameter_count((7, 2)) == 14


@pytest.mark.parametrize(
    "widths, rank, match",
    [
        ((3,), 0, "at least two"),
        ((), 0, "at least two"),
        ((3, 0, 2), 0, "positive integer"),
        ((3, -1), 0, "positive integer"),
        ((3, 2.0), 0, "positive integer"),
        ((3, True), 0, "positive integer"),
        ("34", 0, "sequence"),
        (5, 0, "sequence"),
        ((3, 4), 4, "rank"),
        ((3, 4), -1, "rank"),
        ((3, 4), 1.0, "rank"),
        ((3, 4), True, "rank"),
    ],
)
def test_bad_input_raises(widths, rank, match):
    with pytest.raises(ValueError, match=match):
        learning_coefficient(widths, rank)


def test_rrr_bad_input_raises():
    with pytest.raises(ValueError, match="H must be a positive integer"):
        rrr_learning_coefficient(3, 0, 3, 0)
    with pytest.raises(ValueError, match="rank"):
        rrr_learning_coefficient(3, 2, 3, 3)
    with pytest.raises(ValueError, match="positive integer"):
        parameter_count((2, False))
