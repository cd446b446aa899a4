"""The learning coefficient of the regret at a deterministic optimal policy; its finite-nβ target.

**Setting.** The parameter is a tabular policy, one probability simplex ``Δ³`` (four actions) per
state of ``states(levels)``, with the uniform prior (Dirichlet(1)) on each simplex; the potential
is the regret ``R(π)`` (Elliott, Urdshals, Quarel, Farrugia-Roberts, Murfet, arXiv 2601.07524),
which is ``>= 0`` and vanishes at a deterministic optimal policy ``π*`` (a vertex of the product
of simplices). Near the vertex the coordinates are ``w_{s,a} = π(a|s)`` for ``a != π*(s)``: three
nonnegative coordinates per simplex (``π(π*(s)|s) = 1 - Σ_a w_{s,a}``), the simplex is the orthant
there, and the prior density is a positive constant.

**First-order term.** By the performance-difference lemma (Kakade & Langford 2002, Lemma 6.1),
exactly, ``R(π) = Σ_s ρ^π(s) Σ_a π(a|s) g(s, a)`` with ``g(s, a) = V*(s) - Q*(s, a) >= 0`` and
``ρ^π`` the discounted occupancy of ``π`` from the weighted starts. ``g(s, π*(s)) = 0`` at states
``π*`` visits, and ``ρ^π = ρ* + O(w)``, so ``R = Σ_{s,a} c_{s,a} w_{s,a} + O(w²)`` with
``c_{s,a} = ρ*(s) g(s, a)``, provided ``π*`` is optimal at *every* state (else the occupancy
of unvisited states where ``π*`` errs, ``O(w)``, adds first-order terms; such zeros of ``R`` are
refused). For ``π*``'s path from each start, ``ρ*(s) = Σ_l q_l γ^{t_l(s)}``
(``t_l(s)`` the step at which it passes ``s``), and at distance ``d`` from the cheese
``g = γ^{d-1}(1 - γ)`` for a bump (the mouse stays) and ``γ^{d-1}(1 - γ²)`` for a step away (a
grid is bipartite: a move changes the distance by exactly one). The *relevant* coordinates ``L``
are the strictly suboptimal actions at states ``π*`` visits: exactly those with ``c > 0``.

**λ in five lines** (Watanabe 2009, *Algebraic Geometry and Statistical Learning Theory*, ch. 2
and §7: ``λ`` and ``m`` from the volume ``V(t) = ∫_{K < t} φ ~ t^λ (-log t)^{m-1}``).
(1) Let ``F = {w_L = 0}`` be the face of the orthant where every relevant coordinate vanishes.
(2) If ``R ≡ 0`` on ``F`` near the vertex then, ``R`` being analytic (a rational function),
``R = Σ_{i in L} w_i h_i(w)`` with ``h_i(0) = c_i > 0``, so ``(c/2) Σ_L w_i <= R <= 2C Σ_L w_i``
on the orthant near the vertex. (3) Functions bounded by multiples of each other have the same
volume exponent, hence the same ``λ`` and ``m``. (4) For ``K = Σ_{i in L} w_i`` on ``[0, ε]^D``
with a constant prior, ``V(t) ∝ vol{Σ_L w_i < t} = t^|L| / |L|!``: ``λ = |L|``, ``m = 1``.
(5) So each linear coordinate counts 1, not 1/2: ``w`` with ``w >= 0`` is Watanabe's normal crossing ``w^{2k}`` with
``k = 1/2`` and ``h = 0``, pole ``(h + 1) / (2k) = 1`` (it would count 1/2 in squared coordinates
``π = u²``, where ``K ~ u²``).

**When the linear terms do not settle λ.** ``R`` vanishes on ``F`` iff no policy on ``F`` (at
visited states only optimal actions, at unvisited states any action) reaches, from a start, a
state ``π*`` never visits and plays a strictly suboptimal action there; that is decided exactly by
a breadth-first search. If such a path exists (a tie between shortest paths leads off ``π*``'s
path), ``R`` has terms such as ``w_tie · w_off`` with no linear part. ``λ >= |L|`` still holds
(``R >= c Σ_L w_i`` near the vertex) but its value depends on those terms (``Σ_L w_i + xy`` has
``λ = |L| + 1``, ``m = 2``), so ``learning_coefficient`` is ``None`` with the path as witness, as
``theory.turing.vertex`` does for higher-order syndromes.
Unvisited states whose only way in is a suboptimal move do not matter: their ``ρ^π`` is
``O(w_L)``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Rational, Real
from types import MappingProxyType

from .environment import (
    ACTIONS,
    Level,
    State,
    check_action,
    check_gamma,
    check_levels,
    check_weights,
    shortest_distances,
    states,
)
from .values import optimal_action_values, optimal_actions, optimal_policy

__all__ = [
    "RegretLearningCoefficient",
    "RegretWitness",
    "finite_temperature_linear_llc",
    "finite_temperature_regret_llc",
    "learning_coefficient_at_optimum",
]


@dataclass(frozen=True)
class RegretWitness:
    """A policy on the face ``{w_L = 0}`` with positive regret, given as a path.

    ``moves`` are ``(cell, action)`` pairs from ``level.start``: every move but the last is
    optimal at a state ``π*`` visits (a tie with ``π*``'s own action) or arbitrary at a state it
    never visits; the last is a strictly suboptimal action at a state ``π*`` never visits. Giving
    each move a small probability costs regret of the order of their product, with no linear term.
    """

    level: Level
    moves: tuple[tuple[tuple[int, int], int], ...]

    def __str__(self) -> str:
        path = ", ".join(f"{cell} {ACTIONS[a]}" for cell, a in self.moves)
        return f"from start {self.level.start} (cheese {self.level.cheese}): {path}"


@dataclass(frozen=True)
class RegretLearningCoefficient:
    """Result of ``learning_coefficient_at_optimum``.

    ``linear_coefficients[s]`` holds ``(c_{s,a})_{a=0..3}``, the first-order coefficients of the
    regret in ``π(a|s)`` at the vertex (0 at ``π*(s)``, at ties and at unvisited states).
    ``relevant_coordinates`` are the ``(state, action)`` with ``c > 0``; ``flat_coordinates`` the
    other optimal actions (ties, ``c = 0``) at visited states. ``learning_coefficient`` is
    ``None`` when the linear terms do not settle it; ``reason`` then says why and ``witness``
    gives a path of flat moves to regret.
    """

    learning_coefficient: Fraction | None
    multiplicity: int | None
    relevant_coordinates: tuple[tuple[State, int], ...]
    flat_coordinates: tuple[tuple[State, int], ...]
    linear_coefficients: Mapping[State, tuple]
    policy: Mapping[State, int]
    reason: str
    witness: RegretWitness | None = None


def _deterministic(policy, all_states) -> dict[State, int]:
    if not isinstance(policy, Mapping):
        raise ValueError(f"policy must be a mapping State -> action, got {type(policy).__name__}")
    out = {}
    for s in all_states:
        if s not in policy:
            raise ValueError(f"the policy has no action for the mouse at {s.cell} "
                             f"with the cheese at {s.cheese}")
        row = policy[s]
        if isinstance(row, Integral) and not isinstance(row, bool):
            out[s] = check_action(row)
        elif isinstance(row, Sequence) and len(row) == 4 and sorted(row) == [0, 0, 0, 1]:
            out[s] = list(row).index(1)
        else:
            raise ValueError(f"the policy must be deterministic (an action per state); at "
                             f"{s.cell} (cheese {s.cheese}) it is {row!r}")
    return out


def _face_witness(levels, q, visited, best) -> RegretWitness | None:
    """Breadth-first search for a path on the face ``{w_L = 0}`` to a regret-incurring action."""
    for level, weight in zip(levels, q):
        if not weight:
            continue
        parent = {level.start: None}
        queue = deque([level.start])
        while queue:
            cell = queue.popleft()
            s = State(level.maze, level.cheese, cell)
            optimal = best[(level.maze, level.cheese)][cell]
            if s not in visited and len(optimal) < 4:
                moves = [(cell, next(a for a in range(4) if a not in optimal))]
                while parent[cell] is not None:
                    cell, a = parent[cell]
                    moves.append((cell, a))
                return RegretWitness(level, tuple(reversed(moves)))
            for a in (optimal if s in visited else range(4)):
                nxt = level.maze.step(cell, a)
                if nxt != level.cheese and nxt not in parent:
                    parent[nxt] = (cell, a)
                    queue.append(nxt)
    return None


def learning_coefficient_at_optimum(levels, gamma, *, weights=None,
                                    policy=None) -> RegretLearningCoefficient:
    """Learning coefficient of the regret at a deterministic optimal policy, if linear terms
    settle it.

    ``policy`` maps each state of ``states(levels)`` to an action (default: ``optimal_policy``,
    ties broken towards the lower action index); it must be optimal at every state, visited or
    not (a zero of the regret that errs where it never goes has other first-order terms). With the
    uniform prior on each simplex and ``L`` the strictly suboptimal actions at visited states:
    ``λ = |L|``, ``m = 1`` if the regret vanishes on the face ``{w_L = 0}``, else ``None`` with a
    witness (derivation in the module docstring; Watanabe 2009, ch. 2 and §7; first-order term
    by the performance-difference lemma, Kakade & Langford 2002). The coefficients ``c_{s,a}``
    are ``Fraction`` when ``gamma`` and the weights are rationals, float otherwise.
    """
    levels = check_levels(levels)
    exact = (isinstance(gamma, Rational) and not isinstance(gamma, bool)
             and (weights is None or (isinstance(weights, Sequence)
                                      and all(isinstance(x, Rational) for x in weights))))
    g = check_gamma(gamma, exact)
    q = check_weights(weights, len(levels), exact)
    all_states = states(levels)
    pi = _deterministic(optimal_policy(levels) if policy is None else policy, all_states)
    contexts = {(level.maze, level.cheese) for level in levels}
    best = {ctx: optimal_actions(*ctx) for ctx in contexts}
    gap = {}
    for maze, cheese in contexts:
        v = {c: g ** (d - 1) for c, d in shortest_distances(maze, cheese).items() if d}
        for cell, qs in optimal_action_values(maze, cheese, g, exact=exact).items():
            gap[State(maze, cheese, cell)] = tuple(v[cell] - x for x in qs)

    for s in all_states:
        if pi[s] not in best[(s.maze, s.cheese)][s.cell]:
            raise ValueError(
                f"the policy is not optimal at {s.cell} (cheese at {s.cheese}): it moves "
                f"{ACTIONS[pi[s]]}, which does not approach the cheese; the learning coefficient "
                "here is taken at a policy optimal at every state"
            )
    rho: dict[State, object] = {}  # occupancy of π* from the starts (a path per level)
    for level, weight in zip(levels, q):
        if not weight:
            continue
        cell, t = level.start, 0
        while cell != level.cheese:
            s = State(level.maze, level.cheese, cell)
            rho[s] = rho.get(s, 0) + weight * g ** t
            cell, t = level.maze.step(cell, pi[s]), t + 1

    zero = Fraction(0) if exact else 0.0
    coefficients = {s: tuple(rho[s] * x for x in gap[s]) if s in rho else (zero,) * 4
                    for s in all_states}
    relevant, flat = [], []
    for s in all_states:
        if s in rho:
            optimal = best[(s.maze, s.cheese)][s.cell]
            relevant += [(s, a) for a in range(4) if a not in optimal]
            flat += [(s, a) for a in optimal if a != pi[s]]
    witness = _face_witness(levels, q, set(rho), best)
    common = dict(relevant_coordinates=tuple(relevant), flat_coordinates=tuple(flat),
                  linear_coefficients=MappingProxyType(coefficients),
                  policy=MappingProxyType(pi))
    if witness is None:
        return RegretLearningCoefficient(
            Fraction(len(relevant)), 1,
            reason=(f"the regret is linear in {len(relevant)} relevant coordinates (strictly "
                    "suboptimal actions at states the policy visits) and vanishes on the face "
                    "where they are zero; each contributes 1"),
            **common,
        )
    return RegretLearningCoefficient(
        None, None,
        reason=("the linear terms do not settle lambda: moves with no first-order cost (ties "
                f"{[(s.cell, ACTIONS[a]) for s, a in flat]} at visited states, then any move at "
                f"states the policy never visits) reach regret: {witness}"),
        witness=witness, **common,
    )


def _check_nbeta(nbeta):
    if isinstance(nbeta, bool) or not isinstance(nbeta, Real) or not math.isfinite(nbeta) \
            or not nbeta > 0:
        raise ValueError(f"nbeta must be a positive finite number, got {nbeta!r}")


def finite_temperature_linear_llc(coefficients, nbeta) -> float:
    """Exact ``t E[K]`` at ``t = nbeta``, ``K = Σ_s Σ_a c_{s,a} π(a|s)`` on a product of simplices.

    ``coefficients``: one row of nonnegative ``c_{s,a}`` per simplex (any number of entries
    ``>= 2``, the smallest 0: ``K`` vanishes at a vertex), or a mapping whose values are rows
    (``RegretLearningCoefficient.linear_coefficients``). Under ``p ∝ exp(-tK) ∏_s Dirichlet(1)``
    the simplices are independent, so ``t E[K]`` is a sum over rows. For one row with nodes
    ``x_a = t c_a`` sorted so that ``x_0 = 0``, and ``n + 1`` entries, the Hermite-Genocchi formula
    ``f[x_0, ..., x_n] = ∫_Δ f^(n)(Σ_a π_a x_a) dπ`` (de Boor, *Divided differences*, Surveys in
    Approximation Theory 1, 2005) with ``f^(n)(y) = e^{-y}`` for the normaliser and
    ``f^(n)(y) = y e^{-y}`` (``f = (-1)^n (y + n) e^{-y}``) for the numerator gives, by Opitz's
    formula for ``f`` of the bidiagonal matrix of the nodes,

        t E[K_s] = x_0 + n + e[x_1, ..., x_n] / e[x_0, ..., x_n],    e(y) = e^{-y},

    divided differences with repeated nodes as derivatives. Computed by the divided-difference
    table in mpmath at enough digits for the cancellation; returns a float. It tends to the
    number of positive ``c`` per row (``λ``) as ``t -> ∞``; one positive ``c`` in a row of
    ``n + 1`` gives ``∫ t c u e^{-tcu} (1-u)^{n-1} du / ∫ e^{-tcu} (1-u)^{n-1} du``.
    """
    _check_nbeta(nbeta)
    rows = list(coefficients.values()) if isinstance(coefficients, Mapping) else coefficients
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError("coefficients must be a sequence of rows (one per simplex) or a mapping")
    import mpmath  # a sympy dependency

    def mp(x):
        x = Fraction(x)
        return mpmath.mpf(x.numerator) / x.denominator

    total = 0.0
    for k, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) < 2:
            raise ValueError(f"coefficients[{k}] must be a row of at least 2 numbers, got {row!r}")
        for c in row:
            if isinstance(c, bool) or not isinstance(c, Real) or not math.isfinite(c) or c < 0:
                raise ValueError(f"coefficients[{k}] has {c!r}; every c must be >= 0")
        if min(row) != 0:
            raise ValueError(f"coefficients[{k}] = {row!r} has no zero entry: K must vanish at a "
                             "vertex of the simplex (the optimal action has c = 0)")
        if max(row) == 0:
            continue
        n = len(row) - 1
        scale = float(nbeta) * float(max(row))
        digits = 40 + 2 * n * (int(math.log10(1 + scale)) + 1)
        with mpmath.workdps(digits):
            x = sorted(mp(nbeta) * mp(c) for c in row)
            # table[i] = e[x_i, ..., x_{i+m}] after round m; nodes sorted, so equal ends mean a
            # run of equal nodes and the divided difference is e^(m)(x_i) / m!
            table = [mpmath.exp(-xi) for xi in x]
            tail = table[1]  # e[x_1, ..., x_n]: after round n - 1, at index 1
            for m in range(1, n + 1):
                table = [
                    ((-1) ** m * mpmath.exp(-x[i]) / mpmath.factorial(m)) if x[i + m] == x[i]
                    else (table[i + 1] - table[i]) / (x[i + m] - x[i])
                    for i in range(n + 1 - m)
                ]
                if m == n - 1:
                    tail = table[1]
            head = table[0]  # e[x_0, ..., x_n]
            total += float(x[0] + n + tail / head)
    return total


def finite_temperature_regret_llc(levels, gamma, nbeta, *, weights=None, policy=None) -> float:
    """The finite-``nβ`` LLC target at a deterministic optimal policy, where linear terms settle λ.

    ``t E[K]`` (``t = nbeta``) for ``K`` the first-order part of the regret at the vertex
    (``learning_coefficient_at_optimum``), under the uniform prior on each simplex:
    ``finite_temperature_linear_llc`` of its ``linear_coefficients``. It tends to ``λ`` as
    ``nbeta -> ∞``. It is exact for ``K``, not for the regret itself: ``R`` differs from ``K`` at
    second order, so ``nβ E[R]`` under ``exp(-nβ R)`` also tends to ``λ`` but differs from this
    target by ``O(λ² / (nβ c_min))``, ``c_min`` the smallest positive coefficient (for the
    one-state level ``MC`` at ``γ = 1/2``: ``λ = 3``, ``c = 1/2``, gap ``12 / nβ``). Compare a
    sampled estimate of the regret's LLC with it only where ``nβ c_min >> λ²``, or sample ``K``.
    ValueError (with the reason) where the linear terms do not settle λ, and where a visited state
    has a tie between optimal actions: the uniform prior does not hold the tie coordinate near
    ``π*``, so the posterior spreads along the whole segment of optimal policies, and a sampler
    measures the coefficient of that segment (its smallest λ), not the vertex's. Measured: on the
    two levels ``["M.", ".C"]`` and ``[".M", ".C"]`` at ``γ = 1/2`` the vertex gives λ = 8 and
    SGLD 6.02 ± 0.04, the λ at the far end of the segment, where a state becomes unvisited.
    """
    _check_nbeta(nbeta)
    result = learning_coefficient_at_optimum(levels, gamma, weights=weights, policy=policy)
    if result.learning_coefficient is None:
        raise ValueError(f"no finite-nbeta target from the linear terms: {result.reason}")
    if result.flat_coordinates:
        ties = ", ".join(f"{s.cell} action {a}" for s, a in result.flat_coordinates[:4])
        raise ValueError(
            "no finite-nbeta target at this vertex: optimal actions tie at visited states "
            f"({ties}); the posterior spreads along the optimal set, whose coefficient is not the "
            "vertex's. Choose levels without ties on the optimal paths")
    return finite_temperature_linear_llc(result.linear_coefficients, nbeta)
