"""Foundation validation cases (Watanabe's normal crossings, a localized quadratic) with calibrated settings.

The same exact cases as ``experiments/validation.py``'s foundation group — normal crossings and a
localized quadratic against their exact finite-temperature targets — but with no hand-tuned step
size or schedule: each case gives only the model, nβ, γ and the number of chains, and
``estimate_llc(step_size="auto")`` chooses the rest. The step size comes from
:func:`toymodels.calibrate` (the largest ε whose fitted step-size bias is within
``BIAS_TOLERANCE``), the chains are relaxed from ``w*`` until they stop drifting
(:mod:`toymodels.relaxation`), and the burn-in, thinning and number of draws come from
:meth:`CalibrationResult.schedule` (scaled from the calibration runs' autocorrelation times to
reach a Monte-Carlo standard error of ``REL_MCSE`` of the estimate).

Why these two numbers: a case passes at ``|rel. error| ≤ 3 %`` and ``|z| ≤ 3``. The calibration
bounds the bias by 1 % with 95 % confidence (the fitted bias is typically about half of that), and
the MCSE is about 1 %, so the bias is at most about one MCSE: z stays honest, and a case fails only
if the Monte-Carlo error alone is beyond ~2 MCSE.
"""

from __future__ import annotations

import torch

from experiments.validation import NORMAL_CROSSING_CASES, QUADRATIC_CASE, ValidationCase
from theory.normal_crossing import finite_temperature_llc, learning_coefficient
from theory.regular import localized_llc, regular_learning_coefficient
from toymodels import LLCResult, estimate_llc
from toymodels.potentials import normal_crossing_potential, quadratic_potential

__all__ = ["cases", "calibrated_run", "BIAS_TOLERANCE", "REL_MCSE"]

BIAS_TOLERANCE = 0.01  #: relative step-size bias the calibration allows (95 % bound)
REL_MCSE = 0.01  #: target Monte-Carlo standard error, relative to the estimate
NUM_CHAINS = 2000  #: many chains, few steps: the batched step costs little more for more chains
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


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """The foundation cases with calibrated step size and schedule (``scale`` shrinks chains)."""
    out = []
    for i, (name, k, h, nbeta, gamma) in enumerate(NORMAL_CROSSING_CASES):
        lam, m = learning_coefficient(k, h)
        pot = normal_crossing_potential(k, h)
        run, settings = calibrated_run(pot, torch.zeros(pot.dim, dtype=torch.float64), nbeta=nbeta,
                                       gamma=gamma, num_chains=NUM_CHAINS, scale=scale, seed=10 * i)

        def target(k=k, h=h, nbeta=nbeta, gamma=gamma) -> float:
            return finite_temperature_llc(k, h, nbeta=nbeta, localization=gamma, box=None)

        out.append(ValidationCase(name=f"normal crossing {name} [auto]", group="calibrated", llc=lam,
                                  multiplicity=m, target=target, run=run, settings=settings))
    eigenvalues, nbeta, gamma = QUADRATIC_CASE
    pot = quadratic_potential(torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)))
    run, settings = calibrated_run(pot, torch.zeros(5, dtype=torch.float64), nbeta=nbeta, gamma=gamma,
                                   num_chains=NUM_CHAINS, scale=scale, seed=100)
    out.append(ValidationCase(
        name="localized quadratic d=5 [auto]", group="calibrated",
        llc=regular_learning_coefficient(5)[0], multiplicity=1, run=run, settings=settings,
        target=lambda: localized_llc(eigenvalues, nbeta=nbeta, localization=gamma)))
    return out
