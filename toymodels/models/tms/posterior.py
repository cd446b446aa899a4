"""The tempered posterior ``exp(−n L) φ`` of the Chen model on a ladder of sample sizes (Chen et al.
2023, §4: the Bayesian phase transitions between k-gons)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from toymodels.objectives import PotentialObjective
from toymodels.sampling import TemperedSamples, parallel_tempering

__all__ = ["TemperedPosteriorSamples", "standard_normal_log_prior", "tempered_posterior_mala"]


# ---------------------------------------------------------------------------------------------
# The tempered posterior exp(−n L) φ on a ladder of sample sizes
# ---------------------------------------------------------------------------------------------

#: the draws of :func:`tempered_posterior_mala` (the sampler's own result type)
TemperedPosteriorSamples = TemperedSamples


def standard_normal_log_prior(w: torch.Tensor) -> torch.Tensor:
    """``log φ(w) = −||w||²/2`` (up to a constant): Chen et al.'s prior N(0, I)."""
    return -0.5 * (w * w).sum(-1)


def tempered_posterior_mala(
    potential: Callable[[torch.Tensor], torch.Tensor],
    sample_sizes: Sequence[float],
    init: torch.Tensor,
    *,
    num_steps: int,
    num_burnin_steps: int,
    record_every: int = 10,
    swap_every: int = 1,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    initial_step_scale: float = 0.1,
    target_acceptance: float = 0.6,
    seed: int = 0,
) -> TemperedSamples:
    """Draws of ``p_n(w) ∝ exp(−n L(w)) φ(w)`` at each ``n`` of ``sample_sizes``, by parallel
    tempering with MALA moves (:func:`toymodels.sampling.tempering.parallel_tempering`).

    The exact ``L`` stands in for ``L_n``, as in Chen et al. 2023; ``φ = N(0, I)`` unless
    ``log_prior`` is given. ``potential`` maps ``(..., d)`` to ``(...)`` (it is called on the
    batch of all replicas at once); ``init (ladders, rungs, d)``; each rung's step starts at
    ``initial_step_scale / n`` and adapts towards ``target_acceptance`` during burn-in.
    """
    if init.dim() != 3:
        raise ValueError(f"init must have shape (ladders, rungs, d); got {tuple(init.shape)}")

    def batched(w: torch.Tensor) -> torch.Tensor:
        return potential(w)

    batched.batched = True  # the potential maps a batch itself: no vmap
    objective = PotentialObjective(batched, init[0, 0])
    ns = np.asarray(sample_sizes, dtype=np.float64)
    if ns.ndim != 1 or ns.size < 1 or np.any(ns <= 0):
        raise ValueError("sample_sizes must be a non-empty list of positive numbers")
    return parallel_tempering(objective, ns, init, num_steps=num_steps,
                              num_burnin_steps=num_burnin_steps, record_every=record_every,
                              swap_every=swap_every,
                              log_prior=standard_normal_log_prior if log_prior is None else log_prior,
                              initial_step_sizes=initial_step_scale / ns,
                              target_accept=target_acceptance, seed=seed)
