"""The stochastic-gradient Nosé–Hoover thermostat (Ding et al., NeurIPS 2014, Alg. 2) as a kernel."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from toymodels.sampling.hyper import ChainHyperparameters
from toymodels.sampling.integrator import (
    Evaluation,
    Target,
    drift_terms,
    evaluate_then_noise,
    norm,
    rows_finite,
)
from toymodels.sampling.integrator import force as force_of  # `force` is the local name below

__all__ = ["SGNHT", "SGNHTState", "SGNHTInfo"]


class SGNHTState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    momentum: torch.Tensor  #: (C, d), v = h p in position units per step
    thermostat: torch.Tensor  #: (C, 1), α = h ξ, the friction per step


class SGNHTInfo(NamedTuple):
    loss: torch.Tensor
    grad_norm: torch.Tensor
    distance: torch.Tensor
    drift_norm: torch.Tensor  #: ||η F(w)||, the force's kick to the momentum
    noise_norm: torch.Tensor  #: ||√(2aη) ζ||
    grad_term_norm: torch.Tensor  #: ||η nβ ∇L||
    localization_term_norm: torch.Tensor  #: ||η γ (w − w*)||
    momentum_norm: torch.Tensor  #: ||v|| after the step
    thermostat: torch.Tensor  #: α after the step
    finite: torch.Tensor


class SGNHT:
    """Stochastic-gradient Nosé–Hoover thermostat (Ding, Fang, Babbush, Chen, Skeel, Neven 2014).

    Ding et al.'s Algorithm 2 with time step ``h``, momentum ``p``, thermostat ``ξ`` and diffusion
    ``A``::

        p ← p − ξ p h − ∇U(w) h + √(2A h) N(0, I)
        w ← w + p h
        ξ ← ξ + (pᵀp / d − 1) h

    written, as in Chen et al.'s SGHMC, in the variables ``v = h p``, ``α = h ξ``, ``a = A h``,
    ``η = h²``::

        v ← v − α v − η F(w) + √(2 a η) ζ,     w ← w + v,     α ← α + (||v||²/d − η),

    with ``η = ε/2``. The thermostat drives the kinetic temperature ``||v||²/d`` to its
    equilibrium value, soaking up unknown gradient noise; the invariant law of ``(w, p, ξ)`` is
    ``∝ exp(−U(w) − ||p||²/2 − d(ξ − A)²/2)`` in the continuous-time limit (Ding et al., Thm 1).

    **One correction to the literal discretisation.** Ding et al. drive ``||v||²/d`` to ``η``
    (``pᵀp/d → 1``). But in this scheme, with friction α and noise ``2aη``, the momentum recorded
    after the kick has stationary variance ``2aη/(α(2 − α))``, which at the correct friction
    ``α = a`` is ``η/(1 − a/2)``, not ``η`` (the position law is then right to O(ηκ); a discrete
    Lyapunov equation confirms both). Targeting ``η`` makes the thermostat settle at
    ``α = 1 − √(1 − 2a) > a`` and cools the chain: the position variance comes out too small by
    about ``a/2`` (5 % at ``a = 0.1``, measured on a Gaussian). So the thermostat here is
    ``α ← α + (||v||²/d − η/(1 − α/2))``, whose fixed point with exact gradients is ``α = a``.
    The choice ``η = ε/2`` makes ε mean the same as for SGLD: with the thermostat frozen at
    ``α = a = 1`` the momentum is fully refreshed each step and the update is exactly the SGLD step
    ``w ← w − (ε/2) F + √ε ζ`` (a test checks this).

    Args:
        diffusion: ``a`` ∈ (0, 1], the friction the thermostat starts from and the scale of the
            injected noise. Smaller means longer momentum memory (faster travel along flat valleys,
            slower thermostat).
        thermostat: let ``α`` evolve (True, SGNHT) or keep it at ``a`` (False: plain underdamped
            Langevin / SGHMC without a noise estimate).
    """

    name = "sgnht"

    def __init__(self, diffusion: float = 0.1, thermostat: bool = True):
        if not (isinstance(diffusion, (int, float)) and math.isfinite(diffusion) and 0 < diffusion <= 1):
            raise ValueError(f"diffusion must be in (0, 1], got {diffusion!r}; 0.1 is a good start")
        self.diffusion = float(diffusion)
        self.thermostat = bool(thermostat)

    def init(self, position: torch.Tensor, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator) -> SGNHTState:
        """Momentum drawn from its equilibrium law ``v ~ N(0, η I)``, thermostat at ``a``."""
        noise = torch.randn(position.shape, generator=generator, dtype=position.dtype,
                            device=position.device)
        return self.initial_state(position, noise, hyper, target.mask)

    def initial_state(self, position: torch.Tensor, noise: torch.Tensor, hyper: ChainHyperparameters,
                      mask: torch.Tensor | None = None) -> SGNHTState:
        """The pure part of :meth:`init`, given the standard normals ``noise``."""
        momentum = hyper.half_step.sqrt() * noise
        if mask is not None:
            momentum = momentum * mask
        thermostat = torch.full((position.shape[0], 1), self.diffusion, dtype=position.dtype,
                                device=position.device)
        return SGNHTState(position=position, momentum=momentum, thermostat=thermostat)

    def step(self, state: SGNHTState, target: Target, hyper: ChainHyperparameters,
             generator: torch.Generator, record: bool = True) -> tuple[SGNHTState, SGNHTInfo]:
        """Evaluate at the position (the minibatch first), draw ``ζ``, move."""
        evaluation, noise = evaluate_then_noise(target, state.position, generator)
        return self.transition(state, evaluation, noise, hyper, target.center, target.mask)

    def transition(self, state: SGNHTState, evaluation: Evaluation, noise: torch.Tensor,
                   hyper: ChainHyperparameters, center: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[SGNHTState, SGNHTInfo]:
        """The pure move given the evaluation at ``state.position`` and the noise ``ζ``."""
        eta = hyper.half_step
        position, momentum, alpha = state
        force, _ = force_of(position, evaluation, center, hyper, mask)
        kick = (2.0 * self.diffusion * eta).sqrt() * noise
        if mask is not None:
            kick = kick * mask
        new_momentum = momentum - alpha * momentum - eta * force + kick
        new_position = position + new_momentum
        if self.thermostat:
            moving = float(mask.sum()) if mask is not None else position.shape[-1]
            kinetic = (new_momentum * new_momentum).sum(-1, keepdim=True) / moving
            # the scheme's own equilibrium kinetic temperature is η/(1 − α/2), not η (see docstring)
            new_alpha = alpha + (kinetic - eta / (1.0 - 0.5 * alpha))
        else:
            new_alpha = alpha
        grad_norm = norm(evaluation.grad)
        distance, grad_term, loc_term = drift_terms(position - center, evaluation.grad, hyper, None, mask,
                                                    grad_norm)
        finite = (rows_finite(new_position) & rows_finite(new_momentum)
                  & torch.isfinite(evaluation.loss) & torch.isfinite(new_alpha).squeeze(-1))
        info = SGNHTInfo(loss=evaluation.loss, grad_norm=grad_norm, distance=distance,
                         drift_norm=norm(eta * force), noise_norm=norm(kick),
                         grad_term_norm=grad_term, localization_term_norm=loc_term,
                         momentum_norm=norm(new_momentum), thermostat=new_alpha.squeeze(-1),
                         finite=finite)
        return SGNHTState(new_position, new_momentum, new_alpha), info
