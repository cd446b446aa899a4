"""Relaxation: run chains from ``w*`` until they have forgotten where they started.

Chains start at ``w*``, the one point of the posterior that is least typical of it: the loss is
at its minimum there, and along the flat directions of a singular loss (the valleys of ``x²y²``)
the posterior mass lies far away. Burn-in has to last as long as the *slowest* of these
directions takes to relax; a rule that scales burn-in from the autocorrelation of the loss alone
misses it, because the loss relaxes across a stiff valley long before the chains reach the
valley's far ends (docs/error_budget.md, "burn-in").

:func:`relax` measures the relaxation instead of guessing it. It runs the chains in blocks of
doubling length, ``B, 2B, 4B, …``, and after each block compares, chain by chain, the block means
of two observables with those of the previous block:

* the per-draw LLC ``nβ (L(w) − L(w*))``, the quantity being estimated, and
* the squared distance ``||w − w*||²``, which follows the slow directions the loss hides.

The chains have relaxed when neither mean moved: for both observables the change is *small*
(within ``rel_tol`` of the value: 5 % for the LLC, at least 0.01 in absolute terms, and 25 % for
``||w − w*||²``, a heavy-tailed proxy whose own value does not enter the estimate) and *not
significant* (within 3 standard errors of zero), or so precisely small that its upper bound
``|change| + 2 SE`` is within 1 % of the value. Without localization (γ = 0) and without a prior,
a flat direction of the loss has no stationary law at all — the chains random-walk along it and
``||w − w*||²`` grows for ever — so then only the LLC is required to settle. The standard error comes from the spread over
chains of the paired changes (chains are independent, so it holds whatever the autocorrelation
within a block). Both conditions are needed: a z-test alone passes a large drift measured on
noisy chains (a 22 % rise of ``||w − w*||²`` at z = 2.4 on ``x²y⁴``), and a bound alone waits for
a slow, heavy-tailed observable to be known to 1 % long after it has stopped moving. Doubling makes the test scale-free: a
relaxation ``f(t) = f_∞ (1 − e^{−t/T})`` changes by a factor of about 2 from one block to the next
while ``t ≪ T`` and not at all once ``t ≫ T``, whatever ``T`` is. The relaxation time is then about
a third of the steps run (the last two blocks agreed).

A step size that is stable near ``w*`` can be unstable where the chains go (the curvature across
a valley grows along it): if a chain diverges, the block is run again from its start with the
step size divided by 4.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from toymodels.estimators.llc_result import llc_draws
from toymodels.sampling import DivergenceError, SGLDHyperparameters, run_chains

__all__ = ["Relaxation", "relax", "block_change", "settled"]


@dataclass
class Relaxation:
    """What :func:`relax` did: the relaxed positions and how long it took to get there."""

    states: torch.Tensor = field(repr=False)  #: (num_chains, d) positions after the last block
    step_size: float  #: the step size of the blocks that counted (after any lowering)
    steps: int  #: steps run at ``step_size``
    relaxed: bool  #: whether the last two blocks agreed
    seconds: float
    seconds_per_step: float  #: wall time of one step of all the chains
    blocks: list[dict] = field(default_factory=list)  #: per block: steps, means, z-scores
    lowered: int = 0  #: how often the step size was divided by 4 after a divergence

    @property
    def langevin_time(self) -> float:
        """``ε × steps``: the time the chains ran, in the units of the Langevin diffusion."""
        return self.step_size * self.steps

    def summary(self) -> dict:
        return dict(step_size=self.step_size, steps=self.steps, relaxed=self.relaxed,
                    langevin_time=self.langevin_time, seconds=self.seconds,
                    seconds_per_step=self.seconds_per_step, lowered=self.lowered,
                    blocks=self.blocks)


def block_change(previous: np.ndarray, current: np.ndarray, floor: float = 0.0) -> dict:
    """The change of the mean from per-chain block means: ``{change, se, scale}``.

    ``se`` is the spread over chains of the paired changes divided by √C (infinite for a single
    chain that changed: it has no spread to measure); ``scale`` is ``max(|mean(current)|, floor)``.
    """
    change = current - previous
    mean_change = float(change.mean())
    if change.size > 1:
        se = float(change.std(ddof=1)) / math.sqrt(change.size)
    else:
        se = 0.0 if mean_change == 0 else math.inf
    return dict(change=mean_change, se=se, scale=max(abs(float(current.mean())), floor))


def settled(change: dict, rel_tol: float = 0.05, z: float = 3.0, tight: float = 0.01) -> bool:
    """Small and not significant, or precisely tiny (the module docstring's rule)."""
    m, se, scale = abs(change["change"]), change["se"], change["scale"]
    if m == 0 and se == 0:
        return True
    small = m <= rel_tol * scale and m <= z * se
    return small or m + 2 * se <= tight * scale


def relax(
    objective,
    *,
    hyper: SGLDHyperparameters,
    num_chains: int,
    chain_init: torch.Tensor | None = None,
    sampler: str = "sgld",
    sampler_options: dict | None = None,
    seed: int = 0,
    log_prior=None,
    mask: torch.Tensor | None = None,
    num_threads: int | None = None,
    first_block: int = 100,
    max_steps: int = 500_000,
    max_seconds: float | None = None,
    rel_tol: float = 0.05,
    distance_rel_tol: float = 0.25,
    max_lowerings: int = 6,
) -> Relaxation:
    """Run ``num_chains`` chains in doubling blocks until they stop drifting (module docstring).

    Args:
        hyper: the step size to relax at, nβ and γ. A stable step larger than the sampling
            step: relaxing is about reaching the typical set, and the step-size bias it has in
            the fast directions (10–25 % of λ̂ at a quarter of the largest stable step on the
            validation cases) is removed by the burn-in that follows at the chosen step, which
            lasts 20 autocorrelation times of the LLC.
        chain_init: ``(num_chains, d)`` starting points; default every chain at ``w*``.
        first_block: steps of the first block; the blocks double from there.
        max_steps, max_seconds: the budget; when it runs out first, ``relaxed`` is False.
        rel_tol, distance_rel_tol: how small a change of the LLC, and of ``||w − w*||²``,
            between blocks must be (with it not significant) for the block to agree with the
            previous one; see :func:`settled`.

    Returns:
        A :class:`Relaxation` whose ``states`` start the chains that follow.
    """
    start = time.perf_counter()
    center = objective.center
    states = _starting_states(center, num_chains, chain_init)
    options = _block_options(sampler, sampler_options)
    eps = float(hyper.step_size)
    improper_flat_directions = float(hyper.localization) == 0 and log_prior is None
    block, steps, lowered, k = int(first_block), 0, 0, 0
    previous: tuple[np.ndarray, np.ndarray] | None = None
    blocks: list[dict] = []
    step_seconds: list[float] = []
    relaxed = False
    while True:
        block = min(block, max_steps - steps)
        if block < 4:
            break
        # block means from about 100 draws a block: recording every step would cost more than
        # the steps themselves on a small model, and the means need no more
        spacing = max(1, block // 100)
        block = (block // spacing) * spacing
        trace = _run_block(objective, replace(hyper, step_size=eps), num_chains, block, spacing,
                           seed=seed + 104729 * k, log_prior=log_prior, mask=mask, states=states,
                           num_threads=num_threads, sampler=sampler, options=options)
        k += 1
        if trace is None:
            # the block starts again from its own start, with a smaller step; the blocks run at
            # the larger step no longer count
            if lowered == max_lowerings:
                raise _kept_diverging(eps, hyper, max_lowerings)
            eps /= 4.0
            lowered += 1
            previous, steps, block = None, 0, int(first_block)
            blocks.append(dict(steps=0, step_size=eps * 4, diverged=True))
            continue
        step_seconds.append(trace.seconds / block)
        current = _block_means(hyper, trace)
        row = dict(steps=block, step_size=eps, llc_mean=float(current[0].mean()),
                   distance2_mean=float(current[1].mean()), diverged=False)
        states = trace.final_params.to(center.dtype)
        steps += block
        if previous is not None:
            relaxed = _blocks_agree(previous, current, row, (rel_tol, distance_rel_tol),
                                    improper_flat_directions)
        blocks.append(row)
        if relaxed or (max_seconds is not None and time.perf_counter() - start > max_seconds):
            break
        previous = current
        block *= 2
    seconds = time.perf_counter() - start
    return Relaxation(states=states, step_size=eps, steps=steps, relaxed=relaxed, seconds=seconds,
                      seconds_per_step=float(np.median(step_seconds)) if step_seconds else math.nan,
                      blocks=blocks, lowered=lowered)


def _starting_states(center: torch.Tensor, num_chains: int, chain_init) -> torch.Tensor:
    if chain_init is None:
        return center.expand(num_chains, center.numel()).clone()
    return chain_init.to(dtype=center.dtype, device=center.device).clone()


def _block_options(sampler: str, sampler_options: dict | None) -> dict:
    options = dict(sampler_options or {})
    if sampler == "rmsprop_sgld":
        options.setdefault("adapt", "always")  # a block has no burn-in to adapt in
    if sampler == "mala":
        options["adapt_steps"] = 0
    if sampler == "sgld":
        options["mala_diagnostic"] = False  # only block means are needed: skip the extra work
    return options


def _run_block(objective, hyper, num_chains, block, spacing, *, seed, log_prior, mask, states,
               num_threads, sampler, options):
    """One block of ``block`` steps from ``states``, a draw every ``spacing``; ``None`` if a chain
    diverged."""
    try:
        trace = run_chains(objective, hyper=hyper, num_chains=num_chains,
                           num_draws=block // spacing, num_burnin_steps=0,
                           num_steps_bw_draws=spacing,
                           seed=seed, log_prior=log_prior, mask=mask,
                           on_divergence="drop", chain_init=states, num_threads=num_threads,
                           sampler=sampler, sampler_options=options)
    except DivergenceError:
        return None
    return None if trace.dropped_chains else trace


def _kept_diverging(eps: float, hyper, max_lowerings: int) -> DivergenceError:
    error = DivergenceError([], [], eps, float(hyper.nbeta))
    error.args = (f"chains kept diverging while relaxing away from w*, down to step "
                  f"size {eps:.3g} ({max_lowerings} divisions by 4): the loss is not "
                  "finite or not smooth where the chains go. Check it away from w*, "
                  "raise the localization γ to keep the chains near w*, or pass "
                  "num_burnin_steps to skip the relaxation",)
    return error


def _block_means(hyper, trace) -> tuple[np.ndarray, np.ndarray]:
    """Per chain: the block means of the per-draw LLC and of ``||w − w*||²``."""
    llc = llc_draws(float(hyper.nbeta), trace.loss, trace.init_loss)
    dist2 = trace.distance ** 2
    return llc.mean(axis=1), dist2.mean(axis=1)


def _blocks_agree(previous, current, row: dict, tolerances, improper_flat_directions: bool) -> bool:
    """Whether both block means settled (:func:`settled`); the changes go into ``row``. Without
    localization and prior, ``||w − w*||²`` has no stationary law and is recorded only."""
    agree = True
    for name, before, now, floor, tol in zip(("llc", "distance2"), previous, current,
                                             (0.01 / tolerances[0], 0.0), tolerances):
        change = block_change(before, now, floor=floor)
        row[f"{name}_change"], row[f"{name}_change_se"] = change["change"], change["se"]
        if name == "distance2" and improper_flat_directions:
            continue
        agree &= settled(change, tol)
    return agree
