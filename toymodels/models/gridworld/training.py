"""Training a policy module: full-batch gradient descent on the exact regret, and REINFORCE on
sampled rollouts (batched in torch, seeded by a generator).

Both record the *exact* regret (:func:`~toymodels.models.gridworld.regret.regret`) and the flat
parameters at regular steps (:class:`TrainingRun`), so the two can be compared on the same axis.

REINFORCE (Williams 1992) with the discounted objective ``J = E[V^π(s₀)] = E[V*(s₀)] − R``: the
estimate of ``∇J`` is the batch mean of ``Σ_t γ^t (G_t − b_t) ∇ log π(a_t|s_t)`` over episodes,
``G_t`` the discounted return from step ``t``. The baseline ``b_t`` is ``"none"``, ``"mean"`` (the
mean ``G_t`` of the *other* episodes still running at ``t``, so it does not depend on the episode's
own actions and the estimate stays unbiased) or ``"learned"`` (a linear value function of the
observation, fitted to the returns by its own Adam). Episodes end on the cheese or are cut after
``max_steps`` (a bias of order ``γ^max_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from toymodels.checks import as_choice, as_float, as_int, as_optional_int
from toymodels.threads import torch_threads
from toymodels.models.gridworld.levels import Levels
from toymodels.models.gridworld.policy import flat_parameters
from toymodels.models.gridworld.regret import check_gamma, level_weights, module_level_regrets

__all__ = ["TrainingRun", "train_exact", "Rollouts", "rollout", "discounted_returns", "train_reinforce"]


@dataclass
class TrainingRun:
    """What a training run recorded: at each of ``steps``, the exact regret and the flat
    parameters (before that step's update; the last entry is the final policy). ``returns`` (for
    REINFORCE) is the batch mean of the sampled discounted return ``G_0`` at the same steps."""

    steps: list[int] = field(default_factory=list)
    regrets: list[float] = field(default_factory=list)
    checkpoints: list[torch.Tensor] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)


def _optimizer(name: str, params, lr: float, momentum: float) -> torch.optim.Optimizer:
    as_choice("optimizer", name, ("sgd", "adam"))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


def _record_every(record_every, steps: int) -> int:
    return as_optional_int("record_every", record_every, 1) or max(1, steps // 100)


def _exact_regret(policy, levels, gamma, weights, dtype) -> torch.Tensor:
    return module_level_regrets(policy, levels, gamma, dtype) @ level_weights(levels, weights, dtype)


def train_exact(policy: torch.nn.Module, levels: Levels, gamma: float, *, steps: int, lr: float,
                optimizer: str = "sgd", momentum: float = 0.0, weights=None,
                record_every: int | None = None, dtype: torch.dtype = torch.float64,
                num_threads: int = 1) -> TrainingRun:
    """Full-batch gradient descent on the exact regret, in place; returns the :class:`TrainingRun`
    (recorded every ``record_every`` steps, default ``steps // 100``, and at the end). Runs on
    ``num_threads`` torch threads (one is fastest for these small tensors), restored after."""
    gamma, steps = check_gamma(gamma), as_int("steps", steps, 1)
    lr = as_float("lr", lr, minimum=0.0, strict=True)
    every = _record_every(record_every, steps)
    opt = _optimizer(optimizer, policy.parameters(), lr, as_float("momentum", momentum, minimum=0.0))
    run = TrainingRun()
    with torch_threads(num_threads):
        for step in range(steps + 1):
            loss = _exact_regret(policy, levels, gamma, weights, dtype)
            if step % every == 0 or step == steps:
                run.steps.append(step)
                run.regrets.append(float(loss.detach()))
                run.checkpoints.append(flat_parameters(policy))
            if step == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


class Rollouts(NamedTuple):
    """A batch of ``B`` episodes of at most ``T`` steps (``T`` = ``max_steps``)."""

    level: torch.Tensor  #: (B,) the level of each episode
    cells: torch.Tensor  #: (B, T) the mouse's cell before step t
    actions: torch.Tensor  #: (B, T) the action taken at step t
    rewards: torch.Tensor  #: (B, T) the reward of step t (1 on entering the cheese)
    active: torch.Tensor  #: (B, T) whether step t happened (the episode had not ended)
    log_probs: torch.Tensor  #: (B, T) log π(a_t | s_t), differentiable in the policy
    observations: torch.Tensor  #: (B, N, 3N) the observation of each cell of each episode's level


def rollout(policy: torch.nn.Module, levels: Levels, generator: torch.Generator, *,
            num_episodes: int, max_steps: int, weights=None) -> Rollouts:
    """Sample ``num_episodes`` episodes: levels drawn with probabilities ``weights`` (uniform by
    default), each starting at its start cell, actions drawn from the policy, all as tensors."""
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
    num, horizon = as_int("num_episodes", num_episodes, 1), as_int("max_steps", max_steps, 1)
    level = torch.multinomial(level_weights(levels, weights), num, replacement=True, generator=generator)
    n = levels.num_cells
    dtype = next(policy.parameters()).dtype
    obs = levels.observation(level.repeat_interleave(n), torch.arange(n).repeat(num), dtype)
    log_table = torch.log_softmax(policy(obs), -1).reshape(num, n, 4)
    rows = torch.arange(num)
    cell = levels.start[level].clone()
    alive = torch.ones(num, dtype=torch.bool)
    cells, actions, rewards, active, log_probs = [], [], [], [], []
    for _ in range(horizon):
        logp = log_table[rows, cell]  # (B, 4)
        action = torch.multinomial(logp.detach().exp(), 1, generator=generator)[:, 0]
        nxt, reward = levels.step(level, cell, action)
        cells.append(cell)
        actions.append(action)
        rewards.append(reward * alive)
        active.append(alive)
        log_probs.append(logp.gather(1, action[:, None])[:, 0])
        alive = alive & (reward == 0)
        cell = torch.where(alive, nxt, cell)
        if not alive.any():
            break
    stack = lambda xs: torch.stack(xs, 1)  # noqa: E731
    return Rollouts(level, stack(cells), stack(actions), stack(rewards), stack(active),
                    stack(log_probs), obs.reshape(num, n, -1))


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(B, T)``: ``G_t = Σ_{k ≥ t} γ^(k − t) r_k``."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


def _mean_baseline(returns: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Leave-one-out mean of ``G_t`` over the other episodes running at ``t`` (0 when none)."""
    act = active.to(returns.dtype)
    total, count = (returns * act).sum(0, keepdim=True), act.sum(0, keepdim=True)
    others = (count - act).clamp(min=1)
    return torch.where(count - act > 0, (total - returns * act) / others, torch.zeros_like(returns))


def _reinforce_loss(batch: Rollouts, gamma: float, baseline: str, value: torch.nn.Module | None):
    """The surrogate loss whose gradient is minus the REINFORCE estimate, and the value loss."""
    returns = discounted_returns(batch.rewards.to(batch.log_probs.dtype), gamma)
    act = batch.active.to(returns.dtype)
    value_loss = None
    if baseline == "mean":
        b = _mean_baseline(returns, batch.active)
    elif baseline == "learned":
        state_obs = batch.observations[torch.arange(batch.cells.shape[0])[:, None], batch.cells]
        predicted = value(state_obs)[..., 0]
        value_loss = ((predicted - returns) ** 2 * act).sum() / act.sum()
        b = predicted.detach()
    else:
        b = torch.zeros_like(returns)
    discount = gamma ** torch.arange(returns.shape[1], dtype=returns.dtype)
    advantage = (discount * (returns - b) * act).detach()
    loss = -(advantage * batch.log_probs).sum() / returns.shape[0]
    return loss, value_loss, float(returns[:, 0].mean())


def _value_baseline(levels: Levels, policy: torch.nn.Module, baseline: str, lr: float):
    """The learned baseline (a zero-initialised linear value function) and its optimiser."""
    if baseline != "learned":
        return None, None
    value = torch.nn.Linear(levels.observation_size, 1, dtype=next(policy.parameters()).dtype)
    torch.nn.init.zeros_(value.weight)
    torch.nn.init.zeros_(value.bias)
    return value, torch.optim.Adam(value.parameters(), lr=lr)


def train_reinforce(policy: torch.nn.Module, levels: Levels, gamma: float,
                    generator: torch.Generator, *, steps: int, lr: float, num_episodes: int = 64,
                    max_steps: int | None = None, baseline: str = "mean", optimizer: str = "adam",
                    baseline_lr: float = 0.01, weights=None, record_every: int | None = None,
                    dtype: torch.dtype = torch.float64, num_threads: int = 1) -> TrainingRun:
    """REINFORCE with a baseline (module docstring), in place, on batches of ``num_episodes``
    rollouts; every ``record_every`` steps the run records the exact regret, the parameters and
    the batch's mean return (``returns`` has no entry for the final record, where no batch is
    drawn). ``max_steps`` defaults to twice the number of cells; ``num_threads`` as for
    :func:`train_exact`."""
    gamma, steps = check_gamma(gamma), as_int("steps", steps, 1)
    lr = as_float("lr", lr, minimum=0.0, strict=True)
    as_choice("baseline", baseline, ("none", "mean", "learned"))
    if not isinstance(levels, Levels):
        raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
    horizon = as_optional_int("max_steps", max_steps, 1) or 2 * levels.num_cells
    every = _record_every(record_every, steps)
    opt = _optimizer(optimizer, policy.parameters(), lr, 0.0)
    value, value_opt = _value_baseline(levels, policy, baseline,
                                       as_float("baseline_lr", baseline_lr, minimum=0.0, strict=True))
    run = TrainingRun()
    with torch_threads(num_threads):
        for step in range(steps + 1):
            record = step % every == 0 or step == steps
            if record:
                with torch.no_grad():
                    run.regrets.append(float(_exact_regret(policy, levels, gamma, weights, dtype)))
                run.steps.append(step)
                run.checkpoints.append(flat_parameters(policy))
            if step == steps:
                break
            batch = rollout(policy, levels, generator, num_episodes=num_episodes,
                            max_steps=horizon, weights=weights)
            loss, value_loss, mean_return = _reinforce_loss(batch, gamma, baseline, value)
            if record:
                run.returns.append(mean_return)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if value_loss is not None:
                value_opt.zero_grad()
                value_loss.backward()
                value_opt.step()
    return run
