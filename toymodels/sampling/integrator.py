"""The Langevin pieces every kernel is built from, written once.

All kernels target the localized tempered posterior ``p(w) ∝ exp(−U(w))`` with the potential ::

    U(w) = nβ L(w) + γ/2 ||w − w*||² − log φ(w),
    F(w) = ∇U(w) = nβ ∇L + γ (w − w*) − ∇log φ

(Lau et al., arXiv 2308.12108, eq. 12; ``φ`` the prior, flat unless given). Here are the force,
the Euler–Maruyama step ``w ← w − (ε/2) F(w) + √ε ξ`` (Welling & Teh 2011) and the
Metropolis–Hastings log ratio of that step taken as a proposal (Roberts & Tweedie 1996, eq. 2.3).
Hyperparameters are :class:`~toymodels.sampling.hyper.ChainHyperparameters` — ``(C, 1)`` tensors —
and every function is pure and batched over the leading chain dimension. A ``(d,)`` 0/1 ``mask``
(float) keeps the other coordinates fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from toymodels.sampling.hyper import ChainHyperparameters

__all__ = ["Evaluation", "Target", "Scratch", "evaluate_then_noise", "norm", "rows_finite", "force", "potential", "potential_and_force", "langevin_move",
           "mala_log_acceptance", "acceptance_probability", "drift_terms"]


class Evaluation(NamedTuple):
    """What the objective and the prior say at a batch of positions (per chain)."""

    loss: torch.Tensor  #: (C,) L(w) (the minibatch's, for a minibatch objective)
    grad: torch.Tensor  #: (C, d) ∇L(w)
    grad_log_prior: torch.Tensor | None  #: (C, d) ∇log φ(w), None for a flat prior
    log_prior: torch.Tensor | None  #: (C,) log φ(w), None unless asked for (or a flat prior)


class Scratch:
    """Work buffers a run reuses from step to step: the noise ``ξ`` and intermediates no state keeps.

    A kernel's step allocates a few ``(C, d)`` temporaries; for a network of 10⁶ parameters and 8
    chains each is 34 MB, above glibc's mmap threshold (at most 32 MiB), so every fresh one is
    mapped, page-faulted and zeroed by the kernel, and unmapped when freed: measured 46 ms for the
    noise of one step against 32 ms when the buffer is reused. A buffer handed out is valid
    until the next request under the same name; the kernels consume it within the step (they keep
    ``√ε ξ`` or norms, never ``ξ`` or ``∇L`` themselves). The values written are those a fresh
    tensor would get.
    """

    def __init__(self, recycle_positions: bool = False) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        #: whether a kernel may write a new position into one of two alternating buffers
        #: (:meth:`position_after`): only for a caller that keeps no position but the current one
        self.recycle_positions = bool(recycle_positions)

    def like(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """A buffer of ``tensor``'s shape, dtype and device (uninitialised), reused under ``name``."""
        buffer = self._buffers.get(name)
        if (buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype
                or buffer.device != tensor.device):
            buffer = torch.empty_like(tensor, memory_format=torch.contiguous_format)
            self._buffers[name] = buffer
        return buffer

    def position_after(self, position: torch.Tensor) -> torch.Tensor | None:
        """Where a step from ``position`` may write the new position, or ``None`` (allocate one).

        With ``recycle_positions``, the one of two alternating buffers that does not hold
        ``position``: the position of two steps ago, which nothing holds any more. The sampling
        driver turns this on when it keeps only the current state and records no observable (an
        observable may return a view of the position).
        """
        if not self.recycle_positions:
            return None
        held = position.untyped_storage().data_ptr()
        first = self.like("position_a", position)
        if first.untyped_storage().data_ptr() != held:
            return first
        return self.like("position_b", position)


class Target(NamedTuple):
    """The posterior as the kernels see it: an evaluation function, the centre and the mask.

    ``evaluate(position, with_log_prior)`` draws its minibatch (if any) from the run's generator;
    ``with_log_prior=False`` lets it skip the prior's value when only its gradient is needed.
    ``scratch``, when given, holds the run's reusable work buffers (:class:`Scratch`), and then
    ``evaluate(position, with_log_prior, grad_out)`` may write the gradient into ``grad_out``.
    """

    evaluate: Callable[..., Evaluation]
    center: torch.Tensor  #: (d,) w*, or (C, d) one centre per chain
    mask: torch.Tensor | None  #: (d,) float 0/1, or None (every coordinate moves)
    scratch: Scratch | None = None


def evaluate_then_noise(target: Target, position: torch.Tensor, generator: torch.Generator,
                        with_log_prior: bool = False) -> tuple[Evaluation, torch.Tensor]:
    """The evaluation at ``position`` (its minibatch drawn first), then standard normals ``ξ`` of
    the position's shape: the order in which every gradient kernel draws its random numbers.
    With ``target.scratch`` the gradient and the noise are written into its reused buffers (valid
    until the next step): a kernel that calls this must not keep either in its state."""
    if target.scratch is None:
        evaluation = target.evaluate(position, with_log_prior)
    else:  # the gradient too is read within the step only (no kernel that calls this keeps it)
        evaluation = target.evaluate(position, with_log_prior, target.scratch.like("grad", position))
    if target.scratch is None:
        noise = torch.randn(position.shape, generator=generator, dtype=position.dtype, device=position.device)
    else:  # the same draws as torch.randn (which is empty().normal_()), into the reused buffer
        noise = target.scratch.like("noise", position).normal_(generator=generator)
    return evaluation, noise


def rows_finite(x: torch.Tensor) -> torch.Tensor:
    """Per chain ``(C,)``: whether every entry of the row is finite, from one reduction.

    A sum is NaN or ±inf as soon as one term is (and only overflows for entries near the float
    range, which a chain reaches only when it diverges anyway), so ``isfinite(Σ_j x_j)`` answers
    for the whole row without a ``(C, d)`` boolean tensor: for a network of 10⁵ parameters this is
    the difference between 0.3 ms and 1.8 ms a step.
    """
    return torch.isfinite(x.sum(-1))


def norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dimension."""
    return torch.linalg.vector_norm(x, dim=-1)


def force(position: torch.Tensor, evaluation: Evaluation, center: torch.Tensor,
          hyper: ChainHyperparameters, mask: torch.Tensor | None = None,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``F(w) = nβ ∇L + γ (w − w*) − ∇log φ`` ``(C, d)``, and the offset ``w − w*`` it used.

    With a ``mask`` both are zero on the frozen coordinates (they sit at ``w*``).
    """
    offset = position - center
    if mask is not None:
        offset = offset * mask
    f = hyper.nbeta * evaluation.grad + hyper.localization * offset
    if evaluation.grad_log_prior is not None:
        f = f - evaluation.grad_log_prior
    if mask is not None:
        f = f * mask
    return f, offset


def potential(offset: torch.Tensor, evaluation: Evaluation, hyper: ChainHyperparameters) -> torch.Tensor:
    """``U(w) = nβ L + γ/2 ||w − w*||² − log φ`` ``(C,)`` from the offset :func:`force` returned
    (masked: the frozen coordinates would add a constant); the prior's value enters when the
    evaluation has it."""
    energy = hyper.nbeta_row * evaluation.loss + hyper.half_localization_row * (offset * offset).sum(-1)
    if evaluation.log_prior is not None:
        energy = energy - evaluation.log_prior
    return energy


def potential_and_force(position: torch.Tensor, evaluation: Evaluation, center: torch.Tensor,
                        hyper: ChainHyperparameters, mask: torch.Tensor | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``U(w)`` ``(C,)`` and ``F(w) = ∇U(w)`` ``(C, d)`` (formulas in the module docstring)."""
    f, offset = force(position, evaluation, center, hyper, mask)
    return potential(offset, evaluation, hyper), f


def langevin_move(position: torch.Tensor, force: torch.Tensor, noise: torch.Tensor,
                  hyper: ChainHyperparameters, mask: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Euler–Maruyama step ``w' = w − (ε/2) F(w) + √ε ξ``: ``(w', drift, kick)``.

    ``drift = (ε/2) F`` and ``kick = √ε ξ`` are returned for the kernels' diagnostics; with a
    mask both are zero on the frozen coordinates.
    """
    drift = hyper.half_step * force
    kick = hyper.sqrt_step * noise
    if mask is not None:
        drift = drift * mask
        kick = kick * mask
    return position - drift + kick, drift, kick


def mala_log_acceptance(position: torch.Tensor, energy: torch.Tensor, force: torch.Tensor,
                        proposal: torch.Tensor, proposal_energy: torch.Tensor,
                        proposal_force: torch.Tensor, step_size: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Log Metropolis–Hastings ratio of the Langevin move ``w → w'``, per chain ``(C,)``.

    The proposal density is ``q(w' | w) = N(w'; w − (ε/2) F(w), ε I)`` on the moving coordinates,
    so (Roberts & Tweedie 1996, eq. 2.3)::

        log r = U(w) − U(w') − ||w − w' + (ε/2) F(w')||² / (2ε) + ||w' − w + (ε/2) F(w)||² / (2ε).

    Summed over every sampled coordinate (not one parameter tensor). ``step_size`` is ``(C, 1)``.
    A non-finite proposal gives ``−inf`` (always rejected).
    """
    half_eps = 0.5 * step_size
    forward = proposal - position + half_eps * force
    backward = position - proposal + half_eps * proposal_force
    if mask is not None:
        forward, backward = forward * mask, backward * mask
    two_eps = (2.0 * step_size).squeeze(-1)
    log_r = energy - proposal_energy + ((forward * forward).sum(-1) - (backward * backward).sum(-1)) / two_eps
    ok = torch.isfinite(log_r) & rows_finite(proposal)
    return torch.where(ok, log_r, torch.full_like(log_r, -math.inf))


def acceptance_probability(log_r: torch.Tensor) -> torch.Tensor:
    """``min(1, r)`` from ``log r``."""
    return torch.exp(torch.clamp(log_r, max=0.0))


def drift_terms(offset: torch.Tensor, grad: torch.Tensor, hyper: ChainHyperparameters,
                scale: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                grad_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(||w − w*||, ||s·nβ ∇L||, ||s·γ (w − w*)||)`` per chain from ``offset = w − w*``: how much
    of the move is the loss's and how much the localization's. The scale ``s`` is ``ε/2``
    (``None``) or a ``(C, d)`` preconditioned step. With ``s = ε/2``, no mask and ``grad_norm``
    given, the norms are multiples of ``||∇L||`` and ``||w − w*||`` (no ``(C, d)`` work)."""
    distance = norm(offset)
    if scale is None and mask is None and grad_norm is not None:
        return distance, hyper.half_step_nbeta_row * grad_norm, hyper.half_step_localization_row * distance
    scale = hyper.half_step if scale is None else scale
    grad_term = scale * (hyper.nbeta * grad)
    loc_term = scale * (hyper.localization * offset)
    if mask is not None:
        grad_term, loc_term = grad_term * mask, loc_term * mask
    return distance, norm(grad_term), norm(loc_term)
