"""Turing-machine cases for ``toymodels validate``: one-step noisy detectA against exact oracles.

Each case samples ``toymodels.models.turing.NoisyCodePotential`` (log coordinates whose prior pushes
forward to a Dirichlet law on every simplex) for the one-step detectA task of Murfet & Troiani
(arXiv 2504.08075) and
compares ``lambda-hat = nbeta E[K]`` with the exact finite-temperature value under the same
Dirichlet prior, ``theory.turing.single_step_llc`` (uniform prior) or
``theory.turing.single_step_llc_dirichlet`` (a localising concentration on the classical entries,
or the squared-coordinate convention ``alpha = 1/2`` on the error entries). There is no Gaussian
localisation (the prior localises; the oracles have none). Chains reach ``nbeta`` by an annealing
ladder from prior draws (``toymodels.models.turing.annealed_chain_init``), then burn in.

The sampler's step size and schedule are not set per case: ``step_size="auto"``
(:func:`toymodels.calibrate`, the largest ε whose fitted step-size bias is within 1%, with the
calibration's chains started on the ladder's draws) and the calibration's schedule for an MCSE of
1% (:func:`toymodels.validation.case.calibrated_run`). The annealing ladder that makes
the starting points has one setting for every case (step 0.2, 200 steps per rung): it only has to
put the chains near the posterior, and the burn-in that follows is the calibration's.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from toymodels.validation.case import ValidationCase, calibrated_run
from theory.turing import (
    SynthesisTask,
    TuringMachine,
    output_probability_polynomial,
    vertex_code,
    detect_a,
    detect_a_task,
    learning_coefficient_at_vertex,
    single_step_llc,
    single_step_llc_dirichlet,
)
from toymodels.models.turing import NoisyCodePotential, annealed_chain_init

__all__ = ["cases", "machine_potential", "sampled_simplices"]

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


def sampled_simplices(shape, task: SynthesisTask, T: int) -> tuple[int, ...]:
    """The simplices (theory's layout indices) that occur in some output polynomial of the task,
    in increasing order: the ones ``machine_potential`` samples, concatenated in this order."""
    polynomials = output_probability_polynomial(shape.shape, task, T)
    return tuple(sorted({s for poly in polynomials for m in poly.monomials for s, _ in m.factors}))


def machine_potential(
    machine: TuringMachine,
    task: SynthesisTask,
    T: int,
    classical_concentration: float = 1.0,
    error_concentration: float = 1.0,
) -> tuple[NoisyCodePotential, torch.Tensor]:
    """The task's potential as a ``NoisyCodePotential`` localised at ``machine``, and its vertex.

    The exact output polynomials ``p(y(x) | x, w)`` of ``theory.turing`` (path sums) become
    index arrays. Only the simplices that occur in some polynomial are sampled: the others do
    not enter ``K``, so under the product prior they stay at their prior law, independent of
    everything else, and leave ``E[K]`` (hence ``lambda-hat``) unchanged; their learning
    coefficient contribution is 0. The Dirichlet parameter of an entry is
    ``classical_concentration`` where ``machine`` puts its mass and ``error_concentration``
    elsewhere. Returns the potential and the coordinates of the vertex (``K = 0`` there).
    """
    shape = machine.shape
    polynomials = output_probability_polynomial(shape, task, T)
    active = sampled_simplices(shape, task, T)
    sizes = [shape.simplex_sizes[s] for s in active]
    start = dict(zip(active, np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()))
    num_entries = int(sum(sizes))
    width = max(poly.degree for poly in polynomials)
    coefficients, rows, owner = [], [], []
    for x, poly in enumerate(polynomials):
        for monomial in poly.monomials:
            row = [start[s] + j for s, j in monomial.factors]
            rows.append(row + [num_entries] * (width - len(row)))  # pad with the constant 1
            coefficients.append(monomial.coefficient)
            owner.append(x)
    vertex = vertex_code(machine).simplices
    classical = np.concatenate([[float(v) for v in vertex[s]] for s in active])
    alpha = np.where(classical == 1.0, classical_concentration, error_concentration)
    weights = [float(q) for q in task.probabilities]
    potential = NoisyCodePotential(sizes, coefficients, rows, owner, weights, alpha)
    return potential, potential.coordinates_of(torch.as_tensor(classical))


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
