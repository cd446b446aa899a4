"""Gridworld cases for ``toymodels validate``: the regret of a tabular policy near an optimal vertex.

Each case samples ``toymodels.models.gridworld.SimplexPolicy`` (one softmax simplex per decision
state, the prior pushing forward to Dirichlet(1), the uniform law, on every simplex) with the
exact regret ``R(π)`` as the potential, localised by the prior alone at the deterministic optimal
policy ``π*`` (a vertex of the product of simplices), and compares ``lambda-hat = nbeta E[R]`` with
the exact finite-temperature value of ``theory.gridworld``: ``finite_temperature_regret_llc``,
``t E[K]`` at ``t = nbeta`` for ``K = Σ c_{s,a} π(a|s)``, the linear part of the regret at the
vertex (``c_{s,a} = ρ*(s) (V*(s) − Q*(s, a))``). The asymptotic ``λ`` printed beside it is
``learning_coefficient_at_optimum`` (the number of strictly suboptimal actions at visited states;
``m = 1``). Only levels where the linear terms settle ``λ`` occur, and none with a tie between
optimal actions at a visited state, for two reasons. (1) Without ties every row of ``c`` has its
only zero at ``π*(s)`` (on a grid a non-optimal action bumps or steps away), so the target is
``λ`` up to ``O(e^{-nβ c_min})``: the finite-nβ content of these cases is the regret's own
higher-order terms, kept under budget below. (2) With a tie the prior does not localise the tie
coordinate: the posterior spreads along the whole tie segment of the zero set, where the
occupancies change at ``O(1)``, and its far end can have a smaller ``λ`` than ``π*``. Measured:
levels ``["M.", ".C"]`` and ``[".M", ".C"]`` at ``γ = 1/2``, ``nβ = 22000`` give
``learning_coefficient_at_optimum = 8`` (target 7.9993) but ``nβ E[R] = 6.02 ± 0.04``: at the
other end of the tie (right at ``(0, 0)``) the state ``(1, 0)`` is unvisited and reached only
through the tie, so its three coordinates enter only as ``x (y_1 + y_2 + y_3)`` with ``x`` the
tie coordinate, which adds 1: ``λ = 5 + 1``.

**Full regret, not its linear part.** The target is exact for ``K``; ``nβ E[R]`` under
``exp(−nβ R)`` differs from it by ``O(λ² / (nβ c_min))`` (``c_min`` the smallest positive
``c_{s,a}``; ``theory.gridworld.vertex``). Each case takes ``nβ`` so that this estimate is below
0.3 % of ``λ`` — ``nβ ≥ λ / (0.003 c_min)``, a tenth of the 3 % tolerance and a third of the 1 %
MCSE target — and samples the regret itself. That is affordable because the chains live in log
coordinates: near the vertex a suboptimal ``log π(a|s)`` sits near ``−log(nβ c)`` with a restoring
force of order ``α = 1`` whatever ``nβ``, so a larger ``nβ`` costs only a longer annealing ladder.
Sampling ``R`` checks the torch regret (Bellman solves, the state layout, the prior) against the
exact theory as well as the estimator, which sampling ``K`` would not. The maze case also has
states ``π*`` never visits: their simplices are sampled (under the product prior they are nearly
free, since ``R`` vanishes on the face ``{w_L = 0}``) and enter ``R`` only through the occupancy
``ρ^π = O(w_L)``, an effect of the same ``O(λ / (nβ c_min))`` order.

Chains reach ``nbeta`` by an annealing ladder from exact prior draws (ratio 10, step 0.2, 200
steps per rung, as ``toymodels.validation.turing``), then burn in; the step size and schedule are
the calibration's (:func:`toymodels.validation.case.calibrated_run`, ``gamma = 0``: the prior
localises).
"""

from __future__ import annotations

from fractions import Fraction

import torch

from theory.gridworld import Level, finite_temperature_regret_llc, learning_coefficient_at_optimum
from toymodels.models.gridworld import Levels, SimplexPolicy, optimal_policy
from toymodels.objectives import PotentialObjective
from toymodels.sampling import anneal, geometric_ladder
from toymodels.validation.case import ValidationCase, calibrated_run

__all__ = ["cases", "policy_potential", "settled_nbeta"]

#: the 0.3 % budget (relative to λ) for the regret's higher-order terms, λ² / (nβ c_min)
_HIGHER_ORDER_BUDGET = Fraction(3, 1000)

# name, levels (one list of row strings each), discount, chains
_CASES = [
    ("corridor M.C", (["M.C"],), Fraction(1, 2), 400),
    ("maze 3x3, 2 levels", (["M..", "#.#", "C.."], ["...", "#.#", "C.M"]), Fraction(3, 4), 400),
]
_LADDER_STEP_SIZE = 0.2
_LADDER_STEPS = 200
_LADDER_RATIO = 10.0


def settled_nbeta(levels, gamma) -> float:
    """The ``nβ`` at which ``λ² / (nβ c_min)`` is 0.3 % of ``λ``: ``λ / (0.003 c_min)``, rounded up
    to a multiple of 1000."""
    result = learning_coefficient_at_optimum(levels, gamma)
    if result.learning_coefficient is None:
        raise ValueError(f"the linear terms do not settle lambda here: {result.reason}")
    c_min = min(c for row in result.linear_coefficients.values() for c in row if c > 0)
    nbeta = result.learning_coefficient / (_HIGHER_ORDER_BUDGET * c_min)
    return float(-(-nbeta // 1000) * 1000)


def policy_potential(rows, gamma) -> tuple[SimplexPolicy, torch.Tensor]:
    """The tabular policy's regret on the levels drawn by ``rows`` and the coordinates of the
    optimal vertex (first optimal action, as ``theory.gridworld.optimal_policy``)."""
    levels = Levels.from_strings(*rows)
    potential = SimplexPolicy(levels, float(gamma))
    return potential, potential.coordinates_of(optimal_policy(levels))


def _case(name, rows, gamma, chains, scale):
    exact_levels = [Level.from_strings(r) for r in rows]
    result = learning_coefficient_at_optimum(exact_levels, gamma)
    nbeta = settled_nbeta(exact_levels, gamma)
    potential, vertex = policy_potential(rows, gamma)

    def start(n: int):
        ladder = geometric_ladder(1.0, nbeta, _LADDER_RATIO)
        return anneal(PotentialObjective(potential, vertex), ladder, potential.sample_prior(n, 0),
                      step_size=_LADDER_STEP_SIZE, steps_per_rung=_LADDER_STEPS, seed=0,
                      log_prior=potential.log_prior)

    run, settings = calibrated_run(potential, vertex, nbeta=nbeta, gamma=0.0,
                                   num_chains=chains, scale=scale, seed=1,
                                   log_prior=potential.log_prior, chain_init=start)
    settings.update(levels=[list(r) for r in rows], discount=str(gamma), concentration=1.0,
                    ladder_step_size=_LADDER_STEP_SIZE, ladder_steps_per_rung=_LADDER_STEPS,
                    ladder_ratio=_LADDER_RATIO)

    def target() -> float:
        return finite_temperature_regret_llc(exact_levels, gamma, nbeta)

    return ValidationCase(name=f"gridworld {name} γ={gamma} [auto]", group="gridworld",
                          llc=result.learning_coefficient, multiplicity=result.multiplicity,
                          target=target, run=run, settings=settings)


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """The gridworld validation cases; ``scale`` multiplies chains and draws."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return [_case(*row, scale=scale) for row in _CASES]
