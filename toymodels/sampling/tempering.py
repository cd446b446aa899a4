"""Parallel tempering over a ladder of inverse temperatures, with MALA moves at every rung.

Target at rung ``r``: ``p_r(w) ∝ exp(−nβ_r L(w)) φ(w)``. Every ladder runs one replica per rung,
all as one batch of chains (chain ``l·R + r`` is ladder ``l``'s replica at rung ``r``). A step is
one MALA move per replica (:class:`~toymodels.sampling.mala.MALA`: each rung keeps ``p_r`` exactly
invariant, no step-size bias), then every ``swap_every`` steps a swap of neighbouring rungs
(alternating even and odd pairs) accepted with probability
``min(1, exp((nβ_r − nβ_{r+1})(L_r − L_{r+1})))`` (Geyer 1991; Swendsen & Wang 1986). During
burn-in each rung's ``ε`` adapts by Robbins–Monro
(:func:`~toymodels.sampling.adaptation.robbins_monro_step`) towards ``target_accept``; after it
``ε`` is fixed, so the recorded chain is a time-homogeneous Markov chain with the right laws.

:func:`anneal` is the simpler relative: chains carried up a ladder of ``nβ`` once (starting points
for chains at a large ``nβ``), with :func:`geometric_ladder` to make the ladder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from toymodels.checks import as_int
from toymodels.objectives import Objective
from toymodels.sampling.adaptation import robbins_monro_step
from toymodels.sampling.driver import make_target, run_chains
from toymodels.sampling.hyper import ChainHyperparameters, SGLDHyperparameters
from toymodels.sampling.mala import MALA, MALAState

__all__ = ["TemperedSamples", "parallel_tempering", "swap_neighbours", "geometric_ladder", "anneal"]


@dataclass
class TemperedSamples:
    """Draws of ``p_r`` at each rung of the ladders.

    ``draws (num_records, ladders, rungs, d)`` and ``loss (num_records, ladders, rungs)`` are at
    the rungs' fixed inverse temperatures (replicas swap states, the rungs keep their nβ).
    ``acceptance (rungs,)`` is the MALA acceptance rate after burn-in, ``swap_rate (rungs-1,)``
    the accepted fraction of swaps between rungs ``r`` and ``r+1``, ``step_size (rungs,)`` the
    adapted step sizes.
    """

    sample_sizes: np.ndarray  #: the ladder's nβ_r (for a posterior exp(−n L) φ: the sample sizes)
    draws: torch.Tensor
    loss: torch.Tensor
    acceptance: np.ndarray
    swap_rate: np.ndarray
    step_size: np.ndarray
    seconds: float


def swap_neighbours(state: MALAState, nbetas: torch.Tensor, parity: int,
                    generator: torch.Generator) -> tuple[MALAState, torch.Tensor, torch.Tensor]:
    """Swap the replicas of rungs ``(r, r+1)`` for ``r = parity, parity + 2, ...`` where accepted.

    ``state`` holds ``ladders × rungs`` chains (ladder-major), ``nbetas (rungs,)``. Returns the new
    state, the pairs' lower rungs ``lo`` and the acceptance indicators ``(ladders, len(lo))``. A
    replica that moves from ``nβ`` to ``nβ'`` keeps its position, loss and gradient; its potential
    and force shift by ``(nβ' − nβ)·L`` and ``(nβ' − nβ)·∇L`` (they are linear in nβ).
    """
    rungs = nbetas.numel()
    ladders = state.position.shape[0] // rungs
    device = state.position.device
    lo = torch.arange(parity, rungs - 1, 2, device=device)
    hi = lo + 1
    loss = state.loss.view(ladders, rungs)
    log_ratio = (nbetas[lo] - nbetas[hi]) * (loss[:, lo] - loss[:, hi])
    accept = torch.log(torch.rand(log_ratio.shape, generator=generator, dtype=loss.dtype, device=device)) < log_ratio
    perm = torch.arange(rungs, device=device).repeat(ladders, 1)
    pair_lo = perm[:, lo].clone()
    perm[:, lo] = torch.where(accept, perm[:, hi], perm[:, lo])
    perm[:, hi] = torch.where(accept, pair_lo, perm[:, hi])

    def gather(x: torch.Tensor) -> torch.Tensor:
        shaped = x.view(ladders, rungs, *x.shape[1:])
        index = perm.view(ladders, rungs, *([1] * (x.dim() - 1))).expand_as(shaped)
        return torch.gather(shaped, 1, index).reshape(x.shape)

    moved = MALAState(*(gather(x) for x in state))
    shift = (nbetas.view(1, rungs) - nbetas[perm]).reshape(-1)  # nβ(new rung) − nβ(old rung)
    moved = moved._replace(energy=moved.energy + shift * moved.loss,
                           force=moved.force + shift.unsqueeze(-1) * moved.grad)
    return moved, lo, accept


def parallel_tempering(objective: Objective, nbetas: Sequence[float], init: torch.Tensor, *,
                       num_steps: int, num_burnin_steps: int, record_every: int = 10,
                       swap_every: int = 1, log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       initial_step_sizes: Sequence[float] | None = None, target_accept: float = 0.6,
                       seed: int = 0) -> TemperedSamples:
    """Parallel tempering (module docstring) from ``init (ladders, rungs, d)``.

    ``initial_step_sizes`` (one per rung) default to ``0.1 / nβ_r``. The loss ``L`` is
    ``objective``'s; ``log_prior`` is ``log φ`` of one flat vector (flat if ``None``).
    """
    ns = torch.as_tensor(np.asarray(nbetas, dtype=np.float64), dtype=init.dtype, device=init.device)
    if ns.dim() != 1 or ns.numel() < 1 or bool((ns <= 0).any()):
        raise ValueError("the ladder's nbetas must be a non-empty list of positive numbers")
    if init.dim() != 3 or init.shape[1] != ns.numel():
        raise ValueError(f"init must have shape (ladders, rungs = {ns.numel()}, d); got {tuple(init.shape)}")
    num_steps = as_int("num_steps", num_steps, 1)
    num_burnin_steps = as_int("num_burnin_steps", num_burnin_steps, 0)
    record_every = as_int("record_every", record_every, 1)
    swap_every = as_int("swap_every", swap_every, 1)
    ladders, rungs, d = init.shape
    log_eps = torch.log(0.1 / ns if initial_step_sizes is None
                        else torch.as_tensor(initial_step_sizes, dtype=init.dtype, device=init.device))
    generator = torch.Generator(device=init.device).manual_seed(seed)
    target = make_target(objective, log_prior, None, generator, None)
    per_chain = ns.repeat(ladders).unsqueeze(1)
    hyper = ChainHyperparameters(torch.exp(log_eps).repeat(ladders).unsqueeze(1), per_chain,
                                 torch.zeros_like(per_chain))
    kernel = MALA()
    state = kernel.init(init.detach().reshape(ladders * rungs, d).clone(), target, hyper, generator)
    accepted = torch.zeros(rungs, dtype=init.dtype, device=init.device)
    swaps = torch.zeros(max(rungs - 1, 0), dtype=init.dtype, device=init.device)
    swap_tries = torch.zeros_like(swaps)
    draws, losses, parity = [], [], 0
    start = time.perf_counter()
    for step in range(num_burnin_steps + num_steps):
        state, info = kernel.step(state, target, hyper, generator)
        rate = info.acceptance.view(ladders, rungs).mean(0)
        if step < num_burnin_steps:
            log_eps = robbins_monro_step(log_eps, rate, target_accept, step)
            hyper = hyper.with_step_size(torch.exp(log_eps).repeat(ladders).unsqueeze(1))
        else:
            accepted += rate
        if rungs > 1 and (step + 1) % swap_every == 0:
            state, lo, swapped = swap_neighbours(state, ns, parity, generator)
            parity = 1 - parity
            if step >= num_burnin_steps and lo.numel():
                swaps[lo] += swapped.to(init.dtype).mean(0)
                swap_tries[lo] += 1
        if step >= num_burnin_steps and (step - num_burnin_steps) % record_every == 0:
            draws.append(state.position.view(ladders, rungs, d).clone())
            losses.append(state.loss.view(ladders, rungs).clone())
    return TemperedSamples(sample_sizes=ns.cpu().numpy().copy(), draws=torch.stack(draws),
                           loss=torch.stack(losses), acceptance=(accepted / num_steps).cpu().numpy(),
                           swap_rate=(swaps / swap_tries.clamp_min(1)).cpu().numpy(),
                           step_size=torch.exp(log_eps).cpu().numpy(), seconds=time.perf_counter() - start)


def geometric_ladder(start: float, stop: float, ratio: float) -> list[float]:
    """``start, start·ratio, start·ratio², …`` below ``stop``, then ``stop`` itself."""
    if not (start > 0 and stop > 0 and ratio > 1):
        raise ValueError(f"need start > 0, stop > 0 and ratio > 1; got {start}, {stop}, {ratio}")
    rungs, rung = [], float(start)
    while rung < stop * (1 - 1e-9):
        rungs.append(rung)
        rung *= ratio
    return rungs + [float(stop)]


def anneal(objective: Objective, nbetas: Sequence[float], chain_init: torch.Tensor, *,
           step_size: float, steps_per_rung: int, seed: int = 0, localization: float = 0.0,
           log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
           sampler: str = "sgld") -> torch.Tensor:
    """Carry chains up a ladder of inverse temperatures: ``steps_per_rung`` steps at each ``nβ``
    of ``nbetas`` in turn, from ``chain_init (C, d)``; returns the final positions.

    Starting points for chains at a large ``nβ`` that would be thrown far off by the full force
    at once (e.g. from prior draws): raising ``nβ`` a factor at a time keeps each jump small.
    Rung ``i`` is seeded with ``seed + 1 + i``.
    """
    steps_per_rung = as_int("steps_per_rung", steps_per_rung, 1)
    position = torch.as_tensor(chain_init)
    for index, nbeta in enumerate(nbetas):
        trace = run_chains(objective, hyper=SGLDHyperparameters(step_size=step_size, nbeta=nbeta,
                                                                 localization=localization),
                           num_chains=position.shape[0], num_draws=1, num_burnin_steps=steps_per_rung - 1,
                           seed=seed + 1 + index, log_prior=log_prior, chain_init=position,
                           sampler=sampler)
        position = trace.final_params
    return position
