"""A validation case, and the one way the calibrated cases run.

A :class:`ValidationCase` pairs an estimate (``run()``) with its exact value (``target()``);
:func:`calibrated_run` is how every ``[auto]`` case runs: one call of
:func:`toymodels.estimate_llc` with ``step_size="auto"``, the case giving only the physics.

Why ``BIAS_TOLERANCE = 1 %`` and ``REL_MCSE = 1 %``: a case passes at ``|rel. error| ≤ 3 %`` and
``|z| ≤ 3``. The calibration bounds the bias by 1 % with 95 % confidence (the fitted bias is
typically about half of that), and the MCSE is about 1 %, so the bias is at most about one MCSE:
z stays honest, and a case fails only if the Monte-Carlo error alone is beyond ~2 MCSE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from toymodels.estimators.llc import LLCResult, estimate_llc

__all__ = ["ValidationCase", "calibrated_run", "BIAS_TOLERANCE", "REL_MCSE", "CALIBRATION_CHAINS"]


@dataclass
class ValidationCase:
    """One exact check: ``run()`` gives an estimate, ``target()`` its exact value."""

    name: str
    group: str
    llc: Fraction | float  #: the asymptotic learning coefficient λ
    multiplicity: int | None
    target: Callable[[], float]  #: exact finite-temperature value of the estimator's limit
    run: Callable[[], LLCResult]
    settings: dict = field(default_factory=dict)
    rel_tol: float = 0.03
    z_tol: float = 3.0


BIAS_TOLERANCE = 0.01  #: relative step-size bias the calibration allows (95 % bound)
REL_MCSE = 0.01  #: target Monte-Carlo standard error, relative to the estimate
#: chains per calibration grid point: a precise bias slope lets the rule take a larger step
CALIBRATION_CHAINS = 64

def calibrated_run(potential, init: torch.Tensor, *, nbeta: float, gamma: float, num_chains: int,
                   scale: float, seed: int, sampler: str = "sgld", log_prior=None,
                   chain_init=None, calibration_chains: int = CALIBRATION_CHAINS):
    """``(run, settings)`` of a case whose whole schedule comes from ``step_size="auto"``.

    The case gives only the physics (potential, ``w*``, nβ, γ, an optional prior and starting
    points) and the number of chains. One call of :func:`toymodels.estimate_llc` with
    ``step_size="auto"`` and ``rel_mcse=REL_MCSE`` does the rest: the calibration's rule picks ε
    (for MALA: dual averaging to acceptance 0.8), the chains are relaxed from ``w*`` until they
    stop drifting, and the burn-in, thinning and draws are chosen for an MCSE of ``REL_MCSE``.
    ``scale < 0.5`` (smoke runs) spends a token budget. ``chain_init`` is a callable
    ``chains -> (chains, d)`` of starting points.
    """
    chains = max(4, int(num_chains * scale))
    small = scale < 0.5  # smoke runs: a token calibration budget
    options = dict(num_chains=calibration_chains, tolerance=BIAS_TOLERANCE)
    if small:
        options.update(num_chains=8, num_draws=40, num_burnin_steps=40, max_rounds=1,
                       scan_steps=60, relax_max_steps=400)

    def run() -> LLCResult:
        starts = chain_init(chains) if chain_init is not None else None
        # A token budget (smoke runs) sees too few steps to find the tails of quartic
        # potentials, so its step size can be unstable there: drop diverging chains then, and
        # only then — at full budget a divergence is an error.
        return estimate_llc(potential, init=init, nbeta=nbeta, localization=gamma,
                            step_size="auto", rel_mcse=REL_MCSE, calibration_options=options,
                            num_chains=chains, seed=seed, sampler=sampler, log_prior=log_prior,
                            chain_init=starts, progress=False,
                            on_divergence="drop" if small else "raise",
                            budget_steps=2000 if small else 1_000_000)

    settings = dict(nbeta=nbeta, localization=gamma, step_size="auto", sampler=sampler,
                    num_chains=chains, bias_tolerance=BIAS_TOLERANCE, rel_mcse=REL_MCSE)
    return run, settings
