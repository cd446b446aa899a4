"""Optimal values, values of tabular policies, discounted occupancies and the regret.

Every function takes ``exact``: ``True`` computes in ``fractions.Fraction`` (``gamma``, policy
probabilities and level weights must then be rationals: ``int`` or ``Fraction``), ``False`` in
float64 with numpy. The Bellman equations are those of Sutton & Barto, *Reinforcement Learning:
An Introduction*, 2nd ed. 2018, ch. 3 (``V^pi``, ``V*``, ``Q*``) and ch. 4 (iterative policy
evaluation and value iteration); the regret as the loss is that of Elliott, Urdshals, Quarel,
Farrugia-Roberts, Murfet, arXiv 2601.07524.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from numbers import Integral, Rational, Real

import numpy as np

from .environment import (
    Maze,
    State,
    check_action,
    check_gamma,
    check_levels,
    check_weights,
    shortest_distances,
    states,
)

__all__ = [
    "level_regrets",
    "occupancy",
    "optimal_action_values",
    "optimal_actions",
    "optimal_policy",
    "optimal_values",
    "policy_values",
    "regret",
    "uniform_policy",
    "value_iteration",
]


@functools.lru_cache(maxsize=256)
def _context(maze: Maze, cheese) -> tuple:
    """``(cells, index, next, distance)`` of one (maze, cheese): the non-cheese states connected
    to the cheese, their indices, the next state's index per action (``-1`` for the cheese)."""
    distance = shortest_distances(maze, cheese)
    cells = tuple(c for c in maze.free_cells() if c in distance and c != cheese)
    index = {c: i for i, c in enumerate(cells)}
    nxt = tuple(
        tuple(-1 if maze.step(c, a) == cheese else index[maze.step(c, a)] for a in range(4))
        for c in cells
    )
    return cells, index, nxt, distance


def _check_context(maze, cheese):
    if not isinstance(maze, Maze):
        raise ValueError(f"expected a Maze, got {type(maze).__name__}")
    return _context(maze, maze.check_free(cheese, "cheese"))


def optimal_values(maze: Maze, cheese, gamma, *, exact: bool = False) -> dict:
    """``V*`` on every free cell: ``gamma^(d-1)`` at distance ``d >= 1`` from the cheese.

    The reward 1 comes on the step that enters the cheese, so an optimal path of ``d`` moves is
    worth ``gamma^(d-1)`` (Bellman optimality, Sutton & Barto 2018, §3.6). ``V*(cheese) = 0``
    (absorbing, no further reward) and ``V* = 0`` on cells walled off from the cheese.
    """
    g = check_gamma(gamma, exact)
    cells, _, _, distance = _check_context(maze, cheese)
    zero = Fraction(0) if exact else 0.0
    values = {cell: zero for cell in maze.free_cells()}
    for cell in cells:
        values[cell] = g ** (distance[cell] - 1)
    return values


def optimal_action_values(maze: Maze, cheese, gamma, *, exact: bool = False) -> dict:
    """``Q*(s, a) = r(s, a) + gamma V*(s')`` at each non-cheese state connected to the cheese.

    ``r = 1`` if ``s'`` is the cheese (and then ``V*(s') = 0``), else 0. Returns
    ``{cell: (Q*(s, up), Q*(s, left), Q*(s, down), Q*(s, right))}``. Sutton & Barto 2018, §3.6.
    """
    g = check_gamma(gamma, exact)
    cells, _, _, _ = _check_context(maze, cheese)
    v = optimal_values(maze, cheese, gamma, exact=exact)
    one = Fraction(1) if exact else 1.0
    return {
        cell: tuple(one if maze.step(cell, a) == cheese else g * v[maze.step(cell, a)]
                    for a in range(4))
        for cell in cells
    }


def optimal_actions(maze: Maze, cheese) -> dict:
    """The optimal actions at each non-cheese state connected to the cheese: those that move one
    step closer (``d(s') = d(s) - 1``). Exact and independent of ``gamma`` in ``(0, 1)``: a grid
    is bipartite, so any other action keeps the distance (a bump) or adds one, and loses value."""
    cells, _, _, distance = _check_context(maze, cheese)
    return {
        cell: tuple(a for a in range(4) if distance[maze.step(cell, a)] == distance[cell] - 1)
        for cell in cells
    }


def optimal_policy(levels, *, priority: Sequence[int] = (0, 1, 2, 3)) -> dict[State, int]:
    """A deterministic optimal policy on ``states(levels)``: at each state the first optimal
    action in ``priority`` order (ties between shortest paths broken that way)."""
    order = [check_action(a) for a in priority]
    if sorted(order) != [0, 1, 2, 3]:
        raise ValueError(f"priority must list each of the actions 0..3 once, got {priority!r}")
    out = {}
    for s in states(levels):
        best = optimal_actions(s.maze, s.cheese)[s.cell]
        out[s] = next(a for a in order if a in best)
    return out


def uniform_policy(levels) -> dict[State, tuple[Fraction, ...]]:
    """The uniformly random policy (each action 1/4) on ``states(levels)``."""
    return {s: (Fraction(1, 4),) * 4 for s in states(levels)}


def _policy_rows(policy, maze, cheese, cells, exact: bool) -> list[tuple]:
    """The policy's rows for ``cells`` (ints become one-hot rows), checked."""
    if not isinstance(policy, Mapping):
        raise ValueError(
            "a policy must be a mapping State -> action or 4 probabilities, "
            f"got {type(policy).__name__}"
        )
    one, zero = (Fraction(1), Fraction(0)) if exact else (1.0, 0.0)
    rows = []
    for cell in cells:
        key = State(maze, cheese, cell)
        if key not in policy:
            raise ValueError(
                f"the policy has no entry for the mouse at {cell} with the cheese at {cheese}; "
                "build it over theory.gridworld.states(levels)"
            )
        row = policy[key]
        if isinstance(row, Integral) and not isinstance(row, bool):
            a = check_action(row)
            rows.append(tuple(one if b == a else zero for b in range(4)))
            continue
        where = f"at the mouse cell {cell} (cheese at {cheese})"
        if isinstance(row, (str, bytes, Mapping)) or not isinstance(row, Sequence) or len(row) != 4:
            raise ValueError(
                f"policy row {where} must be an action or 4 probabilities, got {row!r}")
        for p in row:
            if isinstance(p, bool) or not isinstance(p, Real) or not math.isfinite(p) or p < 0:
                raise ValueError(f"policy row {where} has {p!r}; probabilities must be >= 0")
            if exact and not isinstance(p, Rational):
                raise ValueError(
                    f"exact arithmetic needs rational probabilities (Fraction), got {p!r} {where}"
                )
        row = tuple(Fraction(p) if exact else float(p) for p in row)
        if (sum(row) != 1) if exact else abs(sum(row) - 1) > 1e-9:
            raise ValueError(f"policy row {where} sums to {sum(row)}, not 1")
        rows.append(row)
    return rows


def _solve_exact(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction]:
    """Gaussian elimination in Fractions without pivoting. ``I - gamma P`` (and its transpose)
    is strictly diagonally dominant, so every pivot is nonzero."""
    n = len(b)
    a = [row[:] for row in a]
    b = b[:]
    for k in range(n):
        pivot_row = a[k]
        support = [j for j in range(k + 1, n) if pivot_row[j]]
        for i in range(k + 1, n):
            if a[i][k]:
                f = a[i][k] / pivot_row[k]
                row = a[i]
                for j in support:
                    row[j] -= f * pivot_row[j]
                row[k] = Fraction(0)
                b[i] -= f * b[k]
    x = [Fraction(0)] * n
    for i in reversed(range(n)):
        x[i] = (b[i] - sum(a[i][j] * x[j] for j in range(i + 1, n) if a[i][j])) / a[i][i]
    return x


def _bellman_system(nxt, rows, g, exact):
    """``(I - gamma P_pi, r_pi)`` over the non-cheese states (cheese absorbing, value 0)."""
    n = len(nxt)
    if exact:
        a = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
        r = [Fraction(0)] * n
    else:
        a, r = np.eye(n), np.zeros(n)
    for i, (targets, probs) in enumerate(zip(nxt, rows)):
        for j, p in zip(targets, probs):
            if j < 0:
                r[i] += p
            else:
                a[i][j] -= g * p
    return a, r


def policy_values(maze: Maze, cheese, policy, gamma, *, exact: bool = False) -> dict:
    """``V^pi`` on every free cell by solving the Bellman equations exactly.

    ``V^pi(s) = sum_a pi(a|s) [r(s, a) + gamma V^pi(s')]`` with ``V^pi(cheese) = 0``, i.e. the
    linear system ``(I - gamma P_pi) V = r_pi`` over the non-cheese states connected to the
    cheese (Sutton & Barto 2018, §3.5 and §4.1); nonsingular for ``gamma < 1``. Solved in
    Fractions by elimination (``exact``) or by ``numpy.linalg.solve``. ``policy`` maps
    ``State(maze, cheese, cell)`` to an action or to 4 probabilities summing to 1. Cells walled
    off from the cheese get 0.
    """
    g = check_gamma(gamma, exact)
    cells, _, nxt, _ = _check_context(maze, cheese)
    rows = _policy_rows(policy, maze, cheese, cells, exact)
    a, r = _bellman_system(nxt, rows, g, exact)
    v = _solve_exact(a, r) if exact else [float(x) for x in np.linalg.solve(a, r)]
    zero = Fraction(0) if exact else 0.0
    values = {cell: zero for cell in maze.free_cells()}
    values.update(zip(cells, v))
    return values


def value_iteration(maze: Maze, cheese, gamma, policy=None, *, tol: float = 1e-13,
                    max_iterations: int = 1_000_000) -> dict[tuple[int, int], float]:
    """``V*`` (``policy=None``) or ``V^pi`` by iterating the Bellman backup in float64.

    ``V <- max_a Q`` (value iteration) or ``V <- sum_a pi(a|s) Q`` (iterative policy evaluation)
    with ``Q = r + gamma V(s')``, from ``V = 0`` (Sutton & Barto 2018, §4.1 and §4.4). The backup
    is a ``gamma``-contraction in the sup norm, so it stops once a sweep changes ``V`` by at most
    ``tol (1 - gamma) / gamma``, which bounds the distance to the fixed point by ``tol``.
    An independent check of ``optimal_values`` and ``policy_values``.
    """
    g = check_gamma(gamma, False)
    if isinstance(tol, bool) or not isinstance(tol, Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    cells, _, nxt, _ = _check_context(maze, cheese)
    n = len(cells)
    targets = np.array(nxt, dtype=np.int64).reshape(n, 4)
    reward = (targets < 0).astype(np.float64)
    targets = np.where(targets < 0, n, targets)  # slot n holds V(cheese) = 0
    probs = None if policy is None else np.array(_policy_rows(policy, maze, cheese, cells, False))
    v = np.zeros(n + 1)
    threshold = tol * (1 - g) / g
    for _ in range(max_iterations):
        q = reward + g * v[targets]
        new = q.max(axis=1) if probs is None else (probs * q).sum(axis=1)
        change = np.max(np.abs(new - v[:n])) if n else 0.0
        v[:n] = new
        if change <= threshold:
            break
    else:
        raise RuntimeError(f"value iteration did not converge to {tol} in {max_iterations} sweeps")
    values = {cell: 0.0 for cell in maze.free_cells()}
    values.update(zip(cells, (float(x) for x in v[:n])))
    return values


def _by_context(levels):
    groups: dict[tuple, list[int]] = {}
    for i, level in enumerate(levels):
        groups.setdefault((level.maze, level.cheese), []).append(i)
    return groups


def level_regrets(levels, policy, gamma, *, exact: bool = False) -> tuple:
    """``V*(s0) - V^pi(s0)`` for each level, in order (one Bellman solve per maze and cheese)."""
    levels = check_levels(levels)
    g = check_gamma(gamma, exact)
    out = [None] * len(levels)
    for (maze, cheese), members in _by_context(levels).items():
        v = policy_values(maze, cheese, policy, gamma, exact=exact)
        distance = shortest_distances(maze, cheese)
        for i in members:
            out[i] = g ** (distance[levels[i].start] - 1) - v[levels[i].start]
    return tuple(out)


def regret(levels, policy, gamma, *, weights=None, exact: bool = False):
    """The regret ``R(pi) = sum_l q_l (V*(s0_l) - V^pi(s0_l))`` over the levels.

    ``weights`` ``q_l`` (default uniform) is the distribution over levels and hence over starts:
    a level per start with its weight gives any start distribution. ``R >= 0`` with equality
    exactly at the policies optimal on every state they reach. The loss of Elliott, Urdshals,
    Quarel, Farrugia-Roberts, Murfet, arXiv 2601.07524; values as in ``policy_values``.
    A ``Fraction`` for ``exact``, else a ``float``.
    """
    levels = check_levels(levels)
    q = check_weights(weights, len(levels), exact)
    total = sum((w * r for w, r in zip(q, level_regrets(levels, policy, gamma, exact=exact))),
                Fraction(0) if exact else 0.0)
    return total if exact else float(total)


def occupancy(levels, policy, gamma, *, weights=None, exact: bool = False) -> dict[State, object]:
    """Discounted state occupancy ``rho^pi(s) = sum_l q_l sum_t gamma^t P(s_t = s | s0_l, pi)``.

    Unnormalised and over non-cheese states (the episode ends at the cheese): the solution of
    ``(I - gamma P_pi)^T rho = mu`` with ``mu`` the weighted start distribution. With it the
    performance-difference lemma (Kakade & Langford 2002, Lemma 6.1) reads
    ``R(pi) = sum_s rho^pi(s) sum_a pi(a|s) (V*(s) - Q*(s, a))``. Keys: ``states(levels)``.
    """
    levels = check_levels(levels)
    g = check_gamma(gamma, exact)
    q = check_weights(weights, len(levels), exact)
    out = {}
    for (maze, cheese), members in _by_context(levels).items():
        cells, index, nxt, _ = _context(maze, cheese)
        rows = _policy_rows(policy, maze, cheese, cells, exact)
        a, _ = _bellman_system(nxt, rows, g, exact)
        mu = [Fraction(0) if exact else 0.0] * len(cells)
        for i in members:
            mu[index[levels[i].start]] += q[i]
        if exact:
            rho = _solve_exact([list(col) for col in zip(*a)], mu)
        else:
            rho = [float(x) for x in np.linalg.solve(np.asarray(a).T, np.array(mu))]
        out.update((State(maze, cheese, c), x) for c, x in zip(cells, rho))
    return out
