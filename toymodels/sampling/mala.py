"""The Metropolis-adjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 2(4), 1996) as a kernel."""

from __future__ import annotations

from typing import NamedTuple

import torch

from toymodels.sampling.hyper import ChainHyperparameters
from toymodels.sampling.integrator import (
    Evaluation,
    Target,
    acceptance_probability,
    drift_terms,
    langevin_move,
    mala_log_acceptance,
    norm,
    rows_finite,
    potential_and_force,
)

__all__ = ["MALA", "MALAState", "MALAInfo"]


class MALAState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    loss: torch.Tensor  #: (C,) L(w)
    grad: torch.Tensor  #: (C, d) ∇L(w)
    energy: torch.Tensor  #: (C,) U(w)
    force: torch.Tensor  #: (C, d) F(w) = ∇U(w)


class MALAInfo(NamedTuple):
    loss: torch.Tensor  #: L at the position before the step
    grad_norm: torch.Tensor
    distance: torch.Tensor
    drift_norm: torch.Tensor  #: ||(ε/2) F(w)|| of the proposal
    noise_norm: torch.Tensor  #: ||√ε ξ|| of the proposal
    grad_term_norm: torch.Tensor
    localization_term_norm: torch.Tensor
    acceptance: torch.Tensor  #: min(1, r), the acceptance probability of this step's proposal
    accepted: torch.Tensor  #: 1.0 where the proposal was accepted
    step_size: torch.Tensor  #: ε used at this step (changes during adaptation only)
    finite: torch.Tensor


class MALA:
    """Metropolis-adjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 2(4), 1996)::

        w' = w − (ε/2) F(w) + √ε ξ,     accept with probability min(1, r),

    ``r`` from :func:`toymodels.sampling.integrator.mala_log_acceptance` with the full potential ``U``. The chain keeps the
    target exactly invariant at any ε, so there is no step-size bias; the step size only sets the
    speed. Acceptance near 0.57 is optimal for d → ∞ (Roberts & Rosenthal 1998); 0.7 is a safer
    target in a few dimensions. Needs the exact loss: stochastic minibatch losses would make ``r``
    itself random and the chain biased, so the driver refuses minibatch objectives.

    One objective evaluation per step: the loss and gradient at the proposal are kept in the state
    when it is accepted and reused by the next step.

    Args:
        target_accept: the acceptance rate the step-size adaptation aims at.
        adapt_steps: adapt ε by dual averaging (:mod:`toymodels.sampling.adaptation`) during the
            first ``adapt_steps`` steps, then fix it to the averaged value. The driver composes
            the adaptation with the kernel; the kernel itself uses the step size it is given.
    """
    name = "mala"

    def __init__(self, target_accept: float = 0.7, adapt_steps: int = 0):
        if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}; try 0.7")
        if isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int) or adapt_steps < 0:
            raise ValueError(f"adapt_steps must be an integer ≥ 0, got {adapt_steps!r}")
        self.target_accept = float(target_accept)
        self.adapt_steps = adapt_steps

    def init(self, position: torch.Tensor, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator) -> MALAState:
        """The loss, gradient, potential and force at the starting points (one evaluation)."""
        evaluation = target.evaluate(position, True)
        energy, force = potential_and_force(position, evaluation, target.center, hyper, target.mask)
        return MALAState(position, evaluation.loss, evaluation.grad, energy, force)

    def step(self, state: MALAState, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator, record: bool = True) -> tuple[MALAState, MALAInfo]:
        """Draw ``ξ`` and the uniform, propose, evaluate at the proposal, accept or reject."""
        position = state.position
        noise = torch.randn(position.shape, generator=generator, dtype=position.dtype,
                            device=position.device)
        uniform = torch.rand(position.shape[:1], generator=generator, dtype=position.dtype,
                             device=position.device)
        proposal, drift, kick = langevin_move(position, state.force, noise, hyper, target.mask)
        evaluation = target.evaluate(proposal, True)
        return self.transition(state, proposal, drift, kick, evaluation, uniform, hyper,
                               target.center, target.mask)

    def transition(self, state: MALAState, proposal: torch.Tensor, drift: torch.Tensor,
                   kick: torch.Tensor, evaluation: Evaluation, uniform: torch.Tensor,
                   hyper: ChainHyperparameters, center: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[MALAState, MALAInfo]:
        """The pure accept/reject given the proposal, the evaluation there and the uniform."""
        energy, force = potential_and_force(proposal, evaluation, center, hyper, mask)
        log_r = mala_log_acceptance(state.position, state.energy, state.force, proposal, energy,
                                    force, hyper.step_size, mask)
        accept = torch.log(uniform) < log_r
        a1 = accept.unsqueeze(-1)
        new_state = MALAState(torch.where(a1, proposal, state.position),
                              torch.where(accept, evaluation.loss, state.loss),
                              torch.where(a1, evaluation.grad, state.grad),
                              torch.where(accept, energy, state.energy),
                              torch.where(a1, force, state.force))
        grad_norm = norm(state.grad)
        distance, grad_term, loc_term = drift_terms(state.position - center, state.grad, hyper, None,
                                                    mask, grad_norm)
        acceptance = acceptance_probability(log_r)
        info = MALAInfo(loss=state.loss, grad_norm=grad_norm, distance=distance,
                        drift_norm=norm(drift), noise_norm=norm(kick), grad_term_norm=grad_term,
                        localization_term_norm=loc_term, acceptance=acceptance,
                        accepted=accept.to(proposal.dtype),
                        step_size=hyper.step_size.squeeze(-1).expand_as(acceptance),
                        finite=rows_finite(new_state.position) & torch.isfinite(new_state.loss))
        return new_state, info
