"""The LLC at many points at once: each chain localized at its own centre, all in one batched run.

For checkpoints of many training runs (Chen et al., arXiv 2310.06301, 2023, §5: the LLC along SGD
trajectories), ``λ̂(w*_p) = nβ (E[L_p] − L_p(w*_p))`` at every centre ``w*_p``, with ``L_p`` the
point's own loss (e.g. its run's training set). The chains go through the one driver
(:func:`toymodels.sampling.run_chains` with per-chain ``centers``), escaped chains are left out by
the one escape rule (:mod:`toymodels.estimators.escape`), and the MCSE per point comes from
:func:`toymodels.chain_diagnostics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from toymodels.estimators.diagnostics import chain_diagnostics
from toymodels.estimators.escape import ESCAPE_FRACTION, escaped
from toymodels.estimators.llc_result import llc_draws
from toymodels.objectives import Objective
from toymodels.sampling import SGLDHyperparameters, run_chains

__all__ = ["PointLLC", "PointwiseObjective", "llc_at_points"]


@dataclass
class PointLLC:
    """LLC estimates at ``P`` points from one vectorised run.

    ``llc_mean, mcse, init_loss (P,)``; ``llc_per_chain (P, C)``; ``loss (P, C, draws)``;
    ``escaped (P, C)`` marks chains whose draws fell below ``L(w*)`` more than the escape fraction
    of the time (excluded from ``llc_mean`` and ``mcse`` where at least two chains remain;
    ``llc_mean_all`` keeps them).
    """

    llc_mean: np.ndarray
    mcse: np.ndarray
    llc_mean_all: np.ndarray
    llc_per_chain: np.ndarray
    init_loss: np.ndarray
    loss: np.ndarray
    escaped: np.ndarray
    hyper: SGLDHyperparameters
    seconds: float = 0.0


class PointwiseObjective(Objective):
    """``P`` points with ``num_chains`` chains each, flattened to ``P·C`` chains for the driver.

    ``loss_fn`` maps ``(P, C, d)`` to ``(P, C)`` (row ``p`` with point ``p``'s own loss);
    ``loss_and_grad_fn`` optionally gives the loss and its gradient in closed form.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], centers: torch.Tensor,
                 num_chains: int, loss_and_grad_fn=None):
        self.loss_fn, self.loss_and_grad_fn = loss_fn, loss_and_grad_fn
        self.num_points, self.num_chains = centers.shape[0], num_chains
        self.center = centers[0]  # a reference point; every chain has its own centre

    def _grid(self, params: torch.Tensor) -> torch.Tensor:
        return params.reshape(self.num_points, -1, params.shape[-1])

    def batched_loss(self, params, generator=None):
        return self.loss_fn(self._grid(params)).reshape(-1)

    def loss_and_grad(self, params, generator=None):
        if self.loss_and_grad_fn is None:
            return super().loss_and_grad(params, generator)
        loss, grad = self.loss_and_grad_fn(self._grid(params))
        return loss.reshape(-1), grad.reshape(params.shape)

    def full_loss(self, params):
        with torch.no_grad():
            if params.shape[0] == self.num_points * self.num_chains:
                return self.batched_loss(params)
            return self.loss_fn(self._grid(params)[:, :1]).reshape(-1)


def llc_at_points(loss_fn: Callable[[torch.Tensor], torch.Tensor], centers: torch.Tensor, *,
                  nbeta: float, step_size: float, localization: float, num_chains: int,
                  num_draws: int, num_burnin_steps: int = 0, seed: int = 0,
                  escape_fraction: float = ESCAPE_FRACTION,
                  loss_and_grad_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                  ) -> PointLLC:
    """``λ̂(w*_p) = nβ (E[L_p] − L_p(w*_p))`` at every centre of ``centers (P, d)`` at once.

    ``loss_fn (P, C, d) -> (P, C)``; the SGLD step (Lau et al. 2023, eq. 12) localizes each chain
    at its own point's centre and starts it there. A diverging chain raises
    :class:`toymodels.DivergenceError` naming it and the step.
    """
    if centers.dim() != 2:
        raise ValueError(f"centers must be (P, d), one point per row; got {tuple(centers.shape)}")
    if num_chains < 2 or num_draws < 4 or num_burnin_steps < 0:
        raise ValueError("need num_chains >= 2, num_draws >= 4 and num_burnin_steps >= 0 "
                         "(the MCSE needs several chains and draws)")
    hyper = SGLDHyperparameters(step_size=step_size, nbeta=nbeta, localization=localization)
    num_points, d = centers.shape
    objective = PointwiseObjective(loss_fn, centers, num_chains, loss_and_grad_fn)
    chain_centers = centers.unsqueeze(1).expand(num_points, num_chains, d).reshape(-1, d)
    trace = run_chains(objective, hyper=hyper, num_chains=num_points * num_chains,
                       num_draws=num_draws, num_burnin_steps=num_burnin_steps, seed=seed,
                       centers=chain_centers, num_threads=None)
    loss = trace.loss.reshape(num_points, num_chains, -1)
    init = np.asarray(trace.init_loss).reshape(num_points, num_chains)[:, 0]
    out = escaped(loss, init[:, None], escape_fraction)
    draws = llc_draws(nbeta, loss, init[:, None, None])
    per_chain = draws.mean(-1)
    means, mcses = [], []
    for p in range(num_points):
        keep = ~out[p] if (~out[p]).sum() >= 2 else np.ones(num_chains, dtype=bool)
        means.append(per_chain[p, keep].mean())
        mcses.append(chain_diagnostics(draws[p, keep])["mcse"])
    return PointLLC(llc_mean=np.array(means), mcse=np.array(mcses), llc_mean_all=per_chain.mean(-1),
                    llc_per_chain=per_chain, init_loss=init, loss=loss, escaped=out, hyper=hyper,
                    seconds=trace.seconds)
