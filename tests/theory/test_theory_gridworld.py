"""Exact checks of theory/gridworld/: values, regret, and the learning coefficient at an optimum.

Independent references: value iteration (float), the Bellman equations checked exactly in
rationals, the performance-difference lemma, hand computations on corridors, the exact regret near
the vertex (first-order coefficients), and one- and two-dimensional integrals for the finite-nβ
target.
"""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from theory.gridworld import (
    ACTIONS,
    MOVES,
    Level,
    Maze,
    State,
    finite_temperature_linear_llc,
    finite_temperature_regret_llc,
    learning_coefficient_at_optimum,
    level_regrets,
    occupancy,
    optimal_action_values,
    optimal_actions,
    optimal_policy,
    optimal_values,
    policy_values,
    regret,
    shortest_distances,
    states,
    uniform_policy,
    value_iteration,
)

HALF = Fraction(1, 2)
GAMMA = Fraction(9, 10)

CORRIDOR = Level.from_strings(["M.C"])
OPEN3 = Level.from_strings(["M..", "...", "..C"])
WALLS4 = Level.from_strings(["M..#", ".#..", ".#.#", "...C"])
MAZE5 = Level.from_strings(["M...#", "###.#", "...C.", ".#.##", ".#..."])


def _with_starts(level, starts):
    return [Level(level.maze, s, level.cheese) for s in starts]


#: several levels per maze: different starts, and for OPEN3 a second cheese
GRIDS = {
    "open3": _with_starts(OPEN3, [(0, 0), (0, 2), (1, 1)]) + [Level(OPEN3.maze, (2, 2), (0, 1))],
    "walls4": _with_starts(WALLS4, [(0, 0), (1, 2), (3, 0)]),
    "maze5": _with_starts(MAZE5, [(0, 0), (4, 0), (4, 4), (2, 4)]),
}


def random_policy(levels, seed, exact=True):
    """Rational rows with small denominators (some zero entries), or their float values."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in states(levels):
        counts = rng.integers(0, 5, size=4)
        counts[rng.integers(4)] += 1
        row = tuple(Fraction(int(k), int(counts.sum())) for k in counts)
        out[s] = row if exact else tuple(float(p) for p in row)
    return out


def random_weights(n, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, size=n)
    return [Fraction(int(k), int(counts.sum())) for k in counts]


def bellman_residuals(level, policy, gamma, v):
    """``V(s) - sum_a pi(a|s) (r + gamma V(s'))`` on every non-cheese connected state."""
    out = []
    for s in states([level]):
        row = policy[s]
        backup = 0
        for a in range(4):
            nxt = level.maze.step(s.cell, a)
            backup += row[a] * ((1 if nxt == level.cheese else 0) + gamma * v[nxt])
        out.append(v[s.cell] - backup)
    return out


# ---------------------------------------------------------------------------------------------
# the environment
# ---------------------------------------------------------------------------------------------


def test_moves_follow_the_shared_convention():
    assert ACTIONS == ("up", "left", "down", "right")
    assert MOVES == ((-1, 0), (0, -1), (1, 0), (0, 1))
    maze = WALLS4.maze  # M..# / .#.. / .#.# / ...C
    assert maze.step((1, 0), 0) == (0, 0)  # up: row - 1
    assert maze.step((0, 1), 1) == (0, 0)  # left: column - 1
    assert maze.step((0, 0), 2) == (1, 0)  # down: row + 1
    assert maze.step((0, 0), 3) == (0, 1)  # right: column + 1
    assert maze.step((0, 0), 0) == (0, 0)  # off the grid: stays
    assert maze.step((1, 0), 3) == (1, 0)  # into a wall: stays
    assert str(WALLS4) == "M..#\n.#..\n.#.#\n...C"


def test_shortest_distances_by_hand():
    assert shortest_distances(CORRIDOR.maze, (0, 2)) == {(0, 2): 0, (0, 1): 1, (0, 0): 2}
    d = shortest_distances(WALLS4.maze, WALLS4.cheese)
    # M..# / .#.. / .#.# / ...C: the left column and bottom row, or across the top and down
    assert d[(0, 0)] == 6 and d[(3, 0)] == 3 and d[(1, 2)] == 3 and d[(1, 3)] == 4
    assert d[(0, 2)] == 4 and d[(2, 2)] == 2 and d[(3, 3)] == 0 and len(d) == 12
    walled = Maze.from_strings(["..#.", "..#."])
    assert set(shortest_distances(walled, (0, 0))) == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_states_skip_the_cheese_and_walled_off_cells_and_are_shared_by_starts():
    maze = Maze.from_strings(["...#.", "...#."])
    a, b = Level(maze, (0, 0), (1, 2)), Level(maze, (1, 1), (1, 2))
    assert states([a, b]) == states([a])
    assert {s.cell for s in states([a])} == {(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)}
    assert len(states([a, Level(maze, (0, 0), (0, 1))])) == 10


# ---------------------------------------------------------------------------------------------
# V*, V^pi and the regret
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("gamma", [HALF, GAMMA])
def test_optimal_values_are_gamma_to_the_distance_minus_one(name, gamma):
    for level in GRIDS[name]:
        exact = optimal_values(level.maze, level.cheese, gamma, exact=True)
        d = shortest_distances(level.maze, level.cheese)
        vi = value_iteration(level.maze, level.cheese, float(gamma))
        for cell, v in exact.items():
            want = gamma ** (d[cell] - 1) if cell in d and cell != level.cheese else 0
            assert v == want
            assert abs(vi[cell] - float(want)) < 1e-12
        # the optimal policy attains V* exactly, whichever way ties are broken
        for priority in [(0, 1, 2, 3), (3, 2, 1, 0)]:
            pi = optimal_policy([level], priority=priority)
            assert policy_values(level.maze, level.cheese, pi, gamma, exact=True) == exact


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("seed", range(3))
def test_exact_regret_equals_value_iteration_and_solves_bellman_exactly(name, seed):
    levels, gamma = GRIDS[name], GAMMA
    pi = random_policy(levels, seed)
    weights = random_weights(len(levels), seed)
    exact = regret(levels, pi, gamma, weights=weights, exact=True)
    assert isinstance(exact, Fraction) and exact > 0
    assert abs(regret(levels, pi, 0.9, weights=[float(q) for q in weights]) - float(exact)) < 1e-12
    by_vi = 0.0
    for level, q in zip(levels, weights):
        v = policy_values(level.maze, level.cheese, pi, gamma, exact=True)
        assert all(r == 0 for r in bellman_residuals(level, pi, gamma, v))  # exactly, in rationals
        vi = value_iteration(level.maze, level.cheese, 0.9, random_policy(levels, seed, False))
        assert max(abs(vi[c] - float(x)) for c, x in v.items()) < 1e-12
        star = value_iteration(level.maze, level.cheese, 0.9)
        by_vi += float(q) * (star[level.start] - vi[level.start])
    assert abs(by_vi - float(exact)) < 1e-12


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), name=st.sampled_from(sorted(GRIDS)),
       gamma=st.fractions(min_value=Fraction(1, 20), max_value=Fraction(19, 20), max_denominator=20))
def test_regret_properties_for_random_policies(seed, name, gamma):
    """Exact = float to 1e-12; R > 0 for a policy with full support; the performance-difference
    lemma ``R = sum_s rho^pi(s) sum_a pi(a|s) (V*(s) - Q*(s, a))`` holds exactly."""
    levels = GRIDS[name]
    pi = random_policy(levels, seed)
    exact = regret(levels, pi, gamma, exact=True)
    assert abs(regret(levels, pi, float(gamma)) - float(exact)) < 1e-12
    assert exact >= 0
    full = {s: tuple((p + Fraction(1, 10)) / Fraction(14, 10) for p in row) for s, row in pi.items()}
    assert regret(levels, full, gamma, exact=True) > 0
    rho = occupancy(levels, pi, gamma, exact=True)
    pdl = 0
    for s, row in pi.items():
        q = optimal_action_values(s.maze, s.cheese, gamma, exact=True)[s.cell]
        v = optimal_values(s.maze, s.cheese, gamma, exact=True)[s.cell]
        pdl += rho[s] * sum(p * (v - qa) for p, qa in zip(row, q))
    assert pdl == exact


def test_corridor_regret_by_hand():
    """Corridor ``M . C`` (cells 0, 1, 2; cheese at 2), gamma = 1/2. The policy moves right with
    probability 1/2 at cell 0 (else bumps up: stays) and at cell 1 (else steps left to cell 0):

        V1 = 1/2 * 1 + 1/2 * gamma V0,    V0 = 1/2 * gamma V1 + 1/2 * gamma V0
        => V0 = V1 / 3,  V1 = 1/2 + V1 / 12  =>  V1 = 6/11,  V0 = 2/11.

    V*(0) = gamma^(2-1) = 1/2, so R = 1/2 - 2/11 = 7/22. The uniform policy: at cell 0 three of
    the four actions stay, so V0 = 1/4 gamma V1 + 3/4 gamma V0 => V0 = V1 / 5; at cell 1
    V1 = 1/4 + 1/4 gamma V0 + 1/2 gamma V1 => V1 (3/4 - 1/40) = 1/4 => V1 = 10/29, V0 = 2/29,
    R = 1/2 - 2/29 = 25/58.
    """
    s0, s1 = CORRIDOR.state((0, 0)), CORRIDOR.state((0, 1))
    pi = {s0: (HALF, 0, 0, HALF), s1: (0, HALF, 0, HALF)}
    v = policy_values(CORRIDOR.maze, CORRIDOR.cheese, pi, HALF, exact=True)
    assert v == {(0, 0): Fraction(2, 11), (0, 1): Fraction(6, 11), (0, 2): 0}
    assert regret([CORRIDOR], pi, HALF, exact=True) == Fraction(7, 22)
    uniform = uniform_policy([CORRIDOR])
    assert regret([CORRIDOR], uniform, HALF, exact=True) == Fraction(25, 58)
    assert level_regrets([CORRIDOR], {s0: 3, s1: 3}, HALF, exact=True) == (0,)
    assert regret([CORRIDOR], {s0: 3, s1: 1}, HALF, exact=True) == HALF  # never arrives


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_regret_is_zero_exactly_at_optimal_policies_and_positive_off_them(name):
    levels = GRIDS[name]
    for priority in [(0, 1, 2, 3), (2, 3, 0, 1)]:
        pi = optimal_policy(levels, priority=priority)
        assert regret(levels, pi, GAMMA, exact=True) == 0
        assert all(r == 0 for r in level_regrets(levels, pi, GAMMA, exact=True))
    pi = optimal_policy(levels)
    start = levels[0].state(levels[0].start)
    best = optimal_actions(start.maze, start.cheese)[start.cell]
    for a in range(4):
        if a not in best:
            eps = Fraction(1, 1000)
            row = [Fraction(0)] * 4
            row[pi[start]], row[a] = 1 - eps, eps
            assert regret(levels, {**pi, start: tuple(row)}, GAMMA, exact=True) > 0


# ---------------------------------------------------------------------------------------------
# the learning coefficient at an optimal policy
# ---------------------------------------------------------------------------------------------


def test_corridor_learning_coefficient_by_hand():
    """Corridor ``M . C``, gamma = 1/2, pi* = right. Cell 0 (d = 2, occupancy 1): up, left, down
    bump, each costing g = gamma^(2-1)(1 - gamma) = 1/4. Cell 1 (d = 1, occupancy gamma = 1/2):
    up and down bump, g = 1 - gamma = 1/2, c = 1/4; left steps away, g = 1 - gamma^2 = 3/4,
    c = 3/8. Six strictly suboptimal actions at visited states and no ties: lambda = 6, m = 1.
    With four cells ``M . . C``: nine."""
    result = learning_coefficient_at_optimum([CORRIDOR], HALF)
    assert (result.learning_coefficient, result.multiplicity) == (6, 1)
    assert result.witness is None and result.flat_coordinates == ()
    q = Fraction(1, 4)
    assert dict(result.linear_coefficients) == {
        CORRIDOR.state((0, 0)): (q, q, q, 0),
        CORRIDOR.state((0, 1)): (q, Fraction(3, 8), q, 0),
    }
    assert len(result.relevant_coordinates) == 6
    longer = Level.from_strings(["M..C"])
    assert learning_coefficient_at_optimum([longer], GAMMA).learning_coefficient == 9
    # MAZE5 from (0, 0): the unique shortest path right x3, down x2 passes five states, each
    # with one optimal and three strictly suboptimal actions
    assert learning_coefficient_at_optimum([MAZE5], GAMMA).learning_coefficient == 15
    # cells behind the start are never visited and reached only by suboptimal moves: they add
    # dimensions but no linear term, and do not stop the linear terms settling lambda
    behind = Level.from_strings(["..M.C"])
    result = learning_coefficient_at_optimum([behind], GAMMA)
    assert result.learning_coefficient == 6
    assert result.linear_coefficients[behind.state((0, 0))] == (0, 0, 0, 0)


@pytest.mark.parametrize("level", [WALLS4, MAZE5], ids=["walls4", "maze5"])
def test_linear_coefficients_are_the_first_order_regret(level):
    """``R(pi* + eps e_{s,a}) = c_{s,a} eps + O(eps^2)``, exactly in rationals, at every state."""
    levels = _with_starts(level, [level.start, (2, 0) if level is MAZE5 else (3, 0)])
    weights = [Fraction(2, 3), Fraction(1, 3)]
    result = learning_coefficient_at_optimum(levels, GAMMA, weights=weights)
    pi = dict(result.policy)
    eps = Fraction(1, 10**6)
    for s, c in result.linear_coefficients.items():
        for a in range(4):
            if a == pi[s]:
                continue
            row = [Fraction(0)] * 4
            row[pi[s]], row[a] = 1 - eps, eps
            r = regret(levels, {**pi, s: tuple(row)}, GAMMA, weights=weights, exact=True)
            assert abs(r / eps - c[a]) < 10 * eps
    relevant = {(s, a) for s, row in result.linear_coefficients.items()
                for a in range(4) if row[a] > 0}
    assert set(result.relevant_coordinates) == relevant
    # WALLS4 has a tie at (0, 0) between going down and across the top: not settled there
    assert result.learning_coefficient == (None if level is WALLS4 else len(relevant))


def test_a_tie_that_leaves_the_optimal_path_does_not_settle_lambda():
    """2x2 open grid, start top-left, cheese bottom-right: down and right both optimal at the
    start; pi* (lower index first) goes down. Moving right (a tie, no first-order cost) reaches
    (0, 1), which pi* never visits; bumping up there (no first-order cost either: zero
    occupancy) loses value. So R has a term eps * delta and no linear term in either."""
    level = Level.from_strings(["M.", ".C"])
    result = learning_coefficient_at_optimum([level], HALF)
    assert result.learning_coefficient is None and result.multiplicity is None
    start, off = level.state((0, 0)), level.state((0, 1))
    assert result.policy[start] == 2
    assert result.flat_coordinates == ((start, 3),)
    assert result.witness.level == level
    assert result.witness.moves == (((0, 0), 3), ((0, 1), 0))
    assert "do not settle" in result.reason and "(0, 1) up" in result.reason
    assert len(result.relevant_coordinates) == 5  # 2 at the start, 3 at (1, 0)

    def r(eps, delta):
        pi = {**result.policy, start: (0, 0, 1 - eps, eps), off: (delta, 0, 1 - delta, 0)}
        return regret([level], pi, HALF, exact=True)

    small = Fraction(1, 1000)
    assert r(small, 0) == 0 and r(0, small) == 0 and r(small, small) > 0
    # gamma (1/2) * eps * [V*(0,1) - V^pi(0,1)] with V^pi(0,1) = (1 - delta) / (1 - gamma delta)
    assert r(small, small) == HALF * small * (1 - (1 - small) / (1 - HALF * small))
    with pytest.raises(ValueError, match="do not settle"):
        finite_temperature_regret_llc([level], HALF, 100)


def test_a_tie_into_states_other_starts_visit_settles_lambda():
    """Same 2x2 grid with every non-cheese cell a start: the tie at (0, 0) leads to (0, 1), which
    pi* visits from its own start, so it is harmless; lambda = 2 + 3 + 3 = 8."""
    level = Level.from_strings(["M.", ".C"])
    levels = _with_starts(level, [(0, 0), (0, 1), (1, 0)])
    result = learning_coefficient_at_optimum(levels, GAMMA)
    assert (result.learning_coefficient, result.multiplicity) == (8, 1)
    assert result.flat_coordinates == ((level.state((0, 0)), 3),)
    # with weight 0 on the start (0, 1), the tie leads off pi*'s paths again
    zeroed = learning_coefficient_at_optimum(levels, GAMMA, weights=[HALF, 0, HALF])
    assert zeroed.learning_coefficient is None


def test_a_policy_not_optimal_at_every_state_is_refused():
    """Off its path a policy may err and still have zero regret, but then the occupancy of the
    state where it errs adds first-order terms: the vertex is another one, refused here."""
    pi = optimal_policy([CORRIDOR])
    with pytest.raises(ValueError, match="not optimal at \\(0, 0\\) \\(cheese at \\(0, 2\\)\\): it moves up"):
        learning_coefficient_at_optimum([CORRIDOR], HALF, policy={**pi, CORRIDOR.state((0, 0)): 0})
    behind = Level.from_strings(["..M.C"])
    pi = optimal_policy([behind])
    errs_off_path = {**pi, behind.state((0, 1)): 1}
    assert regret([behind], errs_off_path, GAMMA, exact=True) == 0
    with pytest.raises(ValueError, match="optimal at every state"):
        learning_coefficient_at_optimum([behind], GAMMA, policy=errs_off_path)
    # the other tie-break is optimal everywhere and accepted
    other = optimal_policy([OPEN3], priority=(3, 2, 1, 0))
    assert learning_coefficient_at_optimum([OPEN3], GAMMA, policy=other).policy == other
    with pytest.raises(ValueError, match="deterministic"):
        learning_coefficient_at_optimum([CORRIDOR], HALF, policy=uniform_policy([CORRIDOR]))


# ---------------------------------------------------------------------------------------------
# the finite-nβ target
# ---------------------------------------------------------------------------------------------


def _quad(f, a=0.0, b=1.0):
    return integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("t", [0.5, 7.0, 300.0])
def test_finite_temperature_one_and_two_dimensional_integrals(t):
    # one positive c in a row of four: pi_a ~ Beta(1, 3), density 3 (1 - u)^2
    c = 0.3
    want = (_quad(lambda u: t * c * u * math.exp(-t * c * u) * (1 - u) ** 2)
            / _quad(lambda u: math.exp(-t * c * u) * (1 - u) ** 2))
    assert finite_temperature_linear_llc([(0, c, 0, 0)], t) == pytest.approx(want, rel=1e-10)
    # repeated nodes: K = c (pi_2 + pi_3), pi_2 + pi_3 ~ Beta(2, 2), density 6 v (1 - v)
    want = (_quad(lambda v: t * c * v * math.exp(-t * c * v) * v * (1 - v))
            / _quad(lambda v: math.exp(-t * c * v) * v * (1 - v)))
    assert finite_temperature_linear_llc([(0, 0, c, c)], t) == pytest.approx(want, rel=1e-10)
    # three actions, distinct c: the triangle {u, v >= 0, u + v <= 1}
    a, b = 0.2, 0.7

    def triangle(f):
        return integrate.dblquad(lambda v, u: f(u, v), 0, 1, 0, lambda u: 1 - u,
                                 epsabs=0, epsrel=1e-11)[0]

    k = lambda u, v: t * (a * u + b * v)  # noqa: E731
    want = triangle(lambda u, v: k(u, v) * math.exp(-k(u, v))) / triangle(
        lambda u, v: math.exp(-k(u, v)))
    assert finite_temperature_linear_llc([(a, 0, b)], t) == pytest.approx(want, rel=1e-8)
    # additive over simplices
    both = finite_temperature_linear_llc([(a, 0, b), (0, c, 0, 0)], t)
    assert both == pytest.approx(finite_temperature_linear_llc([(a, 0, b)], t)
                                 + finite_temperature_linear_llc([(0, c, 0, 0)], t), rel=1e-12)


def test_finite_temperature_distinct_nodes_closed_form_and_limits():
    """Distinct nodes: ``e[x_0..x_n] = sum_i e^{-x_i} / prod_{j != i} (x_i - x_j)`` at 50 digits."""
    def closed(row, t):
        with mpmath.workdps(50):
            x = [mpmath.mpf(t) * mpmath.mpf(c) for c in sorted(row)]
            dd = lambda xs: sum(mpmath.exp(-xi) / mpmath.fprod(xi - xj for xj in xs if xj != xi)  # noqa: E731
                                for xi in xs)
            return float(len(row) - 1 + dd(x[1:]) / dd(x))

    for row in [(0, 0.1, 0.25, 0.6), (0.5, 0, 0.05, 0.3)]:
        for t in [0.3, 4.0, 60.0, 2000.0]:
            assert finite_temperature_linear_llc([row], t) == pytest.approx(closed(row, t), rel=1e-12)
    assert finite_temperature_linear_llc([(0, 0, 0, 0)], 10.0) == 0
    assert finite_temperature_linear_llc({"s": (0, 1, 1, 1)}, 1e7) == pytest.approx(3, rel=1e-12)
    # a zero besides the vertex couples through the simplex: K = c v with v ~ Beta(2, 2), so
    # t E[K] = (2 - 6/x) / (1 - 2/x) + O(e^{-x}) = 2 - 2/x + O(1/x^2) at x = t c: not exponential
    x = 1e3
    assert finite_temperature_linear_llc([(0, 0, 1, 1)], x) == pytest.approx(
        (2 - 6 / x) / (1 - 2 / x), rel=1e-12)
    # nearly equal nodes (rounding) agree with exactly equal ones
    near = finite_temperature_linear_llc([(0, 0.3, 0.3 * (1 + 1e-15), 0.3)], 50.0)
    assert near == pytest.approx(finite_temperature_linear_llc([(0, 0.3, 0.3, 0.3)], 50.0), rel=1e-12)


def test_finite_temperature_regret_target_and_its_gap_to_the_full_regret():
    """The corridor's target tends to lambda = 6. For the one-state level ``M C`` the regret
    depends only on u = 1 - pi(right) ~ Beta(3, 1): R = (1 - g) u / (1 - g u), so ``t E[R]`` is
    a one-dimensional integral; the linear target exceeds it by about 12 / t at g = 1/2."""
    assert finite_temperature_regret_llc([CORRIDOR], HALF, 1e6) == pytest.approx(6, rel=1e-12)
    low = finite_temperature_regret_llc([CORRIDOR], HALF, 1.0)
    assert 0 < low < finite_temperature_regret_llc([CORRIDOR], HALF, 10.0) < 6
    one = Level.from_strings(["MC"])
    g = 0.5
    for t in [1e3, 1e4]:
        R = lambda u: (1 - g) * u / (1 - g * u)  # noqa: E731
        cut = min(1.0, 60 / t)
        num = _quad(lambda u: t * R(u) * math.exp(-t * R(u)) * u * u, 0, cut)
        den = _quad(lambda u: math.exp(-t * R(u)) * u * u, 0, cut)
        gap = finite_temperature_regret_llc([one], HALF, t) - num / den
        assert gap * t == pytest.approx(12, rel=0.02)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_levels_fail_at_once_with_a_message():
    maze = Maze.from_strings(["..#", ".##", "#.."])
    with pytest.raises(ValueError, match="start \\(0, 2\\) is a wall"):
        Level(maze, (0, 2), (0, 0))
    with pytest.raises(ValueError, match="cheese \\(1, 1\\) is a wall"):
        Level(maze, (0, 0), (1, 1))
    with pytest.raises(ValueError, match="same cell"):
        Level(maze, (0, 0), (0, 0))
    with pytest.raises(ValueError, match="unreachable from the start \\(0, 0\\)"):
        Level(maze, (0, 0), (2, 2))
    with pytest.raises(ValueError, match="off the 3x3 grid"):
        Level(maze, (3, 0), (0, 0))
    with pytest.raises(ValueError, match="\\(row, column\\) pair"):
        Level(maze, (0.5, 0), (0, 0))
    with pytest.raises(ValueError, match="ragged maze: row 1 has 2 cells but row 0 has 3"):
        Maze.from_strings(["...", "..", "..."])
    with pytest.raises(ValueError, match="ragged"):
        Maze(((False, False), (False,)))
    with pytest.raises(ValueError, match="'#' for a wall"):
        Maze.from_strings(["..x"])
    with pytest.raises(ValueError, match="exactly one 'M'"):
        Level.from_strings(["M.M", "..C"])
    with pytest.raises(ValueError, match="exactly one 'C'"):
        Level.from_strings(["M..", "..."])


def test_bad_actions_gamma_policies_and_weights_fail_with_a_message():
    levels = [CORRIDOR]
    pi = optimal_policy(levels)
    s0 = CORRIDOR.state((0, 0))
    with pytest.raises(ValueError, match="unknown action 4: actions are 0=up, 1=left, 2=down, 3=right"):
        CORRIDOR.maze.step((0, 0), 4)
    with pytest.raises(ValueError, match="unknown action"):
        regret(levels, {**pi, s0: 7}, HALF)
    with pytest.raises(ValueError, match="unknown action"):
        optimal_policy(levels, priority=(0, 1, 2, 5))
    for gamma in (0, 1, 1.5, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="gamma \\(the discount\\) must be a number in \\(0, 1\\)"):
            regret(levels, pi, gamma)
    with pytest.raises(ValueError, match="rational gamma such as Fraction"):
        regret(levels, pi, 0.5, exact=True)
    with pytest.raises(ValueError, match="rational probabilities"):
        regret(levels, {**pi, s0: (0.5, 0, 0, 0.5)}, HALF, exact=True)
    with pytest.raises(ValueError, match="sums to 0.9"):
        regret(levels, {**pi, s0: (0.4, 0, 0, 0.5)}, 0.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        regret(levels, {**pi, s0: (-0.5, 0, 0, 1.5)}, 0.5)
    with pytest.raises(ValueError, match="4 probabilities"):
        regret(levels, {**pi, s0: (0.5, 0.5)}, 0.5)
    with pytest.raises(ValueError, match="no entry for the mouse at \\(0, 1\\)"):
        regret(levels, {s0: 3}, 0.5)
    with pytest.raises(ValueError, match="weights must sum to 1"):
        regret(levels * 2, pi, 0.5, weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="one per level"):
        regret(levels * 2, pi, 0.5, weights=[1.0])
    with pytest.raises(ValueError, match="non-empty sequence of Level"):
        regret([], pi, 0.5)
    with pytest.raises(ValueError, match="nbeta must be a positive finite number"):
        finite_temperature_regret_llc(levels, HALF, 0)
    with pytest.raises(ValueError, match="no zero entry"):
        finite_temperature_linear_llc([(1, 2, 3, 4)], 10.0)
    with pytest.raises(ValueError, match="every c must be >= 0"):
        finite_temperature_linear_llc([(0, -1, 3, 4)], 10.0)
    # extra keys (a policy built for more levels) are fine; State keys are plain values
    extra = {**pi, State(OPEN3.maze, OPEN3.cheese, (0, 0)): 2}
    assert regret(levels, extra, HALF, exact=True) == 0


def test_finite_temperature_target_is_refused_where_optimal_actions_tie():
    """With a tie at a visited state the posterior spreads along the optimal segment (SGLD measured
    6.02 ± 0.04 on these two levels where the vertex's λ is 8): no vertex target is given."""
    from theory.gridworld import Level, finite_temperature_regret_llc, learning_coefficient_at_optimum

    levels = [Level.from_strings(["M.", ".C"]), Level.from_strings([".M", ".C"])]
    assert learning_coefficient_at_optimum(levels, Fraction(1, 2)).flat_coordinates
    with pytest.raises(ValueError, match="tie at visited states"):
        finite_temperature_regret_llc(levels, Fraction(1, 2), 22000)
