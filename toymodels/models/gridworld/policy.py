"""Policies on the gridworld and their exact regret as a potential of one flat parameter vector.

Two parameterisations, each a ``potential(w) -> R`` that :func:`toymodels.estimate_llc` takes as
``estimate_llc(potential, init=potential.init, nbeta=...)`` (both set ``batched = True``: a
``(C, d)`` batch of chains gives ``(C,)`` regrets without ``vmap``):

* :class:`MLPPolicy`, a small MLP from the one-hot observation ``(wall, mouse, cheese)`` to four
  logits, and :class:`RegretPotential`, its regret as a function of the flat vector of its
  trainable parameters in ``named_parameters()`` order (the sampler's layout,
  :class:`toymodels.objectives.FlatModule`);
* :class:`SimplexPolicy`, the tabular policy: one probability simplex per *decision state*
  (a maze, its cheese, and a free cell other than the cheese from which the cheese can be
  reached; levels that differ only in their start share their states),
  in the coordinates of :mod:`toymodels.models.turing`: one real ``s_a`` per action and
  ``π(a|s) = softmax(s)`` per state, with the prior whose push-forward is a Dirichlet law on each
  simplex (``concentration = 1``: uniform) and an independent ``N(0, 1)`` on each scale
  ``ℓ = logsumexp(s)``; pass :meth:`SimplexPolicy.log_prior` as the sampler's ``log_prior`` with
  ``localization = 0``. Its exact learning coefficient at a deterministic optimal policy is
  ``theory.gridworld``'s (the two meet only in tests and the validation registry).

Conventions: :mod:`toymodels.models.gridworld.levels`; regret: :mod:`~toymodels.models.gridworld.regret`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import vmap

from toymodels.checks import as_float, as_int
from toymodels.objectives import FlatModule
from toymodels.models.gridworld.levels import Levels
from toymodels.models.gridworld.regret import (
    check_gamma,
    level_regrets,
    level_weights,
    policy_values,
    regrets_from_task_values,
)

__all__ = ["MLPPolicy", "RegretPotential", "regret_potential", "SimplexPolicy", "flat_parameters",
           "load_flat_parameters"]

_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU}


class MLPPolicy(torch.nn.Module):
    """``observation (…, 3HW) -> logits (…, 4)``: linear layers of widths ``hidden`` with
    ``activation`` between them.

    The weights are drawn as PyTorch's default (uniform in ``±1/√fan_in``) from ``generator`` when
    one is given, so a seed fixes the policy.
    """

    def __init__(self, height: int, width: int, hidden: Sequence[int] = (32,), *,
                 activation: str = "relu", generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
        self.height, self.width = as_int("height", height, 1), as_int("width", width, 1)
        widths = [3 * self.height * self.width] + [as_int("hidden width", h, 1) for h in hidden] + [4]
        layers: list[torch.nn.Module] = []
        for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            if k:
                layers.append(_ACTIVATIONS[activation]())
            layers.append(torch.nn.Linear(fan_in, fan_out, dtype=dtype))
        self.net = torch.nn.Sequential(*layers)
        if generator is not None:
            with torch.no_grad():
                for layer in self.net:
                    if isinstance(layer, torch.nn.Linear):
                        bound = 1.0 / math.sqrt(layer.in_features)
                        for p in (layer.weight, layer.bias):
                            p.copy_((2 * torch.rand(p.shape, generator=generator, dtype=p.dtype) - 1) * bound)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


def flat_parameters(policy: torch.nn.Module) -> torch.Tensor:
    """The trainable parameters as one flat vector (a copy, in the sampler's layout)."""
    return FlatModule(policy).center()


def load_flat_parameters(policy: torch.nn.Module, w: torch.Tensor) -> None:
    """Write a flat vector (the layout of :func:`flat_parameters`) into the policy, in place."""
    flat = FlatModule(policy)
    w = torch.as_tensor(w)
    if w.shape != (sum(flat.numels),):
        raise ValueError(f"w must have shape ({sum(flat.numels)},), got {tuple(w.shape)}")
    named = dict(policy.named_parameters())
    with torch.no_grad():
        for name, value in flat.unflatten(w.to(flat.dtype)).items():
            named[name].copy_(value)


class RegretPotential:
    """``R(w)``: the exact regret of ``policy`` at the flat parameters ``w`` on ``levels``.

    Calling it on ``(d,)`` gives a scalar, on ``(C, d)`` a ``(C,)`` tensor, in ``w``'s dtype (the
    Bellman system is solved in ``dtype``, float64 by default). ``init`` is the policy's current
    flat vector; the policy module is not modified. ``weights`` reweights the levels.
    """

    batched = True

    def __init__(self, levels: Levels, policy: torch.nn.Module, gamma: float, *, weights=None,
                 dtype: torch.dtype = torch.float64):
        if not isinstance(levels, Levels):
            raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
        self.levels, self.gamma, self.dtype = levels, check_gamma(gamma), dtype
        self.flat = FlatModule(policy)
        self.init = self.flat.center()
        self.weights = level_weights(levels, weights, dtype)
        # one Bellman system per distinct (maze, cheese), read at each level's start
        self._tasks, _ = levels.tasks
        self._obs = self._tasks.observations(self.flat.dtype).reshape(-1, levels.observation_size)
        with torch.no_grad():
            out = self.flat(self.init, self._obs[:1])
        if tuple(out.shape) != (1, 4):
            raise ValueError(f"the policy must map observations (B, {levels.observation_size}) to "
                             f"(B, 4) logits, got {tuple(out.shape)} for B = 1")

    @property
    def dim(self) -> int:
        return self.init.numel()

    def _task_probabilities(self, w: torch.Tensor) -> torch.Tensor:
        """``(…, T, N, 4)``: ``π(a|s)`` on each distinct (maze, cheese) of the levels."""
        if w.shape[-1:] != (self.dim,) or w.dim() > 2:
            raise ValueError(f"w must have shape ({self.dim},) or (C, {self.dim}), got {tuple(w.shape)}")
        if w.dim() == 1:
            logits = self.flat(w, self._obs)
        else:
            logits = vmap(lambda v: self.flat(v, self._obs))(w)
        shape = w.shape[:-1] + (len(self._tasks), self.levels.num_cells, 4)
        return torch.softmax(logits, -1).reshape(shape)

    def probabilities(self, w: torch.Tensor) -> torch.Tensor:
        """``(…, L, N, 4)``: ``π(a|s)`` at ``w`` (``(d,)`` or ``(C, d)``)."""
        return self._task_probabilities(w)[..., self.levels.tasks[1], :, :]

    def level_regrets(self, w: torch.Tensor) -> torch.Tensor:
        """``(…, L)`` per-level regrets at ``w`` (in ``self.dtype``): ``V*(s₀) − V^π(s₀)``, with
        ``V^π`` from one Bellman system per distinct (maze, cheese)."""
        values = policy_values(self._tasks, self._task_probabilities(w), self.gamma, self.dtype)
        return regrets_from_task_values(self.levels, values, self.gamma, self.dtype)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return (self.level_regrets(w) @ self.weights).to(w.dtype)

    def __repr__(self) -> str:
        return f"RegretPotential({self.levels!r}, γ = {self.gamma}, d = {self.dim})"


def regret_potential(levels: Levels, policy: torch.nn.Module, gamma: float, *, weights=None,
                     dtype: torch.dtype = torch.float64) -> RegretPotential:
    """The regret of ``policy`` as a potential of its flat parameters (:class:`RegretPotential`):
    ``pot = regret_potential(levels, policy, 0.9); estimate_llc(pot, init=pot.init, nbeta=...)``."""
    return RegretPotential(levels, policy, gamma, weights=weights, dtype=dtype)


class SimplexPolicy:
    """The tabular policy on ``levels``: one softmax simplex per decision state (module docstring).

    A state is (maze, cheese, cell), as in ``theory.gridworld.states``: levels that differ only in
    their start share their states. Coordinates ``s`` are ``(…, 4S)``: the states in the order of
    :attr:`states` (first appearance: level order, then cells ascending), four actions each. Calling the object gives the exact regret
    ``(…)`` (``batched = True``); states that are not decision states act uniformly (they never
    matter).

    Args:
        levels, gamma, weights: as for :func:`~toymodels.models.gridworld.regret.regret`.
        concentration: Dirichlet parameter ``α > 0`` of every simplex (1: uniform prior).
    """

    batched = True

    def __init__(self, levels: Levels, gamma: float, *, weights=None, concentration: float = 1.0,
                 dtype: torch.dtype = torch.float64):
        if not isinstance(levels, Levels):
            raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
        self.levels, self.gamma, self.dtype = levels, check_gamma(gamma), dtype
        self.weights = level_weights(levels, weights, dtype)
        self.concentration = as_float("concentration", concentration, minimum=0.0, strict=True)
        deciding = torch.isfinite(levels.distances) & (levels.distances > 0)
        # one simplex per state (maze, cheese, cell): levels that differ only in their start share
        # them. States in order of first appearance: level order, then cells ascending.
        first_level: dict[tuple, int] = {}
        owner = torch.empty(len(levels), dtype=torch.long)  # first level of the same (maze, cheese)
        for i in range(len(levels)):
            key = (levels.walls[i].numpy().tobytes(), int(levels.cheese[i]))
            owner[i] = first_level.setdefault(key, i)
        cells = [torch.nonzero(deciding[i])[:, 0] for i in sorted(set(first_level.values()))]
        #: ``(S, 2)`` the decision states as ``(level, cell)``, ``level`` the first level of its
        #: (maze, cheese)
        self.states = torch.cat([torch.stack([torch.full_like(c, i), c], 1) for i, c in
                                 zip(sorted(set(first_level.values())), cells)])
        index = torch.full((len(levels), levels.num_cells), -1, dtype=torch.long)
        index[self.states[:, 0], self.states[:, 1]] = torch.arange(self.num_states)
        index = index[owner]  # levels sharing a (maze, cheese) share its states
        # position of each (level, cell) among the states, S (the uniform row) elsewhere
        self._position = torch.where(deciding & (index >= 0), index, self.num_states).reshape(-1)

    @property
    def num_states(self) -> int:
        return self.states.shape[0]

    @property
    def dim(self) -> int:
        return 4 * self.num_states

    def _check(self, s: torch.Tensor) -> torch.Tensor:
        if not isinstance(s, torch.Tensor) or s.shape[-1:] != (self.dim,):
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"coordinates must be a tensor whose last dimension is 4S = {self.dim}, got {got}")
        return s

    def table(self, s: torch.Tensor) -> torch.Tensor:
        """``(…, S, 4)``: ``π(a|state)`` at the decision states."""
        s = self._check(s)
        return torch.softmax(s.reshape(s.shape[:-1] + (self.num_states, 4)), -1)

    def probabilities(self, s: torch.Tensor) -> torch.Tensor:
        """``(…, L, N, 4)``: ``π(a|s)`` for every cell of every level."""
        table = self.table(s)
        padded = torch.cat([table, torch.full_like(table[..., :1, :], 0.25)], -2)
        return padded[..., self._position, :].reshape(
            s.shape[:-1] + (len(self.levels), self.levels.num_cells, 4))

    def level_regrets(self, s: torch.Tensor) -> torch.Tensor:
        return level_regrets(self.levels, self.probabilities(s), self.gamma, self.dtype)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        return (self.level_regrets(s) @ self.weights).to(s.dtype)

    def log_prior(self, s: torch.Tensor) -> torch.Tensor:
        """``Σ_states [α Σ_a log π(a|state) − ℓ²/2]`` (constant dropped), ``ℓ = logsumexp(s)`` per
        state: Dirichlet(α) on each simplex and ``N(0, 1)`` on each scale (module docstring)."""
        s = self._check(s).reshape(s.shape[:-1] + (self.num_states, 4))
        ell = torch.logsumexp(s, -1, keepdim=True)
        return (self.concentration * (s - ell)).sum((-2, -1)) - 0.5 * (ell * ell).sum((-2, -1))

    def sample_prior(self, num_chains: int, rng: np.random.Generator | int) -> torch.Tensor:
        """``(num_chains, 4S)`` exact prior draws: ``π ~ Dirichlet(α)`` per state, ``ℓ ~ N(0, 1)``."""
        num_chains = as_int("num_chains", num_chains, 1)
        rng = np.random.default_rng(rng)
        shape = (num_chains, self.num_states, 4)
        a = self.concentration
        # log Gamma(α) as log Gamma(α + 1) + log(U)/α, which keeps a small α from underflowing
        log_g = np.log(rng.gamma(a + 1.0, size=shape)) + np.log(rng.uniform(size=shape)) / a
        log_g = torch.as_tensor(log_g, dtype=self.dtype)
        log_p = log_g - torch.logsumexp(log_g, -1, keepdim=True)
        ell = torch.as_tensor(rng.standard_normal((num_chains, self.num_states, 1)), dtype=self.dtype)
        return (log_p + ell).reshape(num_chains, self.dim)

    def coordinates_of(self, probabilities: torch.Tensor, floor: float = 1e-30) -> torch.Tensor:
        """Coordinates ``s = log max(π, floor)`` at the decision states of a full ``(L, N, 4)``
        policy (e.g. :func:`~toymodels.models.gridworld.regret.optimal_policy`), so that a
        deterministic policy lands within ``floor`` of its vertex."""
        probs = torch.as_tensor(probabilities, dtype=self.dtype)
        if probs.shape[-3:] != (len(self.levels), self.levels.num_cells, 4):
            raise ValueError(f"probabilities must be (…, {len(self.levels)}, {self.levels.num_cells}, 4)")
        rows = probs[..., self.states[:, 0], self.states[:, 1], :]
        if (rows < 0).any() or not torch.allclose(rows.sum(-1), torch.ones((), dtype=self.dtype), atol=1e-9):
            raise ValueError("each decision state's probabilities must be nonnegative and sum to 1")
        if not 0 < floor < 1e-6:
            raise ValueError(f"floor must lie in (0, 1e-6), got {floor!r}")
        return torch.log(rows.clamp(min=floor)).reshape(probs.shape[:-3] + (self.dim,))

    def __repr__(self) -> str:
        return f"SimplexPolicy({self.levels!r}, {self.num_states} states, γ = {self.gamma})"
