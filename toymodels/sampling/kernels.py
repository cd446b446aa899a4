"""Samplers as pure steps vectorized over chains: SGLD, SGNHT, RMSProp-preconditioned SGLD, MALA.

Every sampler here targets the same localized tempered posterior as :mod:`toymodels.sampling.sgld`,
``p(w) ∝ exp(−U(w))`` with the potential ::

    U(w) = nβ L(w) + γ/2 ||w − w*||² − log φ(w),
    F(w) = ∇U(w) = nβ ∇L + γ (w − w*) − ∇log φ,

and each is a small object in the style of blackjax's kernels: a state ``NamedTuple`` whose tensors
have the chain as leading dimension, a pure ``init`` and a pure ``step`` returning
``(new_state, info)``. No argument is modified, randomness comes in as pre-drawn standard normals
(and uniforms for MALA), and the objective that produces losses and gradients stays outside: the
driver (:func:`toymodels.sampling.driver.run_chains`) evaluates it and hands the numbers in, so exact
potentials and networks with data share one code path.

Hyperparameters ``step_size``, ``nbeta`` and ``localization`` may be Python floats (one value for
all chains) or ``(num_chains, 1)`` tensors (one value per chain: a calibration grid run as one
batched tensor). All steps accept an optional ``(d,)`` 0/1 ``mask``: only those coordinates move.

The samplers:

* :class:`SGLD` — Welling & Teh (2011), the step of :func:`toymodels.sampling.sgld.sgld_step` unchanged.
  With full-batch losses it also reports, free of extra evaluations, the Metropolis–Hastings
  acceptance probability its last move would have had as a MALA proposal (over *all* sampled
  coordinates): a direct measure of the discretisation error at the chosen step size.
* :class:`SGNHT` — the stochastic-gradient Nosé–Hoover thermostat of Ding et al. (NeurIPS 2014,
  Alg. 2), with momentum and thermostat that actually evolve.
* :class:`RMSPropSGLD` — preconditioned SGLD of Li, Chen, Carlson & Carin (AAAI 2016, Alg. 1),
  with the correction term Γ discussed (and what dropping it costs) in its docstring.
* :class:`MALA` — the Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996): the SGLD
  step as a proposal, accepted with the exact Metropolis–Hastings probability. It removes the
  step-size bias entirely but needs the exact (full-batch) loss.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

__all__ = [
    "ChainHyperparameters",
    "SGLD",
    "SGNHT",
    "RMSPropSGLD",
    "MALA",
    "SAMPLERS",
    "make_sampler",
    "potential_and_force",
    "mala_log_acceptance",
]


class ChainHyperparameters(NamedTuple):
    """Per-chain hyperparameters, each a ``(num_chains, 1)`` tensor (broadcasts over parameters)."""

    step_size: torch.Tensor
    nbeta: torch.Tensor
    localization: torch.Tensor


def _sqrt(x):
    return x.sqrt() if isinstance(x, torch.Tensor) else math.sqrt(x)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=-1)


def potential_and_force(
    position: torch.Tensor,
    loss: torch.Tensor,
    grad: torch.Tensor,
    center: torch.Tensor,
    hyper,
    *,
    grad_log_prior: torch.Tensor | None = None,
    log_prior: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``U(w) = nβ L + γ/2 ||w − w*||² − log φ`` ``(C,)`` and its gradient ``F(w)`` ``(C, d)``.

    With a ``mask`` the force is zero on the frozen coordinates and the localization energy counts
    only the moving ones (the frozen ones sit at ``w*``; they would add a constant).
    """
    offset = position - center
    if mask is not None:
        offset = offset * mask
    force = hyper.nbeta * grad + hyper.localization * offset
    if grad_log_prior is not None:
        force = force - grad_log_prior
    if mask is not None:
        force = force * mask
    nbeta, gamma = hyper.nbeta, hyper.localization
    if isinstance(nbeta, torch.Tensor):
        nbeta, gamma = nbeta.squeeze(-1), gamma.squeeze(-1)
    energy = nbeta * loss + 0.5 * gamma * (offset * offset).sum(-1)
    if log_prior is not None:
        energy = energy - log_prior
    return energy, force


def mala_log_acceptance(
    position: torch.Tensor,
    energy: torch.Tensor,
    force: torch.Tensor,
    proposal: torch.Tensor,
    proposal_energy: torch.Tensor,
    proposal_force: torch.Tensor,
    step_size,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log Metropolis–Hastings ratio of the Langevin move ``w → w'``, per chain ``(C,)``.

    The proposal density is ``q(w' | w) = N(w'; w − (ε/2) F(w), ε I)`` on the moving coordinates,
    so (Roberts & Tweedie 1996, eq. 2.3)::

        log r = U(w) − U(w') − ||w − w' + (ε/2) F(w')||² / (2ε) + ||w' − w + (ε/2) F(w)||² / (2ε).

    Summed over every sampled coordinate (not one parameter tensor). A non-finite proposal gives
    ``−inf`` (always rejected).
    """
    half_eps = 0.5 * step_size
    forward = proposal - position + half_eps * force
    backward = position - proposal + half_eps * proposal_force
    if mask is not None:
        forward, backward = forward * mask, backward * mask
    two_eps = 2.0 * step_size
    if isinstance(two_eps, torch.Tensor):
        two_eps = two_eps.squeeze(-1)
    log_r = energy - proposal_energy + ((forward * forward).sum(-1) - (backward * backward).sum(-1)) / two_eps
    ok = torch.isfinite(log_r) & torch.isfinite(proposal).all(-1)
    return torch.where(ok, log_r, torch.full_like(log_r, -math.inf))


def _acceptance_probability(log_r: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(log_r, max=0.0))


# ------------------------------------------------------------------------------------------------
# SGLD


class SGLDState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    #: the previous position, its potential and ||ξ||²/2 of the noise that left it (for the MALA
    #: acceptance diagnostic of the last move); None before the first step or when not tracked
    previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


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
    """Stochastic-gradient Langevin dynamics (Welling & Teh 2011)::

        w ← w − (ε/2) F(w) + √ε ξ,     ξ ~ N(0, I).

    The move itself is :func:`toymodels.sampling.sgld.sgld_step` (so results are bit-for-bit those of the
    foundation's SGLD). Its stationary law differs from the target by O(ε) (for a Gaussian of
    curvature κ the variance is inflated by ``1/(1 − εκ/4)``): see ``docs/error_budget.md``.

    With ``mala_diagnostic=True`` (the driver sets it for full-batch losses) each step also
    computes the acceptance probability the previous move would have had as a MALA proposal,
    :func:`mala_log_acceptance`, from the loss and gradient the step is given anyway: no extra
    evaluation. Values near 1 mean the discretisation error per step is small.
    """

    name = "sgld"
    metropolis = False
    init_noise = False

    def __init__(self, mala_diagnostic: bool = False):
        self.mala_diagnostic = bool(mala_diagnostic)

    @property
    def needs_log_prior_value(self) -> bool:
        return self.mala_diagnostic

    def init(self, position: torch.Tensor, **_: Any) -> SGLDState:
        return SGLDState(position=position, previous=None)

    def step(self, state: SGLDState, loss, grad, noise, hyper, center, *, grad_log_prior=None,
             log_prior=None, mask=None, record: bool = True) -> tuple[SGLDState, SGLDInfo]:
        """One step. With ``record=False`` (a step whose info nobody reads, and whose successor is
        not recorded either) the extra diagnostics are skipped: the move is the same."""
        from toymodels.sampling.sgld import sgld_step

        position = state.position
        new_position, base = sgld_step(position, grad, noise, center, hyper, loss=loss,
                                       grad_log_prior=grad_log_prior, mask=mask)
        if not record:
            skipped = torch.zeros_like(base.loss)
            return SGLDState(position=new_position, previous=None), SGLDInfo(
                *base[:5], grad_term_norm=skipped, localization_term_norm=skipped,
                acceptance=skipped, finite=base.finite)
        half_eps = 0.5 * hyper.step_size
        nbeta, gamma = hyper.nbeta, hyper.localization
        if isinstance(half_eps, torch.Tensor):
            half_eps, nbeta, gamma = half_eps.squeeze(-1), nbeta.squeeze(-1), gamma.squeeze(-1)
        if mask is None:  # the norms are multiples of ones sgld_step computed already
            grad_term_norm = (half_eps * nbeta) * base.grad_norm
            loc_term_norm = (half_eps * gamma) * base.distance
            distance2 = base.distance * base.distance
        else:
            offset = (position - center) * mask
            grad_term_norm = (half_eps * nbeta) * _norm(grad * mask)
            loc_term_norm = (half_eps * gamma) * _norm(offset)
            distance2 = (offset * offset).sum(-1)
        acceptance = torch.full_like(base.loss, math.nan)
        previous = None
        if self.mala_diagnostic:
            energy = nbeta * loss + 0.5 * gamma * distance2
            if log_prior is not None:
                energy = energy - log_prior
            kick = _sqrt(hyper.step_size) * noise
            xi = noise if mask is None else noise * mask
            if state.previous is not None:
                prev_position, prev_energy, prev_half_xi2 = state.previous
                # w_prev − w + (ε/2)F(w) = w_prev − w_new + √ε ξ
                # because w_new = w − (ε/2)F(w) + √ε ξ
                backward = prev_position - new_position + kick
                if mask is not None:
                    backward = backward * mask
                log_r = (prev_energy - energy + prev_half_xi2
                         - (backward * backward).sum(-1) / (4.0 * half_eps))
                log_r = torch.where(torch.isfinite(log_r), log_r, torch.full_like(log_r, -math.inf))
                acceptance = _acceptance_probability(log_r)
            previous = (position, energy, 0.5 * (xi * xi).sum(-1))
        info = SGLDInfo(loss=base.loss, grad_norm=base.grad_norm, distance=base.distance,
                        drift_norm=base.drift_norm, noise_norm=base.noise_norm,
                        grad_term_norm=grad_term_norm, localization_term_norm=loc_term_norm,
                        acceptance=acceptance, finite=base.finite)
        return SGLDState(position=new_position, previous=previous), info


# ------------------------------------------------------------------------------------------------
# SGNHT


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
    metropolis = False
    init_noise = True
    needs_log_prior_value = False

    def __init__(self, diffusion: float = 0.1, thermostat: bool = True):
        if not (isinstance(diffusion, (int, float)) and math.isfinite(diffusion) and 0 < diffusion <= 1):
            raise ValueError(f"diffusion must be in (0, 1], got {diffusion!r}; 0.1 is a good start")
        self.diffusion = float(diffusion)
        self.thermostat = bool(thermostat)

    def init(self, position: torch.Tensor, *, noise: torch.Tensor, hyper, mask=None, **_: Any) -> SGNHTState:
        """Momentum drawn from its equilibrium law ``v ~ N(0, η I)``, thermostat at ``a``."""
        eta = 0.5 * hyper.step_size
        momentum = _sqrt(eta) * noise
        if mask is not None:
            momentum = momentum * mask
        thermostat = torch.full((position.shape[0], 1), self.diffusion, dtype=position.dtype,
                                device=position.device)
        return SGNHTState(position=position, momentum=momentum, thermostat=thermostat)

    def step(self, state: SGNHTState, loss, grad, noise, hyper, center, *, grad_log_prior=None,
             log_prior=None, mask=None, record: bool = True) -> tuple[SGNHTState, SGNHTInfo]:
        eta = 0.5 * hyper.step_size
        position, momentum, alpha = state
        _, force = potential_and_force(position, loss, grad, center, hyper,
                                       grad_log_prior=grad_log_prior, mask=mask)
        kick = _sqrt(2.0 * self.diffusion * eta) * noise
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
        offset = position - center
        grad_term = eta * hyper.nbeta * grad
        loc_term = eta * hyper.localization * offset
        if mask is not None:
            grad_term, loc_term = grad_term * mask, loc_term * mask
        finite = (torch.isfinite(new_position).all(-1) & torch.isfinite(new_momentum).all(-1)
                  & torch.isfinite(loss) & torch.isfinite(new_alpha).squeeze(-1))
        info = SGNHTInfo(loss=loss, grad_norm=_norm(grad), distance=_norm(offset),
                         drift_norm=_norm(eta * force), noise_norm=_norm(kick),
                         grad_term_norm=_norm(grad_term), localization_term_norm=_norm(loc_term),
                         momentum_norm=_norm(new_momentum), thermostat=new_alpha.squeeze(-1),
                         finite=finite)
        return SGNHTState(new_position, new_momentum, new_alpha), info


# ------------------------------------------------------------------------------------------------
# RMSProp-preconditioned SGLD


class RMSPropSGLDState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    square_avg: torch.Tensor  #: (C, d), V: exponential moving average of F²
    count: int  #: number of updates V has had


class RMSPropSGLDInfo(NamedTuple):
    loss: torch.Tensor
    grad_norm: torch.Tensor
    distance: torch.Tensor
    drift_norm: torch.Tensor  #: ||(ε/2) G F||
    noise_norm: torch.Tensor  #: ||√(εG) ξ||
    grad_term_norm: torch.Tensor  #: ||(ε/2) G nβ ∇L||
    localization_term_norm: torch.Tensor  #: ||(ε/2) G γ (w − w*)||
    preconditioner_spread: torch.Tensor  #: max G / min G over the moving coordinates
    finite: torch.Tensor


class RMSPropSGLD:
    """RMSProp-preconditioned SGLD, "pSGLD" (Li, Chen, Carlson, Carin, AAAI 2016, Alg. 1)::

        V ← ρ V + (1 − ρ) F ⊙ F,     g_i = 1 / (δ + √V̂_i),     G = g / mean_i(g_i),
        w ← w − (ε/2) [G ⊙ F(w) + Γ(w)] + √ε G^{1/2} ⊙ ξ.

    ``V̂ = V / (1 − ρ^k)`` is the bias-corrected average after ``k`` updates.

    **The correction term Γ.** For a position-dependent preconditioner ``G(w)`` the drift needs
    ``Γ_i = Σ_j ∂G_ij/∂w_j`` for the chain to keep the target invariant (Li et al., eq. 4; Ma, Chen
    & Fox 2015). In pSGLD ``G`` depends on the *history* through ``V``, not on ``w``, and Li et al.
    drop Γ, arguing that ``V`` moves by O(1 − ρ) per step; the price is a bias that vanishes only as
    ``ρ → 1`` (their Theorem 2). Here the choice is explicit:

    * ``adapt="burnin"`` (default): ``V`` is updated during burn-in only and then frozen, so after
      burn-in ``G`` is a constant matrix, Γ = 0 *exactly*, and the chain is preconditioned
      Langevin with no bias beyond the usual O(ε);
    * ``adapt="always"``: Li et al.'s scheme; Γ is dropped, with the O(1 − ρ) bias that implies.

    Two deliberate differences from Li et al., both documented in ``docs/error_budget.md``: ``V``
    averages the squared *total* force ``F = nβ∇L + γ(w − w*) − ∇log φ`` (not the likelihood
    gradient alone), so that directions held only by the localization are not given a huge step;
    and ``G`` is normalised to mean 1 over the moving coordinates of each chain, so ε keeps
    SGLD's meaning and the zero gradient at ``w*`` (where ``V = 0``) gives a plain SGLD step
    instead of a step of size ``ε/δ``.

    Args:
        alpha: ρ, the averaging constant (0.99 as in Li et al.).
        eps: δ, the damping in ``1/(δ + √V)``, relative to the scale of ``√V``.
        adapt: ``"burnin"`` or ``"always"`` (see above). ``adapt_steps`` is set by the driver to
            the number of burn-in steps.
    """

    name = "rmsprop_sgld"
    metropolis = False
    init_noise = False
    needs_log_prior_value = False

    def __init__(self, alpha: float = 0.99, eps: float = 1e-8, adapt: str = "burnin",
                 adapt_steps: int | None = None):
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; Li et al. use 0.99")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if adapt not in ("burnin", "always"):
            raise ValueError(f"adapt must be 'burnin' or 'always', got {adapt!r}")
        self.alpha, self.eps, self.adapt = float(alpha), float(eps), adapt
        self.adapt_steps = adapt_steps

    def init(self, position: torch.Tensor, **_: Any) -> RMSPropSGLDState:
        return RMSPropSGLDState(position=position, square_avg=torch.zeros_like(position), count=0)

    def preconditioner(self, square_avg: torch.Tensor, count: int, mask=None) -> torch.Tensor:
        """``G`` ``(C, d)`` from the running average (1 everywhere before any update)."""
        if count == 0:
            ones = torch.ones_like(square_avg)
            return ones * mask if mask is not None else ones
        root = torch.sqrt(square_avg / (1.0 - self.alpha ** count))
        if mask is not None:
            moving = mask.sum()
            scale = (root * mask).sum(-1, keepdim=True) / moving
        else:
            scale = root.mean(-1, keepdim=True)
        # δ relative to the typical √V of the chain keeps G scale-free; a chain with V ≡ 0 gets G = 1
        g = 1.0 / (root + self.eps * scale + torch.finfo(root.dtype).tiny)
        if mask is not None:
            g = g * mask
            g = g / ((g.sum(-1, keepdim=True) / moving))
        else:
            g = g / g.mean(-1, keepdim=True)
        return g

    def step(self, state: RMSPropSGLDState, loss, grad, noise, hyper, center, *, grad_log_prior=None,
             log_prior=None, mask=None,
             record: bool = True) -> tuple[RMSPropSGLDState, RMSPropSGLDInfo]:
        position, square_avg, count = state
        _, force = potential_and_force(position, loss, grad, center, hyper,
                                       grad_log_prior=grad_log_prior, mask=mask)
        adapting = self.adapt == "always" or self.adapt_steps is None or count < self.adapt_steps
        if adapting:
            square_avg = self.alpha * square_avg + (1.0 - self.alpha) * force * force
            count = count + 1
        g = self.preconditioner(square_avg, count, mask)
        half_eps = 0.5 * hyper.step_size
        drift = half_eps * g * force
        kick = _sqrt(hyper.step_size) * torch.sqrt(g) * noise
        if mask is not None:
            kick = kick * mask
        new_position = position - drift + kick
        offset = position - center
        grad_term = half_eps * g * (hyper.nbeta * grad)
        loc_term = half_eps * g * (hyper.localization * offset)
        if mask is not None:
            grad_term, loc_term = grad_term * mask, loc_term * mask
            big = torch.where(mask > 0, g, torch.full_like(g, -math.inf)).amax(-1)
            small = torch.where(mask > 0, g, torch.full_like(g, math.inf)).amin(-1)
        else:
            big, small = g.amax(-1), g.amin(-1)
        finite = torch.isfinite(new_position).all(-1) & torch.isfinite(loss)
        info = RMSPropSGLDInfo(loss=loss, grad_norm=_norm(grad), distance=_norm(offset),
                               drift_norm=_norm(drift), noise_norm=_norm(kick),
                               grad_term_norm=_norm(grad_term), localization_term_norm=_norm(loc_term),
                               preconditioner_spread=big / small, finite=finite)
        return RMSPropSGLDState(new_position, square_avg, count), info


# ------------------------------------------------------------------------------------------------
# MALA


class MALAState(NamedTuple):
    position: torch.Tensor  #: (C, d)
    loss: torch.Tensor  #: (C,) L(w)
    grad: torch.Tensor  #: (C, d) ∇L(w)
    energy: torch.Tensor  #: (C,) U(w)
    force: torch.Tensor  #: (C, d) F(w) = ∇U(w)
    log_step: torch.Tensor  #: () log ε, shared by the chains (adapted during burn-in)
    #: dual-averaging state (Hoffman & Gelman 2014, §3.2): averaged log ε, H̄, iteration count
    log_step_avg: torch.Tensor
    h_bar: torch.Tensor
    count: int


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

    ``r`` from :func:`mala_log_acceptance` with the full potential ``U``. The chain keeps the
    target exactly invariant at any ε, so there is no step-size bias; the step size only sets the
    speed. Acceptance near 0.57 is optimal for d → ∞ (Roberts & Rosenthal 1998); 0.7 is a safer
    target in a few dimensions. Needs the exact loss: stochastic minibatch losses would make ``r``
    itself random and the chain biased, so the driver refuses minibatch objectives.

    One objective evaluation per step: the loss and gradient at the proposal are kept in the state
    when it is accepted and reused by the next step.

    Args:
        target_accept: the acceptance rate the step-size adaptation aims at.
        adapt_steps: adapt ε by dual averaging (Hoffman & Gelman 2014, Alg. 5, on the mean
            acceptance probability over chains) during the first ``adapt_steps`` steps, then fix it
            to the averaged value. The driver sets it to the burn-in length when asked to adapt.
    """

    name = "mala"
    metropolis = True
    init_noise = False
    needs_log_prior_value = True

    def __init__(self, target_accept: float = 0.7, adapt_steps: int = 0):
        if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}; try 0.7")
        if isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int) or adapt_steps < 0:
            raise ValueError(f"adapt_steps must be an integer ≥ 0, got {adapt_steps!r}")
        self.target_accept = float(target_accept)
        self.adapt_steps = adapt_steps

    def init(self, position, *, loss, grad, hyper, center, grad_log_prior=None, log_prior=None,
             mask=None, **_: Any) -> MALAState:
        energy, force = potential_and_force(position, loss, grad, center, hyper,
                                            grad_log_prior=grad_log_prior, log_prior=log_prior,
                                            mask=mask)
        if isinstance(hyper.step_size, torch.Tensor):
            raise ValueError("MALA takes one step size for all chains (it adapts it during burn-in)")
        log_step = torch.tensor(math.log(hyper.step_size), dtype=position.dtype)
        return MALAState(position, loss, grad, energy, force, log_step, log_step.clone(),
                         torch.zeros((), dtype=position.dtype), 0)

    def propose(self, state: MALAState, noise: torch.Tensor, mask=None) -> torch.Tensor:
        eps = torch.exp(state.log_step)
        move = -0.5 * eps * state.force + torch.sqrt(eps) * noise
        if mask is not None:
            move = move * mask
        return state.position + move

    def accept(self, state: MALAState, proposal, loss, grad, noise, uniform, hyper, center, *,
               grad_log_prior=None, log_prior=None, mask=None) -> tuple[MALAState, MALAInfo]:
        eps = torch.exp(state.log_step)
        energy, force = potential_and_force(proposal, loss, grad, center, hyper,
                                            grad_log_prior=grad_log_prior, log_prior=log_prior,
                                            mask=mask)
        log_r = mala_log_acceptance(state.position, state.energy, state.force, proposal, energy,
                                    force, eps, mask)
        accept = torch.log(uniform) < log_r
        a1 = accept.unsqueeze(-1)
        new_position = torch.where(a1, proposal, state.position)
        new_loss = torch.where(accept, loss, state.loss)
        new_grad = torch.where(a1, grad, state.grad)
        new_energy = torch.where(accept, energy, state.energy)
        new_force = torch.where(a1, force, state.force)
        acceptance = _acceptance_probability(log_r)

        log_step, log_step_avg, h_bar, count = state.log_step, state.log_step_avg, state.h_bar, state.count
        if count < self.adapt_steps:
            # dual averaging with Hoffman & Gelman's constants (γ = 0.05, t0 = 10, κ = 0.75, μ = log 10ε0)
            k = count + 1
            h_bar = (1 - 1 / (k + 10)) * h_bar + (self.target_accept - acceptance.mean()) / (k + 10)
            mu = math.log(10 * hyper.step_size)
            log_step = mu - math.sqrt(k) / 0.05 * h_bar
            weight = k ** -0.75
            log_step_avg = weight * log_step + (1 - weight) * log_step_avg
            if k == self.adapt_steps:
                log_step = log_step_avg
        offset = state.position - center
        grad_term = (0.5 * eps * hyper.nbeta) * state.grad
        loc_term = (0.5 * eps * hyper.localization) * offset
        kick = torch.sqrt(eps) * noise
        if mask is not None:
            grad_term, loc_term, kick = grad_term * mask, loc_term * mask, kick * mask
        info = MALAInfo(loss=state.loss, grad_norm=_norm(state.grad), distance=_norm(offset),
                        drift_norm=_norm(0.5 * eps * state.force), noise_norm=_norm(kick),
                        grad_term_norm=_norm(grad_term), localization_term_norm=_norm(loc_term),
                        acceptance=acceptance, accepted=accept.to(proposal.dtype),
                        step_size=eps.expand_as(acceptance),
                        finite=torch.isfinite(new_position).all(-1) & torch.isfinite(new_loss))
        new_state = MALAState(new_position, new_loss, new_grad, new_energy, new_force, log_step,
                              log_step_avg, h_bar, count + 1)
        return new_state, info


SAMPLERS = {"sgld": SGLD, "sgnht": SGNHT, "rmsprop_sgld": RMSPropSGLD, "mala": MALA}


def make_sampler(name: str, options: dict | None = None):
    """The sampler called ``name`` (one of :data:`SAMPLERS`) built with ``options``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    try:
        return SAMPLERS[name](**(options or {}))
    except TypeError as exc:
        raise ValueError(f"bad sampler_options for {name!r}: {exc}") from exc
