"""Turing-machine cases for ``toymodels validate``: one-step noisy detectA against exact oracles.

Each case samples ``toymodels.turing.NoisyCodePotential`` (log coordinates whose prior pushes
forward to a Dirichlet law on every simplex) for the one-step detectA task of theory.md §5 and
compares ``lambda-hat = nbeta E[K]`` with the exact finite-temperature value under the same
Dirichlet prior, ``theory.turing.single_step_llc`` (uniform prior) or
``theory.turing.single_step_llc_dirichlet`` (a localising concentration on the classical entries,
or the squared-coordinate convention ``alpha = 1/2`` on the error entries). There is no Gaussian
localisation (the prior localises; the oracles have none). Chains reach ``nbeta`` by an annealing
ladder from prior draws (``toymodels.turing.annealed_chain_init``), then burn in.

Settings (documented per case below): step size 0.1 (measured bias at most +0.6%, at small
nbeta), burn-in 60 to 100 units of SGLD time (the left tails of the ``log p`` relax in about
``4 / alpha^2`` units).
"""

from __future__ import annotations

from fractions import Fraction

from experiments.turing_programs_as_singularities import machine_potential
from experiments.validation import ValidationCase
from theory.turing import (
    detect_a,
    detect_a_task,
    learning_coefficient_at_vertex,
    single_step_llc,
    single_step_llc_dirichlet,
)
from toymodels import LLCResult, estimate_llc
from toymodels.turing import annealed_chain_init

__all__ = ["cases"]

# name, extra state, nbeta, classical alpha, error alpha, chains, burn-in, draws
_CASES = [
    ("uniform |Q|=2", False, 1000, 1, 1, 400, 600, 1000),
    ("uniform |Q|=3", True, 100, 1, 1, 400, 600, 1000),
    ("localised a_c=10", False, 1000, 10, 1, 400, 600, 1000),
    # relative spread of tK is sqrt(1/lambda) and the tails mix 4x slower: more chains and draws
    ("squared a_e=1/2", False, 1000, 1, Fraction(1, 2), 800, 1000, 3000),
]
_STEP_SIZE = 0.1
_LADDER_STEP_SIZE = 0.2
_LADDER_STEPS = 200


def _case(name, extra_state, nbeta, alpha_c, alpha_e, chains, burnin, draws, scale):
    machine = detect_a(extra_state=extra_state)
    task = detect_a_task((1,))
    num_states = len(machine.states)
    coordinates = "barycentric" if alpha_e == 1 else "squared"
    lam = learning_coefficient_at_vertex(machine, task, 1, coordinates).learning_coefficient
    chains = max(4, int(chains * scale))
    draws = max(20, int(draws * scale))
    settings = dict(nbeta=float(nbeta), localization=0.0, step_size=_STEP_SIZE,
                    num_chains=chains, num_burnin_steps=burnin, num_draws=draws,
                    classical_concentration=float(alpha_c), error_concentration=float(alpha_e),
                    ladder_step_size=_LADDER_STEP_SIZE, ladder_steps_per_rung=_LADDER_STEPS)

    def run() -> LLCResult:
        potential, vertex = machine_potential(machine, task, 1, float(alpha_c), float(alpha_e))
        start = annealed_chain_init(potential, vertex, nbeta=float(nbeta), num_chains=chains,
                                    step_size=_LADDER_STEP_SIZE, steps_per_rung=_LADDER_STEPS,
                                    seed=0)
        return estimate_llc(potential, init=vertex, nbeta=float(nbeta), step_size=_STEP_SIZE,
                            num_chains=chains, num_burnin_steps=burnin, num_draws=draws,
                            log_prior=potential.log_prior, chain_init=start, seed=1,
                            progress=False)

    def target() -> float:
        if alpha_c == 1 and alpha_e == 1:
            return float(single_step_llc(2, num_states, nbeta))
        return float(single_step_llc_dirichlet(2, num_states, nbeta, alpha_c, alpha_e))

    return ValidationCase(name=f"detectA 1-step {name}", group="turing", llc=lam,
                          multiplicity=1, target=target, run=run, settings=settings)


def cases(scale: float = 1.0) -> list[ValidationCase]:
    """The Turing-machine validation cases; ``scale`` multiplies chains and draws."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    return [_case(*row, scale=scale) for row in _CASES]
