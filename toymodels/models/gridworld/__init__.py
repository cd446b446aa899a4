"""The cheese-in-the-corner gridworld (Langosco et al. 2022; Elliott et al. arXiv 2601.07524): levels,
exact regret in torch, policies, training, and a ``gymnasium`` environment.

Modules: ``levels`` (mazes, the level mixture, the batched :class:`Levels`, the conventions),
``regret`` (``V^π`` by the Bellman linear system, ``V*`` by BFS, the regret), ``policy`` (the MLP
policy, its regret as a potential of a flat vector, the tabular :class:`SimplexPolicy`),
``training`` (gradient descent on the exact regret, REINFORCE on rollouts) and ``env``
(:class:`GridworldEnv`). The exact rational twin is ``theory.gridworld``; nothing here imports it.

Conventions (every module follows them): an ``H×W`` grid of wall or free cells, flat index
``row·W + col`` with rows growing downwards; actions 0 = up (row − 1), 1 = left, 2 = down, 3 = right;
a move into a wall or off the grid stays; entering the cheese pays 1 and ends the episode (the
cheese cell is absorbing, value 0); discount ``γ ∈ (0, 1)``; so ``V*(s) = γ^(d(s) − 1)``. Training
levels put the cheese in the top-left free corner cell with probability ``1 − α``, elsewhere with
``α``.
"""

from toymodels.models.gridworld.env import ENV_ID, GridworldEnv
from toymodels.models.gridworld.levels import (
    ACTIONS,
    MOVES,
    Levels,
    check_actions,
    corner_cell,
    default_levels,
    dfs_maze,
    open_maze,
    sample_levels,
)
from toymodels.models.gridworld.policy import (
    MLPPolicy,
    RegretPotential,
    SimplexPolicy,
    flat_parameters,
    load_flat_parameters,
    regret_potential,
)
from toymodels.models.gridworld.regret import (
    check_gamma,
    level_regrets,
    level_weights,
    module_level_regrets,
    optimal_actions,
    optimal_policy,
    optimal_values,
    policy_probabilities,
    policy_values,
    regret,
    regrets_from_task_values,
)
from toymodels.models.gridworld.training import (
    Rollouts,
    TrainingRun,
    discounted_returns,
    rollout,
    train_exact,
    train_reinforce,
)

__all__ = [
    # levels
    "ACTIONS", "MOVES", "Levels", "check_actions", "corner_cell", "default_levels", "dfs_maze",
    "open_maze", "sample_levels",
    # exact values and regret
    "check_gamma", "optimal_values", "optimal_actions", "optimal_policy", "policy_values",
    "level_regrets", "level_weights", "regret", "policy_probabilities", "module_level_regrets",
    "regrets_from_task_values",
    # policies
    "MLPPolicy", "RegretPotential", "regret_potential", "SimplexPolicy", "flat_parameters",
    "load_flat_parameters",
    # training
    "TrainingRun", "train_exact", "Rollouts", "rollout", "discounted_returns", "train_reinforce",
    # environment
    "GridworldEnv", "ENV_ID",
]
