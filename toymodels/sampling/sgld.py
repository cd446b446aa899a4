"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011) as a kernel, and the bare step.

The step (in the convention of Lau et al., arXiv 2308.12108, eq. 12)::

    w ← w − (ε/2) [ nβ ∇L(w) − ∇log φ(w) + γ (w − w*) ] + N(0, ε I)

has noise variance ε, so for ε → 0 with full-batch gradients its stationary law is exactly the
localized tempered posterior ``p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)``; at finite ε it
differs by O(ε) (for a Gaussian of curvature κ the variance is inflated by ``1/(1 − εκ/4)``: see
``docs/error_budget.md``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from toymodels.sampling.hyper import (
    ChainHyperparameters,
    SGLDHyperparameters,
    broadcast_hyperparameters,
    sgld_hyperparameters_from_scales,
)
from toymodels.sampling.integrator import (
    Evaluation,
    Scratch,
    Target,
    acceptance_probability,
    drift_terms,
    evaluate_then_noise,
    force,
    langevin_move,
    norm,
    rows_finite,
    potential,
)

__all__ = ["SGLD", "SGLDState", "SGLDInfo", "sgld_step", "SGLDHyperparameters",
           "sgld_hyperparameters_from_scales"]


class SGLDState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    #: the previous position, its potential U and ||ξ||²/2 of the noise that left it, for the
    #: MALA acceptance diagnostic of the last move; ``previous_energy`` is NaN where there is
    #: none (the start, or a step that was not recorded), which makes the diagnostic NaN
    previous_position: torch.Tensor  #: (C, d)
    previous_energy: torch.Tensor  #: (C,)
    previous_half_noise2: torch.Tensor  #: (C,)


class SGLDInfo(NamedTuple):
    """Per-chain record of one step (shape ``(C,)``), evaluated at the position before the step."""

    loss: torch.Tensor
    grad_norm: torch.Tensor  #: ||∇L(w)||
    distance: torch.Tensor  #: ||w − w*||
    drift_norm: torch.Tensor  #: ||(ε/2) F(w)||, the whole deterministic move
    noise_norm: torch.Tensor  #: ||√ε ξ||
    grad_term_norm: torch.Tensor  #: ||(ε/2) nβ ∇L(w)||, the loss's part of the drift
    localization_term_norm: torch.Tensor  #: ||(ε/2) γ (w − w*)||, the localization's part
    #: MALA acceptance probability min(1, r) of the move that arrived at w (NaN if not tracked)
    acceptance: torch.Tensor
    finite: torch.Tensor  #: bool: loss and new position finite


class SGLD:
    """SGLD: ``w ← w − (ε/2) F(w) + √ε ξ`` (:func:`toymodels.sampling.integrator.langevin_move`).

    With ``mala_diagnostic=True`` (the driver sets it for full-batch losses) each recorded step
    also computes the acceptance probability the previous move would have had as a MALA proposal
    (:func:`toymodels.sampling.integrator.mala_log_acceptance`), from the loss and gradient the
    step is given anyway: no extra evaluation. Values near 1 mean the discretisation error per
    step is small.
    """

    name = "sgld"

    def __init__(self, mala_diagnostic: bool = False):
        self.mala_diagnostic = bool(mala_diagnostic)

    def init(self, position: torch.Tensor, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator) -> SGLDState:
        zeros = torch.zeros(position.shape[:1], dtype=position.dtype, device=position.device)
        return SGLDState(position, torch.zeros_like(position), torch.full_like(zeros, math.nan), zeros)

    def step(self, state: SGLDState, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator, record: bool = True) -> tuple[SGLDState, SGLDInfo]:
        """Evaluate at the position (the minibatch first), draw ``ξ``, move. With
        ``record=False`` (a step whose info nobody reads, and whose successor is not recorded
        either) the diagnostics are skipped: the move is the same."""
        position = state.position
        evaluation, noise = evaluate_then_noise(target, position, generator,
                                                self.mala_diagnostic and record)
        return self.transition(state, evaluation, noise, hyper, target.center, target.mask, record,
                               target.scratch)

    def transition(self, state: SGLDState, evaluation: Evaluation, noise: torch.Tensor,
                   hyper: ChainHyperparameters, center: torch.Tensor, mask: torch.Tensor | None = None,
                   record: bool = True, scratch: Scratch | None = None) -> tuple[SGLDState, SGLDInfo]:
        """The pure move given the evaluation at ``state.position`` and the noise ``ξ``
        (``scratch``: the run's reusable work buffers, for intermediates the move does not keep)."""
        position = state.position
        if mask is None and evaluation.grad_log_prior is None and not self.mala_diagnostic:
            return self._fused_transition(state, evaluation, noise, hyper, center, record, scratch)
        drive, offset = force(position, evaluation, center, hyper, mask)
        new_position, drift, kick = langevin_move(position, drive, noise, hyper, mask)
        finite = rows_finite(new_position) & torch.isfinite(evaluation.loss)
        if not record:
            skipped = torch.zeros_like(evaluation.loss)
            new_state = state._replace(position=new_position,
                                       previous_energy=torch.full_like(skipped, math.nan))
            return new_state, SGLDInfo(evaluation.loss, skipped, skipped, skipped, skipped, skipped,
                                       skipped, skipped, finite)
        grad_norm = norm(evaluation.grad)
        distance, grad_term, loc_term = drift_terms(offset if mask is None else position - center,
                                                    evaluation.grad, hyper, None, mask, grad_norm)
        if self.mala_diagnostic:
            energy = potential(offset, evaluation, hyper)
            # w_prev − w + (ε/2)F(w) = w_prev − w_new + √ε ξ, because w_new = w − (ε/2)F(w) + √ε ξ
            backward = state.previous_position - new_position + kick
            if mask is not None:
                backward = backward * mask
            log_r = (state.previous_energy - energy + state.previous_half_noise2
                     - (backward * backward).sum(-1) / hyper.two_step_row)
            # NaN without a previous move; −inf (never accepted) for a move to U = +inf
            acceptance = acceptance_probability(log_r)
            xi = noise if mask is None else noise * mask
            new_state = SGLDState(new_position, position, energy, 0.5 * (xi * xi).sum(-1))
        else:
            acceptance = torch.full_like(evaluation.loss, math.nan)
            new_state = state._replace(position=new_position)
        info = SGLDInfo(loss=evaluation.loss, grad_norm=grad_norm, distance=distance,
                        drift_norm=norm(drift), noise_norm=norm(kick), grad_term_norm=grad_term,
                        localization_term_norm=loc_term, acceptance=acceptance, finite=finite)
        return new_state, info


    @staticmethod
    def _fused_transition(state: SGLDState, evaluation: Evaluation, noise: torch.Tensor,
                          hyper: ChainHyperparameters, center: torch.Tensor,
                          record: bool, scratch: Scratch | None = None) -> tuple[SGLDState, SGLDInfo]:
        """The same move without a mask, a prior or the MALA diagnostic, in four passes over ``(C, d)``.

        ``w' = w − (εγ/2)(w − w*) − (εnβ/2)∇L + √ε ξ`` as multiply-adds into one new buffer
        (the general path allocates eight ``(C, d)`` intermediates: for a network of 10⁵
        parameters and 8 chains that was 4.6 ms of a 25 ms step). The recorded norms come from
        reductions, with ``||F||² = nβ²||∇L||² + 2nβγ ∇L·(w − w*) + γ²||w − w*||²`` for the drift.
        """
        position, grad = state.position, evaluation.grad
        # w − w* is read by this step only: into the run's reused buffer when there is one
        offset = (position - center if scratch is None
                  else torch.sub(position, center, out=scratch.like("offset", position)))
        recycled = None if scratch is None else scratch.position_after(position)
        new_position = torch.addcmul(position, offset, hyper.neg_half_step_localization, out=recycled)
        new_position.addcmul_(grad, hyper.neg_half_step_nbeta)
        new_position.addcmul_(noise, hyper.sqrt_step)
        finite = rows_finite(new_position) & torch.isfinite(evaluation.loss)
        new_state = state._replace(position=new_position,
                                   previous_energy=torch.full_like(evaluation.loss, math.nan))
        if not record:
            skipped = torch.zeros_like(evaluation.loss)
            return new_state, SGLDInfo(evaluation.loss, skipped, skipped, skipped, skipped, skipped,
                                       skipped, skipped, finite)
        grad_norm, distance = norm(grad), norm(offset)
        cross = _row_dot(grad, offset)  # ∇L·(w − w*), per chain
        nbeta, gamma = hyper.nbeta_row, 2.0 * hyper.half_localization_row
        force2 = (nbeta * grad_norm) ** 2 + 2.0 * nbeta * gamma * cross + (gamma * distance) ** 2
        half_step = 0.5 * hyper.step_size.squeeze(-1)
        info = SGLDInfo(loss=evaluation.loss, grad_norm=grad_norm, distance=distance,
                        drift_norm=half_step * force2.clamp_min(0.0).sqrt(),
                        noise_norm=hyper.sqrt_step.squeeze(-1) * norm(noise),
                        grad_term_norm=hyper.half_step_nbeta_row * grad_norm,
                        localization_term_norm=hyper.half_step_localization_row * distance,
                        acceptance=torch.full_like(evaluation.loss, math.nan), finite=finite)
        return new_state, info


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_j a_cj b_cj`` per row: BLAS dots for a few long rows (a batched ``bmm`` of ``(1, d)`` by
    ``(d, 1)`` took 12 ms for 4 rows of 10⁶ on a CPU core, four dots 1.4 ms), a fused product
    and sum for many short ones."""
    if a.shape[0] <= 64 and a.shape[-1] >= 4096:
        return torch.stack([torch.dot(x, y) for x, y in zip(a, b)])
    return (a * b).sum(-1)


def sgld_step(params: torch.Tensor, grad: torch.Tensor, noise: torch.Tensor, center: torch.Tensor,
              hyper: SGLDHyperparameters | ChainHyperparameters, *, loss: torch.Tensor | None = None,
              grad_log_prior: torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, SGLDInfo]:
    """One SGLD step for a batch of chains, given the gradient and the noise; pure.

    Args:
        params: ``(num_chains, d)`` current parameters ``w``.
        grad: ``(num_chains, d)`` gradient ``∇L(w)`` of the (batch-mean) loss.
        noise: ``(num_chains, d)`` standard-normal draws ``ξ``; the step adds ``√ε ξ``.
        center: ``(d,)`` the localization centre ``w*``.
        hyper: ε, nβ, γ (shared, or :class:`~toymodels.sampling.hyper.ChainHyperparameters`).
        loss: optional ``(num_chains,)`` loss at ``params``, copied into the info (NaN if absent,
            and then not part of the ``finite`` flag).
        grad_log_prior: optional ``(num_chains, d)`` gradient of the log prior density.
        mask: optional ``(d,)`` boolean; only these coordinates move.

    Returns:
        The new parameters and an :class:`SGLDInfo` (``acceptance`` is NaN: no history here).
    """
    if isinstance(hyper, SGLDHyperparameters):
        hyper = broadcast_hyperparameters(hyper, None, params.shape[0], params.dtype, params.device)
    given = loss is not None
    if loss is None:
        loss = torch.full(params.shape[:1], math.nan, dtype=params.dtype, device=params.device)
    if mask is not None:
        mask = torch.as_tensor(mask, device=params.device).to(params.dtype)
    state = SGLD().init(params, None, hyper, None)
    new_state, info = SGLD().transition(state, Evaluation(loss, grad, grad_log_prior, None), noise,
                                        hyper, center, mask)
    if not given:
        info = info._replace(finite=rows_finite(new_state.position))
    return new_state.position, info
