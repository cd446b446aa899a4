"""Exact values and regret of stochastic policies on a batch of levels, differentiable in the policy.

Conventions as in :mod:`toymodels.models.gridworld.levels` (actions 0 = up, 1 = left, 2 = down,
3 = right; blocked moves stay; entering the cheese pays 1 and ends the episode; the cheese cell is
absorbing with value 0; discount ``γ ∈ (0, 1)``).

A policy is given by its probabilities ``π(a | s)`` as a tensor ``(..., L, N, 4)``: for every level
and every cell (rows at walls and at the cheese are ignored), any leading batch dimensions (chains,
checkpoints). With the deterministic moves ``next(s, a)`` (:attr:`Levels.transitions`),

    P_π(s, s') = Σ_a π(a|s) [next(s, a) = s'] [s' ≠ cheese],   r_π(s) = Σ_a π(a|s) [next(s, a) = cheese]

for every free ``s ≠ cheese`` (other rows are 0), and ``V^π`` solves the Bellman system
``(I − γ P_π) V = r_π`` — one batched ``torch.linalg.solve`` for all levels and leading dimensions,
in float64 by default, so its gradient is exact. ``V*(s) = γ^(d(s) − 1)`` from the BFS distances
``d`` to the cheese (0 at the cheese and at cells cut off from it). The regret of a level is
``V*(s₀) − V^π(s₀)`` at its start ``s₀``, and ``R(π)`` is their mean over the levels (or a weighted
mean, e.g. to reweight groups of levels).
"""

from __future__ import annotations

import torch

from toymodels.checks import as_float
from toymodels.models.gridworld.levels import Levels

__all__ = ["check_gamma", "optimal_values", "optimal_actions", "optimal_policy", "policy_values",
           "level_regrets", "regret", "policy_probabilities", "level_weights",
           "regrets_from_task_values", "module_level_regrets"]


def check_gamma(gamma) -> float:
    """The discount as a float in ``(0, 1)``, refused otherwise."""
    gamma = as_float("gamma", gamma, minimum=0.0, strict=True)
    if gamma >= 1.0:
        raise ValueError(f"gamma must lie in (0, 1) (a discount < 1 keeps the Bellman system "
                         f"regular and episodes that never reach the cheese finite), got {gamma!r}")
    return gamma


def _check_levels(levels) -> Levels:
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
    return levels


def _check_probabilities(levels: Levels, probabilities: torch.Tensor) -> torch.Tensor:
    shape = (len(levels), levels.num_cells, 4)
    if not isinstance(probabilities, torch.Tensor) or tuple(probabilities.shape[-3:]) != shape:
        got = tuple(probabilities.shape) if isinstance(probabilities, torch.Tensor) else type(probabilities).__name__
        raise ValueError(f"policy probabilities must be a tensor (..., L, N, 4) = (..., {shape[0]}, "
                         f"{shape[1]}, 4): π(a|s) for every level and cell; got {got}")
    if not probabilities.is_floating_point():
        raise ValueError(f"policy probabilities must be floating point, got {probabilities.dtype}")
    return probabilities


def optimal_values(levels: Levels, gamma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(L, N)``: ``V*(s) = γ^(d(s) − 1)``, 0 at the cheese, on walls and at cut-off cells."""
    gamma = check_gamma(gamma)
    d = _check_levels(levels).distances
    ok = torch.isfinite(d) & (d > 0)
    return torch.where(ok, torch.tensor(gamma, dtype=torch.float64) ** (d.clamp(1, 1e9) - 1.0),
                       torch.zeros((), dtype=torch.float64)).to(dtype)


def optimal_actions(levels: Levels) -> torch.Tensor:
    """``(L, N, 4)`` bool: the actions that bring the mouse one step closer to the cheese (none at
    the cheese, on walls and at cut-off cells)."""
    d = _check_levels(levels).distances
    after = d.gather(1, levels.transitions.reshape(len(levels), -1)).reshape(d.shape + (4,))
    ok = (torch.isfinite(d) & (d > 0))[..., None]
    return ok & (after == d[..., None] - 1)


def optimal_policy(levels: Levels, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(L, N, 4)``: a deterministic optimal policy (the first optimal action in the order up,
    left, down, right; uniform where no action is optimal)."""
    best = optimal_actions(levels)
    first = torch.nn.functional.one_hot(best.to(torch.int8).argmax(-1), 4).to(dtype)
    return torch.where(best.any(-1, keepdim=True), first, torch.full_like(first, 0.25))


def policy_values(levels: Levels, probabilities: torch.Tensor, gamma: float,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(..., L, N)``: ``V^π`` by the Bellman linear system (module docstring)."""
    gamma = check_gamma(gamma)
    probs = _check_probabilities(_check_levels(levels), probabilities).to(dtype)
    n = levels.num_cells
    nxt = levels.transitions  # (L, N, 4)
    cells = torch.arange(n)
    deciding = levels.free & (cells[None, :] != levels.cheese[:, None])  # (L, N)
    into_cheese = nxt == levels.cheese[:, None, None]
    weighted = probs * deciding[..., None].to(dtype)
    reward = (weighted * into_cheese.to(dtype)).sum(-1)  # (..., L, N)
    stay_out = (weighted * (~into_cheese).to(dtype))
    index = nxt.expand(probs.shape)
    transition = torch.zeros(probs.shape[:-1] + (n,), dtype=dtype).scatter_add(-1, index, stay_out)
    system = torch.eye(n, dtype=dtype) - gamma * transition
    return torch.linalg.solve(system, reward.unsqueeze(-1)).squeeze(-1)


def level_regrets(levels: Levels, probabilities: torch.Tensor, gamma: float,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(..., L)``: ``V*(s₀) − V^π(s₀)`` per level at its start ``s₀``."""
    values = policy_values(levels, probabilities, gamma, dtype)
    rows = torch.arange(len(levels))
    best = optimal_values(levels, gamma, dtype)[rows, levels.start]
    return best - values[..., rows, levels.start]


def regrets_from_task_values(levels: Levels, task_values: torch.Tensor, gamma: float,
                             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(..., L)``: ``V*(s₀) − V^π(s₀)`` per level from ``V^π`` on its distinct (maze, cheese)
    tasks, ``task_values (..., T, N)`` ordered as ``levels.tasks`` (:attr:`Levels.tasks`)."""
    _, task_of_level = levels.tasks
    rows = torch.arange(len(levels))
    best = optimal_values(levels, gamma, dtype)[rows, levels.start]
    return best - task_values[..., task_of_level, levels.start].to(dtype)


def module_level_regrets(policy_module, levels: Levels, gamma: float,
                         dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(L,)`` per-level regrets of a policy module (:func:`policy_probabilities`), with one
    Bellman system per distinct (maze, cheese) of the levels; differentiable."""
    tasks, _ = levels.tasks
    values = policy_values(tasks, policy_probabilities(policy_module, tasks), gamma, dtype)
    return regrets_from_task_values(levels, values, gamma, dtype)


def level_weights(levels: Levels, weights=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(L,)`` weights summing to 1: uniform for ``None``, else ``weights`` normalised (one
    nonnegative number per level, not all zero)."""
    if weights is None:
        return torch.full((len(levels),), 1.0 / len(levels), dtype=dtype)
    weights = torch.as_tensor(weights, dtype=dtype).reshape(-1)
    if weights.shape != (len(levels),) or not torch.isfinite(weights).all() or (weights < 0).any() \
            or weights.sum() <= 0:
        raise ValueError(f"weights must be {len(levels)} finite nonnegative numbers (one per level), "
                         "not all zero")
    return weights / weights.sum()


def regret(levels: Levels, probabilities: torch.Tensor, gamma: float, *, weights=None,
           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(...)``: ``R(π) = Σ_l w_l (V*_l(s₀) − V^π_l(s₀))``, ``w`` uniform unless ``weights`` given."""
    return level_regrets(levels, probabilities, gamma, dtype) @ level_weights(levels, weights, dtype)


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def policy_probabilities(policy_module, levels: Levels) -> torch.Tensor:
    """``(L, N, 4)``: ``π(a|s) = softmax(policy_module(observation(s)))`` for every cell of every
    level, from the one-hot observations ``(wall, mouse, cheese)`` (the module maps ``(B, 3N)`` to
    ``(B, 4)`` logits; rows at walls and at the cheese are computed and ignored)."""
    if not callable(policy_module):
        raise TypeError(f"policy_module must map observations to logits, got {type(policy_module).__name__}")
    _check_levels(levels)
    dtype = _module_dtype(policy_module) if isinstance(policy_module, torch.nn.Module) else None
    obs = levels.observations(dtype).reshape(-1, levels.observation_size)
    logits = policy_module(obs)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (obs.shape[0], 4):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the policy must map ({obs.shape[0]}, {obs.shape[1]}) observations to "
                         f"({obs.shape[0]}, 4) logits, got {got}")
    return torch.softmax(logits, -1).reshape(len(levels), levels.num_cells, 4)
