"""Step-size adaptation by dual averaging (Hoffman & Gelman, JMLR 15, 2014, §3.2 and Alg. 5).

The driver composes it with a kernel during burn-in: after each step it feeds the mean acceptance
probability over chains and sets the step size every chain uses next. With ``H̄`` the averaged
shortfall, ``k`` the iteration, ``μ = log(10 ε₀)``::

    H̄ ← (1 − 1/(k + t₀)) H̄ + (δ − ᾱ_k)/(k + t₀),
    log ε_k = μ − √k/γ · H̄,
    log ε̄_k = k^(−κ) log ε_k + (1 − k^(−κ)) log ε̄_{k−1},

with Hoffman & Gelman's constants ``γ = 0.05, t₀ = 10, κ = 0.75``; after the last adaptation step
the step size is fixed at ``ε̄``, so the recorded chain is time-homogeneous.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["DualAveraging", "DualAveragingState", "robbins_monro_step"]

GAMMA, T0, KAPPA = 0.05, 10, 0.75


class DualAveragingState(NamedTuple):
    log_step: torch.Tensor  #: () log ε used at the next step
    log_step_avg: torch.Tensor  #: () log ε̄
    h_bar: torch.Tensor  #: () H̄
    count: int  #: adaptation steps done
    mu: float  #: log(10 ε₀), where the iterates are shrunk towards


class DualAveraging:
    """Adapt one step size shared by the chains towards ``target_accept`` over ``num_steps`` steps."""

    def __init__(self, target_accept: float, num_steps: int):
        self.target_accept = float(target_accept)
        self.num_steps = int(num_steps)

    def init(self, step_size: float, dtype: torch.dtype,
             device: torch.device | str = "cpu") -> DualAveragingState:
        log_step = torch.tensor(math.log(step_size), dtype=dtype, device=device)
        return DualAveragingState(log_step, log_step.clone(), torch.zeros((), dtype=dtype, device=device), 0,
                                  math.log(10 * step_size))

    def update(self, state: DualAveragingState, acceptance: torch.Tensor) -> DualAveragingState:
        """One iteration from the chains' acceptance probabilities ``(C,)``."""
        if state.count >= self.num_steps:
            return state
        k = state.count + 1
        h_bar = (1 - 1 / (k + T0)) * state.h_bar + (self.target_accept - acceptance.mean()) / (k + T0)
        log_step = state.mu - math.sqrt(k) / GAMMA * h_bar
        weight = k ** -KAPPA
        log_step_avg = weight * log_step + (1 - weight) * state.log_step_avg
        if k == self.num_steps:
            log_step = log_step_avg
        return DualAveragingState(log_step, log_step_avg, h_bar, k, state.mu)


def robbins_monro_step(log_step: torch.Tensor, acceptance: torch.Tensor, target_accept: float,
                       iteration: int) -> torch.Tensor:
    """One Robbins–Monro update of ``log ε`` towards ``target_accept`` (Robbins & Monro 1951)::

        log ε ← log ε + (1 + k)^(−0.6) (ᾱ − δ),

    with a decaying gain, so it settles during burn-in; used per rung of a tempering ladder, where
    each rung has its own step size (``log_step`` and ``acceptance`` are then per rung).
    """
    return log_step + (1.0 / (1.0 + iteration) ** 0.6) * (acceptance - target_accept)
