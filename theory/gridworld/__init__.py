"""Exact ground truth for the cheese gridworld: values, regret, and the learning coefficient of the
regret at an optimal policy (issue 16). Pure Python with fractions, numpy and mpmath; no torch.

**Conventions** (shared with the torch environment; keep them identical):

- A maze is a grid of ``H x W`` cells, each a wall or free; cell ``(r, c)`` is row ``r`` from the
  top and column ``c`` from the left. A level is ``(maze, start cell, cheese cell)``.
- Actions: ``0 = up`` (row - 1), ``1 = left`` (column - 1), ``2 = down`` (row + 1),
  ``3 = right`` (column + 1). A move into a wall or off the grid leaves the mouse in place.
- Reaching the cheese gives reward 1 and ends the episode: the cheese is absorbing with value 0.
  There is no other reward. The discount ``gamma`` lies in ``(0, 1)``.
- Hence ``V*(s) = gamma^(d(s) - 1)`` with ``d(s) >= 1`` the shortest-path distance from ``s`` to
  the cheese (the reward arrives on the step that enters the cheese) and ``V*(cheese) = 0``.
- A start must be free, differ from the cheese and be connected to it; bad input (a start or
  cheese on a wall or off the grid, start == cheese, an unreachable cheese, an unknown action,
  ``gamma`` outside ``(0, 1)``, a ragged maze) raises ValueError with a message at once.
- A tabular policy maps ``State(maze, cheese, cell)`` (levels differing only in the start share
  states) to an action or to 4 probabilities summing to 1; ``states(levels)`` lists the states
  it needs: the free cells connected to each cheese, the cheese excepted.
- The regret is ``R(pi) = sum_l q_l (V*(s0_l) - V^pi(s0_l))`` with level weights ``q`` (uniform
  by default; a start distribution is a level per start with its weight).

Sources: Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed. 2018, ch. 3-4
(Bellman equations, policy evaluation, value iteration); Kakade & Langford 2002, "Approximately
optimal approximate reinforcement learning" (performance-difference lemma); Watanabe 2009,
*Algebraic Geometry and Statistical Learning Theory* (learning coefficients); Elliott, Urdshals,
Quarel, Farrugia-Roberts, Murfet, "Stagewise Reinforcement Learning and the Geometry of the
Regret Landscape", arXiv 2601.07524 (the regret as the loss).

Submodules: ``environment`` (mazes, levels, states, distances, checks), ``values`` (``V*``,
``Q*``, ``V^pi`` exactly and by value iteration, occupancies, regret), ``vertex`` (the learning
coefficient at an optimal policy and its finite-nβ target). Every public name is re-exported here.
"""

from .environment import (
    ACTIONS,
    MOVES,
    Level,
    Maze,
    State,
    check_action,
    check_gamma,
    check_levels,
    check_weights,
    shortest_distances,
    states,
)
from .values import (
    level_regrets,
    occupancy,
    optimal_action_values,
    optimal_actions,
    optimal_policy,
    optimal_values,
    policy_values,
    regret,
    uniform_policy,
    value_iteration,
)
from .vertex import (
    RegretLearningCoefficient,
    RegretWitness,
    finite_temperature_linear_llc,
    finite_temperature_regret_llc,
    learning_coefficient_at_optimum,
)

__all__ = [
    "ACTIONS",
    "MOVES",
    "Level",
    "Maze",
    "RegretLearningCoefficient",
    "RegretWitness",
    "State",
    "check_action",
    "check_gamma",
    "check_levels",
    "check_weights",
    "finite_temperature_linear_llc",
    "finite_temperature_regret_llc",
    "learning_coefficient_at_optimum",
    "level_regrets",
    "occupancy",
    "optimal_action_values",
    "optimal_actions",
    "optimal_policy",
    "optimal_values",
    "policy_values",
    "regret",
    "shortest_distances",
    "states",
    "uniform_policy",
    "value_iteration",
]
