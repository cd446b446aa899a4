"""Turing-machine cases for ``toymodels validate``: one-step noisy detectA against exact oracles.

Each case samples ``toymodels.turing.NoisyCodePotential`` (log coordinates whose prior pushes
forward to a Dirichlet law on every simplex) for the one-step detectA task of Murfet & Troiani
(arXiv 2504.08075) and
compares ``lambda-hat = nbeta E[K]`` with the exact finite-temperature value under the same
Dirichlet prior, ``theory.turing.single_step_llc`` (uniform prior) or
``theory.turing.single_step_llc_dirichlet`` (a localising concentration on the classical entries,
or the squared-coordinate convention ``alpha = 1/2`` on the error entries). There is no Gaussian
localisation (the prior localises; the oracles have none). Chains reach ``nbeta`` by an annealing
ladder from prior draws (``toymodels.turing.annealed_chain_init``), then burn in.

The sampler's step size and schedule are not set per case: ``step_size="auto"``
(:func:`toymodels.calibrate`, the largest ε whose fitted step-size bias is within 1%, with the
calibration's chains started on the ladder's draws) and the calibration's schedule for an MCSE of
1% (experiments/validate_calibrated.py, :func:`calibrated_run`). The annealing ladder that makes
the starting points has one setting for every case (step 0.2, 200 steps per rung): it only has to
put the chains near the posterior, and the burn-in that follows is the calibration's.
"""

from __future__ import annotations

from fractions import Fraction

from experiments.turing_programs_as_singularities import machine_potential
from experiments.validate_calibrated import calibrated_run
from experiments.validation import ValidationCase
from theory.turing import (
    detect_a,
    detect_a_task,
    learning_coefficient_at_vertex,
    single_step_llc,
    single_step_llc_dirichlet,
)
from toymodels.turing import annealed_chain_init

__all__ = ["cases"]

# name, extra state, nbeta, classical alpha, error alpha, chains
_CASES = [
    ("uniform |Q|=2", False, 1000, 1, 1, 400),
    ("uniform |Q|=3", True, 100, 1, 1, 400),
    ("localised a_c=10", False, 1000, 10, 1, 400),
    # the relative spread of tK is sqrt(1/lambda): more chains for the same relative MCSE
    ("squared a_e=1/2", False, 1000, 1, Fraction(1, 2), 800),
]
_LADDER_STEP_SIZE = 0.2
_LADDER_STEPS = 200


def _case(name, extra_state, nbeta, alpha_c, alpha_e, chains, scale):
    machine = detect_a(extra_state=extra_state)
    task = detect_a_task((1,))
    num_states = len(machine.states)
    coordinates = "barycentric" if alpha_e == 1 else "squared"
    lam = learning_coefficient_at_vertex(machine, task, 1, coordinates).learning_coefficient
    potential, vertex = machine_potential(machine, task, 1, float(alpha_c), float(alpha_e))

    def start(n: int):
        return annealed_chain_init(potential, vertex, nbeta=float(nbeta), num_chains=n,
                                   step_size=_LADDER_STEP_SIZE, steps_per_rung=_LADDER_STEPS, seed=0)

    run, settings = calibrated_run(potential, vertex, nbeta=float(nbeta), gamma=0.0,
                                   num_chains=chains, scale=scale, seed=1,
                                   log_prior=potential.log_prior, chain_init=start)
    settings.update(classical_concentration=float(alpha_c), error_concentration=float(alpha_e),
                    ladder_step_size=_LADDER_STEP_SIZE, ladder_steps_per_rung=_LADDER_STEPS)

    def target() -> float:
        if alpha_c == 1 and alpha_e == 1:
            return float(single_step_llc(2, num_states, nbeta))
        return float(single_step_llc_dirichlet(2, num_states, nbeta, alpha_c, alpha_e))

    return ValidationCase(name=f"detectA 1-step {name} [auto]", group="turing", llc=lam,
                          multiplicity=1, target=target, run=run, settings=settings)


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """The Turing-machine validation cases; ``scale`` multiplies chains and draws."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return [_case(*row, scale=scale) for row in _CASES]
